//! The wasmtime runtime (wasmtime 48, Cranelift), plasm's default engine.
//!
//! It executes the same instrumented bytes as wasm3, with the same WASI host
//! functions ([`wasi::call`]) registered on a wasmtime linker, so stdout,
//! stderr, exit code, outcome and fuel are identical on both engines; only the
//! receipt's runtime fields differ (decision 0028). wasmtime's own fuel is off:
//! plasm's instrumentation is the one fuel model, and it bounds time too (bulk
//! operations and host calls are charged by size), so there is no epoch
//! interruption: its check at every loop header cost 1.75x on a C sieve. A
//! `StoreLimits` sits just above the instrumented `memory.grow` cap.
//!
//! Determinism settings: no threads, no SIMD or relaxed SIMD, no proposals
//! beyond what plasm's validator admits, and no NaN canonicalization (a test
//! compares NaN bit patterns with wasm3, which does not canonicalize either).
//!
//! Compiled code is kept in memory (an [`InstancePre`] per module) and on disk
//! by instrumented-module hash and `Engine::precompile_compatibility_hash`; the
//! disk copy is deserialized only from the node's own cache ([`super::cache`]).

use super::instrument::{
    DEPTH_EXPORT, FUEL_EXPORT, Instrumented, MEM_MAX_EXPORT, MEM_REFUSED_EXPORT, MEMORY_EXPORT,
    METERING, START_EXPORT, WASI_MODULE,
};
use super::wasi::{self, Guest, HostStop, ParamType, WasiCtx};
use super::{Ending, ExecRequest, ExecResult, Observed, Outcome, Runtime, conclude, trap};
use crate::execution::RuntimeInfo;
use ::wasmtime::{
    Caller, Config, Engine, FuncType, InstancePre, Linker, Memory, Module, Store, StoreLimits,
    StoreLimitsBuilder, Trap, Val, ValType,
};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Version of the wasmtime crate plasm is built with.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Native stack for guest code: far above what `STACK_LIMIT` slots can use
/// (at most 65,536 frames of a few dozen bytes, or 2^18 slots of 16 bytes), and
/// below the pool's 64 MiB worker stacks.
const MAX_WASM_STACK: usize = 24 * 1024 * 1024;
/// Compiled modules kept in memory.
const MEMORY_CACHE: usize = 64;
/// Table entries a store may allocate.
const MAX_TABLE_ELEMENTS: usize = 10_000_000;

/// A job's store data.
struct State {
    wasi: WasiCtx,
    limits: StoreLimits,
}

/// Compiled modules by instrumented hash, with their insertion order (LRU-ish).
type Compiled = (HashMap<[u8; 32], InstancePre<State>>, VecDeque<[u8; 32]>);

/// The wasmtime [`Runtime`].
pub struct WasmtimeRuntime {
    engine: Engine,
    linker: Linker<State>,
    compat: String,
    compiled: Mutex<Compiled>,
}

impl std::fmt::Debug for WasmtimeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeRuntime")
            .field("compat", &self.compat)
            .finish_non_exhaustive()
    }
}

/// Why the wasmtime engine could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("wasmtime engine: {0}")]
pub struct EngineError(String);

fn config() -> Config {
    let mut c = Config::new();
    // Threads need a cargo feature plasm does not enable, so they are off.
    c.wasm_relaxed_simd(false)
        .wasm_simd(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_tail_call(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_extended_const(false)
        .cranelift_nan_canonicalization(false)
        .consume_fuel(false)
        .epoch_interruption(false)
        // Not async, but wasmtime checks max_wasm_stack against this field anyway.
        .async_stack_size(MAX_WASM_STACK)
        .max_wasm_stack(MAX_WASM_STACK);
    c
}

impl WasmtimeRuntime {
    /// Builds the engine and links plasm's WASI into it.
    pub fn new() -> Result<Self, EngineError> {
        let engine = Engine::new(&config()).map_err(|e| EngineError(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        link(&engine, &mut linker).map_err(|e| EngineError(e.to_string()))?;
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        Ok(Self {
            engine,
            linker,
            compat,
            compiled: Mutex::default(),
        })
    }

    /// The module ready to instantiate: from memory, the disk cache, or compiled now.
    fn prepare(&self, module: &Instrumented) -> Result<InstancePre<State>, String> {
        let key: [u8; 32] = Sha256::digest(&module.bytes).into();
        if let Some(pre) = self
            .compiled
            .lock()
            .ok()
            .and_then(|c| c.0.get(&key).cloned())
        {
            return Ok(pre);
        }
        let disk_key = format!(
            "{}.{}.{}.cwasm",
            hex::encode(key),
            self.compat,
            env!("CARGO_PKG_VERSION")
        );
        let disk = super::cache::global();
        let cached = disk
            .and_then(|c| c.get(&disk_key))
            .and_then(|bytes| deserialize_own(&self.engine, &bytes));
        let compiled = match cached {
            Some(m) => m,
            None => {
                let m = Module::new(&self.engine, &module.bytes)
                    .map_err(|e| format!("wasmtime refused the module: {e}"))?;
                if let (Some(c), Ok(bytes)) = (disk, m.serialize()) {
                    c.put(&disk_key, &bytes);
                }
                m
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&compiled)
            .map_err(|e| format!("linking WASI failed: {e}"))?;
        if let Ok(mut c) = self.compiled.lock() {
            if c.0.len() >= MEMORY_CACHE
                && let Some(old) = c.1.pop_front()
            {
                c.0.remove(&old);
            }
            if c.0.insert(key, pre.clone()).is_none() {
                c.1.push_back(key);
            }
        }
        Ok(pre)
    }
}

/// What [`WasmtimeRuntime::time_call`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// Compiling the module (Cranelift).
    pub compile: Duration,
    /// Instantiating the compiled module.
    pub instantiate: Duration,
    /// The exported function's call alone.
    pub call: Duration,
    /// Fuel used, for an instrumented module.
    pub fuel: Option<i64>,
}

impl WasmtimeRuntime {
    /// For `plasm bench`: compiles `bytes` (plain or instrumented), instantiates
    /// it and calls `func` with `args` as argv, timing each step apart. An
    /// instrumented module gets `fuel` and a 64 MiB memory cap.
    pub fn time_call(
        &self,
        bytes: &[u8],
        func: &str,
        args: &[String],
        fuel: Option<i64>,
    ) -> Result<Timed, String> {
        let t = std::time::Instant::now();
        let module = Module::new(&self.engine, bytes).map_err(|e| e.to_string())?;
        let compile = t.elapsed();
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| e.to_string())?;
        let wasi = WasiCtx::new(args, &[], vec![], 1 << 20, [0; 32]);
        let mut store = Store::new(
            &self.engine,
            State {
                wasi,
                limits: StoreLimitsBuilder::new().build(),
            },
        );
        let t = std::time::Instant::now();
        let instance = pre.instantiate(&mut store).map_err(|e| e.to_string())?;
        let instantiate = t.elapsed();
        let fuel_global = instance.get_global(&mut store, FUEL_EXPORT);
        if let (Some(g), Some(f)) = (fuel_global, fuel) {
            g.set(&mut store, Val::I64(f)).map_err(|e| e.to_string())?;
            if let Some(m) = instance.get_global(&mut store, MEM_MAX_EXPORT) {
                m.set(&mut store, Val::I32(1024))
                    .map_err(|e| e.to_string())?;
            }
        }
        let f = instance
            .get_func(&mut store, func)
            .ok_or_else(|| format!("no function {func}"))?;
        let mut out = vec![Val::I32(0); f.ty(&store).results().len()];
        let t = std::time::Instant::now();
        let result = f.call(&mut store, &[], &mut out);
        let call = t.elapsed();
        if let Err(e) = result
            && e.downcast_ref::<HostStop>() != Some(&HostStop::Exit(0))
        {
            return Err(e.to_string());
        }
        let fuel = match (fuel_global, fuel) {
            (Some(g), Some(f)) => g.get(&mut store).i64().map(|left| f - left),
            _ => None,
        };
        Ok(Timed {
            compile,
            instantiate,
            call,
            fuel,
        })
    }
}

/// Deserializes compiled code that this node wrote to its own 0600 cache and
/// whose digest was just checked ([`super::cache::DiskCache::get`]).
///
/// `Module::deserialize` is `unsafe` because wasmtime trusts the bytes to be
/// its own output: a forged file could run arbitrary machine code. The only
/// bytes that reach it come from the node's private cache directory, written
/// by `Module::serialize` of this same engine configuration (the compatibility
/// hash is in the file name, and wasmtime checks its version header too); a
/// peer's bytes never do (decision 0028).
#[allow(unsafe_code)]
fn deserialize_own(engine: &Engine, bytes: &[u8]) -> Option<Module> {
    // SAFETY: see above; `bytes` is this process's own serialized output.
    unsafe { Module::deserialize(engine, bytes) }.ok()
}

impl Runtime for WasmtimeRuntime {
    fn info(&self) -> RuntimeInfo {
        RuntimeInfo {
            name: "wasmtime".into(),
            version: WASMTIME_VERSION.into(),
            metering: METERING.into(),
            config_sha256: RuntimeInfo::config_hash(&format!(
                "engine=wasmtime {WASMTIME_VERSION}; cranelift; max_wasm_stack={MAX_WASM_STACK}; \
                 features=wasm2-simd-gc_types; nan_canonicalization=off; metering={METERING}"
            )),
        }
    }

    fn execute(&self, module: &Instrumented, req: &ExecRequest) -> ExecResult {
        let pre = match self.prepare(module) {
            Ok(p) => p,
            Err(e) => return ExecResult::refused(Outcome::InvalidModule, e),
        };
        super::phase::enter(super::phase::Phase::Run);
        let limit = req.limits.fuel;
        let wasi = WasiCtx::new(
            &req.args,
            &req.env,
            req.stdin.clone(),
            usize::try_from(req.limits.output_bytes).unwrap_or(usize::MAX),
            req.random_seed,
        )
        .with_budget(req.limits.fuel);
        // One page above plasm's own cap: the instrumented grow refuses first.
        let memory_cap = usize::try_from(req.limits.memory_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(65536);
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_cap)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(1)
            .build();
        let mut store = Store::new(&self.engine, State { wasi, limits });
        store.limiter(|s| &mut s.limits);
        let instance = match pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                return ExecResult::refused(
                    Outcome::Trapped,
                    format!("instantiation failed: {}", trap_reason(&e)),
                );
            }
        };
        let mut global = |name: &str| instance.get_global(&mut store, name);
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
        let mut call = |name: &str| -> ::wasmtime::Result<Option<i64>> {
            // Each call from the host starts at the bottom of the logical stack.
            depth.set(&mut store, Val::I32(0))?;
            let f = instance
                .get_func(&mut store, name)
                .ok_or_else(|| ::wasmtime::Error::msg(format!("no exported function {name}")))?;
            let n = f.ty(&store).results().len();
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
            Err(e) => match e.downcast_ref::<HostStop>() {
                Some(stop) => Ending::Stopped(*stop),
                None => Ending::Trapped(trap_reason(&e)),
            },
        };
        let fuel_left = fuel.get(&mut store).i64().unwrap_or(0);
        let grow_refused = refused.get(&mut store).i32() == Some(1);
        let depth = depth.get(&mut store).i32().unwrap_or(0) as u32;
        let ctx = &mut store.data_mut().wasi;
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

/// wasmtime's traps, mapped to plasm's canonical names.
fn trap_reason(e: &::wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => trap::UNREACHABLE.into(),
        Some(Trap::MemoryOutOfBounds) => trap::MEMORY_OUT_OF_BOUNDS.into(),
        Some(Trap::IntegerDivisionByZero) => trap::DIVIDE_BY_ZERO.into(),
        Some(Trap::IntegerOverflow) => trap::INTEGER_OVERFLOW.into(),
        Some(Trap::BadConversionToInteger) => trap::BAD_CONVERSION.into(),
        Some(Trap::BadSignature) => trap::INDIRECT_CALL_TYPE.into(),
        Some(Trap::TableOutOfBounds) => trap::TABLE_OUT_OF_BOUNDS.into(),
        Some(Trap::IndirectCallToNull) => trap::NULL_ELEMENT.into(),
        Some(Trap::StackOverflow) => trap::NATIVE_STACK.into(),
        _ => e.to_string().chars().take(512).collect(),
    }
}

/// The wasmtime view of a host call.
struct WasmtimeGuest<'a, 'b> {
    caller: &'a mut Caller<'b, State>,
    memory: Option<Memory>,
}

impl Guest for WasmtimeGuest<'_, '_> {
    fn ctx(&mut self) -> &mut WasiCtx {
        &mut self.caller.data_mut().wasi
    }
    fn read(&mut self, ptr: u32, buf: &mut [u8]) -> Result<(), i32> {
        let mem = self.memory.ok_or(wasi::EFAULT)?;
        mem.read(&*self.caller, ptr as usize, buf)
            .map_err(|_| wasi::EFAULT)
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), i32> {
        let mem = self.memory.ok_or(wasi::EFAULT)?;
        mem.write(&mut *self.caller, ptr as usize, bytes)
            .map_err(|_| wasi::EFAULT)
    }
}

/// Links every preview1 function, each a thin shim over [`wasi::call`].
fn link(engine: &Engine, linker: &mut Linker<State>) -> ::wasmtime::Result<()> {
    for (name, params, returns) in wasi::preview1() {
        let params = params.iter().map(|t| match t {
            ParamType::I32 => ValType::I32,
            ParamType::I64 => ValType::I64,
        });
        let results: &[ValType] = if returns { &[ValType::I32] } else { &[] };
        let ty = FuncType::new(engine, params, results.iter().cloned());
        linker.func_new(
            WASI_MODULE,
            name,
            ty,
            move |mut caller: Caller<'_, State>, args: &[Val], out: &mut [Val]| {
                let mut raw = [0i64; 9];
                for (slot, v) in raw.iter_mut().zip(args) {
                    *slot = match v {
                        Val::I32(x) => i64::from(*x),
                        Val::I64(x) => *x,
                        _ => 0,
                    };
                }
                // `memory` only for the bench's uninstrumented modules.
                let memory = caller
                    .get_export(MEMORY_EXPORT)
                    .or_else(|| caller.get_export("memory"))
                    .and_then(|e| e.into_memory());
                let mut guest = WasmtimeGuest {
                    caller: &mut caller,
                    memory,
                };
                let errno = wasi::call(&mut guest, name, &raw[..args.len().min(9)])
                    .map_err(::wasmtime::Error::new)?;
                if let Some(slot) = out.first_mut() {
                    *slot = Val::I32(errno);
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}
