<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 401/403: missing, invalid or insufficient token. */
final class UnauthorizedException extends ApiException
{
}
