<?php

declare(strict_types=1);

namespace Plasm;

/**
 * A client of a plasm node's HTTP API. Every error answer becomes a typed
 * exception (see ApiException::from), timeouts a TimeoutException.
 *
 * By default it speaks through ext-curl and needs no package. A framework can
 * pass its own PSR-18 client with PSR-17 request and stream factories instead
 * (all three, or none); timeouts are then that client's configuration.
 */
final class Client
{
    /** Times events() resumes a broken stream (Last-Event-ID) before giving up. */
    public const RESUMES = 5;

    private readonly string $baseUrl;
    private readonly Transport $transport;

    public function __construct(
        string $baseUrl = 'http://127.0.0.1:4611',
        private readonly ?string $token = null,
        private readonly float $timeout = 30.0,
        float $connectTimeout = 5.0,
        ?\Psr\Http\Client\ClientInterface $httpClient = null,
        ?\Psr\Http\Message\RequestFactoryInterface $requestFactory = null,
        ?\Psr\Http\Message\StreamFactoryInterface $streamFactory = null,
    ) {
        $this->baseUrl = rtrim($baseUrl, '/');
        $given = ($httpClient !== null) + ($requestFactory !== null) + ($streamFactory !== null);
        if ($given === 3) {
            $this->transport = new Psr18Transport($httpClient, $requestFactory, $streamFactory);
        } elseif ($given === 0) {
            $this->transport = new CurlTransport($connectTimeout);
        } else {
            throw new \InvalidArgumentException('a PSR-18 client needs both PSR-17 factories (request and stream)');
        }
    }

    /** Stores a module on the node; returns its SHA-256 (hex). */
    public function uploadModule(string $bytes): string
    {
        return $this->json('PUT', '/v1/modules', $bytes, 'application/wasm')['sha256'];
    }

    /** Submits a job; returns its id. */
    public function submit(Job $job, bool $includeModule = true): string
    {
        return $this->json('POST', '/v1/jobs', $this->body($job, $includeModule))['job_id'];
    }

    /** The job's state, executor, timings and receipt (when finished). */
    public function status(string $jobId): array
    {
        return $this->json('GET', '/v1/jobs/' . rawurlencode($jobId));
    }

    /**
     * Cancels a queued or running job (DELETE /v1/jobs/{id}): it ends `failed`
     * with an error starting `cancelled`, and no receipt. A job that has already
     * finished raises an ApiException with status 409 (code `conflict`).
     */
    public function cancel(string $jobId): void
    {
        $this->json('DELETE', '/v1/jobs/' . rawurlencode($jobId));
    }

    /**
     * The job's events as they happen (GET /v1/jobs/{id}/events): first its
     * current state, then each change, ending after `succeeded` or `failed`.
     * Keys are the event ids; values the decoded events (`job_id`, `state`,
     * `placement`, `detail`, ...). A stream that breaks is resumed with
     * `Last-Event-ID` (up to RESUMES times), so no change is lost or repeated.
     *
     * @return \Generator<string,array>
     * @throws TimeoutException|ConnectionException|ApiException
     */
    public function events(string $jobId, ?string $lastEventId = null, float $timeout = 60.0): \Generator
    {
        $deadline = microtime(true) + $timeout;
        $url = $this->baseUrl . '/v1/jobs/' . rawurlencode($jobId) . '/events';
        $resumes = 0;
        while (true) {
            $headers = ['Accept' => 'text/event-stream'] + $this->auth();
            if ($lastEventId !== null) {
                $headers['Last-Event-ID'] = $lastEventId;
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                throw new TimeoutException("job $jobId did not end within {$timeout}s");
            }
            $parser = new EventStream();
            try {
                $stream = $this->transport->stream($url, $headers, $left);
                foreach ($stream as $chunk) {
                    foreach ($parser->feed($chunk) as $e) {
                        $lastEventId = $e['id'] ?? $lastEventId;
                        if ($e['event'] !== 'state') {
                            continue;
                        }
                        try {
                            $event = Json::decodeStrict($e['data'], true);
                        } catch (InvalidJsonException $bad) {
                            throw new PlasmException("GET /v1/jobs/$jobId/events: an event is not JSON: " . $bad->getMessage(), 0, $bad);
                        }
                        if (!is_array($event)) {
                            throw new PlasmException("GET /v1/jobs/$jobId/events: an event is not JSON");
                        }
                        yield (string) ($e['id'] ?? '') => $event;
                        if (in_array($event['state'] ?? null, ['succeeded', 'failed'], true)) {
                            return;
                        }
                    }
                }
                [$status, $body] = $stream->getReturn();
                if ($status >= 400) {
                    throw $this->error('GET', $status, [], $body);
                }
                $why = 'the stream ended before the job did';
            } catch (ConnectionException $e) {
                // A node restarting: resume from where we were.
                $why = $e->getMessage();
            }
            if (++$resumes > self::RESUMES) {
                throw new ConnectionException("GET /v1/jobs/$jobId/events: $why (resumed " . self::RESUMES . ' times)');
            }
            usleep(min(100_000 << $resumes, 2_000_000));
        }
    }

    /**
     * Waits until the job succeeds or fails (following its event stream) and
     * returns its stored state, receipt included.
     *
     * @throws TimeoutException
     */
    public function wait(string $jobId, float $timeout = 60.0): array
    {
        foreach ($this->events($jobId, null, $timeout) as $event) {
            // The generator ends after the final state.
        }
        return $this->status($jobId);
    }

    /** The job's stdout. */
    public function output(string $jobId): string
    {
        return $this->request('GET', '/v1/jobs/' . rawurlencode($jobId) . '/output')[1];
    }

    /** The job's receipt (not yet verified: call verify() or verifyOrThrow()). */
    public function receipt(string $jobId): Receipt
    {
        return Receipt::fromJson($this->request('GET', '/v1/receipts/' . rawurlencode($jobId))[1]);
    }

    /** The node's verdict on a receipt: ['valid' => bool, ...]. */
    public function verifyRemote(Receipt $receipt): array
    {
        return $this->json('POST', '/v1/receipts/verify', $receipt->toJson());
    }

    /**
     * Runs a module and returns its output with a locally verified receipt.
     * Options: args (list), env (map), fuel, memory_bytes, output_bytes, labels (list),
     * placement (local|remote|any), timeout (seconds, default 60).
     *
     * @throws InvalidReceiptException|ApiException|TimeoutException
     */
    public function run(string $wasmBytes, string $input = '', array $options = []): Result
    {
        $job = new Job($wasmBytes, $input);
        if (isset($options['args'])) {
            $job->withArgs(...$options['args']);
        }
        foreach ($options['env'] ?? [] as $k => $v) {
            $job->withEnv((string) $k, (string) $v);
        }
        if (isset($options['fuel'])) {
            $job->withFuel((int) $options['fuel']);
        }
        if (isset($options['memory_bytes'])) {
            $job->withMemory((int) $options['memory_bytes']);
        }
        if (isset($options['output_bytes'])) {
            $job->withOutputLimit((int) $options['output_bytes']);
        }
        foreach ($options['labels'] ?? [] as $label) {
            $job->withLabel($label);
        }
        $job->withPlacement($options['placement'] ?? 'any');
        $timeout = (float) ($options['timeout'] ?? 60.0);
        $state = $this->json('POST', '/v1/jobs?wait=true', $this->body($job, true), 'application/json', $timeout + 5);
        if (!in_array($state['state'], ['succeeded', 'failed'], true)) {
            $state = $this->wait($state['job_id'], $timeout);
        }
        // A job that ended with a receipt is a Result whatever its outcome (a trap,
        // out_of_fuel, exit code 3: see Result::exitStatus() and ok()); one without
        // a receipt (no executor completed it, cancelled, the node failed) is an error.
        if (!is_array($state['receipt'] ?? null)) {
            throw new PlasmException("job {$state['job_id']} {$state['state']}: " . ($state['error'] ?? 'no receipt'));
        }
        $jobId = $state['job_id'];
        $output = $this->output($jobId);
        $receipt = $this->receipt($jobId);
        $receipt->verifyOrThrow(null, $output);
        if ($receipt->jobId() !== $job->jobId()) {
            throw new InvalidReceiptException('job_id', 'the receipt is for another job');
        }
        return new Result($jobId, $output, (string) $receipt->outcome(), $receipt->exitCode(), (string) $receipt->executorPeerId(), $receipt);
    }

    private function body(Job $job, bool $includeModule): string
    {
        $body = ['manifest' => $job->manifest(), 'placement' => $job->placement()];
        if ($includeModule) {
            $body['module'] = base64_encode($job->module());
        }
        if ($job->input() !== '') {
            $body['input'] = base64_encode($job->input());
        }
        return json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
    }

    private function json(string $method, string $path, ?string $body = null, string $type = 'application/json', ?float $timeout = null): array
    {
        [, $text] = $this->request($method, $path, $body, $type, $timeout);
        // Strict: a job's state carries its receipt, and a duplicate member is refused.
        try {
            $v = Json::decodeStrict($text, true);
        } catch (InvalidJsonException $e) {
            throw new PlasmException("$method $path: the node answered with something other than strict JSON: " . $e->getMessage(), 0, $e);
        }
        if (!is_array($v)) {
            throw new PlasmException("$method $path: the node answered with something other than JSON");
        }
        return $v;
    }

    /** @return array<string,string> */
    private function auth(): array
    {
        return $this->token !== null ? ['Authorization' => 'Bearer ' . $this->token] : [];
    }

    /** @param array<string,string> $headers */
    private function error(string $method, int $status, array $headers, string $text): ApiException
    {
        try {
            $decoded = Json::decodeStrict($text, true);
        } catch (InvalidJsonException) {
            $decoded = null;
        }
        $e = is_array($decoded) && is_array($decoded['error'] ?? null) ? $decoded['error'] : [];
        $retry = isset($headers['retry-after']) ? (int) $headers['retry-after'] : null;
        return ApiException::from($status, (string) ($e['code'] ?? 'unknown'), (string) ($e['message'] ?? $text), $retry);
    }

    /** @return array{0:int,1:string} status and body */
    private function request(string $method, string $path, ?string $body = null, string $type = 'application/json', ?float $timeout = null): array
    {
        $h = ['Content-Type' => $type] + $this->auth();
        [$status, $headers, $text] = $this->transport->send($method, $this->baseUrl . $path, $h, $body, $timeout ?? $this->timeout);
        if ($status >= 400) {
            throw $this->error($method, $status, $headers, $text);
        }
        return [$status, $text];
    }
}
