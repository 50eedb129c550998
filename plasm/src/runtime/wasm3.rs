//! The wasm3 runtime (through the `wasm3x` binding of Wasm3 0.9.0).
//!
//! Wasm3 is an interpreter: no JIT, so the node can run with W^X memory. Its
//! store is not `Send`, so a fresh engine, store and instance live and die inside
//! one call on one worker thread. Limits are enforced by the instrumented bytes,
//! not by wasm3: it has no memory-limit setter and no interrupt.

use super::instrument::{
    DEPTH_EXPORT, FUEL_EXPORT, Instrumented, MEM_MAX_EXPORT, MEM_REFUSED_EXPORT, METERING,
    STACK_LIMIT, START_EXPORT,
};
use super::wasi::{self, HostStop, WasiCtx};
use super::{Ending, ExecRequest, ExecResult, Observed, Outcome, Runtime, conclude, trap};
use crate::execution::RuntimeInfo;
use wasm3x::{Config, Engine, Linker, Module, Store, Val};

/// Version of the bundled Wasm3 interpreter.
pub const WASM3_VERSION: &str = "0.9.0";
/// Interpreter value-stack size per job: 32 bytes per slot of the logical
/// limit, four times what a frame needs, so the logical limit always stops deep
/// recursion first (the memory is reserved lazily).
const STACK_BYTES: usize = STACK_LIMIT as usize * 32;

/// The wasm3 [`Runtime`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Wasm3Runtime;

impl Runtime for Wasm3Runtime {
    fn info(&self) -> RuntimeInfo {
        RuntimeInfo {
            name: "wasm3".into(),
            version: WASM3_VERSION.into(),
            metering: METERING.into(),
            config_sha256: RuntimeInfo::config_hash(&format!(
                "engine=wasm3 {WASM3_VERSION}; stack_bytes={STACK_BYTES}; features=wasm2-simd-gc_types; metering={METERING}"
            )),
        }
    }

    fn execute(&self, module: &Instrumented, req: &ExecRequest) -> ExecResult {
        let limit = req.limits.fuel;
        let mut config = Config::new();
        config.stack_size(STACK_BYTES);
        let engine = Engine::new(&config);
        let ctx = WasiCtx::new(
            &req.args,
            &req.env,
            req.stdin.clone(),
            usize::try_from(req.limits.output_bytes).unwrap_or(usize::MAX),
            req.random_seed,
        )
        .with_budget(req.limits.fuel);
        let mut store = Store::new(&engine, ctx);
        let compiled = match Module::new(&engine, &module.bytes) {
            Ok(m) => m,
            Err(e) => {
                return ExecResult::refused(
                    Outcome::InvalidModule,
                    format!("wasm3 refused the module: {e}"),
                );
            }
        };
        let mut linker = Linker::new(&engine);
        if let Err(e) = wasi::link(&mut linker) {
            return ExecResult::refused(
                Outcome::InvalidModule,
                format!("linking WASI failed: {e}"),
            );
        }
        super::phase::enter(super::phase::Phase::Run);
        let instance = match linker.instantiate(&mut store, &compiled) {
            Ok(i) => i,
            Err(e) => {
                return ExecResult::refused(
                    Outcome::Trapped,
                    format!("instantiation failed: {}", trap_reason(&e)),
                );
            }
        };
        let global = |name: &str| instance.get_global(&store, name);
        let (Some(fuel), Some(mem_max), Some(refused), Some(depth)) = (
            global(FUEL_EXPORT),
            global(MEM_MAX_EXPORT),
            global(MEM_REFUSED_EXPORT),
            global(DEPTH_EXPORT),
        ) else {
            return ExecResult::refused(
                Outcome::InvalidModule,
                "instrumentation globals missing".into(),
            );
        };
        let cap_pages = i32::try_from(module.memory_cap_bytes(req.limits.memory_bytes) / 65536)
            .unwrap_or(i32::MAX);
        let set = fuel
            .set(
                &mut store,
                Val::I64(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .and_then(|()| mem_max.set(&mut store, Val::I32(cap_pages)));
        if let Err(e) = set {
            return ExecResult::refused(Outcome::InvalidModule, format!("cannot set fuel: {e}"));
        }

        let mut call = |name: &str| -> Result<Option<i64>, wasm3x::Error> {
            // Each call from the host starts at the bottom of the logical stack.
            depth.set(&mut store, Val::I32(0))?;
            let f = instance
                .get_func(&store, name)
                .ok_or_else(|| wasm3x::Error::new(format!("no exported function {name}")))?;
            let n = f.ty(&store)?.results().len();
            let mut out = vec![Val::I32(0); n];
            f.call(&mut store, &[], &mut out)?;
            Ok(match out.first() {
                Some(Val::I32(v)) => Some(i64::from(*v)),
                _ => None,
            })
        };
        let result = if module.has_start {
            call(START_EXPORT).and_then(|_| call(&req.entry))
        } else {
            call(&req.entry)
        };
        let ending = match result {
            Ok(code) => Ending::Returned(code),
            Err(e) => match host_stop(&e) {
                Some(stop) => Ending::Stopped(stop),
                None => Ending::Trapped(trap_reason(&e)),
            },
        };
        let fuel_left = match fuel.get(&store) {
            Ok(Val::I64(v)) => v,
            _ => 0,
        };
        let grow_refused = matches!(refused.get(&store), Ok(Val::I32(1)));
        let depth = match depth.get(&store) {
            Ok(Val::I32(v)) => v as u32,
            _ => 0,
        };
        let ctx = store.data_mut();
        conclude(
            req,
            Observed {
                ending,
                fuel_left,
                grow_refused,
                depth,
                stdout: std::mem::take(&mut ctx.stdout),
                stderr: std::mem::take(&mut ctx.stderr),
            },
        )
    }
}

fn host_stop(e: &wasm3x::Error) -> Option<HostStop> {
    let source = std::error::Error::source(e)?;
    source.downcast_ref::<HostStop>().copied()
}

/// Wasm3's trap messages, mapped to plasm's canonical names.
fn trap_reason(e: &wasm3x::Error) -> String {
    let s = e.to_string();
    let known = [
        ("unreachable", trap::UNREACHABLE),
        ("out of bounds memory access", trap::MEMORY_OUT_OF_BOUNDS),
        ("divide by zero", trap::DIVIDE_BY_ZERO),
        ("integer overflow", trap::INTEGER_OVERFLOW),
        ("invalid conversion", trap::BAD_CONVERSION),
        ("indirect call type mismatch", trap::INDIRECT_CALL_TYPE),
        ("undefined element", trap::TABLE_OUT_OF_BOUNDS),
        ("out of bounds table access", trap::TABLE_OUT_OF_BOUNDS),
        ("null table element", trap::NULL_ELEMENT),
        ("uninitialized element", trap::NULL_ELEMENT),
        ("stack overflow", trap::NATIVE_STACK),
        // Instantiation: an element or data segment beyond its table or memory.
        ("table underflow", trap::TABLE_OUT_OF_BOUNDS),
        ("table overflow", trap::TABLE_OUT_OF_BOUNDS),
        ("data segment", trap::MEMORY_OUT_OF_BOUNDS),
        ("memory underflow", trap::MEMORY_OUT_OF_BOUNDS),
        ("memory overflow", trap::MEMORY_OUT_OF_BOUNDS),
    ];
    match known.iter().find(|(needle, _)| s.contains(needle)) {
        Some((_, name)) => (*name).to_owned(),
        None => {
            let s = s.strip_prefix("wasm trap: ").unwrap_or(&s);
            let s = s.strip_prefix("[trap] ").unwrap_or(s);
            s.chars().take(512).collect()
        }
    }
}
