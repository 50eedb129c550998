//! The engines a node offers, and the choice between them per job.
//!
//! A manifest may ask for one engine (`requirements.runtime`: `wasm3` or
//! `wasmtime`; `any` or nothing means the node's default). A node offers the
//! engines in `runtime.engines` (default both) and runs unasked jobs on
//! `runtime.default` (default wasmtime; wasm3 is for hosts that forbid
//! writable+executable memory and for the smallest footprint). Because both run
//! the same instrumented bytes, the choice changes only the receipt's runtime
//! fields, never the job's result.

use super::wasm3::Wasm3Runtime;
#[cfg(feature = "wasmtime")]
pub use super::wasmtime::EngineError;
#[cfg(feature = "wasmtime")]
use super::wasmtime::WasmtimeRuntime;

/// Why an engine could not be set up (this build has no wasmtime).
#[cfg(not(feature = "wasmtime"))]
#[derive(Debug, thiserror::Error)]
#[error("wasmtime engine: not in this build (built without the `wasmtime` feature)")]
pub struct EngineError;
use super::{ExecRequest, ExecResult, Instrumented, Outcome, Runtime};
use crate::execution::RuntimeInfo;
use std::sync::Arc;

/// An engine plasm can run jobs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineName {
    /// The Wasm3 interpreter.
    Wasm3,
    /// wasmtime with Cranelift.
    Wasmtime,
}

/// The requirement that accepts any engine.
pub const ANY: &str = "any";

impl EngineName {
    /// Every engine, in the default order of preference.
    pub const ALL: [Self; 2] = [Self::Wasmtime, Self::Wasm3];

    /// The spelling in manifests, configuration and capability keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wasm3 => "wasm3",
            Self::Wasmtime => "wasmtime",
        }
    }

    /// Parses a spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl std::fmt::Display for EngineName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which engines to offer, and which runs jobs that do not ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineChoice {
    /// Engines offered (not empty).
    pub offered: Vec<EngineName>,
    /// The default (one of `offered`).
    pub default: EngineName,
}

impl Default for EngineChoice {
    fn default() -> Self {
        Self {
            offered: EngineName::ALL.to_vec(),
            default: EngineName::Wasmtime,
        }
    }
}

impl EngineChoice {
    /// Only `engine`, as `plasm run --runtime` asks.
    pub fn only(engine: EngineName) -> Self {
        Self {
            offered: vec![engine],
            default: engine,
        }
    }

    /// The engine a job asking for `requested` runs on, if offered here.
    pub fn resolve(&self, requested: Option<&str>) -> Option<EngineName> {
        match requested {
            None | Some(ANY) => Some(self.default),
            Some(name) => EngineName::parse(name).filter(|e| self.offered.contains(e)),
        }
    }
}

/// A [`Runtime`] that runs each job on the engine it asks for.
pub struct Engines {
    choice: EngineChoice,
    wasm3: Option<Wasm3Runtime>,
    #[cfg(feature = "wasmtime")]
    wasmtime: Option<WasmtimeRuntime>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("choice", &self.choice)
            .finish_non_exhaustive()
    }
}

impl Engines {
    /// Sets up the engines in `choice`.
    pub fn new(choice: EngineChoice) -> Result<Arc<Self>, EngineError> {
        #[cfg(feature = "wasmtime")]
        let wasmtime = if choice.offered.contains(&EngineName::Wasmtime) {
            Some(WasmtimeRuntime::new()?)
        } else {
            None
        };
        #[cfg(not(feature = "wasmtime"))]
        if choice.offered.contains(&EngineName::Wasmtime) {
            return Err(EngineError);
        }
        Ok(Arc::new(Self {
            wasm3: choice
                .offered
                .contains(&EngineName::Wasm3)
                .then_some(Wasm3Runtime),
            #[cfg(feature = "wasmtime")]
            wasmtime,
            choice,
        }))
    }

    /// What is offered.
    pub fn choice(&self) -> &EngineChoice {
        &self.choice
    }

    fn engine(&self, name: EngineName) -> Option<&dyn Runtime> {
        match name {
            EngineName::Wasm3 => self.wasm3.as_ref().map(|r| r as &dyn Runtime),
            #[cfg(feature = "wasmtime")]
            EngineName::Wasmtime => self.wasmtime.as_ref().map(|r| r as &dyn Runtime),
            #[cfg(not(feature = "wasmtime"))]
            EngineName::Wasmtime => None,
        }
    }
}

impl Runtime for Engines {
    fn info(&self) -> RuntimeInfo {
        self.engine(self.choice.default)
            .map(Runtime::info)
            .unwrap_or_else(|| Wasm3Runtime.info())
    }

    fn info_for(&self, req: &ExecRequest) -> RuntimeInfo {
        self.choice
            .resolve(req.engine.as_deref())
            .and_then(|e| self.engine(e))
            .map_or_else(|| self.info(), Runtime::info)
    }

    fn offers(&self, requested: Option<&str>) -> bool {
        self.choice.resolve(requested).is_some()
    }

    fn execute(&self, module: &Instrumented, req: &ExecRequest) -> ExecResult {
        let Some(engine) = self
            .choice
            .resolve(req.engine.as_deref())
            .and_then(|e| self.engine(e))
        else {
            return ExecResult::refused(
                Outcome::InvalidModule,
                format!(
                    "engine {} is not offered here",
                    req.engine.as_deref().unwrap_or(ANY)
                ),
            );
        };
        let mut result = engine.execute(module, req);
        result.runtime = Some(engine.info());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_only_on_an_engine_offered_here() {
        let both = EngineChoice::default();
        assert_eq!(both.resolve(None), Some(EngineName::Wasmtime));
        assert_eq!(both.resolve(Some(ANY)), Some(EngineName::Wasmtime));
        assert_eq!(both.resolve(Some("wasm3")), Some(EngineName::Wasm3));
        assert_eq!(both.resolve(Some("wasm4")), None);
        let small = EngineChoice::only(EngineName::Wasm3);
        assert_eq!(small.resolve(None), Some(EngineName::Wasm3));
        assert_eq!(small.resolve(Some("wasmtime")), None);
    }
}
