<?php

declare(strict_types=1);

namespace Plasm;

/** The node could not be reached. */
final class ConnectionException extends PlasmException
{
}
