<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\Client;
use Plasm\InvalidReceiptException;
use Plasm\Job;
use Plasm\NotFoundException;
use Plasm\ReplayedNonceException;
use Plasm\Receipt;
use Plasm\UnprocessableException;

/**
 * Against real `plasm start` processes on loopback: node B executes, node A
 * bootstraps from B; jobs run locally on A and remotely on B.
 */
final class IntegrationTest extends TestCase
{
    private static string $apiA;
    private static string $peerB;
    private static string $module;

    /** @return array{listen: string, api: string, peer: string} */
    private static function start(array $args): array
    {
        return Nodes::start($args);
    }

    public static function setUpBeforeClass(): void
    {
        self::$module = Nodes::example('reverse');
        // B is the public entry point (it also executes); A starts the default way.
        $b = self::start(['--public']);
        $a = self::start(['--bootstrap', $b['listen']]);
        self::$apiA = $a['api'];
        self::$peerB = $b['peer'];
        // Wait until A finds B through the DHT.
        $client = new Client(self::$apiA);
        $deadline = microtime(true) + 30;
        while (true) {
            try {
                $client->run(self::$module, 'probe', ['placement' => 'remote', 'timeout' => 10]);
                return;
            } catch (\Throwable $e) {
                if (microtime(true) > $deadline) {
                    throw $e;
                }
                usleep(300000);
            }
        }
    }

    public static function tearDownAfterClass(): void
    {
        Nodes::stopAll();
    }

    public function testRunLocallyReturnsOutputAndAVerifiedReceipt(): void
    {
        $client = new Client(self::$apiA);
        $result = $client->run(self::$module, 'Hello, PHP!', ['placement' => 'local']);
        self::assertSame('!PHP ,olleH', $result->output);
        self::assertTrue($result->ok());
        self::assertSame('exited', $result->outcome);
        self::assertNotSame(self::$peerB, $result->executor);
        self::assertTrue($result->receipt->verify(null, $result->output));
    }

    /** Issue 21: a failing job is a Result with plasm run's exit status, never a success. */
    public function testFailingJobsCarryRunExitStatuses(): void
    {
        $client = new Client(self::$apiA);
        // (module (func (export "_start") unreachable)) and (loop (br 0)), as binaries.
        $head = "\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0\x0a";
        $trap = $head . "\x05\x01\x03\0\0\x0b";
        $spin = $head . "\x09\x01\x07\0\x03\x40\x0c\0\x0b\x0b";
        $trapped = $client->run($trap, '', ['placement' => 'local']);
        self::assertSame('trapped', $trapped->outcome);
        self::assertFalse($trapped->ok());
        self::assertSame(127, $trapped->exitStatus());
        $spun = $client->run($spin, '', ['placement' => 'local', 'fuel' => 100000]);
        self::assertSame('out_of_fuel', $spun->outcome);
        self::assertSame(124, $spun->exitStatus());
        $state = $client->status($spun->jobId);
        self::assertSame('failed', $state['state'], 'out of fuel is not a success');
        self::assertSame(124, $state['exit_status']);
    }

    public function testRunOnARemotePeer(): void
    {
        $result = (new Client(self::$apiA))->run(self::$module, 'remote', ['placement' => 'remote']);
        self::assertSame('etomer', $result->output);
        self::assertSame(self::$peerB, $result->executor, 'the receipt names the peer that ran it');
    }

    public function testStepByStepAndRemoteVerification(): void
    {
        $client = new Client(self::$apiA);
        $sha = $client->uploadModule(self::$module);
        self::assertSame(hash('sha256', self::$module), $sha);
        $job = (new Job(self::$module, 'abc'))->withPlacement('local')->withFuel(50_000_000);
        $id = $client->submit($job, false);
        self::assertSame($job->jobId(), $id, 'the SDK computes the node\'s job id');
        $state = $client->wait($id, 30);
        self::assertSame('succeeded', $state['state']);
        self::assertSame('cba', $client->output($id));
        $receipt = $client->receipt($id);
        $receipt->verifyOrThrow(null, 'cba');
        self::assertTrue($client->verifyRemote($receipt)['valid']);

        // A tampered receipt fails offline and on the node, naming the check.
        $data = json_decode($receipt->toJson(), false);
        $data->fuel_used = 1;
        $forged = Receipt::fromJson(json_encode($data));
        self::assertFalse($forged->verify());
        try {
            $forged->verifyOrThrow();
            self::fail('a forged receipt verified');
        } catch (InvalidReceiptException $e) {
            self::assertSame('signature', $e->check);
        }
        $verdict = $client->verifyRemote($forged);
        self::assertFalse($verdict['valid']);
        self::assertSame('signature', $verdict['check']);
        // The right receipt with the wrong bytes.
        self::assertFalse($receipt->verify(null, 'not the output'));

        $this->expectException(ReplayedNonceException::class);
        $client->submit($job);
    }

    public function testErrorsAreTyped(): void
    {
        $client = new Client(self::$apiA);
        try {
            $client->status(str_repeat('0', 64));
            self::fail('expected 404');
        } catch (NotFoundException $e) {
            self::assertSame(404, $e->status);
        }
        $this->expectException(UnprocessableException::class);
        $client->submit(new Job("\0asm\x01\0\0\0 never uploaded"), false);
    }
}
