<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\InvalidJsonException;
use Plasm\Json;

/** Json::decodeStrict: json_decode, but an object with two members of one name is refused. */
final class JsonTest extends TestCase
{
    /** @return array<string,array{0:string,1:string,2:string}> text, duplicated member, pointer of its object */
    public static function duplicates(): array
    {
        return [
            'top level' => ['{"outcome":"trapped","exit_code":0,"outcome":"exited"}', 'outcome', ''],
            'adjacent' => ['{"a":1,"a":1}', 'a', ''],
            'whitespace around' => [" { \"a\" : 1 ,\n\t\"a\" : 2 } ", 'a', ''],
            'values differ in type' => ['{"a":{"x":1},"a":[1]}', 'a', ''],
            'empty name' => ['{"":1,"":2}', '', ''],
            'nested in runtime' => ['{"runtime":{"name":"wasm3","version":"0.9.0","name":"other"}}', 'name', '/runtime'],
            'nested in executor' => ['{"executor":{"peer_id":"A","public_key":"k","peer_id":"B"},"outcome":"exited"}', 'peer_id', '/executor'],
            'escaped letter' => ['{"a":1,"\u0061":2}', 'a', ''],
            'escaped twice' => ['{"\u006futcome":1,"\u006Futcome":2}', 'outcome', ''],
            'escaped non-ASCII' => ['{"é":1,"\u00e9":2}', 'é', ''],
            'surrogate pair' => ['{"😀":1,"\ud83d\ude00":2}', '😀', ''],
            'escaped quote and slash' => ['{"a\"/":1,"a\u0022\/":2}', 'a"/', ''],
            'escaped control character' => ['{"\n":1,"\u000a":2}', "\n", ''],
            'in an array of objects' => ['{"items":[{"a":1},{"a":1,"b":2,"a":3}]}', 'a', '/items/1'],
            'in a top-level array' => ['[1,[{"k":true,"k":false}]]', 'k', '/1/0'],
            'pointer escapes' => ['{"a/~b":{"c":null,"c":null}}', 'c', '/a~1~0b'],
            'deeply nested' => [str_repeat('[', 100) . '{"x":1,"x":2}' . str_repeat(']', 100), 'x', '/' . implode('/', array_fill(0, 100, '0'))],
            'after a closed sibling with the same names' => ['{"o":{"a":1},"a":1,"o":2}', 'o', ''],
        ];
    }

    /** @dataProvider duplicates */
    public function testADuplicateMemberIsRefusedAndNamed(string $text, string $member, string $pointer): void
    {
        self::assertNotNull(json_decode($text), 'json_decode alone keeps the last copy');
        try {
            Json::decodeStrict($text);
            self::fail('expected a refusal');
        } catch (InvalidJsonException $e) {
            self::assertSame($member, $e->member);
            self::assertSame($pointer, $e->pointer);
            $shown = json_encode($member, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
            self::assertStringStartsWith("duplicate member $shown", $e->getMessage());
        }
        $this->expectException(InvalidJsonException::class);
        Json::decodeStrict($text, true);
    }

    /** @return array<string,array{0:string}> */
    public static function valid(): array
    {
        return [
            'same name in different objects' => ['{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}],"c":{"a":3}}'],
            'names differing in case or space' => ['{"a":1,"A":2,"a ":3," a":4}'],
            'names differing after an escape' => ['{"\u0061b":1,"a":2,"ab ":3,"\u00e9":4,"e\u0301":5}'],
            'integer-like names' => ['{"1":1,"01":2,"1.0":3,"-1":4}'],
            'every escape' => ['["\"\\\\\/\b\f\n\r\t\u0000\u001f\u007f\u2028\u2029é😀\ud83d\ude00"]'],
            'numbers' => ['[0,-0,1,-1,0.5,-0.25,1e3,1E+3,1e-3,12.5e10,9007199254740993,123456789012345678901234567890]'],
            'literals and empties' => ['[true,false,null,{},[],"",{"":{}}]'],
            'scalar' => ['"just a string"'],
            'number at top level' => [' 42 '],
            'whitespace everywhere' => [" \t\n\r{ \"z\" : [ 1 , { \"y\" : \"x\" } ] ,\n \"a\" : null } \n"],
            'nesting at the bound' => [str_repeat('[', Json::MAX_DEPTH) . str_repeat(']', Json::MAX_DEPTH)],
        ];
    }

    /** @dataProvider valid */
    public function testAValidTextDecodesAsJsonDecodeDoes(string $text): void
    {
        self::assertEquals(json_decode($text, false, 1024, JSON_THROW_ON_ERROR), Json::decodeStrict($text));
        self::assertEquals(json_decode($text, true, 1024, JSON_THROW_ON_ERROR), Json::decodeStrict($text, true));
    }

    public function testEmptyObjectsAndArraysStayDistinct(): void
    {
        $v = Json::decodeStrict('{"o":{},"a":[]}');
        self::assertInstanceOf(\stdClass::class, $v->o);
        self::assertSame([], $v->a);
    }

    /** @return array<string,array{0:string}> */
    public static function invalid(): array
    {
        return [
            'empty' => [''],
            'only space' => ["  \n"],
            'unterminated object' => ['{"a":1'],
            'unterminated array' => ['[1,2'],
            'unterminated string' => ['{"a":"b}'],
            'trailing comma in an object' => ['{"a":1,}'],
            'trailing comma in an array' => ['[1,]'],
            'missing colon' => ['{"a" 1}'],
            'missing comma' => ['{"a":1 "b":2}'],
            'unquoted name' => ['{a:1}'],
            'name not a string' => ['{1:1}'],
            'single quotes' => ["{'a':1}"],
            'two values' => ['{} {}'],
            'trailing garbage' => ['[1]x'],
            'mismatched close' => ['[1}'],
            'leading zero' => ['[01]'],
            'bare minus' => ['[-]'],
            'fraction without digits' => ['[1.]'],
            'exponent without digits' => ['[1e]'],
            'plus sign' => ['[+1]'],
            'hex number' => ['[0x10]'],
            'NaN' => ['[NaN]'],
            'literal cut short' => ['[tru]'],
            'literal in capitals' => ['[True]'],
            'invalid escape' => ['["\x"]'],
            'short \u escape' => ['["\u12"]'],
            'non-hex \u escape' => ['["\u12g4"]'],
            'lone high surrogate' => ['["\ud83d"]'],
            'high surrogate then a letter' => ['["\ud83dx"]'],
            'two high surrogates' => ['["\ud83d\ud83d"]'],
            'lone low surrogate' => ['["\ude00"]'],
            'lone surrogate in a name' => ['{"\ud800":1,"\ud800":2}'],
            'raw control character' => ["[\"a\tb\"]"],
            'raw NUL' => ["[\"a\x00b\"]"],
            'invalid UTF-8' => ["[\"\xc3\x28\"]"],
            'byte order mark' => ["\xef\xbb\xbf{}"],
            'comment' => ['{"a":1 /* c */}'],
        ];
    }

    /** @dataProvider invalid */
    public function testAnInvalidTextIsRefusedAsJsonDecodeRefusesIt(string $text): void
    {
        self::assertNull(json_decode($text), 'json_decode refuses it too');
        try {
            Json::decodeStrict($text);
            self::fail('expected a refusal');
        } catch (InvalidJsonException $e) {
            self::assertNull($e->member);
        }
    }

    public function testNestingIsBounded(): void
    {
        $deep = fn (int $n) => str_repeat('{"a":[', $n) . '1' . str_repeat(']}', $n);
        self::assertIsObject(Json::decodeStrict($deep(256)), '512 levels');
        try {
            Json::decodeStrict('[' . $deep(256) . ']');
            self::fail('513 levels');
        } catch (InvalidJsonException $e) {
            self::assertStringContainsString('nesting deeper than 512', $e->getMessage());
        }
        self::assertSame([[1]], Json::decodeStrict('[[1]]', true, 2));
        try {
            Json::decodeStrict('[[[1]]]', true, 2);
            self::fail('3 levels with a bound of 2');
        } catch (InvalidJsonException $e) {
            self::assertStringContainsString('nesting deeper than 2', $e->getMessage());
        }
        // Far deeper than the bound (and any stack): refused at the bound, without recursion.
        $this->expectException(InvalidJsonException::class);
        $this->expectExceptionMessage('nesting deeper than 512 at byte 512');
        Json::decodeStrict(str_repeat('[', 1_000_000));
    }

    public function testTheScanIsLinear(): void
    {
        // 20 000 and 80 000 members: the time grows with the size, not its square
        // (a generous factor, for a loaded machine).
        $text = fn (int $n) => '{' . implode(',', array_map(fn ($i) => "\"k$i\":{\"s\":\"\\u00e9\\\"x\",\"a\":[1,2.5,true,null]}", range(1, $n))) . '}';
        $small = $text(20_000);
        $large = $text(80_000);
        $time = function (string $t): float {
            $best = INF;
            for ($k = 0; $k < 3; $k++) {
                $start = hrtime(true);
                Json::check($t);
                $best = min($best, (hrtime(true) - $start) / 1e9);
            }
            return $best;
        };
        $ratio = $time($large) / max($time($small), 1e-6);
        self::assertLessThan(10, $ratio, "4x the text took {$ratio}x the time");
    }
}
