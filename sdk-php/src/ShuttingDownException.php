<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 503: the node is shutting down. */
final class ShuttingDownException extends ApiException
{
}
