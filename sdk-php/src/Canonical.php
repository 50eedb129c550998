<?php

declare(strict_types=1);

namespace Plasm;

/**
 * RFC 8785 (JCS) canonical JSON for the values plasm signs: strings, integers
 * with |n| < 2^53, booleans, null, arrays and objects. Floats (even 1.0) and larger
 * integers are refused, exactly as the Rust node refuses them, so a lossy
 * re-encoding fails loudly instead of producing a different signature.
 *
 * Decode JSON with `Json::decodeStrict($text)` (objects as stdClass, like
 * `json_decode($text, false)`) so that `{}` and `[]` stay distinct and a duplicate
 * member is refused instead of silently dropped.
 */
final class Canonical
{
    public const MAX_SAFE_INTEGER = 9007199254740991;

    /** @throws CanonicalException */
    public static function encode(mixed $value): string
    {
        if ($value === null) {
            return 'null';
        }
        if (is_bool($value)) {
            return $value ? 'true' : 'false';
        }
        if (is_int($value)) {
            if ($value > self::MAX_SAFE_INTEGER || $value < -self::MAX_SAFE_INTEGER) {
                throw new CanonicalException("integer $value is outside ±(2^53-1)");
            }
            return (string) $value;
        }
        if (is_float($value)) {
            throw new CanonicalException('plasm documents hold no floats');
        }
        if (is_string($value)) {
            return self::string($value);
        }
        if (is_array($value) && array_is_list($value)) {
            return '[' . implode(',', array_map([self::class, 'encode'], $value)) . ']';
        }
        if (is_array($value) || $value instanceof \stdClass) {
            $members = [];
            foreach ((array) $value as $k => $v) {
                $members[] = [(string) $k, $v];
            }
            // RFC 8785 §3.2.3: names sorted by UTF-16 code units.
            usort($members, fn ($a, $b) => strcmp(self::utf16($a[0]), self::utf16($b[0])));
            $parts = [];
            foreach ($members as [$k, $v]) {
                $parts[] = self::string($k) . ':' . self::encode($v);
            }
            return '{' . implode(',', $parts) . '}';
        }
        throw new CanonicalException('unsupported value of type ' . get_debug_type($value));
    }

    private static function string(string $s): string
    {
        if (!preg_match('//u', $s)) {
            throw new CanonicalException('string is not UTF-8');
        }
        $escaped = preg_replace_callback('/[\x00-\x1f"\\\\]/', static function (array $m): string {
            return match ($m[0]) {
                '"' => '\\"',
                '\\' => '\\\\',
                "\x08" => '\\b',
                "\x0c" => '\\f',
                "\n" => '\\n',
                "\r" => '\\r',
                "\t" => '\\t',
                default => sprintf('\\u%04x', ord($m[0])),
            };
        }, $s);
        return '"' . $escaped . '"';
    }

    /** UTF-16BE bytes of a UTF-8 string: byte order equals code-unit order. */
    private static function utf16(string $s): string
    {
        $out = '';
        $len = strlen($s);
        for ($i = 0; $i < $len;) {
            $b = ord($s[$i]);
            if ($b < 0x80) {
                $cp = $b;
                $i += 1;
            } elseif ($b < 0xE0) {
                $cp = (($b & 0x1F) << 6) | (ord($s[$i + 1]) & 0x3F);
                $i += 2;
            } elseif ($b < 0xF0) {
                $cp = (($b & 0x0F) << 12) | ((ord($s[$i + 1]) & 0x3F) << 6) | (ord($s[$i + 2]) & 0x3F);
                $i += 3;
            } else {
                $cp = (($b & 0x07) << 18) | ((ord($s[$i + 1]) & 0x3F) << 12)
                    | ((ord($s[$i + 2]) & 0x3F) << 6) | (ord($s[$i + 3]) & 0x3F);
                $i += 4;
            }
            if ($cp >= 0x10000) {
                $cp -= 0x10000;
                $out .= pack('n2', 0xD800 | ($cp >> 10), 0xDC00 | ($cp & 0x3FF));
            } else {
                $out .= pack('n', $cp);
            }
        }
        return $out;
    }
}
