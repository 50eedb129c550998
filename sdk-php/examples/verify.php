<?php

// Usage: php examples/verify.php receipt.json [output-file]
// Verifies a receipt offline: no node needed.
declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';   // with Composer: require 'vendor/autoload.php';

$receipt = Plasm\Receipt::fromJson((string) file_get_contents($argv[1] ?? 'php://stdin'));
$output = isset($argv[2]) ? (string) file_get_contents($argv[2]) : null;
try {
    $receipt->verifyOrThrow(null, $output);
    echo "valid: job {$receipt->jobId()} executed by {$receipt->executorPeerId()}\n";
} catch (Plasm\InvalidReceiptException $e) {
    fwrite(STDERR, "invalid: check {$e->check} failed: {$e->getMessage()}\n");
    exit(1);
}
