<?php

declare(strict_types=1);

namespace Plasm;

/**
 * Strict JSON for signed documents. RFC 8785 and I-JSON (RFC 7493) forbid two
 * members of one object with the same name, but json_decode keeps the last copy:
 * `{"outcome":"trapped", ...the real signed receipt...}` would verify while a
 * person (or grep) reading the first copy sees a value no signature covers.
 *
 * decodeStrict() first scans the text itself, in one pass (strings with every
 * escape, numbers, literals, nesting), and refuses an object with a duplicate
 * member, names compared after unescaping ("a" and "\u0061" are one name), and
 * nesting deeper than a bound; then it decodes the text with json_decode as before.
 */
final class Json
{
    /** Deepest nesting of arrays and objects decodeStrict() accepts by default. */
    public const MAX_DEPTH = 512;

    /** What ends a run of plain bytes in a string: a quote, a backslash, a control character. */
    private const STRING_STOP = "\"\\\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
        . "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f";
    private const ESCAPES = ['"' => '"', '\\' => '\\', '/' => '/', 'b' => "\x08", 'f' => "\x0c", 'n' => "\n", 'r' => "\r", 't' => "\t"];
    private const LITERALS = ['t' => 'true', 'f' => 'false', 'n' => 'null'];
    private const NUMBER = '/-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/A';

    private int $pos = 0;
    private readonly int $len;
    /** @var list<?array<string,true>> per open container: the names seen (an object) or null (an array) */
    private array $seen = [];
    /** @var list<string|int> per open container: the member or index being read, for the error's pointer */
    private array $at = [];

    private function __construct(private readonly string $text, private readonly int $maxDepth)
    {
        $this->len = strlen($text);
    }

    /**
     * json_decode($text, $associative) for a text with no duplicate member and at
     * most $maxDepth nested arrays and objects.
     *
     * @throws InvalidJsonException
     */
    public static function decodeStrict(string $text, bool $associative = false, int $maxDepth = self::MAX_DEPTH): mixed
    {
        self::check($text, $maxDepth);
        try {
            // json_decode counts the innermost values as a level too.
            return json_decode($text, $associative, $maxDepth + 1, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new InvalidJsonException($e->getMessage(), null, null, $e);
        }
    }

    /** Refuses what decodeStrict() refuses, without decoding. @throws InvalidJsonException */
    public static function check(string $text, int $maxDepth = self::MAX_DEPTH): void
    {
        if ($maxDepth < 1) {
            throw new \InvalidArgumentException('maxDepth is at least 1');
        }
        if (!preg_match('//u', $text)) {
            throw new InvalidJsonException('not UTF-8');
        }
        (new self($text, $maxDepth))->scan();
    }

    /** One pass over the text, without recursion: a stack of the open containers. */
    private function scan(): void
    {
        $wantMember = false;
        while (true) {
            $this->space();
            if ($wantMember) {
                $this->member();
                $wantMember = false;
            }
            $c = $this->text[$this->pos] ?? '';
            if ($c === '{' || $c === '[') {
                if (count($this->seen) >= $this->maxDepth) {
                    throw new InvalidJsonException("nesting deeper than {$this->maxDepth} at byte {$this->pos}");
                }
                $this->pos++;
                $this->space();
                if (($this->text[$this->pos] ?? '') === ($c === '{' ? '}' : ']')) {
                    $this->pos++;
                } else {
                    $this->seen[] = $c === '{' ? [] : null;
                    $this->at[] = 0;
                    $wantMember = $c === '{';
                    continue;
                }
            } elseif ($c === '"') {
                $this->string(false);
            } elseif (strspn($c, '-0123456789') === 1) {
                if (!preg_match(self::NUMBER, $this->text, $m, 0, $this->pos)) {
                    throw $this->unexpected('a number');
                }
                $this->pos += strlen($m[0]);
            } elseif (isset(self::LITERALS[$c]) && substr($this->text, $this->pos, strlen(self::LITERALS[$c])) === self::LITERALS[$c]) {
                $this->pos += strlen(self::LITERALS[$c]);
            } else {
                throw $this->unexpected('a value');
            }
            // A value ended: close what it ends, or go on to the next member or element.
            while (true) {
                $this->space();
                if ($this->seen === []) {
                    if ($this->pos !== $this->len) {
                        throw $this->unexpected('the end of the text');
                    }
                    return;
                }
                $top = count($this->seen) - 1;
                $isObject = $this->seen[$top] !== null;
                $c = $this->text[$this->pos] ?? '';
                if ($c === ',') {
                    $this->pos++;
                    if (!$isObject) {
                        $this->at[$top]++;
                    }
                    $wantMember = $isObject;
                    continue 2;
                }
                if ($c !== ($isObject ? '}' : ']')) {
                    throw $this->unexpected($isObject ? "',' or '}'" : "',' or ']'");
                }
                $this->pos++;
                array_pop($this->seen);
                array_pop($this->at);
            }
        }
    }

    /** A member's name, refused if the object already has it, and its ':'. */
    private function member(): void
    {
        if (($this->text[$this->pos] ?? '') !== '"') {
            throw $this->unexpected('a member name');
        }
        $name = $this->string(true);
        $top = count($this->seen) - 1;
        if (isset($this->seen[$top][$name])) {
            $pointer = '';
            for ($k = 0; $k < $top; $k++) {
                $pointer .= '/' . strtr((string) $this->at[$k], ['~' => '~0', '/' => '~1']);
            }
            $shown = json_encode($name, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
            throw new InvalidJsonException("duplicate member $shown" . ($pointer !== '' ? " in $pointer" : ''), $name, $pointer);
        }
        $this->seen[$top][$name] = true;
        $this->at[$top] = $name;
        $this->space();
        if (($this->text[$this->pos] ?? '') !== ':') {
            throw $this->unexpected("':'");
        }
        $this->pos++;
        $this->space();
    }

    /** Reads the string starting at pos (its quote); returns its value when $keep. */
    private function string(bool $keep): string
    {
        $start = $this->pos;
        $i = $start + 1;
        $out = '';
        while (true) {
            $run = strcspn($this->text, self::STRING_STOP, $i);
            if ($keep) {
                $out .= substr($this->text, $i, $run);
            }
            $i += $run;
            $c = $this->text[$i] ?? '';
            if ($c === '"') {
                $this->pos = $i + 1;
                return $out;
            }
            if ($c === '') {
                throw new InvalidJsonException("unterminated string at byte $start");
            }
            if ($c !== '\\') {
                throw new InvalidJsonException(sprintf('unescaped control character 0x%02x in a string at byte %d', ord($c), $i));
            }
            $e = $this->text[$i + 1] ?? '';
            if (isset(self::ESCAPES[$e])) {
                if ($keep) {
                    $out .= self::ESCAPES[$e];
                }
                $i += 2;
                continue;
            }
            if ($e !== 'u') {
                throw new InvalidJsonException("invalid escape at byte $i");
            }
            $cp = $this->hex4($i);
            if ($cp >= 0xDC00 && $cp <= 0xDFFF) {
                throw new InvalidJsonException("unpaired UTF-16 surrogate at byte $i");
            }
            if ($cp >= 0xD800 && $cp <= 0xDBFF) {
                $low = substr($this->text, $i + 6, 2) === '\\u' ? $this->hex4($i + 6) : -1;
                if ($low < 0xDC00 || $low > 0xDFFF) {
                    throw new InvalidJsonException("unpaired UTF-16 surrogate at byte $i");
                }
                $cp = 0x10000 + (($cp - 0xD800) << 10) + ($low - 0xDC00);
                $i += 6;
            }
            $i += 6;
            if ($keep) {
                $out .= self::utf8($cp);
            }
        }
    }

    /** The code unit of the \uXXXX escape at $at. */
    private function hex4(int $at): int
    {
        $hex = substr($this->text, $at + 2, 4);
        if (strlen($hex) !== 4 || strspn($hex, '0123456789abcdefABCDEF') !== 4) {
            throw new InvalidJsonException("invalid \\u escape at byte $at");
        }
        return (int) hexdec($hex);
    }

    private static function utf8(int $cp): string
    {
        if ($cp < 0x80) {
            return chr($cp);
        }
        if ($cp < 0x800) {
            return chr(0xC0 | ($cp >> 6)) . chr(0x80 | ($cp & 0x3F));
        }
        if ($cp < 0x10000) {
            return chr(0xE0 | ($cp >> 12)) . chr(0x80 | (($cp >> 6) & 0x3F)) . chr(0x80 | ($cp & 0x3F));
        }
        return chr(0xF0 | ($cp >> 18)) . chr(0x80 | (($cp >> 12) & 0x3F)) . chr(0x80 | (($cp >> 6) & 0x3F)) . chr(0x80 | ($cp & 0x3F));
    }

    private function space(): void
    {
        $this->pos += strspn($this->text, " \t\n\r", $this->pos);
    }

    private function unexpected(string $wanted): InvalidJsonException
    {
        if ($this->pos >= $this->len) {
            return new InvalidJsonException("unexpected end of text, $wanted expected");
        }
        $b = ord($this->text[$this->pos]);
        $shown = $b > 0x20 && $b < 0x7f ? "'" . chr($b) . "'" : sprintf('byte 0x%02x', $b);
        return new InvalidJsonException("unexpected $shown at byte {$this->pos}, $wanted expected");
    }
}
