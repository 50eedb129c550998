<?php

declare(strict_types=1);

namespace Plasm;

/** The node did not answer in time. */
final class TimeoutException extends PlasmException
{
}
