<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 413. */
final class TooLargeException extends ApiException
{
}
