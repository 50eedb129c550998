<?php

declare(strict_types=1);

namespace Plasm;

/**
 * Builds a job manifest (schemas/manifest.schema.json) for a module and its
 * input, checks it against the schema's rules before anything is sent, and
 * computes the job id exactly as the node does: SHA-256 of the RFC 8785 form.
 */
final class Job
{
    /** @var list<string> */
    private array $args = [];
    /** @var array<string,string> */
    private array $env = [];
    /** @var array<string,int> */
    private array $limits = [];
    /** @var list<string> */
    private array $labels = [];
    private ?string $runtime = null;
    private ?string $entry = null;
    private string $placement = 'any';
    private ?string $nonce = null;
    private ?string $createdAt = null;
    private ?\stdClass $manifest = null;

    public function __construct(private readonly string $module, private readonly string $input = '')
    {
    }

    public function withArgs(string ...$args): self
    {
        return $this->set(fn () => array_push($this->args, ...$args));
    }

    public function withEnv(string $name, string $value): self
    {
        return $this->set(fn () => $this->env[$name] = $value);
    }

    public function withFuel(int $fuel): self
    {
        return $this->set(fn () => $this->limits['fuel'] = $fuel);
    }

    public function withMemory(int $bytes): self
    {
        return $this->set(fn () => $this->limits['memory_bytes'] = $bytes);
    }

    public function withOutputLimit(int $bytes): self
    {
        return $this->set(fn () => $this->limits['output_bytes'] = $bytes);
    }

    public function withLabel(string $label): self
    {
        return $this->set(fn () => $this->labels[] = $label);
    }

    public function withRuntime(string $runtime): self
    {
        return $this->set(fn () => $this->runtime = $runtime);
    }

    public function withEntry(string $entry): self
    {
        return $this->set(fn () => $this->entry = $entry);
    }

    /** `local`, `remote` or `any` (default). */
    public function withPlacement(string $placement): self
    {
        if (!in_array($placement, ['local', 'remote', 'any'], true)) {
            throw new \InvalidArgumentException('placement must be local, remote or any');
        }
        return $this->set(fn () => $this->placement = $placement);
    }

    /** A fixed nonce (tests); by default 128 random bits. */
    public function withNonce(string $nonce): self
    {
        return $this->set(fn () => $this->nonce = $nonce);
    }

    public function withCreatedAt(string $rfc3339): self
    {
        return $this->set(fn () => $this->createdAt = $rfc3339);
    }

    private function set(callable $change): self
    {
        $change();
        $this->manifest = null;
        return $this;
    }

    public function module(): string
    {
        return $this->module;
    }

    public function input(): string
    {
        return $this->input;
    }

    public function placement(): string
    {
        return $this->placement;
    }

    /** The manifest (built once, then stable), validated. @throws InvalidManifestException */
    public function manifest(): \stdClass
    {
        if ($this->manifest !== null) {
            return $this->manifest;
        }
        $m = new \stdClass();
        $m->version = 'plasm.job/v1';
        $m->module = (object) ['sha256' => hash('sha256', $this->module), 'size' => strlen($this->module)];
        if ($this->entry !== null) {
            $m->entry = $this->entry;
        }
        if ($this->args !== []) {
            $m->args = $this->args;
        }
        if ($this->env !== []) {
            $m->env = (object) $this->env;
        }
        if ($this->input !== '') {
            $m->input = (object) ['sha256' => hash('sha256', $this->input), 'size' => strlen($this->input)];
        }
        if ($this->limits !== []) {
            $m->limits = (object) $this->limits;
        }
        if ($this->runtime !== null || $this->labels !== []) {
            $m->requirements = new \stdClass();
            if ($this->runtime !== null) {
                $m->requirements->runtime = $this->runtime;
            }
            if ($this->labels !== []) {
                $m->requirements->labels = $this->labels;
            }
        }
        $m->nonce = $this->nonce ?? bin2hex(random_bytes(16));
        $now = \DateTimeImmutable::createFromFormat('U.u', sprintf('%.6F', microtime(true)));
        $m->created_at = $this->createdAt ?? ($now === false ? gmdate('Y-m-d\TH:i:s\Z') : $now->format('Y-m-d\TH:i:s.v\Z'));
        self::validate($m);
        return $this->manifest = $m;
    }

    /** The job id the node will compute. */
    public function jobId(): string
    {
        return self::jobIdOf($this->manifest());
    }

    /** SHA-256 (hex) of the canonical form of a manifest value. */
    public static function jobIdOf(\stdClass $manifest): string
    {
        return hash('sha256', Canonical::encode($manifest));
    }

    /**
     * The rules of schemas/manifest.schema.json; the first violation is thrown with
     * the same JSON pointer and keyword the node reports.
     *
     * @throws InvalidManifestException
     */
    public static function validate(mixed $m): void
    {
        $fail = fn (string $path, string $rule, string $why) => new InvalidManifestException($path, $rule, $why);
        if (!$m instanceof \stdClass) {
            throw $fail('/', 'type', 'a manifest is an object');
        }
        $allowed = ['version', 'module', 'entry', 'args', 'env', 'input', 'limits', 'requirements', 'nonce', 'created_at'];
        foreach (array_keys((array) $m) as $k) {
            if (!in_array($k, $allowed, true)) {
                throw $fail('/', 'additionalProperties', "\"$k\" is not allowed");
            }
        }
        foreach (['version', 'module', 'nonce', 'created_at'] as $k) {
            if (!property_exists($m, $k)) {
                throw $fail('/', 'required', "\"$k\" is a required property");
            }
        }
        if ($m->version !== 'plasm.job/v1') {
            throw $fail('/version', 'const', 'must be plasm.job/v1');
        }
        self::blob($m->module, '/module');
        if (property_exists($m, 'entry') && (!is_string($m->entry) || $m->entry === '' || strlen($m->entry) > 256)) {
            throw $fail('/entry', 'type', 'a name of 1 to 256 characters');
        }
        if (property_exists($m, 'args')) {
            if (!is_array($m->args) || count($m->args) > 256) {
                throw $fail('/args', 'type', 'an array of at most 256 strings');
            }
            foreach ($m->args as $i => $a) {
                if (!is_string($a)) {
                    throw $fail("/args/$i", 'type', 'a string');
                }
            }
        }
        if (property_exists($m, 'env')) {
            if (!$m->env instanceof \stdClass || count((array) $m->env) > 256) {
                throw $fail('/env', 'type', 'an object of at most 256 strings');
            }
            foreach ((array) $m->env as $k => $v) {
                if (!is_string($v)) {
                    throw $fail("/env/$k", 'type', 'a string');
                }
                if ($k === '' || str_contains((string) $k, '=') || str_contains((string) $k, "\0")) {
                    throw $fail('/env', 'propertyNames', 'names hold no = or NUL');
                }
            }
        }
        if (property_exists($m, 'input')) {
            self::blob($m->input, '/input');
        }
        if (property_exists($m, 'limits')) {
            if (!$m->limits instanceof \stdClass) {
                throw $fail('/limits', 'type', 'an object');
            }
            $ranges = ['fuel' => [1, Canonical::MAX_SAFE_INTEGER], 'memory_bytes' => [0, 4294967296], 'output_bytes' => [0, 67108864]];
            foreach ((array) $m->limits as $k => $v) {
                if (!isset($ranges[$k])) {
                    throw $fail('/limits', 'additionalProperties', "\"$k\" is not allowed");
                }
                if (!is_int($v)) {
                    throw $fail("/limits/$k", 'type', 'an integer');
                }
                if ($v < $ranges[$k][0]) {
                    throw $fail("/limits/$k", 'minimum', "at least {$ranges[$k][0]}");
                }
                if ($v > $ranges[$k][1]) {
                    throw $fail("/limits/$k", 'maximum', "at most {$ranges[$k][1]}");
                }
            }
        }
        if (property_exists($m, 'requirements')) {
            $r = $m->requirements;
            if (!$r instanceof \stdClass) {
                throw $fail('/requirements', 'type', 'an object');
            }
            if (isset($r->runtime) && (!is_string($r->runtime) || !preg_match('/^[a-z0-9][a-z0-9._-]{0,31}$/', $r->runtime))) {
                throw $fail('/requirements/runtime', 'pattern', 'a runtime name');
            }
            foreach ($r->labels ?? [] as $i => $l) {
                if (!is_string($l) || !preg_match('/^[a-z0-9][a-z0-9._:\/=-]{0,63}$/', $l)) {
                    throw $fail("/requirements/labels/$i", 'pattern', 'a label');
                }
            }
        }
        if (!is_string($m->nonce)) {
            throw $fail('/nonce', 'type', 'a string');
        }
        if (strlen($m->nonce) < 16) {
            throw $fail('/nonce', 'minLength', 'at least 16 characters');
        }
        if (strlen($m->nonce) > 128) {
            throw $fail('/nonce', 'maxLength', 'at most 128 characters');
        }
        if (!preg_match('/^[\x21-\x7e]+$/', $m->nonce)) {
            throw $fail('/nonce', 'pattern', 'printable ASCII');
        }
        if (!is_string($m->created_at) || !preg_match('/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i', $m->created_at)) {
            throw $fail('/created_at', 'format', 'an RFC 3339 date-time');
        }
    }

    private static function blob(mixed $b, string $path): void
    {
        if (!$b instanceof \stdClass) {
            throw new InvalidManifestException($path, 'type', 'an object');
        }
        foreach (array_keys((array) $b) as $k) {
            if ($k !== 'sha256' && $k !== 'size') {
                throw new InvalidManifestException($path, 'additionalProperties', "\"$k\" is not allowed");
            }
        }
        if (!isset($b->sha256) || !isset($b->size)) {
            throw new InvalidManifestException($path, 'required', 'sha256 and size are required');
        }
        if (!is_string($b->sha256) || !preg_match('/^[0-9a-f]{64}$/', $b->sha256)) {
            throw new InvalidManifestException("$path/sha256", 'pattern', 'lowercase hex SHA-256');
        }
        if (!is_int($b->size) || $b->size < 0 || $b->size > 67108864) {
            throw new InvalidManifestException("$path/size", 'maximum', 'a size up to 64 MiB');
        }
    }
}
