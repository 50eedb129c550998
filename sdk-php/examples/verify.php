<?php

// Usage: php examples/verify.php receipt.json [output-file]
// Verifies a receipt offline: no node needed.
declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';   // with Composer: require 'vendor/autoload.php';

$file = $argv[1] ?? 'php://stdin';
$text = @file_get_contents($file);
if ($text === false) {
    fwrite(STDERR, "cannot read receipt $file\n");
    exit(121);
}
$output = null;
if (isset($argv[2])) {
    $output = @file_get_contents($argv[2]);
    if ($output === false) {
        fwrite(STDERR, "cannot read output {$argv[2]}\n");
        exit(121);
    }
}
try {
    $receipt = Plasm\Receipt::fromJson($text);
    $receipt->verifyOrThrow(null, $output);
    echo "valid: job {$receipt->jobId()} executed by {$receipt->executorPeerId()}\n";
} catch (Plasm\InvalidReceiptException $e) {
    fwrite(STDERR, "invalid: check {$e->check} failed: {$e->getMessage()}\n");
    exit(1);
}
