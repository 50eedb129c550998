<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\Canonical;
use Plasm\CanonicalException;
use Plasm\InvalidJsonException;
use Plasm\InvalidManifestException;
use Plasm\Handoff;
use Plasm\InvalidReceiptException;
use Plasm\InvalidSignedRecordException;
use Plasm\Job;
use Plasm\Json;
use Plasm\PeerId;
use Plasm\Receipt;
use Plasm\SignedRecord;

/** Every vector in schemas/test-vectors/vectors.json gives the same bytes, ids and verdicts as in Rust. */
final class VectorsTest extends TestCase
{
    private static function vectors(): array
    {
        $text = file_get_contents(__DIR__ . '/../../schemas/test-vectors/vectors.json');
        self::assertIsString($text);
        return Json::decodeStrict($text, true);
    }

    public function testKeySeedGivesThePublicKeyPeerIdAndSignature(): void
    {
        $key = self::vectors()['key'];
        $pair = sodium_crypto_sign_seed_keypair(hex2bin($key['seed_hex']));
        $public = sodium_crypto_sign_publickey($pair);
        self::assertSame($key['public_key'], base64_encode($public));
        self::assertSame($key['peer_id'], PeerId::fromPublicKey($public));
        $sig = sodium_crypto_sign_detached($key['sign_test']['message'], sodium_crypto_sign_secretkey($pair));
        self::assertSame($key['sign_test']['signature'], base64_encode($sig));
    }

    public function testCanonicalForms(): void
    {
        $cases = self::vectors()['canonical'];
        self::assertNotEmpty($cases);
        foreach ($cases as $case) {
            $value = Json::decodeStrict($case['json']);
            if (isset($case['canonical'])) {
                self::assertSame($case['canonical'], Canonical::encode($value), $case['name']);
            } else {
                try {
                    Canonical::encode($value);
                    self::fail("{$case['name']}: expected a refusal");
                } catch (CanonicalException) {
                    self::assertSame('canonical', $case['error']);
                }
            }
        }
    }

    public function testManifestsGiveTheSameJobIdsAndRefusals(): void
    {
        foreach (self::vectors()['manifests'] as $case) {
            $m = Json::decodeStrict($case['json']);
            if ($case['valid']) {
                Job::validate($m);
                self::assertSame($case['canonical'], Canonical::encode($m), $case['name']);
                self::assertSame($case['job_id'], Job::jobIdOf($m), $case['name']);
            } else {
                try {
                    Job::validate($m);
                    self::fail("{$case['name']}: expected a refusal");
                } catch (InvalidManifestException $e) {
                    self::assertSame([$case['path'], $case['rule']], [$e->path, $e->rule], $case['name']);
                }
            }
        }
    }

    public function testReceiptVerdictsAndSigningBytes(): void
    {
        $invalid = 0;
        foreach (self::vectors()['receipts'] as $case) {
            try {
                $r = Receipt::fromJson($case['json']);
            } catch (InvalidReceiptException $e) {
                // Not a receipt at all (not JSON, a duplicate member): refused as it is read.
                $invalid++;
                self::assertFalse($case['valid'], "{$case['name']}: {$e->getMessage()}");
                self::assertSame($case['failed_check'], $e->check, $case['name']);
                if (str_starts_with($case['name'], 'duplicate')) {
                    self::assertStringContainsString('duplicate member', $e->getMessage(), $case['name']);
                }
                continue;
            }
            self::assertFalse(str_starts_with($case['name'], 'duplicate'), "{$case['name']}: read, but has a duplicate member");
            if (isset($case['signing_bytes_b64'])) {
                self::assertSame(base64_decode($case['signing_bytes_b64']), $r->signingBytes(), $case['name']);
            }
            try {
                $r->verifyOrThrow();
                self::assertTrue($case['valid'], "{$case['name']} verified but must not");
            } catch (InvalidReceiptException $e) {
                $invalid++;
                self::assertFalse($case['valid'], "{$case['name']}: {$e->getMessage()}");
                self::assertSame($case['failed_check'], $e->check, $case['name']);
            }
            self::assertSame($case['valid'], $r->verify(), $case['name']);
        }
        self::assertGreaterThanOrEqual(10, $invalid);
    }

    /** Hand-offs of stolen jobs (decision 0053): the same verdicts and signed bytes as the node. */
    public function testHandoffVerdictsAndSigningBytes(): void
    {
        $refused = 0;
        foreach (self::vectors()['handoffs'] as $case) {
            try {
                $h = Handoff::fromJson($case['json']);
                if (isset($case['signing_bytes_b64'])) {
                    self::assertSame(base64_decode($case['signing_bytes_b64']), $h->signingBytes(), $case['name']);
                }
                $h->verifyOrThrow();
                self::assertTrue($case['valid'], "{$case['name']} verified but must not");
            } catch (InvalidReceiptException $e) {
                $refused++;
                self::assertFalse($case['valid'], "{$case['name']}: {$e->getMessage()}");
                self::assertSame($case['failed_check'], $e->check, $case['name']);
            }
        }
        self::assertGreaterThanOrEqual(5, $refused);
    }

    /** Acceptances, publications and audits (decisions 0056, 0057): the same verdicts and signed bytes as the node. */
    public function testSignedRecordVerdictsAndSigningBytes(): void
    {
        $vectors = self::vectors();
        foreach (['acceptances' => 'plasm.acceptance/v1', 'publications' => 'plasm.publication/v1', 'audits' => 'plasm.audit/v1'] as $list => $form) {
            $cases = $vectors[$list] ?? null;
            self::assertIsArray($cases, "vectors.json has $list");
            $refused = 0;
            foreach ($cases as $case) {
                $name = "$list: {$case['name']}";
                if (isset($case['signing_bytes_b64'])) {
                    self::assertSame(base64_decode($case['signing_bytes_b64']), SignedRecord::signingBytes($case['json']), $name);
                }
                try {
                    $r = SignedRecord::verify($case['json']);
                    self::assertTrue($case['valid'], "$name verified but must not");
                    self::assertSame($form, $r['form'], $name);
                    $signer = $r['members'][SignedRecord::FORMS[$form]['signer']];
                    self::assertSame($signer->peer_id, $r['signer'], $name);
                    // Read as the form it names, the verdict is the same.
                    self::assertEquals($r, SignedRecord::verify($case['json'], $form), $name);
                } catch (InvalidSignedRecordException $e) {
                    $refused++;
                    self::assertFalse($case['valid'], "$name: {$e->getMessage()}");
                    self::assertSame($case['failed_check'], $e->check, "$name: {$e->getMessage()}");
                }
            }
            self::assertGreaterThanOrEqual(15, $refused, $list);
        }
    }

    /** An acceptance and an audit name a receipt by the SHA-256 of its canonical form, signature included. */
    public function testSignedRecordsNameTheReceiptByItsDigest(): void
    {
        $vectors = self::vectors();
        $receipt = array_values(array_filter($vectors['receipts'], fn ($c) => $c['name'] === 'v2 valid'))[0]['json'];
        $digest = SignedRecord::receiptSha256($receipt);
        foreach (['acceptances' => 'valid', 'audits' => 'valid mismatch'] as $list => $name) {
            $case = array_values(array_filter($vectors[$list], fn ($c) => $c['name'] === $name))[0];
            $r = SignedRecord::verify($case['json']);
            self::assertSame($digest, $r['members']['receipt_sha256'], $list);
        }
    }

    /** Texts every implementation refuses: an object with two members of one name (RFC 8785, I-JSON). */
    public function testDuplicateMembersAreRefused(): void
    {
        $cases = self::vectors()['duplicates'] ?? null;
        if ($cases === null) {
            self::markTestSkipped('schemas/test-vectors/vectors.json has no "duplicates" list yet');
        }
        self::assertNotEmpty($cases);
        foreach ($cases as $case) {
            try {
                Json::decodeStrict($case['json']);
                self::fail("{$case['name']}: expected a refusal");
            } catch (InvalidJsonException $e) {
                self::assertSame($case['member'], $e->member, "{$case['name']}: {$e->getMessage()}");
                $shown = json_encode($case['member'], JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
                self::assertStringContainsString("duplicate member $shown", $e->getMessage(), $case['name']);
            }
            try {
                Receipt::fromJson($case['json']);
                self::fail("{$case['name']}: read as a receipt");
            } catch (InvalidReceiptException $e) {
                self::assertSame('malformed', $e->check, $case['name']);
            }
        }
    }

    public function testJobBuilderMatchesTheSchemaAndIsStable(): void
    {
        $job = (new Job("\0asm\x01\0\0\0", 'hi'))->withArgs('a', 'b')->withEnv('K', 'V')->withFuel(1000)->withLabel('gpu');
        $m = $job->manifest();
        self::assertSame(32, strlen($m->nonce));
        self::assertSame($job->jobId(), $job->jobId(), 'the manifest is built once');
        self::assertSame(hash('sha256', Canonical::encode($m)), $job->jobId());
        $this->expectException(InvalidManifestException::class);
        (new Job('x'))->withFuel(0)->manifest();
    }
}
