<?php

declare(strict_types=1);

namespace Plasm;

/** A signed record (acceptance, publication, audit) was refused; `check` names the failed check. */
final class InvalidSignedRecordException extends PlasmException
{
    public function __construct(public readonly string $check, string $message)
    {
        parent::__construct("signed record invalid ($check): $message");
    }
}
