<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 429: the queue is full (`queue_full`) or too much is in flight (`overloaded`); retry after `retryAfter` seconds. */
final class QueueFullException extends ApiException
{
    public function __construct(int $status, string $code, string $message, public readonly int $retryAfter)
    {
        parent::__construct($status, $code, $message);
    }
}
