<?php

declare(strict_types=1);

namespace Plasm;

/** Base of every exception the SDK throws. */
class PlasmException extends \RuntimeException
{
}
