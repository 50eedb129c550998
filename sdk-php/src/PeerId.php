<?php

declare(strict_types=1);

namespace Plasm;

/**
 * libp2p peer ids of Ed25519 keys: base58btc of the identity multihash of the
 * protobuf public key, i.e. of the bytes 00 24 08 01 12 20 ‖ key (the familiar
 * "12D3KooW..."). The same construction as the Rust node's `peer_id_bytes`.
 */
final class PeerId
{
    private const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

    /** The peer id of a raw 32-byte Ed25519 public key. */
    public static function fromPublicKey(string $publicKey): string
    {
        if (strlen($publicKey) !== 32) {
            throw new \InvalidArgumentException('an Ed25519 public key has 32 bytes');
        }
        return self::base58("\x00\x24\x08\x01\x12\x20" . $publicKey);
    }

    private static function base58(string $bytes): string
    {
        $digits = [0];
        foreach (str_split($bytes) as $byte) {
            $carry = ord($byte);
            foreach ($digits as $i => $d) {
                $carry += $d << 8;
                $digits[$i] = $carry % 58;
                $carry = intdiv($carry, 58);
            }
            while ($carry > 0) {
                $digits[] = $carry % 58;
                $carry = intdiv($carry, 58);
            }
        }
        $out = '';
        for ($i = 0; $i < strlen($bytes) && $bytes[$i] === "\x00"; $i++) {
            $out .= '1';
        }
        for ($i = count($digits) - 1; $i >= 0; $i--) {
            $out .= self::ALPHABET[$digits[$i]];
        }
        return $out;
    }
}
