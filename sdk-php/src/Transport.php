<?php

declare(strict_types=1);

namespace Plasm;

/**
 * How the Client reaches a node: CurlTransport (the default, ext-curl only) or
 * Psr18Transport (a framework's PSR-18 client). Error statuses are returned, not
 * thrown: the Client maps them to exceptions the same way for both.
 *
 * @internal
 */
interface Transport
{
    /**
     * One request, the whole answer.
     *
     * @param array<string,string> $headers
     * @return array{0:int,1:array<string,string>,2:string} status, headers (lower-case names), body
     * @throws ConnectionException|TimeoutException
     */
    public function send(string $method, string $url, array $headers, ?string $body, float $timeout): array;

    /**
     * A GET whose body arrives over time (Server-Sent Events): yields the body's
     * chunks as they come; returns the status and, for an error status, the body.
     *
     * @param array<string,string> $headers
     * @return \Generator<int,string,mixed,array{0:int,1:string}>
     * @throws ConnectionException|TimeoutException
     */
    public function stream(string $url, array $headers, float $timeout): \Generator;
}
