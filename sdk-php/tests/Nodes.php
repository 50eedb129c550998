<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\Assert;

/** Real `plasm start` processes on loopback for the tests, started as the README does. */
final class Nodes
{
    /** @var list<array{proc: resource, dir: string}> */
    private static array $nodes = [];

    public static function bin(): string
    {
        $bin = getenv('PLASM_BIN') ?: __DIR__ . '/../../target/debug/plasm';
        if (!is_executable($bin)) {
            Assert::fail("$bin is missing: build it with `cargo build --bin plasm` (scripts/test.sh does)");
        }
        return $bin;
    }

    /**
     * Starts a node with a fresh data dir, its API on a free loopback port.
     *
     * @param list<string> $args
     * @return array{listen: string, api: string, peer: string}
     */
    public static function start(array $args = []): array
    {
        $dir = sys_get_temp_dir() . '/plasm-php-' . bin2hex(random_bytes(6));
        mkdir($dir);
        $cmd = array_merge([self::bin(), 'start', '--data-dir', $dir, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/udp/0/quic-v1'], $args);
        $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        Assert::assertIsResource($proc);
        self::$nodes[] = ['proc' => $proc, 'dir' => $dir];
        $listen = $api = '';
        $deadline = microtime(true) + 20;
        while (($listen === '' || $api === '') && microtime(true) < $deadline) {
            $line = fgets($pipes[1]);
            if ($line === false) {
                break;
            }
            if (str_starts_with($line, 'listening ')) {
                $listen = trim(substr($line, 10));
            } elseif (str_starts_with($line, 'api ')) {
                $api = trim(substr($line, 4));
            }
        }
        Assert::assertNotSame('', $api, 'the node printed its API address');
        $parts = explode('/p2p/', $listen);
        return ['listen' => $listen, 'api' => $api, 'peer' => end($parts)];
    }

    public static function stopAll(): void
    {
        foreach (self::$nodes as $n) {
            proc_terminate($n['proc']);
            proc_close($n['proc']);
            exec('rm -rf ' . escapeshellarg($n['dir']));
        }
        self::$nodes = [];
    }

    /** A built example module (examples/build.sh). */
    public static function example(string $name): string
    {
        $file = __DIR__ . "/../../examples/build/$name.wasm";
        if (!is_file($file)) {
            Assert::fail("examples/build/$name.wasm is missing: run examples/build.sh");
        }
        return (string) file_get_contents($file);
    }
}
