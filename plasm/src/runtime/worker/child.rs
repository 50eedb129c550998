//! The worker side: `plasm worker`, a process that runs jobs its node sends.
//!
//! It enters its sandbox first, says hello, then answers one job at a time on
//! its pipes until stdin closes. It holds no key and opens no file: the node
//! signs receipts, and instrumented and compiled modules are cached in the
//! worker's memory only (decision 0033), so nothing a worker writes is ever
//! loaded by another process.

use super::protocol::{self, Hello};
use super::sandbox;
use crate::runtime::engines::{EngineChoice, Engines};
use crate::runtime::phase::{self, Phase};
use crate::runtime::{ExecResult, Outcome, Runtime};
use std::io::{BufReader, Write};
use std::panic::AssertUnwindSafe;

/// Largest module or stdin a worker reads (the node's own bounds are lower).
const MAX_INPUT: usize = 1 << 30;

fn say(tag: u8, body: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    protocol::write_frame(&mut out, tag, body)?;
    out.flush()
}

/// Runs a worker until its node closes the pipe; returns the process status.
pub fn serve(choice: EngineChoice, memory_bytes: u64) -> u8 {
    let report = sandbox::enter(memory_bytes);
    let engines = match Engines::new(choice) {
        Ok(e) => e,
        Err(_) => return 3,
    };
    let hello = Hello {
        protocol: protocol::VERSION,
        plasm: env!("CARGO_PKG_VERSION").into(),
        sandbox: report,
    };
    let Ok(hello) = serde_json::to_vec(&hello) else {
        return 3;
    };
    if say(protocol::HELLO, &hello).is_err() {
        return 1;
    }
    phase::listen(|p| {
        let _ = say(
            protocol::PHASE,
            match p {
                Phase::Compile => b"C",
                Phase::Run => b"R",
            },
        );
    });
    // Jobs run on a thread with the pool's stack, not on the main thread's
    // (RLIMIT_STACK, 8 MiB by default): wasmtime's guest stack and wasm3's native
    // budget (decision 0046) must fit in it whatever the environment set.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(crate::runtime::pool::WORKER_STACK_BYTES)
            .spawn_scoped(s, || answer(&engines))
            .map_or(3, |h| h.join().unwrap_or(1))
    })
}

/// Answers jobs on the pipes until the node closes them.
fn answer(engines: &Engines) -> u8 {
    let mut input = BufReader::new(std::io::stdin().lock());
    loop {
        let request = match protocol::read_job(&mut input, MAX_INPUT) {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(_) => return 2,
        };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| engines.run_job(&request)))
            .unwrap_or_else(|_| {
                ExecResult::refused(Outcome::Trapped, "internal runtime error".into())
            });
        let mut out = std::io::stdout().lock();
        if protocol::write_result(&mut out, &result).is_err() {
            return 1;
        }
    }
}
