<?php

declare(strict_types=1);

namespace Plasm;

/**
 * The signed records that travel beside receipts (decisions 0056, 0057), as the
 * node's `plasm::receipt::signed` reads them:
 *
 * - `plasm.acceptance/v1`: a submitter's (`requester`) acceptance of one receipt;
 * - `plasm.publication/v1`: a submitter's signed manifest (the job may be audited);
 * - `plasm.audit/v1`: an auditor's verdict on one receipt, reached by running the
 *   job again: confirmed, mismatch (`differs` names the fields) or not_auditable.
 *
 * Each is a closed form: exactly its members, each of its type, read strictly (a
 * member named twice is refused) and bounded, signed (base64 Ed25519 `signature`)
 * by the peer its signer member {peer_id, public_key} names, over the form's prefix
 * followed by the RFC 8785 form of every other member. verify() runs the node's
 * checks in the node's order and throws the first failure's name (malformed,
 * canonical, public_key, peer_id, signature), so both agree on the `acceptances`,
 * `publications` and `audits` vectors in schemas/test-vectors/vectors.json.
 *
 * Where the two may differ, on texts no vector has: a publication's manifest is
 * checked with Job::validate (the SDK's reading of schemas/manifest.schema.json)
 * and then bound to `job_id` (the hex SHA-256 of its canonical form); libsodium
 * refuses small-order and mixed-order public keys as `public_key`, which the node
 * refuses at `signature` or not at all; a peer id is compared as base58 text, where
 * the node also reads other spellings of the same id.
 */
final class SignedRecord
{
    /** Each form by its `version`: signing prefix, members, signer member, largest text. */
    public const FORMS = [
        'plasm.acceptance/v1' => [
            'prefix' => "plasm-acceptance-v1\n",
            'members' => ['version', 'job_id', 'receipt_sha256', 'executor', 'requester', 'at', 'signature'],
            'signer' => 'requester',
            'max_bytes' => 2048,
        ],
        'plasm.publication/v1' => [
            'prefix' => "plasm-publication-v1\n",
            'members' => ['version', 'job_id', 'manifest', 'submitter', 'at', 'signature'],
            'signer' => 'submitter',
            'max_bytes' => 96 * 1024,
        ],
        'plasm.audit/v1' => [
            'prefix' => "plasm-audit-v1\n",
            'members' => ['version', 'job_id', 'receipt_sha256', 'executor', 'auditor', 'verdict', 'differs', 'reason', 'at', 'signature'],
            'signer' => 'auditor',
            'max_bytes' => 4096,
        ],
    ];

    public const VERDICTS = ['confirmed', 'mismatch', 'not_auditable'];

    private function __construct()
    {
    }

    /**
     * Verifies a record, of the form `$version` names or (null) of whichever form its
     * own `version` names.
     *
     * @return array{form: string, signer: string, members: array<string, mixed>}
     *         the form, the signer's peer id and every member (`signature` included;
     *         objects inside as \stdClass)
     * @throws InvalidSignedRecordException naming the failed check
     */
    public static function verify(string $text, ?string $version = null): array
    {
        if ($version === null) {
            $max = max(array_column(self::FORMS, 'max_bytes'));
            if (strlen($text) > $max) {
                throw self::bad(strlen($text) . " bytes, over $max");
            }
            $version = self::versionOf($text);
            if ($version === null) {
                throw self::bad('no version');
            }
        }
        $form = self::FORMS[$version] ?? null;
        if ($form === null) {
            throw self::bad("unknown version $version");
        }
        return self::read($version, $form, $text);
    }

    /**
     * The bytes a record's signature covers: its form's prefix and the canonical form
     * of every member but `signature`.
     *
     * @throws InvalidSignedRecordException when the text is not an object of a known form
     */
    public static function signingBytes(string $text): string
    {
        $data = self::parse($text);
        $form = self::FORMS[is_string($data->version ?? null) ? $data->version : ''] ?? null;
        if ($form === null) {
            throw self::bad('no known version');
        }
        return self::signed($form, $data);
    }

    /** The hex SHA-256 of a receipt's canonical form, signature included: what acceptances and audits name. */
    public static function receiptSha256(string $receiptJson): string
    {
        return hash('sha256', Canonical::encode(Json::decodeStrict($receiptJson)));
    }

    /** @param array{prefix: string, members: list<string>, signer: string, max_bytes: int} $form */
    private static function read(string $version, array $form, string $text): array
    {
        if (strlen($text) > $form['max_bytes']) {
            throw self::bad(strlen($text) . " bytes, over {$form['max_bytes']} for $version");
        }
        $d = self::parse($text);
        $m = get_object_vars($d);
        $names = array_map('strval', array_keys($m));
        if (count($names) !== count($form['members']) || array_diff($form['members'], $names) !== []) {
            throw self::bad('exactly the members ' . implode(', ', $form['members']));
        }
        if ($m['version'] !== $version) {
            throw self::bad("version is $version");
        }
        self::checkMembers($version, $m);
        $signerName = $form['signer'];
        $signer = $m[$signerName];
        if (!$signer instanceof \stdClass || count(get_object_vars($signer)) !== 2) {
            throw self::bad("$signerName is {peer_id, public_key}");
        }
        foreach (['peer_id', 'public_key'] as $k) {
            if (!is_string($signer->{$k} ?? null)) {
                throw self::bad("$signerName.$k is a string");
            }
        }
        $publicKey = self::base64($signer->public_key, SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES);
        if ($publicKey === null) {
            throw self::bad("$signerName.public_key is base64 of 32 bytes");
        }
        $signature = is_string($m['signature']) ? self::base64($m['signature'], SODIUM_CRYPTO_SIGN_BYTES) : null;
        if ($signature === null) {
            throw self::bad('signature is base64 of 64 bytes');
        }
        try {
            $bytes = self::signed($form, $d);
        } catch (CanonicalException $e) {
            throw new InvalidSignedRecordException('canonical', $e->getMessage());
        }
        try {
            sodium_crypto_sign_ed25519_pk_to_curve25519($publicKey);
        } catch (\SodiumException) {
            throw new InvalidSignedRecordException('public_key', "$signerName.public_key is not a valid Ed25519 public key");
        }
        if (PeerId::fromPublicKey($publicKey) !== $signer->peer_id) {
            throw new InvalidSignedRecordException('peer_id', "$signerName.peer_id does not match its public_key");
        }
        if (!sodium_crypto_sign_verify_detached($signature, $bytes, $publicKey)) {
            throw new InvalidSignedRecordException('signature', 'the signature does not verify');
        }
        return ['form' => $version, 'signer' => $signer->peer_id, 'members' => $m];
    }

    /** Each form's member types, in the node's order (every failure is `malformed`). */
    private static function checkMembers(string $version, array $m): void
    {
        if (!self::isHex64($m['job_id'])) {
            throw self::bad('job_id is 64 lowercase hex digits');
        }
        if (!self::isText($m['at'], 64) || !self::isRfc3339($m['at'])) {
            throw self::bad('at is an RFC 3339 time');
        }
        if ($version === 'plasm.publication/v1') {
            $manifest = $m['manifest'];
            if (!$manifest instanceof \stdClass) {
                throw self::bad('manifest is an object');
            }
            try {
                Job::validate($manifest);
                $jobId = Job::jobIdOf($manifest);
            } catch (InvalidManifestException | CanonicalException $e) {
                throw self::bad('manifest: ' . $e->getMessage());
            }
            if ($jobId !== $m['job_id']) {
                throw self::bad("job_id is not the manifest's job id");
            }
            return;
        }
        if (!self::isHex64($m['receipt_sha256'])) {
            throw self::bad('receipt_sha256 is 64 lowercase hex digits');
        }
        if (!self::isText($m['executor'], 64)) {
            throw self::bad('executor is a peer id');
        }
        if ($version !== 'plasm.audit/v1') {
            return;
        }
        $verdict = is_string($m['verdict']) ? $m['verdict'] : '';
        if (!in_array($verdict, self::VERDICTS, true)) {
            throw self::bad('verdict is confirmed, mismatch or not_auditable');
        }
        $differs = $m['differs'];
        if (!is_array($differs) || count($differs) > 16) {
            throw self::bad('differs is an array of at most 16 fields');
        }
        foreach ($differs as $field) {
            if (!self::isText($field, 32)) {
                throw self::bad('differs names fields');
            }
        }
        if (($verdict === 'mismatch') === ($differs === [])) {
            throw self::bad('a mismatch names the fields that differ, and only a mismatch');
        }
        if (!is_string($m['reason']) || strlen($m['reason']) > 512) {
            throw self::bad('reason is a string of at most 512 bytes');
        }
    }

    private static function parse(string $text): \stdClass
    {
        try {
            $d = Json::decodeStrict($text);
        } catch (InvalidJsonException $e) {
            throw self::bad($e->getMessage());
        }
        if (!$d instanceof \stdClass) {
            throw self::bad('not an object');
        }
        return $d;
    }

    /** The `version` of a strict JSON object, or null. */
    private static function versionOf(string $text): ?string
    {
        try {
            $d = Json::decodeStrict($text);
        } catch (InvalidJsonException) {
            return null;
        }
        return $d instanceof \stdClass && is_string($d->version ?? null) ? $d->version : null;
    }

    /** @throws CanonicalException */
    private static function signed(array $form, \stdClass $data): string
    {
        $copy = clone $data;
        unset($copy->signature);
        return $form['prefix'] . Canonical::encode($copy);
    }

    /** Standard base64 with padding, in its one canonical spelling, of exactly $length bytes. */
    private static function base64(string $text, int $length): ?string
    {
        $bytes = base64_decode($text, true);
        if ($bytes === false || strlen($bytes) !== $length || base64_encode($bytes) !== $text) {
            return null;
        }
        return $bytes;
    }

    private static function isHex64(mixed $v): bool
    {
        return is_string($v) && strlen($v) === 64 && strspn($v, '0123456789abcdef') === 64;
    }

    private static function isText(mixed $v, int $max): bool
    {
        return is_string($v) && $v !== '' && strlen($v) <= $max;
    }

    /**
     * RFC 3339 as the node's parser (the `time` crate) reads it: any one byte between
     * date and time, any number of fraction digits, `Z` in either case or an offset
     * of at most 23:59, a real calendar date, and a leap second only as the last
     * second of a month in UTC.
     */
    private static function isRfc3339(string $s): bool
    {
        $re = '/^(\d{4})-(\d{2})-(\d{2}).(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/sD';
        if (!preg_match($re, $s, $p)) {
            return false;
        }
        [$year, $month, $day, $hour, $minute, $second] = array_map('intval', array_slice($p, 1, 6));
        $offsetHour = (int) ($p[8] ?? 0);
        $offsetMinute = (int) ($p[9] ?? 0);
        $leap = $year % 4 === 0 && ($year % 100 !== 0 || $year % 400 === 0);
        $days = [31, $leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if ($month < 1 || $month > 12 || $day < 1 || $day > $days[$month - 1]
            || $hour > 23 || $minute > 59 || $second > 60 || $offsetHour > 23 || $offsetMinute > 59) {
            return false;
        }
        if ($second === 60) {
            $sign = ($p[7] ?? '+') === '-' ? -1 : 1;
            $utc = (new \DateTimeImmutable(sprintf('%04d-%02d-%02dT%02d:%02d:59Z', $year, $month, $day, $hour, $minute)))
                ->modify(sprintf('%+d minutes', -$sign * ($offsetHour * 60 + $offsetMinute)));
            return $utc->format('H:i') === '23:59' && $utc->format('d') === $utc->format('t');
        }
        return true;
    }

    private static function bad(string $why): InvalidSignedRecordException
    {
        return new InvalidSignedRecordException('malformed', $why);
    }
}
