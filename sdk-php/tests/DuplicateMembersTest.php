<?php

declare(strict_types=1);

namespace Plasm\Tests;

use GuzzleHttp\Psr7\HttpFactory;
use GuzzleHttp\Psr7\Response;
use PHPUnit\Framework\TestCase;
use Plasm\Client;
use Plasm\InvalidReceiptException;
use Plasm\Json;
use Plasm\PlasmException;
use Plasm\Receipt;
use Psr\Http\Client\ClientInterface;
use Psr\Http\Message\RequestInterface;
use Psr\Http\Message\ResponseInterface;

/**
 * A signed receipt with a second copy of a member in front of the signed one
 * verifies with plain json_decode (it keeps the last copy) while a reader of the
 * first copy sees a value no signature covers: the SDK refuses such a text, as
 * `malformed`, wherever it reads a receipt (no node needed: a stand-in PSR-18 client).
 */
final class DuplicateMembersTest extends TestCase
{
    private static function validReceipt(): string
    {
        $text = file_get_contents(__DIR__ . '/../../schemas/test-vectors/vectors.json');
        self::assertIsString($text);
        foreach (Json::decodeStrict($text, true)['receipts'] as $case) {
            if ($case['name'] === 'v2 valid') {
                return $case['json'];
            }
        }
        self::fail('no "v2 valid" receipt vector');
    }

    /** The valid receipt with $extra inserted right after the first $after. */
    private static function forge(string $after, string $extra): string
    {
        $text = self::validReceipt();
        $at = strpos($text, $after);
        self::assertIsInt($at, $after);
        return substr_replace($text, $extra, $at + strlen($after), 0);
    }

    /** @return array<string,array{0:string,1:string}> forged text, expected message */
    public static function forgeries(): array
    {
        return [
            'outcome at the top level' => [self::forge('{', '"outcome":"trapped",'), 'duplicate member "outcome"'],
            'escaped outcome' => [self::forge('{', '"\u006futcome":"trapped",'), 'duplicate member "outcome"'],
            'signature' => [self::forge('{', '"signature":"' . str_repeat('A', 86) . '==",'), 'duplicate member "signature"'],
            'runtime name' => [self::forge('"runtime": {', '"name":"other",'), 'duplicate member "name" in /runtime'],
            'executor peer id' => [self::forge('"executor": {', '"peer_id":"12D3KooWSomeoneElse",'), 'duplicate member "peer_id" in /executor'],
            'placement path' => [self::forge('"placement": {', '"path":"relayed",'), 'duplicate member "path" in /placement'],
        ];
    }

    /** @dataProvider forgeries */
    public function testAReceiptWithADuplicateMemberIsMalformed(string $forged, string $message): void
    {
        // Without the check it would verify: json_decode reads exactly the signed receipt.
        self::assertEquals(json_decode(self::validReceipt()), json_decode($forged));
        self::assertTrue(Receipt::fromJson(self::validReceipt())->verify());
        try {
            Receipt::fromJson($forged);
            self::fail('a receipt with a duplicate member was read');
        } catch (InvalidReceiptException $e) {
            self::assertSame('malformed', $e->check);
            self::assertStringContainsString($message, $e->getMessage());
        }
    }

    public function testNotJsonIsStillMalformed(): void
    {
        $this->expectException(InvalidReceiptException::class);
        $this->expectExceptionMessage('receipt invalid (malformed): not JSON');
        Receipt::fromJson('{"outcome":');
    }

    /** A Client whose node answers GET paths from $bodies (SSE for /events). */
    private static function client(array $bodies): Client
    {
        foreach (['/usr/share/php/Psr/Http/Client/autoload.php', '/usr/share/php/GuzzleHttp/Psr7/autoload.php'] as $f) {
            if (!is_file($f)) {
                self::markTestSkipped("$f is missing: install php-psr-http-client and php-guzzlehttp-psr7 (scripts/setup.sh does)");
            }
            require_once $f;
        }
        $node = new class ($bodies) implements ClientInterface {
            public function __construct(private readonly array $bodies)
            {
            }

            public function sendRequest(RequestInterface $request): ResponseInterface
            {
                $path = $request->getUri()->getPath();
                if (!isset($this->bodies[$path])) {
                    return new Response(404, ['Content-Type' => 'application/json'], '{"error":{"code":"not_found","message":"no such job"}}');
                }
                $type = str_ends_with($path, '/events') ? 'text/event-stream' : 'application/json';
                return new Response(200, ['Content-Type' => $type], $this->bodies[$path]);
            }
        };
        $factory = new HttpFactory();
        return new Client('http://node.invalid', httpClient: $node, requestFactory: $factory, streamFactory: $factory);
    }

    public function testClientReceiptRefusesADuplicate(): void
    {
        $id = str_repeat('ab', 32);
        $client = self::client([
            "/v1/receipts/$id" => self::forge('{', '"outcome":"trapped",'),
            '/v1/receipts/valid' => self::validReceipt(),
        ]);
        self::assertTrue($client->receipt('valid')->verify());
        $this->expectException(InvalidReceiptException::class);
        $this->expectExceptionMessage('receipt invalid (malformed): duplicate member "outcome"');
        $client->receipt($id);
    }

    public function testClientStatusRefusesADuplicateInTheReceiptItCarries(): void
    {
        $state = fn (string $receipt) => '{"job_id":"j","state":"succeeded","receipt":' . $receipt . '}';
        $client = self::client([
            '/v1/jobs/forged' => $state(self::forge('"executor": {', '"peer_id":"12D3KooWSomeoneElse",')),
            '/v1/jobs/valid' => $state(self::validReceipt()),
        ]);
        self::assertSame('exited', $client->status('valid')['receipt']['outcome']);
        $this->expectException(PlasmException::class);
        $this->expectExceptionMessage('GET /v1/jobs/forged: the node answered with something other than strict JSON: duplicate member "peer_id" in /receipt/executor');
        $client->status('forged');
    }

    public function testClientEventsRefuseADuplicate(): void
    {
        $client = self::client([
            '/v1/jobs/forged/events' => "id: 1\nevent: state\ndata: {\"job_id\":\"forged\",\"state\":\"failed\",\"state\":\"succeeded\"}\n\n",
            '/v1/jobs/valid/events' => "id: 1\nevent: state\ndata: {\"job_id\":\"valid\",\"state\":\"succeeded\"}\n\n",
        ]);
        self::assertSame(['1' => ['job_id' => 'valid', 'state' => 'succeeded']], iterator_to_array($client->events('valid', null, 5.0)));
        $this->expectException(PlasmException::class);
        $this->expectExceptionMessage('an event is not JSON: duplicate member "state"');
        iterator_to_array($client->events('forged', null, 5.0));
    }
}
