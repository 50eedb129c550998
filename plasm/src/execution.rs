//! What an execution produced, in the words both the runtimes and the receipts use.
//!
//! The runtimes report an [`Outcome`] and describe themselves with a
//! [`RuntimeInfo`]; receipts record both. The types live here, below both
//! layers, so the runtime never imports the receipt module and the receipt
//! module never imports the runtime (the layering test in `tests/layers.rs`
//! keeps it so).

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The job returned from its entry point or called `proc_exit`.
    Exited,
    /// The job trapped (unreachable, out-of-bounds access, stack overflow...).
    Trapped,
    /// The job used up its fuel.
    OutOfFuel,
    /// The job needed more memory than `limits.memory_bytes`.
    MemoryLimit,
    /// The job wrote more than `limits.output_bytes` to stdout or stderr.
    OutputLimit,
    /// The module was refused before running.
    InvalidModule,
    /// The job's calls went deeper than the logical stack-height limit
    /// (receipt v2 only; the same depth on every engine).
    StackOverflow,
}

impl Outcome {
    /// The receipt spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Trapped => "trapped",
            Self::OutOfFuel => "out_of_fuel",
            Self::MemoryLimit => "memory_limit",
            Self::OutputLimit => "output_limit",
            Self::InvalidModule => "invalid_module",
            Self::StackOverflow => "stack_overflow",
        }
    }

    /// Parses the receipt spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Exited,
            Self::Trapped,
            Self::OutOfFuel,
            Self::MemoryLimit,
            Self::OutputLimit,
            Self::InvalidModule,
            Self::StackOverflow,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// Runtime that produced a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// e.g. `wasm3`.
    pub name: String,
    /// e.g. `0.9.0`.
    pub version: String,
    /// Metering scheme whose fuel counts the receipt reports, e.g. `plasm-fuel/1`.
    pub metering: String,
    /// Hex SHA-256 of the engine's configuration as the runtime describes it
    /// (stack size, features, fuel model): two receipts with the same value ran
    /// under the same rules.
    pub config_sha256: String,
}

impl RuntimeInfo {
    /// The hex SHA-256 of a runtime's configuration description.
    pub fn config_hash(description: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(description.as_bytes()))
    }
}
