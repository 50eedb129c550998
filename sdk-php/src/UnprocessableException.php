<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 422: invalid manifest or unusable bytes. */
final class UnprocessableException extends ApiException
{
}
