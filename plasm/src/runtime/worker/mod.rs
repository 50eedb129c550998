//! Worker processes: strangers' code runs outside the node.
//!
//! A node never validates, instruments, compiles or executes a job in its own
//! process: an allocation failure inside Cranelift aborts a whole process, and
//! `catch_unwind` cannot stop that. Instead each pool thread hands the job to a
//! pre-spawned worker process of the same binary (`plasm worker`), which drops
//! its privileges before it reads a byte ([`sandbox`]), runs the job with the
//! in-process engines and answers over its pipes ([`protocol`]). The supervisor
//! ([`supervisor::ProcessRuntime`]) holds each job to a compile deadline and a
//! run deadline derived from the fuel limit, kills the worker on cancel, and
//! replaces any worker that dies: a crash costs only its job, which ends with
//! an [`super::AbortKind`] and no receipt. Decisions 0033 (worker model and
//! outcomes) and 0034 (sandbox).

pub mod child;
pub mod protocol;
pub mod sandbox;
pub mod supervisor;

pub use sandbox::SandboxReport;
pub use supervisor::{ProcessRuntime, Settings, WorkerError};

/// Sends SIGKILL to a worker process (errors ignored: it may be gone already).
pub(crate) fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}
