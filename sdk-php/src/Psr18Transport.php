<?php

declare(strict_types=1);

namespace Plasm;

use Psr\Http\Client\ClientExceptionInterface;
use Psr\Http\Client\ClientInterface;
use Psr\Http\Client\NetworkExceptionInterface;
use Psr\Http\Message\RequestFactoryInterface;
use Psr\Http\Message\StreamFactoryInterface;

/**
 * A framework's PSR-18 client with its PSR-17 factories. Timeouts, proxies and
 * TLS are that client's configuration. Streaming works as well as the client
 * streams: a client that buffers whole bodies (Guzzle without `'stream' => true`)
 * hands the events over when the job ends, in order, none lost.
 *
 * @internal
 */
final class Psr18Transport implements Transport
{
    /** Bytes read from a streamed body at a time. */
    private const CHUNK = 8192;

    public function __construct(
        private readonly ClientInterface $client,
        private readonly RequestFactoryInterface $requests,
        private readonly StreamFactoryInterface $streams,
    ) {
    }

    public function send(string $method, string $url, array $headers, ?string $body, float $timeout): array
    {
        $request = $this->requests->createRequest($method, $url);
        foreach ($headers as $k => $v) {
            $request = $request->withHeader($k, $v);
        }
        if ($body !== null) {
            $request = $request->withBody($this->streams->createStream($body));
        }
        try {
            $response = $this->client->sendRequest($request);
        } catch (NetworkExceptionInterface $e) {
            throw new ConnectionException("$method $url: " . $e->getMessage(), 0, $e);
        } catch (ClientExceptionInterface $e) {
            throw new ConnectionException("$method $url: " . $e->getMessage(), 0, $e);
        }
        $got = [];
        foreach ($response->getHeaders() as $name => $values) {
            $got[strtolower((string) $name)] = implode(', ', $values);
        }
        return [$response->getStatusCode(), $got, (string) $response->getBody()];
    }

    public function stream(string $url, array $headers, float $timeout): \Generator
    {
        $request = $this->requests->createRequest('GET', $url);
        foreach ($headers as $k => $v) {
            $request = $request->withHeader($k, $v);
        }
        try {
            $response = $this->client->sendRequest($request);
        } catch (ClientExceptionInterface $e) {
            throw new ConnectionException("GET $url: " . $e->getMessage(), 0, $e);
        }
        $status = $response->getStatusCode();
        $body = $response->getBody();
        if ($status >= 400) {
            return [$status, (string) $body];
        }
        try {
            while (!$body->eof()) {
                $chunk = $body->read(self::CHUNK);
                if ($chunk !== '') {
                    yield $chunk;
                }
            }
        } catch (\RuntimeException $e) {
            // A body broken midway ends this stream; the caller resumes it.
        }
        return [$status, ''];
    }
}
