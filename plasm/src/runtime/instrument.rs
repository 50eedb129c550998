//! Module validation, fuel metering and a stack-height limit by bytecode
//! instrumentation (`plasm-fuel/2`).
//!
//! Every runtime executes the bytes this module produces, so fuel counts are a
//! property of the module and its input, not of the interpreter. The scheme:
//!
//! * an exported mutable i64 global `__plasm_fuel` holds the remaining fuel; the
//!   host sets it before any guest code (the start function included) runs;
//! * every function charges, on entry, the number of its instructions that lie
//!   outside any loop; every loop charges, at the top of each iteration, the
//!   number of instructions in its body outside nested loops. Charges are static
//!   upper bounds (a branch that skips code was still paid for), and a charge that
//!   drives the counter below zero executes `unreachable`. Every backward branch
//!   targets a loop header and every call enters a function, so no execution can
//!   run unpaid for long: `(loop (br 0))` costs one unit per iteration;
//! * `memory.grow` becomes a call to an injected function that refuses (returns
//!   -1, as Wasm specifies for a failed grow) beyond the page cap in the exported
//!   global `__plasm_mem_max`, recording the refusal in `__plasm_mem_refused`;
//! * every function raises the exported i32 global `__plasm_depth` on entry by
//!   its frame cost ([`FRAME_SLOTS`] + parameters + locals + highest operand
//!   stack, known exactly from validation) and traps past [`STACK_LIMIT`]; after
//!   each call the caller writes its own level back, so exits need no code. Both
//!   engines' native stacks are far above the limit, so deep recursion stops at
//!   the same call on every engine (`stack_overflow`). Injected code is not
//!   charged, so fuel counts are those of `plasm-fuel/1`;
//! * the start section is removed and its function exported, through a wrapper
//!   that only calls it, as `__plasm_start`,
//!   so the host runs it after setting fuel, and a trap there is an ordinary trap.
//!
//! Appending the injected function and globals after the module's own keeps every
//! existing index unchanged. Custom sections (names, debug info) are dropped.

use std::collections::HashMap;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection,
    GlobalSection, GlobalType, ImportSection, Instruction, Module, TypeSection, ValType,
};
use wasmparser::{
    ExternalKind, FuncType, FuncValidatorAllocations, Operator, Parser, Payload, TypeRef,
    ValidPayload, Validator, WasmFeatures,
};

/// Name and version of the metering scheme, recorded in receipts: the fuel model
/// of `plasm-fuel/1` plus the logical stack-height limit ([`STACK_LIMIT`]) with
/// the frame model of decision 0046, and the float profile of decision 0045 (NaN
/// bits canonical wherever they become visible).
pub const METERING: &str = "plasm-fuel/4";
/// Export holding the current logical stack height (i32), in slots.
pub const DEPTH_EXPORT: &str = "__plasm_depth";
/// Logical stack height at which a call traps, in slots. A frame costs
/// [`FRAME_SLOTS`] plus its parameters, locals and highest operand stack, so the
/// same recursion stops at the same depth on every engine, well before any
/// engine's native stack (wasm3's value stack and wasmtime's `max_wasm_stack`
/// are set far above it).
pub const STACK_LIMIT: u32 = 1 << 18;
/// Fixed part of a frame's cost: return address and frame bookkeeping (4), and
/// the native C frames wasm3 nests for a call (96 bytes measured, charged at
/// 8 slots of the [`NATIVE_BYTES_PER_SLOT`] its budget allows: decision 0046).
pub const FRAME_SLOTS: u32 = 12;
/// What each loop open around a call costs a frame: wasm3 runs a loop body in a
/// nested C frame (48 bytes measured, charged at 4 slots).
pub const LOOP_SLOTS: u32 = 4;
/// Slots charged for the instrumentation's own locals in a frame.
pub const INJECTED_SLOTS: u32 = 8;
/// Most constants wasm3 keeps in a frame (its `d_m3MaxConstantTableSize`): a
/// frame is charged its constants up to this many.
pub const CONSTANT_SLOTS: u32 = 120;
/// Native stack wasm3 allows a job (its `d_m3MaxNativeStack`, fixed when its C
/// is compiled), over [`STACK_LIMIT`]: about 31 bytes per logical slot.
pub const NATIVE_BYTES_PER_SLOT: u32 = ((8 << 20) - (128 << 10)) / STACK_LIMIT;
/// Export holding remaining fuel (i64).
pub const FUEL_EXPORT: &str = "__plasm_fuel";
/// Export holding the memory cap in pages (i32).
pub const MEM_MAX_EXPORT: &str = "__plasm_mem_max";
/// Export set to 1 when a grow was refused (i32).
pub const MEM_REFUSED_EXPORT: &str = "__plasm_mem_refused";
/// Export of the module's memory, so host functions find it on every engine.
pub const MEMORY_EXPORT: &str = "__plasm_memory";
/// Export of the former start function.
pub const START_EXPORT: &str = "__plasm_start";
/// Largest module accepted, in bytes.
pub const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;
/// Limits that refuse modules built to hurt a compiler, before any engine sees
/// them (far above what compilers emit: clang's largest functions in big C
/// programs are a few hundred KiB with a few thousand locals and a nesting depth
/// in the hundreds).
pub const MAX_FUNCTIONS: usize = 100_000;
/// Bytes of one function body.
pub const MAX_FUNCTION_BYTES: usize = 2 * 1024 * 1024;
/// Parameters and locals of one function: wasm3 validates at most 8,000 (its
/// `d_m3ValStack`), and the instrumentation adds up to five.
pub const MAX_LOCALS: u32 = 7_000;
/// Highest operand stack of one function (wasm3 compiles at most 8,000).
pub const MAX_OPERAND_STACK: u32 = 4_000;
/// Parameters, locals and operand stack of one function together: wasm3's
/// compiler keeps locals on its value stack, which holds at most 8,000
/// (`d_m3MaxFunctionStackHeight`); the instrumentation adds up to nine.
pub const MAX_FUNCTION_SLOTS: u32 = 7_000;
/// Nesting depth of blocks, loops and ifs in one function, the function's own
/// block included (wasm3 compiles at most 998; the instrumentation adds one).
pub const MAX_NESTING: usize = 960;
/// The only import module a job may use.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Why a module cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// The bytes are not a valid WebAssembly module (garbage, truncated, ill-typed).
    #[error("invalid module: {0}")]
    Invalid(String),
    /// The module uses a feature plasm does not run (SIMD, threads, memory64, several memories...).
    #[error("unsupported module feature: {0}")]
    Unsupported(String),
    /// The module imports something plasm does not provide.
    #[error("unknown import \"{module}\".\"{name}\": jobs may import only {WASI_MODULE} functions")]
    UnknownImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
    },
    /// A WASI import with the wrong signature.
    #[error("import \"{WASI_MODULE}\".\"{name}\" has the wrong signature")]
    ImportSignature {
        /// The WASI function name.
        name: String,
    },
    /// The module exports a name reserved for plasm's instrumentation.
    #[error("export \"{0}\" uses the reserved prefix __plasm_")]
    ReservedExport(String),
    /// The module exceeds the size cap.
    #[error("module is {0} bytes; the maximum is {MAX_MODULE_BYTES}")]
    TooLarge(usize),
    /// The module exceeds a limit on its shape (functions, body size, locals, nesting).
    #[error("module refused: {0}")]
    TooComplex(String),
}

/// A validated, instrumented module.
#[derive(Debug, Clone)]
pub struct Instrumented {
    /// The bytes every runtime executes.
    pub bytes: Vec<u8>,
    /// Whether the original module had a start function (now exported as `__plasm_start`).
    pub has_start: bool,
    /// Initial pages of the module's memory, if it has one.
    pub initial_pages: Option<u64>,
    /// Exported functions: name → (parameter count, result types).
    pub exports: HashMap<String, (usize, Vec<wasmparser::ValType>)>,
    /// Initial entries of all its tables (tables never grow: `table.grow` is refused).
    pub table_entries: u64,
    /// Tables defined.
    pub tables: u64,
}

impl Instrumented {
    /// Bytes of `limits.memory_bytes` taken before the first page of linear
    /// memory: tables and the instance, rounded up to whole pages.
    pub fn reserved_bytes(&self) -> u64 {
        let raw = self
            .table_entries
            .saturating_mul(TABLE_ENTRY_BYTES)
            .saturating_add(INSTANCE_BYTES);
        raw.div_ceil(65_536).saturating_mul(65_536)
    }

    /// The linear memory a job may have under `memory_bytes`, once tables and
    /// the instance are counted.
    pub fn memory_cap_bytes(&self, memory_bytes: u64) -> u64 {
        memory_bytes.saturating_sub(self.reserved_bytes())
    }

    /// A self-contained encoding for the on-disk cache: a JSON header line
    /// (start, initial pages, exports), then the instrumented bytes.
    pub fn to_cache_bytes(&self) -> Vec<u8> {
        let name = |t: &wasmparser::ValType| match t {
            wasmparser::ValType::I32 => "i32",
            wasmparser::ValType::I64 => "i64",
            wasmparser::ValType::F32 => "f32",
            _ => "f64",
        };
        let exports: serde_json::Map<String, serde_json::Value> = self
            .exports
            .iter()
            .map(|(k, (p, r))| {
                (
                    k.clone(),
                    serde_json::json!([p, r.iter().map(name).collect::<Vec<_>>()]),
                )
            })
            .collect();
        let head = serde_json::json!({
            "has_start": self.has_start,
            "initial_pages": self.initial_pages,
            "exports": exports,
            "table_entries": self.table_entries,
            "tables": self.tables,
        });
        let mut out = head.to_string().into_bytes();
        out.push(b'\n');
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Decodes [`Instrumented::to_cache_bytes`]; `None` for anything else.
    pub fn from_cache_bytes(raw: &[u8]) -> Option<Self> {
        let split = raw.iter().position(|b| *b == b'\n')?;
        let head: serde_json::Value = serde_json::from_slice(&raw[..split]).ok()?;
        let ty = |s: &serde_json::Value| match s.as_str() {
            Some("i32") => wasmparser::ValType::I32,
            Some("i64") => wasmparser::ValType::I64,
            Some("f32") => wasmparser::ValType::F32,
            // Only "is it one i32" matters to the caller; every other type stays other.
            _ => wasmparser::ValType::F64,
        };
        let mut exports = HashMap::new();
        for (k, v) in head.get("exports")?.as_object()? {
            let params = usize::try_from(v.get(0)?.as_u64()?).ok()?;
            let results = v.get(1)?.as_array()?.iter().map(ty).collect();
            exports.insert(k.clone(), (params, results));
        }
        Some(Self {
            bytes: raw[split + 1..].to_vec(),
            has_start: head.get("has_start")?.as_bool()?,
            initial_pages: head.get("initial_pages")?.as_u64(),
            exports,
            table_entries: head.get("table_entries")?.as_u64()?,
            tables: head.get("tables")?.as_u64()?,
        })
    }
}

fn features() -> WasmFeatures {
    // Wasm 2.0 without SIMD, which wasm3 does not run, and without externref
    // (GC types), which wasmtime runs only with its garbage collector compiled in;
    // funcref tables (what compilers emit) stay.
    WasmFeatures::WASM2
        .difference(WasmFeatures::SIMD)
        .difference(WasmFeatures::GC_TYPES)
}

/// Validates `wasm` and returns, for each defined function in order, the highest
/// its operand stack can reach (the validator tracks it exactly), which the
/// stack-height limit charges as part of the function's frame.
fn validate(wasm: &[u8]) -> Result<Vec<u32>, ModuleError> {
    let refuse = |e: wasmparser::BinaryReaderError| {
        let msg = e.to_string();
        if msg.contains("proposal not enabled")
            || msg.contains("support is not enabled")
            || msg.contains("are disallowed")
        {
            ModuleError::Unsupported(msg)
        } else {
            ModuleError::Invalid(msg)
        }
    };
    let mut validator = Validator::new_with_features(features());
    let mut allocs = FuncValidatorAllocations::default();
    let mut heights = Vec::new();
    // (parameters, results) of each type, for block types that name one.
    let mut arity: Vec<(u32, u32)> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(refuse)?;
        if let Payload::TypeSection(r) = &payload {
            for ft in r.clone().into_iter_err_on_gc_types().flatten() {
                arity.push((ft.params().len() as u32, ft.results().len() as u32));
            }
        }
        if let ValidPayload::Func(func, body) = validator.payload(&payload).map_err(refuse)? {
            let mut fv = func.into_validator(allocs);
            let mut reader = body.get_binary_reader();
            fv.read_locals(&mut reader).map_err(refuse)?;
            // wasm3's compiler also keeps, for each open block, a record per
            // result and two per parameter on the same stack as the operands
            // (decision 0046): the height charged is operands plus those.
            let mut records: Vec<u32> = Vec::new();
            let mut open = 0u32;
            let mut max = 0;
            while !reader.eof() {
                let offset = reader.original_position();
                reader
                    .visit_operator(&mut fv.visitor(offset))
                    .map_err(refuse)?
                    .map_err(refuse)?;
                let depth = fv.control_stack_height() as usize;
                while records.len() > depth {
                    open = open.saturating_sub(records.pop().unwrap_or(0));
                }
                while records.len() < depth {
                    let at = depth - 1 - records.len();
                    let cost = match fv.get_control_frame(at).map(|f| f.block_type) {
                        // The function's own frame: its parameters are locals.
                        Some(wasmparser::BlockType::FuncType(t)) if records.is_empty() => {
                            arity.get(t as usize).map_or(0, |a| a.1)
                        }
                        Some(wasmparser::BlockType::FuncType(t)) => arity
                            .get(t as usize)
                            .map_or(0, |a| a.1.saturating_add(a.0.saturating_mul(2))),
                        Some(wasmparser::BlockType::Type(_)) => 1,
                        _ => 0,
                    };
                    records.push(cost);
                    open = open.saturating_add(cost);
                }
                max = max.max(fv.operand_stack_height().saturating_add(open));
            }
            reader
                .finish_expression(&fv.visitor(reader.original_position()))
                .map_err(refuse)?;
            heights.push(max);
            allocs = fv.into_allocations();
        }
    }
    Ok(heights)
}

fn invalid(e: impl std::fmt::Display) -> ModuleError {
    ModuleError::Invalid(e.to_string())
}

/// Validates `wasm` and returns its metered form.
pub fn instrument(
    wasm: &[u8],
    wasi_signature: impl Fn(&str) -> Option<FuncType>,
) -> Result<Instrumented, ModuleError> {
    if wasm.len() > MAX_MODULE_BYTES {
        return Err(ModuleError::TooLarge(wasm.len()));
    }
    let heights = validate(wasm)?;

    let mut types: Vec<FuncType> = Vec::new();
    let mut type_section = None;
    let mut import_section = None;
    let mut func_section = None;
    let mut table_section = None;
    let (mut tables, mut table_entries) = (0usize, 0u64);
    let mut memory_section = None;
    let mut global_section = None;
    let mut export_section = None;
    let mut element_section = None;
    let mut data_count = None;
    let mut code_bodies = Vec::new();
    let mut data_section = None;
    let mut start = None;
    let mut func_types: Vec<u32> = Vec::new();
    let mut defined_globals = 0u32;
    let mut initial_pages = None;
    let mut exports = HashMap::new();

    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(r) => {
                section_count(r.count(), MAX_TYPES, "types")?;
                for ft in r.clone().into_iter_err_on_gc_types() {
                    let ft = ft.map_err(invalid)?;
                    if ft.params().len() + ft.results().len() > MAX_TYPE_ARITY {
                        return Err(ModuleError::TooComplex(format!(
                            "a function type with {} parameters and results (at most {MAX_TYPE_ARITY})",
                            ft.params().len() + ft.results().len()
                        )));
                    }
                    types.push(ft);
                }
                type_section = Some(r);
            }
            Payload::ImportSection(r) => {
                section_count(r.count(), MAX_IMPORTS_EXPORTS, "imports")?;
                for imp in r.clone().into_imports() {
                    let imp = imp.map_err(invalid)?;
                    name_length(imp.module)?;
                    name_length(imp.name)?;
                    let unknown = || ModuleError::UnknownImport {
                        module: imp.module.into(),
                        name: imp.name.into(),
                    };
                    match imp.ty {
                        TypeRef::Func(ty) if imp.module == WASI_MODULE => {
                            let expected = wasi_signature(imp.name).ok_or_else(unknown)?;
                            if types.get(ty as usize) != Some(&expected) {
                                return Err(ModuleError::ImportSignature {
                                    name: imp.name.into(),
                                });
                            }
                            func_types.push(ty);
                        }
                        _ => return Err(unknown()),
                    }
                }
                import_section = Some(r);
            }
            Payload::FunctionSection(r) => {
                for t in r.clone() {
                    func_types.push(t.map_err(invalid)?);
                }
                func_section = Some(r);
            }
            Payload::TableSection(r) => {
                for t in r.clone() {
                    let t = t.map_err(invalid)?;
                    if t.ty.initial.max(t.ty.maximum.unwrap_or(0)) > MAX_TABLE_ENTRIES {
                        return Err(ModuleError::TooComplex(format!(
                            "a table of more than {MAX_TABLE_ENTRIES} entries"
                        )));
                    }
                    table_entries = table_entries.saturating_add(t.ty.initial);
                    tables += 1;
                }
                if tables > MAX_TABLES {
                    return Err(ModuleError::TooComplex(format!(
                        "{tables} tables (at most {MAX_TABLES})"
                    )));
                }
                table_section = Some(r);
            }
            Payload::MemorySection(r) => {
                let mems: Vec<_> = r
                    .clone()
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .map_err(invalid)?;
                if mems.len() > 1 {
                    return Err(ModuleError::Unsupported("more than one memory".into()));
                }
                if let Some(m) = mems.first() {
                    if m.memory64 || m.shared {
                        return Err(ModuleError::Unsupported("64-bit or shared memory".into()));
                    }
                    initial_pages = Some(m.initial);
                }
                memory_section = Some(r);
            }
            Payload::GlobalSection(r) => {
                section_count(r.count(), MAX_GLOBALS, "globals")?;
                defined_globals = r.count();
                global_section = Some(r);
            }
            Payload::ExportSection(r) => {
                section_count(r.count(), MAX_IMPORTS_EXPORTS, "exports")?;
                for e in r.clone() {
                    let e = e.map_err(invalid)?;
                    name_length(e.name)?;
                    if e.name.starts_with("__plasm_") {
                        return Err(ModuleError::ReservedExport(e.name.into()));
                    }
                    // wasm3 looks exports up as C strings, so "a\0b" would be found as "a".
                    if e.name.contains('\0') {
                        return Err(ModuleError::Unsupported(
                            "an export name containing a NUL byte".into(),
                        ));
                    }
                    if e.kind == ExternalKind::Func {
                        let ty = func_types
                            .get(e.index as usize)
                            .and_then(|t| types.get(*t as usize))
                            .ok_or_else(|| invalid("export of an unknown function"))?;
                        exports.insert(
                            e.name.to_owned(),
                            (ty.params().len(), ty.results().to_vec()),
                        );
                    }
                }
                export_section = Some(r);
            }
            Payload::StartSection { func, .. } => start = Some(func),
            Payload::ElementSection(r) => {
                section_count(r.count(), MAX_SEGMENTS, "element segments")?;
                element_section = Some(r);
            }
            Payload::DataCountSection { count, .. } => data_count = Some(count),
            Payload::CodeSectionEntry(body) => {
                if code_bodies.len() >= MAX_FUNCTIONS {
                    return Err(ModuleError::TooComplex(format!(
                        "more than {MAX_FUNCTIONS} functions"
                    )));
                }
                let r = body.range();
                let len = usize::try_from(r.end - r.start).unwrap_or(usize::MAX);
                if len > MAX_FUNCTION_BYTES {
                    return Err(ModuleError::TooComplex(format!(
                        "function {} is {len} bytes (at most {MAX_FUNCTION_BYTES})",
                        code_bodies.len()
                    )));
                }
                code_bodies.push(body)
            }
            Payload::DataSection(r) => {
                section_count(r.count(), MAX_SEGMENTS, "data segments")?;
                data_section = Some(r);
            }
            Payload::TagSection(_) => {
                return Err(ModuleError::Unsupported("exception tags".into()));
            }
            _ => {}
        }
    }

    let mut rc = RoundtripReencoder;
    let mut module = Module::new();
    let grow_type = types.len() as u32;
    let mut ts = TypeSection::new();
    if let Some(r) = type_section {
        rc.parse_type_section(&mut ts, r).map_err(invalid)?;
    }
    ts.ty().function([ValType::I32], [ValType::I32]);
    // `() -> ()`, for the start wrapper.
    let unit_type = grow_type + 1;
    ts.ty().function([], []);
    module.section(&ts);
    if let Some(r) = import_section {
        let mut s = ImportSection::new();
        rc.parse_import_section(&mut s, r).map_err(invalid)?;
        module.section(&s);
    }
    let has_memory = initial_pages.is_some();
    let grow_func = func_types.len() as u32;
    let mut fs = FunctionSection::new();
    if let Some(r) = func_section {
        rc.parse_function_section(&mut fs, r).map_err(invalid)?;
    }
    if has_memory {
        fs.function(grow_type);
    }
    // The start function is exported through a wrapper of its own: an engine may
    // keep one export name per function (wasm3 does), and the module may export
    // its start function under another name already.
    let start_wrapper = grow_func + u32::from(has_memory);
    if start.is_some() {
        fs.function(unit_type);
    }
    module.section(&fs);
    if let Some(r) = table_section {
        let mut s = wasm_encoder::TableSection::new();
        rc.parse_table_section(&mut s, r).map_err(invalid)?;
        module.section(&s);
    }
    if let Some(r) = memory_section {
        let mut s = wasm_encoder::MemorySection::new();
        rc.parse_memory_section(&mut s, r).map_err(invalid)?;
        module.section(&s);
    }
    // Only functions may be imported, so defined globals start at index 0.
    let fuel_global = defined_globals;
    let (max_global, refused_global) = (fuel_global + 1, fuel_global + 2);
    let depth_global = fuel_global + 3;
    let mut gs = GlobalSection::new();
    if let Some(r) = global_section {
        rc.parse_global_section(&mut gs, r).map_err(invalid)?;
    }
    let mutable = |val_type| GlobalType {
        val_type,
        mutable: true,
        shared: false,
    };
    gs.global(mutable(ValType::I64), &ConstExpr::i64_const(0));
    gs.global(mutable(ValType::I32), &ConstExpr::i32_const(0));
    gs.global(mutable(ValType::I32), &ConstExpr::i32_const(0));
    gs.global(mutable(ValType::I32), &ConstExpr::i32_const(0));
    module.section(&gs);
    let mut es = ExportSection::new();
    if let Some(r) = export_section {
        rc.parse_export_section(&mut es, r).map_err(invalid)?;
    }
    es.export(FUEL_EXPORT, ExportKind::Global, fuel_global);
    es.export(MEM_MAX_EXPORT, ExportKind::Global, max_global);
    es.export(MEM_REFUSED_EXPORT, ExportKind::Global, refused_global);
    es.export(DEPTH_EXPORT, ExportKind::Global, depth_global);
    if start.is_some() {
        es.export(START_EXPORT, ExportKind::Func, start_wrapper);
    }
    if has_memory {
        es.export(MEMORY_EXPORT, ExportKind::Memory, 0);
    }
    module.section(&es);
    if let Some(r) = element_section {
        let mut s = wasm_encoder::ElementSection::new();
        rc.parse_element_section(&mut s, r).map_err(invalid)?;
        module.section(&s);
    }
    if let Some(count) = data_count {
        module.section(&wasm_encoder::DataCountSection { count });
    }
    let imported_funcs = u32::try_from(func_types.len() - code_bodies.len()).map_err(invalid)?;
    let mut cs = CodeSection::new();
    for (i, body) in code_bodies.iter().enumerate() {
        let params = func_types
            .get(imported_funcs as usize + i)
            .and_then(|t| types.get(*t as usize))
            .map_or(0, |t| t.params().len() as u32);
        let cx = MeterCtx {
            fuel_global,
            depth_global,
            grow_func,
            imported_funcs,
            params,
            max_height: heights.get(i).copied().unwrap_or(0),
        };
        cs.function(&meter_function(&mut rc, body, &cx)?);
    }
    if has_memory {
        cs.function(&grow_function(max_global, refused_global));
    }
    if let Some(f) = start {
        let mut w = Function::new([]);
        w.instruction(&Instruction::Call(f));
        w.instruction(&Instruction::End);
        cs.function(&w);
    }
    module.section(&cs);
    if let Some(r) = data_section {
        let mut s = wasm_encoder::DataSection::new();
        rc.parse_data_section(&mut s, r).map_err(invalid)?;
        module.section(&s);
    }
    Ok(Instrumented {
        bytes: module.finish(),
        has_start: start.is_some(),
        initial_pages,
        exports,
        table_entries,
        tables: tables as u64,
    })
}

/// Where a function keeps its remaining fuel between synchronisation points.
#[derive(Clone, Copy)]
enum Counter {
    /// The exported global itself.
    Global(u32),
    /// A local copy (index) of the global, written back before calls and exits.
    Local { local: u32, global: u32 },
}

fn charge(f: &mut Function, counter: Counter, cost: u64) {
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    match counter {
        Counter::Global(g) => {
            f.instruction(&Instruction::GlobalGet(g));
            f.instruction(&Instruction::I64Const(cost));
            f.instruction(&Instruction::I64Sub);
            f.instruction(&Instruction::GlobalSet(g));
            f.instruction(&Instruction::GlobalGet(g));
            f.instruction(&Instruction::I64Const(0));
            f.instruction(&Instruction::I64LtS);
            f.instruction(&Instruction::If(BlockType::Empty));
            f.instruction(&Instruction::Unreachable);
            f.instruction(&Instruction::End);
        }
        Counter::Local { local, .. } => {
            f.instruction(&Instruction::LocalGet(local));
            f.instruction(&Instruction::I64Const(cost));
            f.instruction(&Instruction::I64Sub);
            f.instruction(&Instruction::LocalTee(local));
            f.instruction(&Instruction::I64Const(0));
            f.instruction(&Instruction::I64LtS);
            f.instruction(&Instruction::If(BlockType::Empty));
            // Publish the negative count so the host can tell exhaustion from a guest trap.
            write_back(f, counter);
            f.instruction(&Instruction::Unreachable);
            f.instruction(&Instruction::End);
        }
    }
}

/// Most `locals × blocks` in one function. Optimising compilers keep every live
/// local's state per block, so this product (not the function's size) is what
/// makes Cranelift's time and memory explode: 8,000 locals live across 60,000
/// `if` blocks asked for 52 GB in a 469 KB module. Refused before compiling,
/// the same way on every engine (decision 0035). Measured (release, x86_64):
/// 4,000 locals × 4,191 blocks compiled in 5.3 s at 620 MB; at this bound the
/// worst shapes tried took 0.5-1.5 s.
pub const MAX_FUNCTION_SHAPE: u64 = 1 << 22;
/// Most blocks (`block`, `loop`, `if`, `else`) in one function: Cranelift's time
/// grows with blocks even with few locals (20 locals × 100,000 blocks: 4.5 s,
/// 690 MB; × 50,000: 2.1 s).
pub const MAX_FUNCTION_BLOCKS: u64 = 32_768;
/// Most targets of one `br_table`: Cranelift refuses a jump table a little below
/// 2^16 entries while wasm3 runs it, so plasm refuses above this for both.
pub const MAX_BR_TABLE: u32 = 32_768;
/// Most tables a module may define.
pub const MAX_TABLES: usize = 16;
/// Bytes one table entry costs against `limits.memory_bytes` (a funcref is a
/// pointer on both engines; wasm3 keeps one more per entry).
pub const TABLE_ENTRY_BYTES: u64 = 16;
/// Bytes every instance costs against `limits.memory_bytes` beside its memory
/// and tables (engine structures, globals, the WASI context), rounded to a page.
pub const INSTANCE_BYTES: u64 = 65_536;

/// Bytes (or table entries) a bulk operation may move per unit of fuel.
pub const BULK_UNIT: u32 = 64;

/// Table entries a table operation may touch per unit of fuel: an entry costs
/// about as much as 64 bytes of memory (measured: `table.copy` at 64 entries a
/// unit took 63 ns per unit; at 1 a unit, about 1 ns).
pub const TABLE_UNIT: u32 = 1;

/// Fuel one call to a host function (WASI) costs on top of its instruction:
/// the crossing into the host costs about 100 ns on wasmtime (a `sched_yield`
/// loop took 17 ns per unit at 1 unit a call, 4-6 ns at 16).
pub const HOST_CALL_FUEL: u64 = 32;

/// log2 of the bytes or entries a bulk operation moves per unit of fuel.
fn unit_shift(op: &Operator<'_>) -> u32 {
    match op {
        Operator::TableFill { .. } | Operator::TableCopy { .. } | Operator::TableInit { .. } => {
            TABLE_UNIT.trailing_zeros()
        }
        _ => BULK_UNIT.trailing_zeros(),
    }
}

/// The operations whose cost grows with a length operand (the top of the stack).
fn is_bulk(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
    )
}

/// Charges `length / BULK_UNIT` (the length stays on the stack for the operation),
/// so filling 256 MiB costs 4 Mi units, not 1, and fuel bounds the time it takes.
fn charge_length(f: &mut Function, counter: Counter, scratch: u32, shift: u32) {
    f.instruction(&Instruction::LocalTee(scratch));
    let amount = |f: &mut Function| {
        f.instruction(&Instruction::LocalGet(scratch));
        f.instruction(&Instruction::I64ExtendI32U);
        f.instruction(&Instruction::I64Const(i64::from(shift)));
        f.instruction(&Instruction::I64ShrU);
    };
    match counter {
        Counter::Global(g) => {
            f.instruction(&Instruction::GlobalGet(g));
            amount(f);
            f.instruction(&Instruction::I64Sub);
            f.instruction(&Instruction::GlobalSet(g));
            f.instruction(&Instruction::GlobalGet(g));
        }
        Counter::Local { local, .. } => {
            f.instruction(&Instruction::LocalGet(local));
            amount(f);
            f.instruction(&Instruction::I64Sub);
            f.instruction(&Instruction::LocalTee(local));
        }
    }
    f.instruction(&Instruction::I64Const(0));
    f.instruction(&Instruction::I64LtS);
    f.instruction(&Instruction::If(BlockType::Empty));
    write_back(f, counter);
    f.instruction(&Instruction::Unreachable);
    f.instruction(&Instruction::End);
}

/// Stack-neutral copy of a local counter to the global (no-op for the global counter).
fn write_back(f: &mut Function, counter: Counter) {
    if let Counter::Local { local, global } = counter {
        f.instruction(&Instruction::LocalGet(local));
        f.instruction(&Instruction::GlobalSet(global));
    }
}

fn reload(f: &mut Function, counter: Counter) {
    if let Counter::Local { local, global } = counter {
        f.instruction(&Instruction::GlobalGet(global));
        f.instruction(&Instruction::LocalSet(local));
    }
}

/// Indices a function body needs to be metered.
struct MeterCtx {
    fuel_global: u32,
    /// The logical stack height global.
    depth_global: u32,
    /// Highest operand stack of the function being metered.
    max_height: u32,
    grow_func: u32,
    imported_funcs: u32,
    /// Parameters of the function being metered (its first locals).
    params: u32,
}

fn meter_function(
    rc: &mut RoundtripReencoder,
    body: &wasmparser::FunctionBody<'_>,
    cx: &MeterCtx,
) -> Result<Function, ModuleError> {
    let mut ops = Vec::new();
    let mut reader = body.get_operators_reader().map_err(invalid)?;
    while !reader.eof() {
        ops.push(reader.read().map_err(invalid)?);
    }
    let ops = strip_dead_code(ops);
    // Pass 1: static cost of the function outside loops, and of each loop outside nested loops.
    enum Frame {
        Loop(usize),
        Other,
    }
    let mut frames = vec![Frame::Other];
    let mut accs: Vec<u64> = vec![0];
    let mut loop_costs: Vec<u64> = Vec::new();
    let mut max_depth = 0;
    let mut blocks: u64 = 1;
    // Loops open around a call (each a nested C frame on wasm3), and constants
    // (wasm3 keeps them in the frame), for the frame's cost.
    let mut loops_at_call = 0u32;
    let mut constants = 0u32;
    // Whether the float profile needs its scratch locals.
    let (mut floats32, mut floats64) = (false, false);
    for op in &ops {
        max_depth = max_depth.max(frames.len());
        match op {
            Operator::Call { .. } | Operator::CallIndirect { .. } => {
                let open = frames
                    .iter()
                    .filter(|f| matches!(f, Frame::Loop(_)))
                    .count();
                loops_at_call = loops_at_call.max(u32::try_from(open).unwrap_or(u32::MAX));
            }
            Operator::I32Const { .. }
            | Operator::I64Const { .. }
            | Operator::F32Const { .. }
            | Operator::F64Const { .. } => constants = constants.saturating_add(1),
            // Each canonicalisation adds an `if` block, which the compile budget counts.
            Operator::I32ReinterpretF32 | Operator::F32Store { .. } | Operator::F32Copysign => {
                floats32 = true;
                blocks += 1;
            }
            Operator::I64ReinterpretF64 | Operator::F64Store { .. } | Operator::F64Copysign => {
                floats64 = true;
                blocks += 1;
            }
            _ => {}
        }
        if matches!(
            op,
            Operator::Loop { .. } | Operator::Block { .. } | Operator::If { .. } | Operator::Else
        ) {
            blocks += 1;
        }
        if let Some(top) = accs.last_mut() {
            *top += 1;
            // A call into the host costs its crossing (decision 0035).
            if let Operator::Call { function_index } = op
                && *function_index < cx.imported_funcs
            {
                *top += HOST_CALL_FUEL;
            }
            // `memory.grow` goes through the checked grow function and the
            // engine's libcall: priced like a host call.
            if let Operator::MemoryGrow { .. } = op {
                *top += HOST_CALL_FUEL;
            }
        }
        match op {
            Operator::Loop { .. } => {
                frames.push(Frame::Loop(loop_costs.len()));
                loop_costs.push(0);
                accs.push(0);
            }
            Operator::Block { .. } | Operator::If { .. } => frames.push(Frame::Other),
            Operator::TableGrow { .. } => {
                return Err(ModuleError::Unsupported("table.grow".into()));
            }
            Operator::BrTable { targets } if targets.len() > MAX_BR_TABLE => {
                return Err(ModuleError::TooComplex(format!(
                    "a br_table with {} targets (at most {MAX_BR_TABLE})",
                    targets.len()
                )));
            }
            Operator::End => {
                if let Some(Frame::Loop(i)) = frames.pop() {
                    loop_costs[i] = accs.pop().unwrap_or(1);
                }
            }
            _ => {}
        }
    }
    let entry_cost = accs.first().copied().unwrap_or(1);
    if max_depth > MAX_NESTING {
        return Err(ModuleError::TooComplex(format!(
            "blocks nested {max_depth} deep (at most {MAX_NESTING})"
        )));
    }

    // Pass 2: emit the body with charges. A function with loops charges its loops
    // against a local copy of the counter (cheaper in an interpreter than a global),
    // written back before every call to guest code and every way out of the function.
    let mut locals = Vec::new();
    let mut declared = 0u32;
    for pair in body.get_locals_reader().map_err(invalid)? {
        let (count, ty) = pair.map_err(invalid)?;
        declared = declared.saturating_add(count);
        if cx.params.saturating_add(declared) > MAX_LOCALS {
            return Err(ModuleError::TooComplex(format!(
                "a function has more than {MAX_LOCALS} parameters and locals"
            )));
        }
        locals.push((count, rc.val_type(ty).map_err(invalid)?));
    }
    if cx.max_height > MAX_OPERAND_STACK {
        return Err(ModuleError::TooComplex(format!(
            "a function's operand stack reaches {} values (at most {MAX_OPERAND_STACK})",
            cx.max_height
        )));
    }
    let slots = cx.params + declared + cx.max_height;
    if slots > MAX_FUNCTION_SLOTS {
        return Err(ModuleError::TooComplex(format!(
            "a function has {slots} parameters, locals and operand stack values together (at most {MAX_FUNCTION_SLOTS})"
        )));
    }
    if blocks > MAX_FUNCTION_BLOCKS {
        return Err(ModuleError::TooComplex(format!(
            "a function has {blocks} blocks (at most {MAX_FUNCTION_BLOCKS}): split it into smaller functions"
        )));
    }
    let shape = u64::from(cx.params + declared + 1).saturating_mul(blocks);
    if shape > MAX_FUNCTION_SHAPE {
        return Err(ModuleError::TooComplex(format!(
            "a function has {} locals across {blocks} blocks ({shape}, at most {MAX_FUNCTION_SHAPE} locals × blocks): split it into smaller functions",
            cx.params + declared
        )));
    }
    let global = Counter::Global(cx.fuel_global);
    // The function's own stack level, restored into the global after every call.
    let level = cx.params + declared;
    locals.push((1, ValType::I32));
    let counter = if loop_costs.is_empty() {
        global
    } else {
        locals.push((1, ValType::I64));
        Counter::Local {
            local: level + 1,
            global: cx.fuel_global,
        }
    };
    // Bulk memory and table operations are charged by their length, which needs
    // a scratch local to copy the length operand.
    let scratch = level + 1 + u32::from(!loop_costs.is_empty());
    let has_bulk = ops.iter().any(is_bulk);
    if has_bulk {
        locals.push((1, ValType::I32));
    }
    // The float profile's scratch locals, after every other.
    let mut next_local = scratch + u32::from(has_bulk);
    let float = FloatScratch {
        f32: floats32.then(|| {
            locals.push((1, ValType::F32));
            next_local += 1;
            next_local - 1
        }),
        f64: floats64.then(|| {
            locals.push((1, ValType::F64));
            next_local += 1;
            next_local - 1
        }),
    };
    let frame = frame_slots(
        cx.params + declared,
        cx.max_height,
        constants,
        loops_at_call,
    );
    let mut f = Function::new(locals);
    charge(&mut f, global, entry_cost);
    enter_frame(&mut f, cx.depth_global, level, frame);
    reload(&mut f, counter);
    let mut next_loop = 0usize;
    // Open blocks inside the function body; a branch of this depth leaves the function.
    let mut depth = 0u32;
    for op in ops {
        match op {
            Operator::MemoryGrow { .. } => {
                f.instruction(&Instruction::Call(cx.grow_func));
            }
            ref bulk if is_bulk(bulk) => {
                charge_length(&mut f, counter, scratch, unit_shift(bulk));
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
            Operator::Loop { .. } => {
                depth += 1;
                f.instruction(&rc.instruction(op).map_err(invalid)?);
                charge(
                    &mut f,
                    counter,
                    loop_costs.get(next_loop).copied().unwrap_or(1),
                );
                next_loop += 1;
            }
            Operator::Block { .. } | Operator::If { .. } => {
                depth += 1;
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
            Operator::End => {
                if depth == 0 {
                    write_back(&mut f, counter);
                }
                depth = depth.saturating_sub(1);
                f.instruction(&Instruction::End);
            }
            Operator::Return => {
                write_back(&mut f, counter);
                f.instruction(&Instruction::Return);
            }
            Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                if relative_depth == depth {
                    write_back(&mut f, counter);
                }
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
            Operator::BrTable { ref targets } => {
                let leaves = targets.default() == depth
                    || targets.targets().any(|t| t.is_ok_and(|t| t == depth));
                if leaves {
                    write_back(&mut f, counter);
                }
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
            // The value a NaN's bits would leave by (stored, reinterpreted, or the
            // sign copysign takes: the top of the stack) is canonicalised first.
            Operator::I32ReinterpretF32 | Operator::F32Store { .. } | Operator::F32Copysign => {
                canonicalise(&mut f, float.f32, true);
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
            Operator::I64ReinterpretF64 | Operator::F64Store { .. } | Operator::F64Copysign => {
                canonicalise(&mut f, float.f64, false);
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
            Operator::Call { function_index } if function_index < cx.imported_funcs => {
                // Host functions neither read nor charge fuel.
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
            Operator::Call { .. } | Operator::CallIndirect { .. } => {
                write_back(&mut f, counter);
                f.instruction(&rc.instruction(op).map_err(invalid)?);
                reload(&mut f, counter);
                // However the callee left, this frame is back on top.
                f.instruction(&Instruction::LocalGet(level));
                f.instruction(&Instruction::GlobalSet(cx.depth_global));
            }
            op => {
                f.instruction(&rc.instruction(op).map_err(invalid)?);
            }
        }
    }
    Ok(f)
}

/// The canonical NaN of the float profile (decision 0045): positive, quiet, no
/// payload. Every NaN whose bits become visible (a reinterpret, a store, the
/// sign `copysign` takes) is replaced by it.
pub const CANONICAL_NAN32: u32 = 0x7fc0_0000;
/// The canonical f64 NaN.
pub const CANONICAL_NAN64: u64 = 0x7ff8_0000_0000_0000;

/// The float profile's scratch locals of one function (when it needs them).
struct FloatScratch {
    f32: Option<u32>,
    f64: Option<u32>,
}

/// Replaces the float on top of the stack (an f32 when `scratch` is that
/// function's f32 scratch local, else an f64) by the canonical NaN when it is a
/// NaN, whatever its sign and payload. A branch, not a `select`: on wasmtime the
/// common case (not a NaN) costs a compare and a jump not taken (measured on
/// gemm: this 1.6x, a `select` on the float 2.1x, a `select` on the bits 1.9x).
/// The canonical NaN is quiet, so wasm3's f64 registers keep its bits, and they
/// change no other value.
fn canonicalise(f: &mut Function, scratch: Option<u32>, is_f32: bool) {
    let Some(t) = scratch else { return };
    let (ne, nan) = if is_f32 {
        (
            Instruction::F32Ne,
            Instruction::F32Const(wasm_encoder::Ieee32::new(CANONICAL_NAN32)),
        )
    } else {
        (
            Instruction::F64Ne,
            Instruction::F64Const(wasm_encoder::Ieee64::new(CANONICAL_NAN64)),
        )
    };
    for ins in [
        Instruction::LocalTee(t),
        Instruction::LocalGet(t),
        ne,
        Instruction::If(BlockType::Empty),
        nan,
        Instruction::LocalSet(t),
        Instruction::End,
        Instruction::LocalGet(t),
    ] {
        f.instruction(&ins);
    }
}

/// A frame's cost in logical slots (decision 0046): bookkeeping and wasm3's
/// native call frames, the function's values (parameters, locals, operand
/// stack, up to [`CONSTANT_SLOTS`] constants, the instrumentation's locals), and
/// a nested C frame per loop open around a call.
pub fn frame_slots(locals: u32, max_height: u32, constants: u32, loops_at_call: u32) -> u32 {
    FRAME_SLOTS
        .saturating_add(locals)
        .saturating_add(max_height)
        .saturating_add(constants.saturating_add(INJECTED_SLOTS).min(CONSTANT_SLOTS))
        .saturating_add(INJECTED_SLOTS)
        .saturating_add(LOOP_SLOTS.saturating_mul(loops_at_call))
        .min(STACK_LIMIT + 1)
}

/// Most types a module may define (wasm3 parses at most 8,190 with typed
/// references built in, 65,500 without; the instrumentation adds two).
pub const MAX_TYPES: u32 = 8_000;
/// Most parameters and results of one function type together (wasm3: 1,000).
pub const MAX_TYPE_ARITY: usize = 1_000;
/// Most imports, and most exports (wasm3: 100,000; the instrumentation adds six exports).
pub const MAX_IMPORTS_EXPORTS: u32 = 10_000;
/// Most globals a module may define (wasm3: 1,000,000; the instrumentation adds four).
pub const MAX_GLOBALS: u32 = 100_000;
/// Most data or element segments (wasm3: 100,000 data segments).
pub const MAX_SEGMENTS: u32 = 10_000;
/// Most entries of one table, initial or maximum (wasm3: 10,000,000).
pub const MAX_TABLE_ENTRIES: u64 = 10_000_000;
/// Longest import or export name, in bytes (wasm3: 10,000).
pub const MAX_NAME_BYTES: usize = 1_024;

/// Refuses a section with more than `max` entries (decision 0046: limits both engines parse).
fn section_count(count: u32, max: u32, what: &str) -> Result<(), ModuleError> {
    if count > max {
        return Err(ModuleError::TooComplex(format!(
            "{count} {what} (at most {max})"
        )));
    }
    Ok(())
}

/// Refuses an import or export name longer than [`MAX_NAME_BYTES`].
fn name_length(name: &str) -> Result<(), ModuleError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(ModuleError::TooComplex(format!(
            "a name of {} bytes (at most {MAX_NAME_BYTES})",
            name.len()
        )));
    }
    Ok(())
}

/// Removes the code that follows an unconditional branch (`br`, `br_table`,
/// `return`, `unreachable`) up to the `end` or `else` that closes its block. It
/// can never run, it is not charged, and engines disagree on it: wasm3 fails to
/// compile some operators on the polymorphic stack of dead code that wasmtime
/// accepts, which would make one valid module give two outcomes.
fn strip_dead_code(ops: Vec<Operator<'_>>) -> Vec<Operator<'_>> {
    let mut live = Vec::with_capacity(ops.len());
    // Blocks opened inside the dead region, while in one.
    let mut dead: Option<usize> = None;
    for op in ops {
        if let Some(depth) = dead.as_mut() {
            match op {
                Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                    *depth += 1;
                }
                Operator::End | Operator::Else if *depth == 0 => {
                    dead = None;
                    live.push(op);
                }
                Operator::End => *depth -= 1,
                _ => {}
            }
            continue;
        }
        let ends_flow = matches!(
            op,
            Operator::Br { .. }
                | Operator::BrTable { .. }
                | Operator::Return
                | Operator::Unreachable
        );
        live.push(op);
        if ends_flow {
            dead = Some(0);
        }
    }
    live
}

/// Raises the logical stack height by the frame's cost, keeps the new level in
/// `level`, and traps with `unreachable` past [`STACK_LIMIT`] (the host tells it
/// from other traps by the height left in the global). Exits need no code: the
/// caller restores its own level after every call.
fn enter_frame(f: &mut Function, depth_global: u32, level: u32, frame: u32) {
    for ins in [
        Instruction::GlobalGet(depth_global),
        Instruction::I32Const(frame as i32),
        Instruction::I32Add,
        Instruction::LocalTee(level),
        Instruction::GlobalSet(depth_global),
        Instruction::LocalGet(level),
        Instruction::I32Const(STACK_LIMIT as i32),
        Instruction::I32GtU,
        Instruction::If(BlockType::Empty),
        Instruction::Unreachable,
        Instruction::End,
    ] {
        f.instruction(&ins);
    }
}

/// `(func (param $delta i32) (result i32))`: grows memory unless the cap would be exceeded.
fn grow_function(max_global: u32, refused_global: u32) -> Function {
    let mut f = Function::new([]);
    for ins in [
        Instruction::MemorySize(0),
        Instruction::I64ExtendI32U,
        Instruction::LocalGet(0),
        Instruction::I64ExtendI32U,
        Instruction::I64Add,
        Instruction::GlobalGet(max_global),
        Instruction::I64ExtendI32U,
        Instruction::I64GtU,
        Instruction::If(BlockType::Empty),
        Instruction::I32Const(1),
        Instruction::GlobalSet(refused_global),
        Instruction::I32Const(-1),
        Instruction::Return,
        Instruction::End,
        Instruction::LocalGet(0),
        Instruction::MemoryGrow(0),
        Instruction::End,
    ] {
        f.instruction(&ins);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_wasi(_: &str) -> Option<FuncType> {
        None
    }

    /// A module of `funcs` functions `() -> ()`, each with `locals` i32 locals and `body`.
    fn shaped(funcs: u32, locals: u32, body: &[wasm_encoder::Instruction<'_>]) -> Vec<u8> {
        use wasm_encoder::{CodeSection, FunctionSection, Module, TypeSection};
        let mut m = Module::new();
        let mut t = TypeSection::new();
        t.ty().function([], []);
        m.section(&t);
        let mut f = FunctionSection::new();
        for _ in 0..funcs {
            f.function(0);
        }
        m.section(&f);
        let mut c = CodeSection::new();
        for _ in 0..funcs {
            let mut func = wasm_encoder::Function::new([(locals, ValType::I32)]);
            for i in body {
                func.instruction(i);
            }
            func.instruction(&wasm_encoder::Instruction::End);
            c.function(&func);
        }
        m.section(&c);
        m.finish()
    }

    #[test]
    fn modules_built_to_hurt_a_compiler_are_refused_by_documented_limits() {
        use wasm_encoder::{BlockType, Instruction as I};
        let refused = |wasm: Vec<u8>, what: &str| match instrument(&wasm, no_wasi) {
            Err(ModuleError::TooComplex(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{what}: {:?}", other.map(|_| ())),
        };
        let nested = |depth: usize| {
            let mut body = vec![I::Block(BlockType::Empty); depth];
            body.extend(std::iter::repeat_n(I::End, depth));
            body
        };
        // Just inside every limit: accepted.
        assert!(instrument(&shaped(1, 0, &nested(MAX_NESTING - 1)), no_wasi).is_ok());
        assert!(instrument(&shaped(1, MAX_LOCALS, &[]), no_wasi).is_ok());
        // locals × blocks: just under MAX_FUNCTION_SHAPE passes, just over is refused.
        let blocks = |n: usize| {
            let mut body = Vec::new();
            for _ in 0..n {
                body.push(I::Block(BlockType::Empty));
                body.push(I::End);
            }
            body
        };
        let per = (MAX_FUNCTION_SHAPE / 10_001) as u32;
        assert!(instrument(&shaped(1, per - 1, &blocks(10_000)), no_wasi).is_ok());
        refused(shaped(1, per + 1, &blocks(10_000)), "locals × blocks");
        assert!(instrument(&shaped(1, 0, &blocks(32_767)), no_wasi).is_ok());
        refused(shaped(1, 0, &blocks(32_768)), "blocks (at most");
        refused(shaped(1, 0, &nested(MAX_NESTING + 1)), "nested");
        refused(shaped(1, MAX_LOCALS + 1, &[]), "locals");
        refused(shaped(1, 0, &vec![I::Nop; MAX_FUNCTION_BYTES + 1]), "bytes");
        refused(shaped(MAX_FUNCTIONS as u32 + 1, 0, &[]), "functions");
    }

    fn wat(src: &str) -> Vec<u8> {
        wat::parse_str(src).expect("wat")
    }

    #[test]
    fn instrumented_module_validates_and_keeps_exports() {
        let m = wat(r#"(module (memory 1) (global $g (mut i32) (i32.const 0))
            (func $f (export "run") (result i32) (local i32)
              (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get 0) (i32.const 10))))
              (drop (memory.grow (i32.const 1)))
              (local.get 0))
            (start $f2) (func $f2))"#);
        let out = instrument(&m, no_wasi).expect("instrument");
        Validator::new_with_features(features())
            .validate_all(&out.bytes)
            .expect("valid output");
        assert!(out.has_start);
        assert_eq!(out.initial_pages, Some(1));
        assert_eq!(out.exports.get("run").map(|e| e.0), Some(0));
    }

    #[test]
    fn rejections_are_specific() {
        assert!(matches!(
            instrument(b"\0asm\x01\0\0\0\x01", no_wasi),
            Err(ModuleError::Invalid(_))
        ));
        assert!(matches!(
            instrument(b"garbage", no_wasi),
            Err(ModuleError::Invalid(_))
        ));
        let imp = wat(r#"(module (import "env" "now" (func)))"#);
        assert_eq!(
            instrument(&imp, no_wasi).err(),
            Some(ModuleError::UnknownImport {
                module: "env".into(),
                name: "now".into()
            })
        );
        let reserved = wat(r#"(module (func (export "__plasm_fuel")))"#);
        assert!(matches!(
            instrument(&reserved, no_wasi),
            Err(ModuleError::ReservedExport(_))
        ));
        let simd = wat(r#"(module (func (drop (v128.const i64x2 0 0))))"#);
        assert!(matches!(
            instrument(&simd, no_wasi),
            Err(ModuleError::Unsupported(_))
        ));
        let two = wat(r#"(module (memory 1) (memory 1))"#);
        assert!(instrument(&two, no_wasi).is_err());
    }
}
