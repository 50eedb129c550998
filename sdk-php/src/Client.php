<?php

declare(strict_types=1);

namespace Plasm;

/**
 * A client of a plasm node's HTTP API (ext-curl). Every error answer becomes a
 * typed exception (see ApiException::from), timeouts a TimeoutException.
 */
final class Client
{
    private readonly string $baseUrl;

    public function __construct(
        string $baseUrl = 'http://127.0.0.1:4611',
        private readonly ?string $token = null,
        private readonly float $timeout = 30.0,
        private readonly float $connectTimeout = 5.0,
    ) {
        $this->baseUrl = rtrim($baseUrl, '/');
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
     * Waits until the job succeeds or fails and returns its state.
     *
     * @throws TimeoutException
     */
    public function wait(string $jobId, float $timeout = 60.0): array
    {
        $deadline = microtime(true) + $timeout;
        $pause = 0.01;
        while (true) {
            $status = $this->status($jobId);
            if (in_array($status['state'], ['succeeded', 'failed'], true)) {
                return $status;
            }
            if (microtime(true) >= $deadline) {
                throw new TimeoutException("job $jobId still {$status['state']} after {$timeout}s");
            }
            usleep((int) ($pause * 1e6));
            $pause = min($pause * 2, 0.5);
        }
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
        if ($state['state'] !== 'succeeded') {
            if ($state['state'] === 'failed') {
                throw new PlasmException("job {$state['job_id']} failed: " . ($state['error'] ?? 'unknown'));
            }
            $state = $this->wait($state['job_id'], $timeout);
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
        $v = json_decode($text, true);
        if (!is_array($v)) {
            throw new PlasmException("$method $path: the node answered with something other than JSON");
        }
        return $v;
    }

    /** @return array{0:int,1:string} status and body */
    private function request(string $method, string $path, ?string $body = null, string $type = 'application/json', ?float $timeout = null): array
    {
        $headers = [];
        $ch = curl_init($this->baseUrl . $path);
        $h = ['Content-Type: ' . $type, 'Expect:'];
        if ($this->token !== null) {
            $h[] = 'Authorization: Bearer ' . $this->token;
        }
        curl_setopt_array($ch, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HTTPHEADER => $h,
            CURLOPT_TIMEOUT_MS => (int) (($timeout ?? $this->timeout) * 1000),
            CURLOPT_CONNECTTIMEOUT_MS => (int) ($this->connectTimeout * 1000),
            CURLOPT_HEADERFUNCTION => function ($ch, string $line) use (&$headers): int {
                $parts = explode(':', $line, 2);
                if (count($parts) === 2) {
                    $headers[strtolower(trim($parts[0]))] = trim($parts[1]);
                }
                return strlen($line);
            },
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
            throw new TimeoutException("$method $path timed out");
        }
        if ($text === false || $errno !== 0) {
            throw new ConnectionException("$method $path: $error");
        }
        if ($status >= 400) {
            $e = json_decode($text, true)['error'] ?? [];
            $retry = isset($headers['retry-after']) ? (int) $headers['retry-after'] : null;
            throw ApiException::from($status, (string) ($e['code'] ?? 'unknown'), (string) ($e['message'] ?? $text), $retry);
        }
        return [$status, $text];
    }
}
