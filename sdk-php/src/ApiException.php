<?php

declare(strict_types=1);

namespace Plasm;

/** The node answered with an error: `status` is the HTTP status, `errorCode` the node's code. */
class ApiException extends PlasmException
{
    public function __construct(public readonly int $status, public readonly string $errorCode, string $message)
    {
        parent::__construct("HTTP $status $errorCode: $message");
    }

    /** The most specific exception for an error answer. */
    public static function from(int $status, string $code, string $message, ?int $retryAfter = null): self
    {
        return match (true) {
            $status === 400 => new MalformedRequestException($status, $code, $message),
            $status === 401, $status === 403 => new UnauthorizedException($status, $code, $message),
            $status === 404 => new NotFoundException($status, $code, $message),
            $status === 409 => new ReplayedNonceException($status, $code, $message),
            $status === 413 => new TooLargeException($status, $code, $message),
            $status === 422 => new UnprocessableException($status, $code, $message),
            $status === 429 => new QueueFullException($status, $code, $message, $retryAfter ?? 1),
            $status === 503 => new ShuttingDownException($status, $code, $message),
            default => new self($status, $code, $message),
        };
    }
}
