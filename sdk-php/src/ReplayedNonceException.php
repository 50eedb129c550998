<?php

declare(strict_types=1);

namespace Plasm;

/** HTTP 409: this manifest or nonce was already submitted. */
final class ReplayedNonceException extends ApiException
{
}
