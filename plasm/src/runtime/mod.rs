//! The sandbox: a [`Runtime`] trait, the wasm3 implementation, and the worker pool.
//!
//! Every job goes through the same steps whatever the runtime: validate and
//! instrument the module ([`instrument`]), check it against the job's limits,
//! then execute the instrumented bytes with plasm's deterministic WASI ([`wasi`]).
//! The trait is the seam where a second runtime (wasmtime) plugs in; because the
//! metering lives in the bytes, both report the same fuel for the same job.

pub mod cache;
pub mod engines;
pub mod instrument;
pub mod phase;
pub mod pool;
pub mod wasi;
pub mod wasm3;
#[cfg(feature = "wasmtime")]
pub mod wasmtime;
pub mod worker;

pub use crate::execution::{Outcome, RuntimeInfo};
use crate::manifest::Limits;
pub use instrument::{Instrumented, ModuleError};
use std::sync::Arc;

/// Everything a runtime needs to execute one job.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The original module bytes.
    pub module: Arc<[u8]>,
    /// Exported function to call.
    pub entry: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// Environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// Bytes on stdin.
    pub stdin: Vec<u8>,
    /// Limits.
    pub limits: Limits,
    /// Seed of `random_get`, derived from the execution inputs.
    pub random_seed: [u8; 32],
    /// The engine the manifest asks for (`requirements.runtime`; `None` or
    /// `any`: the node's default).
    pub engine: Option<String>,
    /// Cancels the job from another thread (the API's `DELETE`, shutdown).
    pub cancel: CancelToken,
}

/// Why a job ended for a reason of the machine that ran it, not of the job: the
/// same job may succeed elsewhere, so no receipt is ever signed for it and an
/// audit by re-execution never compares it (decision 0033).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortKind {
    /// Compiling the module took more time or memory than the worker allows.
    CompileLimit,
    /// The worker process died (aborted, killed by the kernel, lost its pipe).
    WorkerCrashed,
    /// The wall deadline derived from the fuel limit passed (a backstop).
    Deadline,
    /// The job was cancelled (API, shutdown).
    Cancelled,
}

impl AbortKind {
    /// The spelling in the API, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CompileLimit => "compile_limit",
            Self::WorkerCrashed => "worker_crashed",
            Self::Deadline => "deadline",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A job that ended without a deterministic outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// What happened.
    pub kind: AbortKind,
    /// The details, for people.
    pub detail: String,
}

/// A handle that cancels one job: before it starts, or while a worker process
/// runs it (the worker is killed).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: std::sync::atomic::AtomicBool,
    /// Who owns a queued job (swarm mode, decision 0053): [`CLAIM_QUEUED`] until a
    /// worker takes it ([`CLAIM_RUNNING`]) or a stealer does ([`CLAIM_STOLEN`]);
    /// one compare-and-swap decides, so a started job is never stolen.
    claim: std::sync::atomic::AtomicU8,
    /// The worker process running the job, while one does.
    pid: std::sync::Mutex<Option<u32>>,
}

const CLAIM_QUEUED: u8 = 0;
const CLAIM_RUNNING: u8 = 1;
const CLAIM_STOLEN: u8 = 2;

impl CancelToken {
    /// A worker takes the job; false when a stealer took it first.
    pub(crate) fn claim_for_run(&self) -> bool {
        self.claim_from_queued(CLAIM_RUNNING)
    }

    /// A stealer takes the job; false when a worker began it (or a stealer took it) first.
    pub(crate) fn claim_for_steal(&self) -> bool {
        self.claim_from_queued(CLAIM_STOLEN)
    }

    fn claim_from_queued(&self, to: u8) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.0
            .claim
            .compare_exchange(CLAIM_QUEUED, to, SeqCst, SeqCst)
            .is_ok()
    }

    /// Whether a stealer owns the job (it runs on another peer).
    pub fn is_stolen(&self) -> bool {
        self.0.claim.load(std::sync::atomic::Ordering::SeqCst) == CLAIM_STOLEN
    }

    /// Cancels the job; the worker running it, if any, is killed at once.
    pub fn cancel(&self) {
        self.0
            .cancelled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let pid = self.0.pid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pid) = *pid {
            worker::kill(pid);
        }
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records the worker running the job (`None`: no longer). Held under the same
    /// lock as the kill, so a pid is never killed after it was detached and reaped.
    pub(crate) fn attach(&self, pid: Option<u32>) {
        let mut slot = self.0.pid.lock().unwrap_or_else(|e| e.into_inner());
        *slot = pid;
        if let Some(pid) = pid
            && self.is_cancelled()
        {
            worker::kill(pid);
        }
    }
}

/// What a runtime reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// How the job ended.
    pub outcome: Outcome,
    /// Exit code, when there is one.
    pub exit_code: Option<i64>,
    /// Trap reason, refusal or limit detail.
    pub detail: Option<String>,
    /// stdout (capped).
    pub stdout: Vec<u8>,
    /// stderr (capped).
    pub stderr: Vec<u8>,
    /// Fuel consumed (the limit when it ran out).
    pub fuel_used: u64,
    /// A `memory.grow` was refused by the memory limit (whatever the outcome).
    pub memory_limit_hit: bool,
    /// RFC 3339 time a worker began the job (set by the pool; empty outside it).
    pub started_at: String,
    /// The engine that ran it (set by [`engines::Engines`]; `None`: the pool's).
    pub runtime: Option<RuntimeInfo>,
    /// Set when the job ended for a reason of the machine (no receipt is signed).
    pub aborted: Option<Abort>,
}

impl ExecResult {
    /// A result for a job that never ran.
    pub fn refused(outcome: Outcome, detail: String) -> Self {
        Self {
            outcome,
            exit_code: None,
            detail: Some(detail),
            stdout: vec![],
            stderr: vec![],
            fuel_used: 0,
            memory_limit_hit: outcome == Outcome::MemoryLimit,
            started_at: String::new(),
            runtime: None,
            aborted: None,
        }
    }

    /// A job that ended without a deterministic outcome.
    pub fn aborted(kind: AbortKind, detail: String) -> Self {
        let mut r = Self::refused(Outcome::Trapped, detail.clone());
        r.aborted = Some(Abort { kind, detail });
        r
    }
}

/// How the guest's call ended, in engine-independent words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The entry point returned (its i32 result, if it has one).
    Returned(Option<i64>),
    /// A host function stopped the job (`proc_exit`, output cap).
    Stopped(wasi::HostStop),
    /// The guest trapped; the reason is one of the canonical trap names below.
    Trapped(String),
}

/// Canonical trap reasons: each engine maps its own trap to one of these, so a
/// receipt's `detail` does not depend on the engine that ran the job.
pub mod trap {
    /// `unreachable` executed (also how the metering stops a job).
    pub const UNREACHABLE: &str = "unreachable";
    /// A load, store or bulk memory operation out of bounds.
    pub const MEMORY_OUT_OF_BOUNDS: &str = "out of bounds memory access";
    /// Integer division or remainder by zero.
    pub const DIVIDE_BY_ZERO: &str = "integer divide by zero";
    /// Signed division overflow.
    pub const INTEGER_OVERFLOW: &str = "integer overflow";
    /// A float to integer conversion out of range or NaN.
    pub const BAD_CONVERSION: &str = "invalid conversion to integer";
    /// `call_indirect` with the wrong signature.
    pub const INDIRECT_CALL_TYPE: &str = "indirect call type mismatch";
    /// A table index out of bounds (call_indirect or a table operation).
    pub const TABLE_OUT_OF_BOUNDS: &str = "undefined element";
    /// `call_indirect` to a null entry.
    pub const NULL_ELEMENT: &str = "uninitialized element";
    /// The engine's native stack ran out before the logical limit (should not happen).
    pub const NATIVE_STACK: &str = "native stack exhausted";
}

/// What an engine observed when the guest's call ended; [`conclude`] turns it
/// into the result, the same way for every engine.
#[derive(Debug)]
pub struct Observed {
    /// How the call ended.
    pub ending: Ending,
    /// The fuel global after the call (negative: exhausted).
    pub fuel_left: i64,
    /// The memory-refused global was set.
    pub grow_refused: bool,
    /// The logical stack height global after the call.
    pub depth: u32,
    /// What the job wrote.
    pub stdout: Vec<u8>,
    /// What the job wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Maps what an engine observed to the job's result (outcome, exit code, fuel).
pub fn conclude(req: &ExecRequest, seen: Observed) -> ExecResult {
    let limit = req.limits.fuel;
    let out_of_fuel =
        seen.fuel_left < 0 || matches!(seen.ending, Ending::Stopped(wasi::HostStop::HostBudget));
    let fuel_used = if out_of_fuel {
        limit
    } else {
        limit.saturating_sub(seen.fuel_left.max(0) as u64)
    };
    let (outcome, exit_code, detail) = match seen.ending {
        Ending::Returned(code) => (Outcome::Exited, Some(code.unwrap_or(0)), None),
        Ending::Stopped(wasi::HostStop::Exit(code)) => {
            (Outcome::Exited, Some(i64::from(code)), None)
        }
        Ending::Stopped(wasi::HostStop::HostBudget) => (
            Outcome::OutOfFuel,
            None,
            Some(format!(
                "fuel limit {limit} exhausted by host calls (their work is counted apart)"
            )),
        ),
        Ending::Stopped(wasi::HostStop::OutputLimit) => (
            Outcome::OutputLimit,
            None,
            Some(format!("output exceeded {} bytes", req.limits.output_bytes)),
        ),
        Ending::Trapped(_) if out_of_fuel => (
            Outcome::OutOfFuel,
            None,
            Some(format!("fuel limit {limit} exhausted")),
        ),
        Ending::Trapped(_) if seen.depth > instrument::STACK_LIMIT => (
            Outcome::StackOverflow,
            None,
            Some(format!(
                "call stack deeper than {} slots ({})",
                instrument::STACK_LIMIT,
                instrument::METERING
            )),
        ),
        Ending::Trapped(reason) => (Outcome::Trapped, None, Some(reason)),
    };
    // A refused grow followed by a trap: the limit stopped the job. A job that saw
    // the refusal (-1) and then exited on its own, with any code, exited; the
    // receipt's `memory_limit_hit` says the limit was reached on the way.
    let (outcome, detail) = match outcome {
        Outcome::Trapped if seen.grow_refused => (
            Outcome::MemoryLimit,
            Some(format!(
                "memory.grow beyond {} bytes refused{}",
                req.limits.memory_bytes,
                detail.map(|d| format!("; then {d}")).unwrap_or_default()
            )),
        ),
        o => (o, detail),
    };
    ExecResult {
        outcome,
        exit_code,
        detail,
        stdout: seen.stdout,
        stderr: seen.stderr,
        fuel_used,
        memory_limit_hit: seen.grow_refused,
        started_at: String::new(),
        runtime: None,
        aborted: None,
    }
}

/// A WebAssembly engine that runs instrumented modules.
///
/// Implementations are called on a worker thread and may block it; they must
/// never be called from an async task.
pub trait Runtime: Send + Sync + 'static {
    /// Name, version and metering scheme, as recorded in receipts.
    fn info(&self) -> RuntimeInfo;
    /// Runs an already-instrumented module.
    fn execute(&self, module: &Instrumented, request: &ExecRequest) -> ExecResult;
    /// The engine that runs (or would run) `request`.
    fn info_for(&self, _request: &ExecRequest) -> RuntimeInfo {
        self.info()
    }
    /// Whether a job asking for engine `requested` (`None` or `any`: no
    /// preference) can run here.
    fn offers(&self, requested: Option<&str>) -> bool {
        requested.is_none_or(|r| r == engines::ANY || r == self.info().name)
    }
    /// The whole job: validation, instrumentation, compilation and execution.
    /// In this process by default; [`worker::ProcessRuntime`] sends it to a
    /// supervised worker process.
    fn run_job(&self, request: &ExecRequest) -> ExecResult {
        run(self, request)
    }
    /// How jobs are isolated from this process, for `plasm node status`.
    fn isolation(&self) -> Option<worker::SandboxReport> {
        None
    }
    /// Kills every job running now (shutdown, once its grace is over).
    fn kill_running(&self) {}
    /// Counters of the worker processes, when jobs run in them.
    fn worker_stats(&self) -> Option<Arc<worker::supervisor::WorkerStats>> {
        None
    }
}

/// Instrumented modules kept by content hash: instrumentation depends only on the
/// module bytes (limits are set through globals), so repeated jobs skip it.
const CACHE_ENTRIES: usize = 64;

fn instrumented(module: &[u8]) -> Result<Arc<Instrumented>, ModuleError> {
    use sha2::{Digest, Sha256};
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Mutex, OnceLock};
    type Cache = (HashMap<[u8; 32], Arc<Instrumented>>, VecDeque<[u8; 32]>);
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let key: [u8; 32] = Sha256::digest(module).into();
    if let Some(hit) = cache.lock().ok().and_then(|c| c.0.get(&key).cloned()) {
        return Ok(hit);
    }
    // The disk cache (when configured) survives processes: `plasm run` is one.
    // Keyed by the plasm build and the metering: an entry another build wrote
    // is never used (its instrumentation may differ).
    let disk_key = format!(
        "{}.{}.{}.instr",
        hex::encode(key),
        instrument::METERING.replace('/', "-"),
        env!("CARGO_PKG_VERSION")
    );
    let from_disk = cache::global()
        .and_then(|c| c.get(&disk_key))
        .and_then(|raw| Instrumented::from_cache_bytes(&raw));
    let fresh = match from_disk {
        Some(hit) => Arc::new(hit),
        None => {
            let made = Arc::new(instrument::instrument(module, wasi::signature)?);
            if let Some(c) = cache::global() {
                c.put(&disk_key, &made.to_cache_bytes());
            }
            made
        }
    };
    if let Ok(mut c) = cache.lock() {
        if c.0.len() >= CACHE_ENTRIES
            && let Some(old) = c.1.pop_front()
        {
            c.0.remove(&old);
        }
        if c.0.insert(key, fresh.clone()).is_none() {
            c.1.push_back(key);
        }
    }
    Ok(fresh)
}

/// Validates, instruments and checks a module against the request, then runs it.
pub fn run<R: Runtime + ?Sized>(runtime: &R, request: &ExecRequest) -> ExecResult {
    phase::enter(phase::Phase::Compile);
    let module = match instrumented(&request.module) {
        Ok(m) => m,
        Err(e) => return ExecResult::refused(Outcome::InvalidModule, e.to_string()),
    };
    // Tables and the instance count against the memory limit before linear memory.
    let reserved = module.reserved_bytes();
    if reserved > request.limits.memory_bytes {
        return ExecResult::refused(
            Outcome::MemoryLimit,
            format!(
                "{} tables of {} entries and the instance need {reserved} bytes, above the memory limit of {} bytes",
                module.tables, module.table_entries, request.limits.memory_bytes
            ),
        );
    }
    let cap_pages = module.memory_cap_bytes(request.limits.memory_bytes) / 65536;
    if let Some(initial) = module.initial_pages
        && initial > cap_pages
    {
        return ExecResult::refused(
            Outcome::MemoryLimit,
            format!(
                "initial memory of {initial} pages exceeds the cap of {cap_pages} pages ({} bytes of the memory limit go to tables and the instance)",
                reserved
            ),
        );
    }
    match module.exports.get(&request.entry) {
        Some((0, results)) if results.is_empty() || results == &[wasmparser::ValType::I32] => {}
        Some(_) => {
            return ExecResult::refused(
                Outcome::InvalidModule,
                format!(
                    "entry \"{}\" must take no parameters and return nothing or one i32",
                    request.entry
                ),
            );
        }
        None => {
            return ExecResult::refused(
                Outcome::InvalidModule,
                format!("module exports no function \"{}\"", request.entry),
            );
        }
    }
    runtime.execute(&module, request)
}
