<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 404. */
final class NotFoundException extends ApiException
{
}
