<?php

declare(strict_types=1);

namespace Plasm;

/**
 * A text Json::decodeStrict() refuses: not JSON, nested too deeply, or an object
 * with a duplicate member. For a duplicate, `member` is its name (unescaped) and
 * `pointer` the JSON pointer of the object holding it ("" for the top level).
 */
final class InvalidJsonException extends PlasmException
{
    public function __construct(
        string $message,
        public readonly ?string $member = null,
        public readonly ?string $pointer = null,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }
}
