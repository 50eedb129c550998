//! plasm: the node of Phase Open.
//!
//! The library holds everything: manifests and their schema ([`manifest`]), the
//! canonical JSON that hashes and signatures cover ([`jcs`]), the node identity
//! ([`identity`]), signed receipts ([`receipt`]), the metered WebAssembly sandbox
//! and its worker pool ([`runtime`]), and the local job path that ties them
//! together ([`job`]). The `plasm` binary only parses arguments and calls in.

/// `println!` for command results: a reader that has gone (`plasm node status |
/// head -1`) ends the command quietly instead of a panic.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            $crate::cli::stdout_failed(e)
        }
    }};
}

pub mod api;
pub mod apiclient;
mod apiclient_tls;
#[cfg(feature = "wasmtime")]
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod execution;
pub mod identity;
pub mod jcs;
pub mod job;
pub mod manifest;
pub mod net;
pub mod node;
pub mod notify;
pub mod privfile;
pub mod receipt;
pub mod runtime;
pub mod sched;
pub mod service;
pub mod sim;
pub mod store;
pub mod time;
