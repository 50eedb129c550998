<?php

declare(strict_types=1);

namespace Plasm;

/**
 * A busy node's signed hand-off of a stolen job (swarm mode, decision 0053): the
 * word of the node a requester gave the job to that another peer (`to`) ran it and
 * signed its receipt. `signature` is base64 Ed25519 by `from` over
 * "plasm-handoff-v1\n" followed by the RFC 8785 canonical JSON of every other
 * member. The form is closed: exactly version, job_id, from {peer_id, public_key},
 * to, requester, at and signature. Checks run in the Rust node's order (malformed,
 * canonical, public_key, peer_id, signature), so both agree on the `handoffs`
 * vectors in schemas/test-vectors/vectors.json. Nodes check hand-offs themselves;
 * this class lets anyone audit one.
 */
final class Handoff
{
    public const SIGNING_PREFIX = "plasm-handoff-v1\n";
    public const VERSION = 'plasm.handoff/v1';
    public const MAX_BYTES = 2048;
    private const MEMBERS = ['version', 'job_id', 'from', 'to', 'requester', 'at', 'signature'];

    private function __construct(private readonly \stdClass $data)
    {
    }

    /** @throws InvalidReceiptException (check `malformed`): too long, not JSON, a duplicate member */
    public static function fromJson(string $json): self
    {
        if (strlen($json) > self::MAX_BYTES) {
            throw new InvalidReceiptException('malformed', 'a hand-off is at most ' . self::MAX_BYTES . ' bytes');
        }
        try {
            $data = Json::decodeStrict($json, false, 8);
        } catch (InvalidJsonException $e) {
            throw new InvalidReceiptException('malformed', $e->getMessage());
        }
        if (!$data instanceof \stdClass) {
            throw new InvalidReceiptException('malformed', 'a hand-off is a JSON object');
        }
        return new self($data);
    }

    /** The bytes the signature covers. */
    public function signingBytes(): string
    {
        $copy = clone $this->data;
        unset($copy->signature);
        return self::SIGNING_PREFIX . Canonical::encode($copy);
    }

    /**
     * Verifies it; returns [job_id, from, to, requester, at].
     *
     * @return array{job_id: string, from: string, to: string, requester: string, at: string}
     * @throws InvalidReceiptException naming the failed check
     */
    public function verifyOrThrow(): array
    {
        $d = $this->data;
        $bad = fn (string $why) => new InvalidReceiptException('malformed', $why);
        $names = array_keys(get_object_vars($d));
        if (count($names) !== count(self::MEMBERS) || array_diff(self::MEMBERS, $names) !== []) {
            throw $bad('exactly the members ' . implode(', ', self::MEMBERS));
        }
        $text = function (string $k, int $max) use ($d, $bad): string {
            $v = $d->{$k};
            if (!is_string($v) || $v === '' || strlen($v) > $max) {
                throw $bad("$k is a string of 1 to $max bytes");
            }
            return $v;
        };
        if ($text('version', 32) !== self::VERSION) {
            throw $bad('version is ' . self::VERSION);
        }
        $from = $d->from;
        if (!$from instanceof \stdClass || count(get_object_vars($from)) !== 2) {
            throw $bad('from is {peer_id, public_key}');
        }
        if (!is_string($from->peer_id ?? null) || !is_string($from->public_key ?? null)) {
            throw $bad('from.peer_id and from.public_key are strings');
        }
        $out = [
            'job_id' => $text('job_id', 64),
            'from' => $from->peer_id,
            'to' => $text('to', 64),
            'requester' => $text('requester', 64),
            'at' => $text('at', 64),
        ];
        $publicKey = base64_decode($from->public_key, true);
        if ($publicKey === false || strlen($publicKey) !== SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES) {
            throw $bad('from.public_key is base64 of 32 bytes');
        }
        $signature = base64_decode($text('signature', 88), true);
        if ($signature === false || strlen($signature) !== SODIUM_CRYPTO_SIGN_BYTES) {
            throw $bad('signature is base64 of 64 bytes');
        }
        try {
            $bytes = $this->signingBytes();
        } catch (CanonicalException $e) {
            throw new InvalidReceiptException('canonical', $e->getMessage());
        }
        if (PeerId::fromPublicKey($publicKey) !== $from->peer_id) {
            throw new InvalidReceiptException('peer_id', 'from.peer_id does not belong to from.public_key');
        }
        if (!sodium_crypto_sign_verify_detached($signature, $bytes, $publicKey)) {
            throw new InvalidReceiptException('signature', 'signature does not verify');
        }
        return $out;
    }
}
