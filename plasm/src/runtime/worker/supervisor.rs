//! The node side: a [`Runtime`] that runs every job in a supervised worker process.
//!
//! Pool threads stay the unit of concurrency (and of the queue, capacity and
//! shutdown rules in [`crate::runtime::pool`]); each one borrows an idle worker
//! process, or starts one, for the length of a job and blocks on its pipe. A
//! watchdog thread kills a worker whose job passes its deadline: the compile
//! deadline while the worker prepares the module, then a run deadline derived
//! from the fuel limit (a backstop: fuel prices bound time first). Cancelling a
//! job kills its worker. Whatever ends a worker, its job ends with an
//! [`AbortKind`] and the next job gets a fresh worker. Workers are started from
//! one long-lived thread with `PR_SET_PDEATHSIG`, so they die with the node.

use super::SandboxReport;
use super::protocol::{self, Hello};
use crate::execution::RuntimeInfo;
use crate::runtime::engines::{EngineChoice, Engines};
use crate::runtime::{AbortKind, ExecRequest, ExecResult, Instrumented, Runtime};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How workers are started and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The `plasm` binary to start as `plasm worker` (`None`: this one, see [`worker_exe`]).
    pub exe: Option<PathBuf>,
    /// `RLIMIT_DATA` of each worker: the job's memory, compilation and caches.
    pub memory_bytes: u64,
    /// Longest validation + instrumentation + compilation of one module.
    pub compile_timeout: Duration,
    /// Added to the fuel-derived run deadline.
    pub run_base: Duration,
    /// Nanoseconds of wall time allowed per unit of fuel.
    pub ns_per_fuel: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            exe: None,
            memory_bytes: 2 << 30,
            compile_timeout: Duration::from_secs(10),
            run_base: Duration::from_secs(5),
            ns_per_fuel: 20,
        }
    }
}

impl Settings {
    /// The wall deadline of a job's run phase.
    pub fn run_deadline(&self, fuel: u64) -> Duration {
        self.run_base
            .saturating_add(Duration::from_nanos(fuel.saturating_mul(self.ns_per_fuel)))
    }
}

/// Why workers cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No `plasm` binary to start as a worker.
    #[error(
        "no plasm binary to start workers from ({0}); set PLASM_WORKER_EXE to the plasm binary"
    )]
    NoExe(String),
    /// The worker did not start or did not say hello.
    #[error("cannot start a worker process ({exe}): {reason}")]
    Start {
        /// The binary.
        exe: String,
        /// Why.
        reason: String,
    },
}

/// The binary workers are started from: `PLASM_WORKER_EXE`, else this process's
/// executable when it is `plasm`, else a `plasm` next to it or one directory up
/// (a test harness in `target/debug/deps`).
pub fn worker_exe() -> Result<PathBuf, WorkerError> {
    if let Some(exe) = std::env::var_os("PLASM_WORKER_EXE") {
        return Ok(PathBuf::from(exe));
    }
    let me = std::env::current_exe().map_err(|e| WorkerError::NoExe(e.to_string()))?;
    if me.file_name().is_some_and(|n| n == "plasm") {
        return Ok(me);
    }
    let dir = me.parent().unwrap_or(Path::new("."));
    [dir.join("plasm"), dir.join("../plasm")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| WorkerError::NoExe(format!("{} is not plasm", me.display())))
}

/// Counters of a worker supervisor, for `/metrics`.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Worker processes started.
    pub spawned: Counter,
    /// Jobs ended by a crashed worker.
    pub crashed: Counter,
    /// Jobs ended by their compile limit.
    pub compile_limit: Counter,
    /// Jobs ended by their wall deadline.
    pub deadline: Counter,
    /// Jobs cancelled while a worker ran them.
    pub cancelled: Counter,
}

struct Worker {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills and reaps the worker; its exit status, for the record.
    fn end(mut self) -> String {
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => describe(status),
            Err(e) => e.to_string(),
        }
    }

    /// Resident memory, bytes (from `/proc`; 0 when unknown).
    fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/statm", self.pid()))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * 4096)
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(6)) => "aborted (SIGABRT: an allocation failed)".into(),
        (None, Some(9)) => "killed (SIGKILL)".into(),
        (None, Some(31)) => "killed by its seccomp filter (SIGSYS)".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "ended".into(),
    }
}

/// A worker pid, when to kill it, and whether it was.
type Armed = (u32, Instant, Arc<AtomicBool>);

/// Kills workers whose job passed its deadline.
struct Watchdog {
    /// token → what to kill when.
    armed: Mutex<HashMap<u64, Armed>>,
    wake: Condvar,
    next: AtomicU64,
}

impl Watchdog {
    fn start() -> Arc<Self> {
        let dog = Arc::new(Self {
            armed: Mutex::default(),
            wake: Condvar::new(),
            next: AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&dog);
        let _ = std::thread::Builder::new()
            .name("plasm-watchdog".into())
            .spawn(move || {
                while let Some(dog) = weak.upgrade() {
                    dog.tick();
                }
            });
        dog
    }

    fn tick(&self) {
        let armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut wait = Duration::from_millis(500);
        for (pid, deadline, fired) in armed.values() {
            if *deadline <= now {
                if !fired.swap(true, Ordering::SeqCst) {
                    super::kill(*pid);
                }
            } else {
                wait = wait.min(*deadline - now);
            }
        }
        let _ = self.wake.wait_timeout(armed, wait);
    }

    fn arm(&self, pid: u32, after: Duration, fired: &Arc<AtomicBool>) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now()
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, (pid, deadline, fired.clone()));
        self.wake.notify_one();
        token
    }

    fn disarm(&self, token: u64) {
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token);
    }
}

type SpawnReply = mpsc::SyncSender<Result<(Worker, Hello), String>>;

/// Runs every job in a worker process.
pub struct ProcessRuntime {
    exe: PathBuf,
    choice: EngineChoice,
    local: Arc<Engines>,
    settings: Settings,
    idle: Mutex<Vec<Worker>>,
    running: Mutex<HashMap<u32, ()>>,
    report: SandboxReport,
    watchdog: Arc<Watchdog>,
    spawner: Mutex<mpsc::Sender<SpawnReply>>,
    /// Counters.
    pub stats: Arc<WorkerStats>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("exe", &self.exe)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn spawn_worker(exe: &Path, choice: &EngineChoice, memory: u64) -> Result<(Worker, Hello), String> {
    let offered: Vec<&str> = choice.offered.iter().map(|e| e.as_str()).collect();
    let mut child = Command::new(exe)
        .arg("worker")
        .arg("--engines")
        .arg(offered.join(","))
        .arg("--default")
        .arg(choice.default.as_str())
        .arg("--memory-bytes")
        .arg(memory.to_string())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no pipes".into());
    };
    let mut worker = Worker {
        child,
        input: BufWriter::new(input),
        output: BufReader::new(output),
    };
    let hello = protocol::expect(&mut worker.output, protocol::HELLO, protocol::MAX_HEADER)
        .map_err(|e| e.to_string())
        .and_then(|h| serde_json::from_slice::<Hello>(&h).map_err(|e| e.to_string()));
    match hello {
        Ok(h) if h.protocol == protocol::VERSION => Ok((worker, h)),
        Ok(h) => {
            let status = worker.end();
            Err(format!(
                "worker speaks protocol {} (plasm {}), this node {} ({status})",
                h.protocol,
                h.plasm,
                protocol::VERSION
            ))
        }
        Err(e) => {
            let status = worker.end();
            Err(format!("no hello ({e}; worker {status})"))
        }
    }
}

impl ProcessRuntime {
    /// Starts `prespawn` workers (at least one, which proves the binary works
    /// and reports the sandbox) for the engines in `choice`.
    pub fn new(
        choice: EngineChoice,
        settings: Settings,
        prespawn: usize,
    ) -> Result<Self, WorkerError> {
        let exe = match &settings.exe {
            Some(e) => e.clone(),
            None => worker_exe()?,
        };
        let local = Engines::new(choice.clone()).map_err(|e| WorkerError::Start {
            exe: exe.display().to_string(),
            reason: e.to_string(),
        })?;
        // One thread starts every worker and lives as long as this runtime, so
        // `PR_SET_PDEATHSIG`-style parent death is tied to it, not to a pool thread.
        let (tx, rx) = mpsc::channel::<SpawnReply>();
        let (spawn_exe, spawn_choice, memory) =
            (exe.clone(), choice.clone(), settings.memory_bytes);
        std::thread::Builder::new()
            .name("plasm-spawner".into())
            .spawn(move || {
                while let Ok(reply) = rx.recv() {
                    let _ = reply.send(spawn_worker(&spawn_exe, &spawn_choice, memory));
                }
            })
            .map_err(|e| WorkerError::Start {
                exe: exe.display().to_string(),
                reason: e.to_string(),
            })?;
        let mut runtime = Self {
            exe: exe.clone(),
            choice,
            local,
            settings,
            idle: Mutex::default(),
            running: Mutex::default(),
            report: SandboxReport::default(),
            watchdog: Watchdog::start(),
            spawner: Mutex::new(tx),
            stats: Arc::default(),
        };
        let mut idle = Vec::new();
        for _ in 0..prespawn.max(1) {
            let (worker, hello) = runtime.spawn().map_err(|reason| WorkerError::Start {
                exe: exe.display().to_string(),
                reason,
            })?;
            runtime.report = hello.sandbox;
            idle.push(worker);
        }
        runtime.idle = Mutex::new(idle);
        tracing::info!(sandbox = %runtime.report.summary(), "job isolation");
        for note in &runtime.report.notes {
            tracing::warn!(%note, "worker sandbox measure off");
        }
        Ok(runtime)
    }

    fn spawn(&self) -> Result<(Worker, Hello), String> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.spawner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(tx)
            .map_err(|_| "the worker spawner stopped".to_string())?;
        let got = rx
            .recv()
            .map_err(|_| "the worker spawner stopped".to_string())?;
        if got.is_ok() {
            self.stats.spawned.inc();
        }
        got
    }

    /// Kills every worker running a job (shutdown after its grace).
    pub fn kill_running(&self) {
        for pid in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
        {
            super::kill(*pid);
        }
    }

    fn take_worker(&self) -> Result<Worker, String> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(w) => Ok(w),
            None => self.spawn().map(|(w, _)| w),
        }
    }

    fn supervise(&self, req: &ExecRequest) -> ExecResult {
        if req.cancel.is_cancelled() {
            self.stats.cancelled.inc();
            return ExecResult::aborted(AbortKind::Cancelled, "stopped before it started".into());
        }
        let mut worker = match self.take_worker() {
            Ok(w) => w,
            Err(e) => {
                self.stats.crashed.inc();
                return ExecResult::aborted(
                    AbortKind::WorkerCrashed,
                    format!("no worker process could be started: {e}"),
                );
            }
        };
        let pid = worker.pid();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid, ());
        req.cancel.attach(Some(pid));
        let fired = Arc::new(AtomicBool::new(false));
        let mut token = self
            .watchdog
            .arm(pid, self.settings.compile_timeout, &fired);
        let mut compiling = true;
        let output_cap = usize::try_from(req.limits.output_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(16);
        let answer = (|| -> std::io::Result<ExecResult> {
            protocol::write_job(&mut worker.input, req)?;
            loop {
                let (tag, body) = protocol::read_frame(&mut worker.output, protocol::MAX_HEADER)?;
                match (tag, body.as_slice()) {
                    (protocol::PHASE, b"R") if compiling => {
                        compiling = false;
                        self.watchdog.disarm(token);
                        token = self.watchdog.arm(
                            pid,
                            self.settings.run_deadline(req.limits.fuel),
                            &fired,
                        );
                    }
                    (protocol::PHASE, _) => {}
                    (protocol::RESULT, head) => {
                        return protocol::read_result(&mut worker.output, head, output_cap);
                    }
                    _ => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "unexpected frame",
                        ));
                    }
                }
            }
        })();
        self.watchdog.disarm(token);
        req.cancel.attach(None);
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
        match answer {
            Ok(result) if !fired.load(Ordering::SeqCst) && !req.cancel.is_cancelled() => {
                // A worker that grew past a quarter of its limit (its module
                // caches, fragmentation) is replaced before it fails an innocent
                // job: the next job may need its memory plus a compile.
                if worker.rss() > self.settings.memory_bytes / 4 {
                    let _ = worker.end();
                } else {
                    self.idle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(worker);
                }
                result
            }
            _ => {
                let status = worker.end();
                let (kind, detail) = if req.cancel.is_cancelled() {
                    (
                        AbortKind::Cancelled,
                        "the worker running it was killed".to_string(),
                    )
                } else if fired.load(Ordering::SeqCst) && compiling {
                    (
                        AbortKind::CompileLimit,
                        format!(
                            "preparing the module took longer than {} s",
                            self.settings.compile_timeout.as_secs_f64()
                        ),
                    )
                } else if fired.load(Ordering::SeqCst) {
                    (
                        AbortKind::Deadline,
                        format!(
                            "the job ran longer than its wall deadline of {} s (fuel {} at {} ns per unit, plus {} s)",
                            self.settings.run_deadline(req.limits.fuel).as_secs_f64(),
                            req.limits.fuel,
                            self.settings.ns_per_fuel,
                            self.settings.run_base.as_secs_f64()
                        ),
                    )
                } else if compiling {
                    (
                        AbortKind::CompileLimit,
                        format!(
                            "preparing the module exhausted the worker (memory limit {} MiB): {status}",
                            self.settings.memory_bytes >> 20
                        ),
                    )
                } else {
                    (
                        AbortKind::WorkerCrashed,
                        format!("the worker process died while running the job: {status}"),
                    )
                };
                let counter = match kind {
                    AbortKind::Cancelled => &self.stats.cancelled,
                    AbortKind::CompileLimit => &self.stats.compile_limit,
                    AbortKind::Deadline => &self.stats.deadline,
                    AbortKind::WorkerCrashed => &self.stats.crashed,
                };
                counter.inc();
                tracing::warn!(kind = kind.as_str(), %detail, "job aborted");
                let mut result = ExecResult::aborted(kind, detail);
                result.runtime = Some(self.local.info_for(req));
                result
            }
        }
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        self.kill_running();
        for worker in self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = worker.end();
        }
    }
}

impl Runtime for ProcessRuntime {
    fn info(&self) -> RuntimeInfo {
        self.local.info()
    }

    fn info_for(&self, request: &ExecRequest) -> RuntimeInfo {
        self.local.info_for(request)
    }

    fn offers(&self, requested: Option<&str>) -> bool {
        self.choice.resolve(requested).is_some()
    }

    fn execute(&self, _module: &Instrumented, request: &ExecRequest) -> ExecResult {
        // Never used: run_job sends the whole job to a worker.
        self.supervise(request)
    }

    fn run_job(&self, request: &ExecRequest) -> ExecResult {
        self.supervise(request)
    }

    fn isolation(&self) -> Option<SandboxReport> {
        Some(self.report.clone())
    }

    fn kill_running(&self) {
        ProcessRuntime::kill_running(self);
    }

    fn worker_stats(&self) -> Option<Arc<WorkerStats>> {
        Some(self.stats.clone())
    }
}
