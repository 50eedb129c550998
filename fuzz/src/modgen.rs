//! A generator of jobs built to make the two engines disagree (issue 22).
//!
//! wasm-smith's modules cannot show a difference in output: they import nothing,
//! so they print nothing. These do: every module imports WASI's `fd_write` and
//! prints, as raw little-endian bits, every value it computes, so a NaN whose
//! payload or sign differs between engines (or CPUs) changes the output. Three
//! kinds, chosen by the seed:
//!
//! * **values**: statements over i32/i64/f32/f64 that move signalling and
//!   payload NaNs through every bit-exact path the spec names (locals, globals,
//!   `reinterpret`, loads and stores, `abs`, `neg`, `copysign`, `select`, block
//!   results, call parameters and results) and through every NaN-producing
//!   operation, inside loops and helper calls, each statement printed;
//! * **stack**: recursion with locals, constants and nested loops around the
//!   call, to a depth that may pass the stack limit, with enough fuel to get
//!   there, so both engines must stop at the same call;
//! * **shape**: one function near the shape limits (nesting, locals, operand
//!   stack), which both engines must refuse or both run.
//!
//! The generator is a function of its seed only, so a mismatch is named by the
//! seed and rebuilt exactly.

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, Ieee32, Ieee64, ImportSection, Instruction as I,
    MemArg, MemorySection, MemoryType, Module, TypeSection, ValType,
};

/// A splitmix64 stream: the same numbers for the same seed everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n.max(1)
    }
    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// Which kind of module a seed makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Values printed as bits.
    Values,
    /// Deep recursion near the stack limit.
    Stack,
    /// A function near the shape limits.
    Shape,
}

impl Kind {
    /// A short name for tallies.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Values => "values",
            Kind::Stack => "stack",
            Kind::Shape => "shape",
        }
    }
}

/// A generated job: the module, the fuel to give it, and its kind.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The module bytes (exports `_start`).
    pub wasm: Vec<u8>,
    /// Fuel enough to reach the limits the module aims at.
    pub fuel: u64,
    /// What it exercises.
    pub kind: Kind,
}

/// f32 bit patterns that matter: signalling and payload NaNs of both signs, the
/// canonical and x86's default NaN, infinities, zeros, subnormals, ordinary values.
const F32_BITS: &[u32] = &[
    0x7f80_0001,
    0xff80_0001,
    0x7fa0_0000,
    0x7fbf_ffff,
    0x7fc0_0000,
    0xffc0_0000,
    0x7fc0_0001,
    0xffff_ffff,
    0x7f80_0000,
    0xff80_0000,
    0x0000_0000,
    0x8000_0000,
    0x0000_0001,
    0x8000_0001,
    0x3fc0_0000,
    0xbf80_0000,
    0x4049_0fdb,
    0x7f7f_ffff,
];
const F64_BITS: &[u64] = &[
    0x7ff0_0000_0000_0001,
    0xfff0_0000_0000_0001,
    0x7ff4_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0xfff8_0000_0000_0000,
    0x7ff8_0000_0000_0001,
    0xffff_ffff_ffff_ffff,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0,
    0x8000_0000_0000_0000,
    1,
    0x3ff8_0000_0000_0000,
    0xbff0_0000_0000_0000,
    0x4009_21fb_5444_2d18,
];
const I32S: &[i32] = &[
    0,
    1,
    -1,
    2,
    7,
    0x7f80_0001,
    -4_194_304,
    i32::MIN,
    i32::MAX,
    0x7fc0_0000,
];
const I64S: &[i64] = &[0, 1, -1, 3, 0x7ff0_0000_0000_0001, i64::MIN, i64::MAX];

/// Bytes 64..1088 of memory hold these patterns (data segment), so loads read NaNs.
const DATA_AT: u32 = 64;
const DATA_LEN: u32 = 1024;
/// Where a printed value is staged, and the iovec and result of `fd_write`.
const OUT_AT: u32 = 0;
const IOV_AT: u32 = 16;
const NWRITTEN_AT: u32 = 32;

const TYPES: [ValType; 4] = [ValType::I32, ValType::I64, ValType::F32, ValType::F64];

/// Function indices of a values module.
const FD_WRITE: u32 = 0;
const START: u32 = 1;
/// Identity helpers `(param t) (result t)`, one per type, after `_start`.
const ID_BASE: u32 = 2;
/// Locals of `_start`: 4 per type, then one loop counter.
const LOCALS_PER_TYPE: u32 = 4;

fn type_index(t: ValType) -> u32 {
    match t {
        ValType::I32 => 0,
        ValType::I64 => 1,
        ValType::F32 => 2,
        _ => 3,
    }
}

fn memarg(align: u32, offset: u64) -> MemArg {
    MemArg {
        offset,
        align,
        memory_index: 0,
    }
}

/// Builds the module for `seed`.
pub fn generate(seed: u64) -> Generated {
    let mut rng = Rng::new(seed);
    match rng.below(20) {
        0..=14 => values(&mut rng),
        15..=17 => stack(&mut rng),
        _ => shape(&mut rng),
    }
}

struct Body<'a> {
    f: Function,
    rng: &'a mut Rng,
}

impl Body<'_> {
    fn ins(&mut self, i: I<'_>) {
        self.f.instruction(&i);
    }

    fn addr(&mut self, size: u32) {
        // Any byte of the data area, aligned or not.
        let a = DATA_AT + self.rng.below(u64::from(DATA_LEN - size)) as u32;
        self.ins(I::I32Const(a as i32));
    }

    fn local(&mut self, t: ValType) -> u32 {
        type_index(t) * LOCALS_PER_TYPE + self.rng.below(u64::from(LOCALS_PER_TYPE)) as u32
    }

    /// Emits code that leaves one value of type `t`.
    fn expr(&mut self, t: ValType, depth: u32) {
        let leaf = depth == 0 || self.rng.chance(25);
        if leaf {
            match (t, self.rng.below(4)) {
                (ValType::I32, 0 | 1) => {
                    let v = I32S[self.rng.below(I32S.len() as u64) as usize];
                    self.ins(I::I32Const(v));
                }
                (ValType::I64, 0 | 1) => {
                    let v = I64S[self.rng.below(I64S.len() as u64) as usize];
                    self.ins(I::I64Const(v));
                }
                (ValType::F32, 0 | 1) => {
                    let v = F32_BITS[self.rng.below(F32_BITS.len() as u64) as usize];
                    self.ins(I::F32Const(Ieee32::new(v)));
                }
                (ValType::F64, 0 | 1) => {
                    let v = F64_BITS[self.rng.below(F64_BITS.len() as u64) as usize];
                    self.ins(I::F64Const(Ieee64::new(v)));
                }
                (_, 2) => {
                    let l = self.local(t);
                    self.ins(I::LocalGet(l));
                }
                _ => {
                    let size = match t {
                        ValType::I32 | ValType::F32 => 4,
                        _ => 8,
                    };
                    self.addr(size);
                    let m = memarg(
                        if self.rng.chance(50) {
                            0
                        } else {
                            size.trailing_zeros()
                        },
                        0,
                    );
                    self.ins(match t {
                        ValType::I32 => I::I32Load(m),
                        ValType::I64 => I::I64Load(m),
                        ValType::F32 => I::F32Load(m),
                        _ => I::F64Load(m),
                    });
                }
            }
            return;
        }
        let d = depth - 1;
        // Ways to make any type: through a helper call, a block, a select, a global.
        match self.rng.below(10) {
            0 => {
                self.expr(t, d);
                self.ins(I::Call(ID_BASE + type_index(t)));
                return;
            }
            1 => {
                self.ins(I::Block(BlockType::Result(t)));
                self.expr(t, d);
                self.ins(I::End);
                return;
            }
            2 => {
                self.expr(t, d);
                self.expr(t, d);
                self.expr(ValType::I32, d);
                self.ins(I::Select);
                return;
            }
            3 => {
                let l = self.local(t);
                self.expr(t, d);
                self.ins(I::LocalTee(l));
                return;
            }
            4 => {
                let g = type_index(t);
                self.expr(t, d);
                self.ins(I::GlobalSet(g));
                self.ins(I::GlobalGet(g));
                return;
            }
            _ => {}
        }
        match t {
            ValType::F32 => match self.rng.below(6) {
                0 => {
                    self.expr(ValType::F32, d);
                    self.pick(&[
                        I::F32Abs,
                        I::F32Neg,
                        I::F32Sqrt,
                        I::F32Ceil,
                        I::F32Floor,
                        I::F32Trunc,
                        I::F32Nearest,
                    ]);
                }
                1 | 2 => {
                    self.expr(ValType::F32, d);
                    self.expr(ValType::F32, d);
                    self.pick(&[
                        I::F32Add,
                        I::F32Sub,
                        I::F32Mul,
                        I::F32Div,
                        I::F32Min,
                        I::F32Max,
                        I::F32Copysign,
                    ]);
                }
                3 => {
                    self.expr(ValType::I32, d);
                    self.ins(I::F32ReinterpretI32);
                }
                4 => {
                    self.expr(ValType::F64, d);
                    self.ins(I::F32DemoteF64);
                }
                _ => {
                    self.expr(ValType::I32, d);
                    self.ins(I::F32ConvertI32S);
                }
            },
            ValType::F64 => match self.rng.below(6) {
                0 => {
                    self.expr(ValType::F64, d);
                    self.pick(&[
                        I::F64Abs,
                        I::F64Neg,
                        I::F64Sqrt,
                        I::F64Ceil,
                        I::F64Floor,
                        I::F64Trunc,
                        I::F64Nearest,
                    ]);
                }
                1 | 2 => {
                    self.expr(ValType::F64, d);
                    self.expr(ValType::F64, d);
                    self.pick(&[
                        I::F64Add,
                        I::F64Sub,
                        I::F64Mul,
                        I::F64Div,
                        I::F64Min,
                        I::F64Max,
                        I::F64Copysign,
                    ]);
                }
                3 => {
                    self.expr(ValType::I64, d);
                    self.ins(I::F64ReinterpretI64);
                }
                4 => {
                    self.expr(ValType::F32, d);
                    self.ins(I::F64PromoteF32);
                }
                _ => {
                    self.expr(ValType::I64, d);
                    self.ins(I::F64ConvertI64S);
                }
            },
            ValType::I32 => match self.rng.below(6) {
                0 => {
                    self.expr(ValType::F32, d);
                    self.ins(I::I32ReinterpretF32);
                }
                1 => {
                    let ft = if self.rng.chance(50) {
                        ValType::F32
                    } else {
                        ValType::F64
                    };
                    self.expr(ft, d);
                    self.expr(ft, d);
                    let f32ops = [I::F32Eq, I::F32Ne, I::F32Lt, I::F32Ge];
                    let f64ops = [I::F64Eq, I::F64Ne, I::F64Gt, I::F64Le];
                    let i = self.rng.below(4) as usize;
                    self.ins(if ft == ValType::F32 {
                        f32ops[i].clone()
                    } else {
                        f64ops[i].clone()
                    });
                }
                2 => {
                    self.expr(ValType::F32, d);
                    let op = if self.rng.chance(50) {
                        I::I32TruncSatF32S
                    } else {
                        I::I32TruncSatF32U
                    };
                    self.ins(op);
                }
                3 => {
                    self.expr(ValType::I64, d);
                    self.ins(I::I32WrapI64);
                }
                _ => {
                    self.expr(ValType::I32, d);
                    self.expr(ValType::I32, d);
                    self.pick(&[
                        I::I32Add,
                        I::I32Sub,
                        I::I32Mul,
                        I::I32Xor,
                        I::I32And,
                        I::I32Or,
                        I::I32Rotl,
                        I::I32ShrU,
                        I::I32DivS,
                    ]);
                }
            },
            _ => match self.rng.below(5) {
                0 => {
                    self.expr(ValType::F64, d);
                    self.ins(I::I64ReinterpretF64);
                }
                1 => {
                    self.expr(ValType::F64, d);
                    self.ins(I::I64TruncSatF64S);
                }
                2 => {
                    self.expr(ValType::I32, d);
                    self.ins(I::I64ExtendI32U);
                }
                _ => {
                    self.expr(ValType::I64, d);
                    self.expr(ValType::I64, d);
                    self.pick(&[
                        I::I64Add,
                        I::I64Sub,
                        I::I64Mul,
                        I::I64Xor,
                        I::I64Rotr,
                        I::I64ShrS,
                    ]);
                }
            },
        }
    }

    /// Prints the value of type `t` on top of the stack as 8 little-endian bytes
    /// of its bits (through a reinterpret: what any program that shows a float does).
    fn print(&mut self, t: ValType) {
        match t {
            ValType::I32 => self.ins(I::I64ExtendI32U),
            ValType::I64 => {}
            ValType::F32 => {
                self.ins(I::I32ReinterpretF32);
                self.ins(I::I64ExtendI32U);
            }
            _ => self.ins(I::I64ReinterpretF64),
        }
        let scratch = 4 * LOCALS_PER_TYPE + 1;
        self.ins(I::LocalSet(scratch));
        write_out(&mut self.f, scratch, I::I64Store(memarg(3, 0)));
    }

    /// Emits one of `ops`, chosen at random.
    fn pick(&mut self, ops: &[I<'static>]) {
        let i = self.rng.below(ops.len() as u64) as usize;
        self.ins(ops[i].clone());
    }

    fn statement(&mut self, in_loop: bool) {
        let t = TYPES[self.rng.below(4) as usize];
        match self.rng.below(10) {
            0..=4 => {
                self.expr(t, 4);
                self.print(t);
            }
            5 => {
                let l = self.local(t);
                self.expr(t, 3);
                self.ins(I::LocalSet(l));
            }
            6 | 7 => {
                // A store through memory: its own type, or the float's bits.
                let size = match t {
                    ValType::I32 | ValType::F32 => 4,
                    _ => 8,
                };
                self.addr(size);
                self.expr(t, 3);
                let m = memarg(
                    if self.rng.chance(50) {
                        0
                    } else {
                        size.trailing_zeros()
                    },
                    0,
                );
                self.ins(match t {
                    ValType::I32 => I::I32Store(m),
                    ValType::I64 => I::I64Store(m),
                    ValType::F32 => I::F32Store(m),
                    _ => I::F64Store(m),
                });
            }
            8 if !in_loop => {
                // A loop of a few iterations around some statements.
                let counter = 4 * LOCALS_PER_TYPE;
                let n = 1 + self.rng.below(5) as i32;
                self.ins(I::I32Const(n));
                self.ins(I::LocalSet(counter));
                self.ins(I::Loop(BlockType::Empty));
                for _ in 0..1 + self.rng.below(3) {
                    self.statement(true);
                }
                self.ins(I::LocalGet(counter));
                self.ins(I::I32Const(1));
                self.ins(I::I32Sub);
                self.ins(I::LocalTee(counter));
                self.ins(I::BrIf(0));
                self.ins(I::End);
            }
            _ => {
                // Every local of every type, printed: what moved through them shows.
                let l = self.local(t);
                self.ins(I::LocalGet(l));
                self.print(t);
            }
        }
    }
}

/// Stores local `local` at the staging address with `store` and writes the 8
/// staged bytes to stdout.
fn write_out(f: &mut Function, local: u32, store: I<'_>) {
    for ins in [
        I::I32Const(OUT_AT as i32),
        I::LocalGet(local),
        store,
        I::I32Const(1),
        I::I32Const(IOV_AT as i32),
        I::I32Const(1),
        I::I32Const(NWRITTEN_AT as i32),
        I::Call(FD_WRITE),
        I::Drop,
    ] {
        f.instruction(&ins);
    }
}

fn data_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_LEN as usize);
    while out.len() < DATA_LEN as usize {
        if rng.chance(50) {
            let v = F32_BITS[rng.below(F32_BITS.len() as u64) as usize];
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            let v = F64_BITS[rng.below(F64_BITS.len() as u64) as usize];
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.truncate(DATA_LEN as usize);
    out
}

/// The common frame: types, the `fd_write` import, memory with the iovec and
/// data, `_start`'s export. `funcs` are the defined functions' type indices.
struct Frame {
    types: TypeSection,
    ntypes: u32,
}

impl Frame {
    fn new() -> Self {
        let mut types = TypeSection::new();
        // 0: fd_write (i32 i32 i32 i32) -> i32; 1: () -> ().
        types.ty().function(
            [ValType::I32, ValType::I32, ValType::I32, ValType::I32],
            [ValType::I32],
        );
        types.ty().function([], []);
        Self { types, ntypes: 2 }
    }

    fn add(&mut self, params: &[ValType], results: &[ValType]) -> u32 {
        self.types
            .ty()
            .function(params.iter().copied(), results.iter().copied());
        self.ntypes += 1;
        self.ntypes - 1
    }

    fn finish(
        self,
        funcs: &[u32],
        globals: Option<GlobalSection>,
        code: CodeSection,
        data: Vec<u8>,
    ) -> Vec<u8> {
        let mut imports = ImportSection::new();
        imports.import(
            "wasi_snapshot_preview1",
            "fd_write",
            EntityType::Function(0),
        );
        let mut fs = FunctionSection::new();
        for t in funcs {
            fs.function(*t);
        }
        let mut mem = MemorySection::new();
        mem.memory(MemoryType {
            minimum: 1,
            maximum: Some(1),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut ex = ExportSection::new();
        ex.export("memory", ExportKind::Memory, 0);
        ex.export("_start", ExportKind::Func, START);
        let mut ds = wasm_encoder::DataSection::new();
        // The iovec: 8 bytes at OUT_AT.
        let mut iov = Vec::new();
        iov.extend_from_slice(&OUT_AT.to_le_bytes());
        iov.extend_from_slice(&8u32.to_le_bytes());
        ds.active(0, &ConstExpr::i32_const(IOV_AT as i32), iov);
        ds.active(0, &ConstExpr::i32_const(DATA_AT as i32), data);
        let mut m = Module::new();
        m.section(&self.types)
            .section(&imports)
            .section(&fs)
            .section(&mem);
        if let Some(g) = globals {
            m.section(&g);
        }
        m.section(&ex).section(&code).section(&ds);
        m.finish()
    }
}

fn values(rng: &mut Rng) -> Generated {
    let mut frame = Frame::new();
    let ids: Vec<u32> = TYPES.iter().map(|t| frame.add(&[*t], &[*t])).collect();
    let mut funcs = vec![1];
    funcs.extend(&ids);
    // One mutable global per type, initialised with a NaN pattern or a value.
    let mut globals = GlobalSection::new();
    for t in TYPES {
        let init = match t {
            ValType::I32 => ConstExpr::i32_const(I32S[rng.below(I32S.len() as u64) as usize]),
            ValType::I64 => ConstExpr::i64_const(I64S[rng.below(I64S.len() as u64) as usize]),
            ValType::F32 => ConstExpr::f32_const(Ieee32::new(
                F32_BITS[rng.below(F32_BITS.len() as u64) as usize],
            )),
            _ => ConstExpr::f64_const(Ieee64::new(
                F64_BITS[rng.below(F64_BITS.len() as u64) as usize],
            )),
        };
        globals.global(
            GlobalType {
                val_type: t,
                mutable: true,
                shared: false,
            },
            &init,
        );
    }
    let mut locals: Vec<(u32, ValType)> = TYPES.iter().map(|t| (LOCALS_PER_TYPE, *t)).collect();
    locals.push((1, ValType::I32));
    locals.push((1, ValType::I64));
    let n = 4 + rng.below(28);
    let data = data_bytes(rng);
    let mut body = Body {
        f: Function::new(locals),
        rng,
    };
    // Locals start at zero; give some of them NaN patterns first.
    for t in TYPES {
        for l in 0..LOCALS_PER_TYPE {
            if body.rng.chance(60) {
                body.expr(t, 1);
                body.ins(I::LocalSet(type_index(t) * LOCALS_PER_TYPE + l));
            }
        }
    }
    for _ in 0..n {
        body.statement(false);
    }
    // Everything that may hold a moved NaN at the end: globals and the data area.
    for (g, t) in TYPES.iter().enumerate() {
        body.ins(I::GlobalGet(g as u32));
        body.print(*t);
    }
    body.ins(I::End);
    let mut code = CodeSection::new();
    code.function(&body.f);
    for _ in TYPES {
        let mut f = Function::new([]);
        f.instruction(&I::LocalGet(0));
        f.instruction(&I::End);
        code.function(&f);
    }
    // A stored NaN shows when a later statement loads and prints it.
    Generated {
        wasm: frame.finish(&funcs, Some(globals), code, data),
        fuel: 10_000_000,
        kind: Kind::Values,
    }
}

/// Recursion `$r(n)`: `locals` i64 locals, `consts` distinct constants summed,
/// `loops` nested loops (each entered once) around `if n then $r(n-1)`; prints
/// the depth reached on the way back (n at each return of the outermost few).
fn stack(rng: &mut Rng) -> Generated {
    let mut frame = Frame::new();
    let rec_ty = frame.add(&[ValType::I32], &[ValType::I64]);
    let funcs = vec![1, rec_ty];
    let locals = rng.below(40) as u32;
    let consts = if rng.chance(50) { rng.below(130) } else { 0 };
    let loops = rng.below(5) as u32;
    let depth: i32 = match rng.below(4) {
        0 => 1_000 + rng.below(20_000) as i32,
        1 => 20_000 + rng.below(70_000) as i32,
        2 => i32::MAX,
        _ => rng.below(300_000) as i32,
    };
    let mut start = Function::new([(1, ValType::I64)]);
    start.instruction(&I::I32Const(depth));
    start.instruction(&I::Call(2));
    start.instruction(&I::LocalSet(0));
    write_out(&mut start, 0, I::I64Store(memarg(3, 0)));
    start.instruction(&I::End);
    let mut r = Function::new([(locals + 1, ValType::I64)]);
    let acc = 1 + locals;
    for c in 0..consts {
        r.instruction(&I::LocalGet(acc));
        r.instruction(&I::I64Const(
            (c as i64).wrapping_mul(0x9E37_79B9).wrapping_add(11),
        ));
        r.instruction(&I::I64Add);
        r.instruction(&I::LocalSet(acc));
    }
    for l in 0..locals {
        r.instruction(&I::LocalGet(0));
        r.instruction(&I::I64ExtendI32U);
        r.instruction(&I::LocalSet(1 + l));
    }
    for _ in 0..loops {
        r.instruction(&I::Loop(BlockType::Empty));
    }
    r.instruction(&I::LocalGet(0));
    r.instruction(&I::If(BlockType::Empty));
    r.instruction(&I::LocalGet(0));
    r.instruction(&I::I32Const(1));
    r.instruction(&I::I32Sub);
    r.instruction(&I::Call(2));
    r.instruction(&I::LocalGet(acc));
    r.instruction(&I::I64Add);
    r.instruction(&I::LocalSet(acc));
    r.instruction(&I::End);
    for _ in 0..loops {
        r.instruction(&I::End);
    }
    r.instruction(&I::LocalGet(acc));
    if locals > 0 {
        r.instruction(&I::LocalGet(locals));
        r.instruction(&I::I64Add);
    }
    r.instruction(&I::End);
    let mut code = CodeSection::new();
    code.function(&start);
    code.function(&r);
    Generated {
        wasm: frame.finish(&funcs, None, code, vec![0; 8]),
        fuel: 200_000_000,
        kind: Kind::Stack,
    }
}

/// One function near a shape limit: nesting, locals or operand-stack height.
fn shape(rng: &mut Rng) -> Generated {
    let mut frame = Frame::new();
    let funcs = vec![1];
    // Blocks with many results, nested, each passing its inner block's values on
    // (wasm3 keeps a record per result of every open block: decision 0046).
    let multi = rng.chance(30).then(|| {
        let results = 50 + rng.below(950) as usize;
        let ty = frame.add(&[], &vec![ValType::I32; results]);
        (1 + rng.below(12) as u32, results as u32, ty)
    });
    // Around plasm's limits (nesting 960, 7,000 locals, operand stack 4,000, and
    // 7,000 of them together) and wasm3's (998, 8,000 locals, 8,000 values).
    let (nesting, locals, height) = match rng.below(5) {
        0 => (900 + rng.below(150) as u32, 0, 1),
        1 => (1, 6_500 + rng.below(2_000) as u32, 1),
        2 => (1, 0, 3_500 + rng.below(1_000) as u32),
        3 => (
            1 + rng.below(1_100) as u32,
            rng.below(17_000) as u32,
            1 + rng.below(9_000) as u32,
        ),
        _ => (
            1,
            3_000 + rng.below(2_000) as u32,
            2_500 + rng.below(1_500) as u32,
        ),
    };
    let mut f = Function::new([(locals.max(1), ValType::I32)]);
    for _ in 0..nesting {
        f.instruction(&I::Block(BlockType::Empty));
    }
    let height = match multi {
        Some((depth, results, ty)) => {
            for _ in 0..depth {
                f.instruction(&I::Block(BlockType::FunctionType(ty)));
            }
            for i in 0..results {
                f.instruction(&I::I32Const(i as i32));
            }
            for _ in 0..depth {
                f.instruction(&I::End);
            }
            results
        }
        None => {
            for i in 0..height {
                f.instruction(&I::I32Const(i as i32));
            }
            height
        }
    };
    for _ in 1..height {
        f.instruction(&I::I32Add);
    }
    f.instruction(&I::LocalSet(locals.max(1) - 1));
    for _ in 0..nesting {
        f.instruction(&I::End);
    }
    write_out(&mut f, locals.max(1) - 1, I::I32Store(memarg(2, 0)));
    f.instruction(&I::End);
    let mut code = CodeSection::new();
    code.function(&f);
    Generated {
        wasm: frame.finish(&funcs, None, code, vec![0; 8]),
        fuel: 10_000_000,
        kind: Kind::Shape,
    }
}
