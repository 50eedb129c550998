//! Which step of a job a worker is in, told to whoever listens.
//!
//! A worker process reports when it moves from preparing a job (validation,
//! instrumentation, compilation) to running it, so its supervisor can hold the
//! compile step to its own deadline and name what a dying worker was doing.
//! In any other process nobody listens and a report costs one atomic load.

use std::sync::OnceLock;

/// A step of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Validating, instrumenting and compiling the module.
    Compile,
    /// Executing the guest.
    Run,
}

type Hook = Box<dyn Fn(Phase) + Send + Sync>;
static HOOK: OnceLock<Hook> = OnceLock::new();

/// Installs the listener (once per process; a worker does it at start).
pub fn listen(hook: impl Fn(Phase) + Send + Sync + 'static) {
    let _ = HOOK.set(Box::new(hook));
}

/// Reports entering `phase`.
pub fn enter(phase: Phase) {
    if let Some(hook) = HOOK.get() {
        hook(phase);
    }
}
