<?php

declare(strict_types=1);

namespace Plasm;

/** A manifest breaks a rule of schemas/manifest.schema.json. */
final class InvalidManifestException extends PlasmException
{
    public function __construct(public readonly string $path, public readonly string $rule, string $message)
    {
        parent::__construct("manifest violates the schema at $path ($rule): $message");
    }
}
