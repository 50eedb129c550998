<?php

declare(strict_types=1);

namespace Plasm;

/**
 * A signed execution receipt. `signature` is base64 Ed25519 over
 * "plasm-receipt-v2\n" (for a version 1 receipt "plasm-receipt-v1\n") followed by
 * the RFC 8785 canonical JSON of every other member. Nodes sign version 2
 * (schemas/receipt-v2.schema.json); version 1 receipts (schemas/receipt.schema.json)
 * still verify: `version` picks the rules and the prefix. Checks run in the Rust node's order (malformed, schema, canonical,
 * public_key, peer_id, signature) and the first failure is named, so both agree
 * on every vector in schemas/test-vectors/vectors.json. A text with a duplicate
 * member, at any depth, is `malformed`: fromJson() refuses it.
 */
final class Receipt
{
    public const SIGNING_PREFIX = "plasm-receipt-v2\n";
    public const SIGNING_PREFIX_V1 = "plasm-receipt-v1\n";
    public const VERSION = 'plasm.receipt/v2';
    public const VERSION_V1 = 'plasm.receipt/v1';
    private const PATHS = ['local', 'direct', 'hole-punched', 'relayed'];
    private const OUTCOMES = ['exited', 'trapped', 'out_of_fuel', 'memory_limit', 'output_limit', 'invalid_module', 'stack_overflow'];

    private function __construct(private readonly \stdClass $data, private readonly string $json)
    {
    }

    /**
     * @throws InvalidReceiptException (check `malformed`) when the text is not a JSON
     * object, or has an object with a duplicate member (see Json::decodeStrict)
     */
    public static function fromJson(string $json): self
    {
        try {
            $data = Json::decodeStrict($json, false, 64);
        } catch (InvalidJsonException $e) {
            // A duplicate: json_decode would keep the last copy, which the signature may cover
            // while a reader of the first sees another value. Refused, as RFC 8785 and I-JSON do.
            throw new InvalidReceiptException('malformed', ($e->member !== null ? '' : 'not JSON: ') . $e->getMessage());
        }
        if (!$data instanceof \stdClass) {
            throw new InvalidReceiptException('malformed', 'a receipt is a JSON object');
        }
        return new self($data, $json);
    }

    /** The receipt as received. */
    public function toJson(): string
    {
        return $this->json;
    }

    /** A member, or null. */
    public function get(string $name): mixed
    {
        return $this->data->{$name} ?? null;
    }

    public function jobId(): ?string
    {
        return is_string($this->get('job_id')) ? $this->get('job_id') : null;
    }

    public function outcome(): ?string
    {
        return is_string($this->get('outcome')) ? $this->get('outcome') : null;
    }

    public function exitCode(): ?int
    {
        return is_int($this->get('exit_code')) ? $this->get('exit_code') : null;
    }

    public function executorPeerId(): ?string
    {
        $e = $this->get('executor');
        return $e instanceof \stdClass && is_string($e->peer_id ?? null) ? $e->peer_id : null;
    }

    /** The bytes the signature covers. @throws CanonicalException */
    public function signingBytes(): string
    {
        $copy = clone $this->data;
        unset($copy->signature);
        $prefix = $this->isV1() ? self::SIGNING_PREFIX_V1 : self::SIGNING_PREFIX;
        return $prefix . Canonical::encode($copy);
    }

    /** Whether this is a version 1 receipt (anything else is checked as version 2). */
    public function isV1(): bool
    {
        return $this->get('version') === self::VERSION_V1;
    }

    /** Version 2: whether a memory.grow was refused by the job's memory limit. */
    public function memoryLimitHit(): ?bool
    {
        return is_bool($this->get('memory_limit_hit')) ? $this->get('memory_limit_hit') : null;
    }

    /** Version 2: the placement object (path, relay, attempt, taken_over_from), or null. */
    public function placement(): ?\stdClass
    {
        $p = $this->get('placement');
        return $p instanceof \stdClass ? $p : null;
    }

    /**
     * Whether the receipt verifies; with `$expectedPublicKey` (base64) also that this
     * key signed it; with `$output` also that `output` is the SHA-256 of these bytes.
     */
    public function verify(?string $expectedPublicKey = null, ?string $output = null): bool
    {
        try {
            $this->verifyOrThrow($expectedPublicKey, $output);
            return true;
        } catch (InvalidReceiptException) {
            return false;
        }
    }

    /** @throws InvalidReceiptException naming the failed check */
    public function verifyOrThrow(?string $expectedPublicKey = null, ?string $output = null): void
    {
        $this->checkSchema();
        try {
            $bytes = $this->signingBytes();
        } catch (CanonicalException $e) {
            throw new InvalidReceiptException('canonical', $e->getMessage());
        }
        $executor = $this->data->executor;
        $publicKey = base64_decode($executor->public_key, true);
        $signature = base64_decode($this->data->signature, true);
        if ($publicKey === false || strlen($publicKey) !== SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES) {
            throw new InvalidReceiptException('malformed', 'executor.public_key is not base64 of 32 bytes');
        }
        if ($signature === false || strlen($signature) !== SODIUM_CRYPTO_SIGN_BYTES) {
            throw new InvalidReceiptException('malformed', 'signature is not base64 of 64 bytes');
        }
        if (PeerId::fromPublicKey($publicKey) !== $executor->peer_id) {
            throw new InvalidReceiptException('peer_id', 'executor.peer_id does not belong to executor.public_key');
        }
        if (!sodium_crypto_sign_verify_detached($signature, $bytes, $publicKey)) {
            throw new InvalidReceiptException('signature', 'signature does not verify');
        }
        if ($expectedPublicKey !== null && !hash_equals($expectedPublicKey, $executor->public_key)) {
            throw new InvalidReceiptException('executor', 'signed by another key than expected');
        }
        if ($output !== null && $this->data->output !== 'sha256:' . hash('sha256', $output)) {
            throw new InvalidReceiptException('output', 'output hash does not match the bytes received');
        }
    }

    /** The structural rules of schemas/receipt.schema.json (v1) and receipt-v2.schema.json. */
    private function checkSchema(): void
    {
        $d = $this->data;
        $v1 = $this->isV1();
        $fail = fn (string $path, string $rule, string $why) => new InvalidReceiptException('schema', "$path ($rule): $why");
        $required = ['version', 'job_id', 'module', 'input', 'output', 'outcome', 'exit_code', 'fuel_used', 'fuel_limit', 'runtime', 'executor', 'started_at', 'finished_at', 'signature'];
        if (!$v1) {
            $required = array_merge($required, ['stderr', 'detail', 'memory_limit_hit', 'placement', 'queued_at']);
        }
        foreach ($required as $field) {
            if (!property_exists($d, $field)) {
                throw $fail('/', 'required', "\"$field\" is a required property");
            }
        }
        if ($d->version !== ($v1 ? self::VERSION_V1 : self::VERSION)) {
            throw $fail('/version', 'const', 'must be ' . self::VERSION . ' or ' . self::VERSION_V1);
        }
        if (!$v1) {
            $this->checkV2($fail);
        }
        if (!is_string($d->job_id) || !preg_match('/^[0-9a-f]{64}$/', $d->job_id)) {
            throw $fail('/job_id', 'pattern', 'lowercase hex SHA-256');
        }
        foreach (['module', 'input', 'output'] as $f) {
            if (!is_string($d->{$f}) || !preg_match('/^sha256:[0-9a-f]{64}$/', $d->{$f})) {
                throw $fail("/$f", 'pattern', 'sha256:<hex>');
            }
        }
        if (!in_array($d->outcome, self::OUTCOMES, true)) {
            throw $fail('/outcome', 'enum', 'unknown outcome');
        }
        if ($d->exit_code !== null && !is_int($d->exit_code) && !(is_float($d->exit_code) && floor($d->exit_code) === $d->exit_code)) {
            throw $fail('/exit_code', 'type', 'integer or null');
        }
        foreach (['fuel_used', 'fuel_limit'] as $f) {
            // JSON Schema counts 1.0 as an integer; the canonical check refuses it next.
            $v = $d->{$f};
            if (!(is_int($v) || (is_float($v) && floor($v) === $v)) || $v < 0 || $v > Canonical::MAX_SAFE_INTEGER) {
                throw $fail("/$f", 'type', 'a count below 2^53');
            }
        }
        if (!$d->runtime instanceof \stdClass || !is_string($d->runtime->name ?? null) || !is_string($d->runtime->version ?? null)) {
            throw $fail('/runtime', 'required', 'name and version');
        }
        if (!$d->executor instanceof \stdClass || !is_string($d->executor->peer_id ?? null) || !is_string($d->executor->public_key ?? null)) {
            throw $fail('/executor', 'required', 'peer_id and public_key');
        }
        if (!preg_match('/^[A-Za-z0-9+\/]{43}=$/', $d->executor->public_key)) {
            throw $fail('/executor/public_key', 'pattern', 'base64 of 32 bytes');
        }
        if (!is_string($d->signature) || !preg_match('/^[A-Za-z0-9+\/]{86}==$/', $d->signature)) {
            throw $fail('/signature', 'pattern', 'base64 of 64 bytes');
        }
    }

    /** The members version 2 adds. */
    private function checkV2(callable $fail): void
    {
        $d = $this->data;
        $digest = fn ($v) => is_string($v) && preg_match('/^sha256:[0-9a-f]{64}$/', $v);
        $optString = fn ($v) => $v === null || (is_string($v) && strlen($v) <= 64);
        if (!$digest($d->stderr)) {
            throw $fail('/stderr', 'pattern', 'sha256:<hex>');
        }
        if ($d->detail !== null && !is_string($d->detail)) {
            throw $fail('/detail', 'type', 'string or null');
        }
        if (!is_bool($d->memory_limit_hit)) {
            throw $fail('/memory_limit_hit', 'type', 'boolean');
        }
        $r = $d->runtime;
        if (!$r instanceof \stdClass || !is_string($r->metering ?? null) || !$digest($r->config ?? null)) {
            throw $fail('/runtime', 'required', 'metering and config (sha256:<hex>)');
        }
        $p = $d->placement;
        if (!$p instanceof \stdClass) {
            throw $fail('/placement', 'type', 'object');
        }
        foreach (['path', 'relay', 'attempt', 'taken_over_from'] as $f) {
            if (!property_exists($p, $f)) {
                throw $fail('/placement', 'required', "\"$f\" is a required property");
            }
        }
        if (!in_array($p->path, self::PATHS, true)) {
            throw $fail('/placement/path', 'enum', 'local, direct, hole-punched or relayed');
        }
        if (!$optString($p->relay) || !$optString($p->taken_over_from)) {
            throw $fail('/placement', 'type', 'relay and taken_over_from are peer ids or null');
        }
        // Swarm mode (decision 0053): present only on a stolen job, then a peer id.
        if (property_exists($p, 'stolen_from') && (!is_string($p->stolen_from) || strlen($p->stolen_from) > 64)) {
            throw $fail('/placement/stolen_from', 'type', 'a peer id');
        }
        if ($p->attempt !== null && (!is_int($p->attempt) || $p->attempt < 1 || $p->attempt > 1000)) {
            throw $fail('/placement/attempt', 'type', 'an integer 1 to 1000, or null');
        }
        if (!is_string($d->queued_at)) {
            throw $fail('/queued_at', 'type', 'string');
        }
    }
}
