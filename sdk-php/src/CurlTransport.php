<?php

declare(strict_types=1);

namespace Plasm;

/**
 * The zero-dependency transport: ext-curl. Streams through curl_multi so a
 * generator can hand each chunk to the caller while the transfer goes on.
 *
 * @internal
 */
final class CurlTransport implements Transport
{
    public function __construct(private readonly float $connectTimeout = 5.0)
    {
    }

    public function send(string $method, string $url, array $headers, ?string $body, float $timeout): array
    {
        $got = [];
        $ch = curl_init($url);
        curl_setopt_array($ch, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HTTPHEADER => self::lines($headers),
            CURLOPT_TIMEOUT_MS => (int) ($timeout * 1000),
            CURLOPT_CONNECTTIMEOUT_MS => (int) ($this->connectTimeout * 1000),
            CURLOPT_HEADERFUNCTION => self::headerCollector($got),
        ]);
        if ($body !== null) {
            curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
        }
        $text = curl_exec($ch);
        $errno = curl_errno($ch);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $error = curl_error($ch);
        curl_close($ch);
        if ($errno === CURLE_OPERATION_TIMEDOUT) {
            throw new TimeoutException("$method $url timed out");
        }
        if (!is_string($text) || $errno !== 0) {
            throw new ConnectionException("$method $url: $error");
        }
        return [$status, $got, $text];
    }

    public function stream(string $url, array $headers, float $timeout): \Generator
    {
        $buffer = '';
        $got = [];
        $ch = curl_init($url);
        curl_setopt_array($ch, [
            CURLOPT_HTTPGET => true,
            CURLOPT_HTTPHEADER => self::lines($headers),
            CURLOPT_TIMEOUT_MS => (int) ($timeout * 1000),
            CURLOPT_CONNECTTIMEOUT_MS => (int) ($this->connectTimeout * 1000),
            CURLOPT_HEADERFUNCTION => self::headerCollector($got),
            CURLOPT_WRITEFUNCTION => static function ($ch, string $data) use (&$buffer): int {
                $buffer .= $data;
                return strlen($data);
            },
        ]);
        $mh = curl_multi_init();
        curl_multi_add_handle($mh, $ch);
        $errno = 0;
        try {
            do {
                $code = curl_multi_exec($mh, $running);
                $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
                if ($buffer !== '' && $status > 0 && $status < 400) {
                    $chunk = $buffer;
                    $buffer = '';
                    yield $chunk;
                }
                if ($running && $code === CURLM_OK) {
                    curl_multi_select($mh, 0.25);
                }
            } while ($running && $code === CURLM_OK);
            while (($info = curl_multi_info_read($mh)) !== false) {
                if ($info['handle'] === $ch) {
                    $errno = (int) $info['result'];
                }
            }
            $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
            $error = curl_error($ch) ?: curl_strerror($errno);
        } finally {
            curl_multi_remove_handle($mh, $ch);
            curl_close($ch);
            curl_multi_close($mh);
        }
        if ($errno === CURLE_OPERATION_TIMEDOUT) {
            throw new TimeoutException("GET $url: no end of the stream in {$timeout}s");
        }
        if ($errno !== 0 && $status === 0) {
            throw new ConnectionException("GET $url: $error");
        }
        if ($status < 400 && $buffer !== '') {
            yield $buffer;
            $buffer = '';
        }
        // A transfer broken after the answer began is the end of this stream:
        // the caller resumes it with Last-Event-ID.
        return [$status, $buffer];
    }

    /** @param array<string,string> $headers @return list<string> */
    private static function lines(array $headers): array
    {
        $out = ['Expect:'];
        foreach ($headers as $k => $v) {
            $out[] = "$k: $v";
        }
        return $out;
    }

    /** @param array<string,string> $got */
    private static function headerCollector(array &$got): \Closure
    {
        return static function ($ch, string $line) use (&$got): int {
            $parts = explode(':', $line, 2);
            if (count($parts) === 2) {
                $got[strtolower(trim($parts[0]))] = trim($parts[1]);
            }
            return strlen($line);
        };
    }
}
