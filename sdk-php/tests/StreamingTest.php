<?php

declare(strict_types=1);

namespace Plasm\Tests;

use GuzzleHttp\Client as Guzzle;
use GuzzleHttp\Psr7\HttpFactory;
use PHPUnit\Framework\TestCase;
use Plasm\Client;
use Plasm\EventStream;
use Plasm\Job;
use Plasm\NotFoundException;
use Plasm\PlasmException;

/**
 * Client::events() and wait() on the SSE stream: against a real `plasm start`
 * node (started the default way), through the built-in curl transport and
 * through a PSR-18 client (Debian's Guzzle), and against a stand-in server that
 * hangs up mid-job to prove the stream resumes with Last-Event-ID.
 */
final class StreamingTest extends TestCase
{
    private static string $api;
    private static string $sieve;
    private static string $reverse;

    public static function setUpBeforeClass(): void
    {
        self::$sieve = Nodes::example('sieve');
        self::$reverse = Nodes::example('reverse');
        self::$api = Nodes::start()['api'];
    }

    public static function tearDownAfterClass(): void
    {
        Nodes::stopAll();
    }

    /** A job long enough (about half a second) to be seen in flight. */
    private static function slowJob(): Job
    {
        return (new Job(self::$sieve))->withArgs('60000000')->withFuel(9_000_000_000)->withPlacement('local');
    }

    private static function guzzleClient(): Client
    {
        foreach (['/usr/share/php/GuzzleHttp/autoload.php', '/usr/share/php/GuzzleHttp/Psr7/autoload.php'] as $f) {
            if (!is_file($f)) {
                self::fail("$f is missing: install php-guzzlehttp-guzzle (scripts/setup.sh does)");
            }
            require_once $f;
        }
        $factory = new HttpFactory();
        // 'stream' => true: Guzzle hands the body over as it arrives.
        $guzzle = new Guzzle(['stream' => true, 'timeout' => 60, 'http_errors' => false]);
        return new Client(self::$api, httpClient: $guzzle, requestFactory: $factory, streamFactory: $factory);
    }

    public function testEventsArriveWhileTheJobRunsAndEndWithItsFinalState(): void
    {
        $client = new Client(self::$api);
        $id = $client->submit(self::slowJob());
        $states = [];
        $ids = [];
        $firstSeenInFlight = null;
        foreach ($client->events($id) as $eventId => $event) {
            self::assertSame($id, $event['job_id']);
            if ($firstSeenInFlight === null) {
                // Yielded as it happened: the job has not ended yet.
                $firstSeenInFlight = !in_array($client->status($id)['state'], ['succeeded', 'failed'], true);
            }
            $states[] = $event['state'];
            if ($eventId !== '') {
                $ids[] = (int) $eventId;
            }
        }
        self::assertTrue($firstSeenInFlight, 'the first event came before the job ended: ' . implode(',', $states));
        self::assertSame('succeeded', end($states), implode(',', $states));
        self::assertGreaterThanOrEqual(2, count($states), implode(',', $states));
        $sorted = $ids;
        sort($sorted);
        self::assertSame($sorted, $ids, 'event ids increase');
        self::assertSame('3562115' . "\n", $client->output($id));
    }

    public function testWaitFollowsTheStreamAndReturnsTheStoredJob(): void
    {
        $client = new Client(self::$api);
        $id = $client->submit(self::slowJob());
        $job = $client->wait($id, 60);
        self::assertSame('succeeded', $job['state']);
        self::assertSame('exited', $job['receipt']['outcome']);
        self::assertSame('local', $job['placement']['path']);
    }

    public function testCancelStopsARunningJobWithoutAReceipt(): void
    {
        $client = new Client(self::$api);
        // A loop that would run for minutes.
        $spin = "\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0\x0a\x09\x01\x07\0\x03\x40\x0c\0\x0b\x0b";
        $id = $client->submit((new Job($spin))->withFuel(9_000_000_000)->withPlacement('local'));
        foreach ($client->events($id) as $event) {
            if ($event['state'] === 'running') {
                $client->cancel($id);
            }
        }
        $job = $client->status($id);
        self::assertSame('failed', $job['state']);
        self::assertStringStartsWith('cancelled', (string) $job['error']);
        self::assertNull($job['receipt']);
        try {
            $client->cancel($id);
            self::fail('cancelling a finished job must fail');
        } catch (\Plasm\ApiException $e) {
            self::assertSame(409, $e->status);
        }
    }

    public function testEventsOfAnUnknownJobThrowNotFound(): void
    {
        $this->expectException(NotFoundException::class);
        foreach ((new Client(self::$api))->events(str_repeat('0', 64)) as $_) {
            self::fail('no event for an unknown job');
        }
    }

    public function testAPsr18ClientRunsJobsAndStreamsEvents(): void
    {
        $client = self::guzzleClient();
        $result = $client->run(self::$reverse, 'through guzzle', ['placement' => 'local']);
        self::assertSame('elzzug hguorht', $result->output);
        self::assertTrue($result->receipt->verify(null, $result->output));

        $id = $client->submit(self::slowJob());
        $states = [];
        foreach ($client->events($id) as $event) {
            $states[] = $event['state'];
        }
        self::assertSame('succeeded', end($states), implode(',', $states));
        self::assertSame('succeeded', $client->wait($id)['state']);
        $this->expectException(NotFoundException::class);
        $client->status(str_repeat('f', 64));
    }

    public function testAPsr18ClientNeedsBothFactories(): void
    {
        require_once '/usr/share/php/GuzzleHttp/autoload.php';
        $this->expectException(\InvalidArgumentException::class);
        new Client(self::$api, httpClient: new Guzzle(), requestFactory: new HttpFactory());
    }

    public function testABrokenStreamResumesWithLastEventId(): void
    {
        $state = tempnam(sys_get_temp_dir(), 'plasm-sse');
        $port = self::freePort();
        $router = __DIR__ . '/fixtures/sse-drop-router.php';
        $proc = proc_open(
            [PHP_BINARY, '-S', "127.0.0.1:$port", $router],
            [1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
            $pipes,
            null,
            ['STATE_FILE' => $state],
        );
        try {
            $deadline = microtime(true) + 10;
            while (@fsockopen('127.0.0.1', $port) === false) {
                self::assertLessThan($deadline, microtime(true), 'php -S did not start');
                usleep(50_000);
            }
            file_put_contents($state, '');
            $seen = [];
            foreach ((new Client("http://127.0.0.1:$port"))->events('j1') as $id => $event) {
                $seen[$id] = $event['state'];
            }
            self::assertSame(['41' => 'queued', '42' => 'running', '43' => 'succeeded'], $seen);
            self::assertSame("-\n42\n", file_get_contents($state), 'the second request resumed after event 42');
        } finally {
            proc_terminate($proc);
            proc_close($proc);
            @unlink($state);
        }
    }

    public function testTheParserBoundsAnEvent(): void
    {
        $p = new EventStream();
        self::assertSame([['id' => '7', 'event' => 'state', 'data' => "a\nb"]], $p->feed("id: 7\r\nevent: state\r\ndata: a\r\ndata: b\r\n\r\n"));
        $this->expectException(PlasmException::class);
        $p->feed('data: ' . str_repeat('x', EventStream::MAX_EVENT_BYTES));
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $name = stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr((string) strrchr((string) $name, ':'), 1);
    }
}
