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

    /**
     * The exit status `plasm run` gives this job (the same table everywhere: the CLI,
     * the API's `exit_status`, the dashboard): 0-117 the job's exit code, 119
     * stack_overflow, 120 an exit code outside 0-117, 123 invalid_module, 124
     * out_of_fuel, 125 memory_limit, 126 output_limit, 127 trapped (122: an outcome
     * this SDK does not know).
     */
    public function exitStatus(): int
    {
        return self::statusOf($this->outcome, $this->exitCode);
    }

    /** The table of exitStatus(), for an outcome and an exit code. */
    public static function statusOf(string $outcome, ?int $exitCode): int
    {
        return match ($outcome) {
            'exited' => ($exitCode !== null && $exitCode >= 0 && $exitCode <= 117) ? $exitCode : 120,
            'stack_overflow' => 119,
            'invalid_module' => 123,
            'out_of_fuel' => 124,
            'memory_limit' => 125,
            'output_limit' => 126,
            'trapped' => 127,
            // An outcome this SDK does not know (a newer executor's): as the CLI says it.
            default => 122,
        };
    }
}
