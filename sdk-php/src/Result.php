<?php

declare(strict_types=1);

namespace Plasm;

/** A finished job: its stdout and a receipt that has already been verified locally. */
final class Result
{
    public function __construct(
        public readonly string $jobId,
        public readonly string $output,
        public readonly string $outcome,
        public readonly ?int $exitCode,
        public readonly string $executor,
        public readonly Receipt $receipt,
    ) {
    }

    /** Whether the job exited with code 0. */
    public function ok(): bool
    {
        return $this->outcome === 'exited' && $this->exitCode === 0;
    }
}
