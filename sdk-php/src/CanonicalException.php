<?php

declare(strict_types=1);

namespace Plasm;

/** A value has no canonical form (a float, an integer beyond 2^53, invalid UTF-8). */
final class CanonicalException extends PlasmException
{
}
