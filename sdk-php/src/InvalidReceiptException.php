<?php

declare(strict_types=1);

namespace Plasm;

/** A receipt failed verification; `check` names the failed check. */
final class InvalidReceiptException extends PlasmException
{
    public function __construct(public readonly string $check, string $message)
    {
        parent::__construct("receipt invalid ($check): $message");
    }
}
