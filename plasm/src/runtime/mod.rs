//! The sandbox: a [`Runtime`] trait, the wasm3 implementation, and the worker pool.
//!
//! Every job goes through the same steps whatever the runtime: validate and
//! instrument the module ([`instrument`]), check it against the job's limits,
//! then execute the instrumented bytes with plasm's deterministic WASI ([`wasi`]).
//! The trait is the seam where a second runtime (wasmtime) plugs in; because the
//! metering lives in the bytes, both report the same fuel for the same job.

pub mod instrument;
pub mod pool;
pub mod wasi;
pub mod wasm3;

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
        }
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
    let fresh = Arc::new(instrument::instrument(module, wasi::signature)?);
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
pub fn run(runtime: &dyn Runtime, request: &ExecRequest) -> ExecResult {
    let module = match instrumented(&request.module) {
        Ok(m) => m,
        Err(e) => return ExecResult::refused(Outcome::InvalidModule, e.to_string()),
    };
    let cap_pages = request.limits.memory_bytes / 65536;
    if let Some(initial) = module.initial_pages
        && initial > cap_pages
    {
        return ExecResult::refused(
            Outcome::MemoryLimit,
            format!("initial memory of {initial} pages exceeds the cap of {cap_pages} pages"),
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
