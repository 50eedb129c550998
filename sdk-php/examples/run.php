<?php

// Usage: php examples/run.php [API_URL] [module.wasm]
// Runs a job on a plasm node and prints its output and its verified receipt.
declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';   // with Composer: require 'vendor/autoload.php';

$api = $argv[1] ?? 'http://127.0.0.1:4611';
$module = $argv[2] ?? __DIR__ . '/../../examples/build/reverse.wasm';
$bytes = is_file($module) ? @file_get_contents($module) : false;
if ($bytes === false || $bytes === '') {
    fwrite(STDERR, "cannot read module $module" . (is_file($module) ? '' : ' (no such file; examples/build.sh builds examples/build/*.wasm)') . "\n");
    exit(121);
}
$plasm = new Plasm\Client($api);
try {
    $result = $plasm->run($bytes, 'Hello from PHP!');
} catch (Plasm\PlasmException $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(118);
}
echo "output:   {$result->output}\n";
echo "outcome:  {$result->outcome} (exit code " . ($result->exitCode ?? 'none') . ", exit status {$result->exitStatus()})\n";
echo "executor: {$result->executor}\n";
echo "node's verdict: " . json_encode($plasm->verifyRemote($result->receipt)) . "\n";
echo $result->receipt->toJson(), "\n";
exit($result->exitStatus());
