<?php

// Usage: php examples/run.php [API_URL] [module.wasm]
// Runs a job on a plasm node and prints its output and its verified receipt.
declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';   // with Composer: require 'vendor/autoload.php';

$api = $argv[1] ?? 'http://127.0.0.1:4611';
$module = $argv[2] ?? __DIR__ . '/../../examples/build/reverse.wasm';
$plasm = new Plasm\Client($api);
$result = $plasm->run((string) file_get_contents($module), 'Hello from PHP!');
echo "output:   {$result->output}\n";
echo "outcome:  {$result->outcome} (exit code {$result->exitCode})\n";
echo "executor: {$result->executor}\n";
echo "node's verdict: " . json_encode($plasm->verifyRemote($result->receipt)) . "\n";
echo $result->receipt->toJson(), "\n";
