<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 400: the request was malformed. */
final class MalformedRequestException extends ApiException
{
}
