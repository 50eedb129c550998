//! Hostile and ordinary modules through the real pool: each ends with the right
//! outcome, and the process keeps serving jobs afterwards. Every job runs on both
//! engines, which must agree on everything but the receipt's runtime.

use plasm::identity::Identity;
use plasm::job;
use plasm::manifest::ManifestBuilder;
use plasm::runtime::engines::{EngineChoice, Engines};
use plasm::runtime::pool::{PoolError, WorkerPool};
use plasm::runtime::wasm3::Wasm3Runtime;
use plasm::runtime::{ExecResult, Outcome};
use std::sync::Arc;

const FD_WRITE: &str = r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))"#;
const PROC_EXIT: &str =
    r#"(import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))"#;

fn pool() -> WorkerPool {
    WorkerPool::new(
        Engines::new(EngineChoice::default()).expect("engines"),
        2,
        8,
    )
    .expect("pool")
}

/// Runs the job on wasm3 and on wasmtime; both receipts verify and name their
/// engine, and the results agree on everything the job did.
fn run_bytes(pool: &WorkerPool, module: &[u8], input: &[u8], b: ManifestBuilder) -> ExecResult {
    let id = Identity::from_seed([5u8; 32]);
    let mut results = Vec::new();
    for engine in ["wasm3", "wasmtime"] {
        let manifest = b
            .clone()
            .runtime(engine)
            .build(module, input)
            .expect("manifest");
        let out = job::run_blocking(pool, &id, &manifest, module.to_vec().into(), input.to_vec())
            .expect("job");
        let v = out
            .receipt
            .verify()
            .expect("every receipt verifies, whatever the outcome");
        assert_eq!(v.job_id, manifest.job_id());
        assert_eq!(
            out.receipt.str_field("outcome"),
            Some(out.result.outcome.as_str())
        );
        assert_eq!(
            out.receipt.as_map()["runtime"]["name"].as_str(),
            Some(engine),
            "the receipt names the engine that ran the job"
        );
        results.push(out.result);
    }
    let same = |r: &ExecResult| {
        (
            r.outcome,
            r.exit_code,
            r.detail.clone(),
            r.stdout.clone(),
            r.stderr.clone(),
            r.fuel_used,
            r.memory_limit_hit,
        )
    };
    assert_eq!(
        same(&results[0]),
        same(&results[1]),
        "wasm3 and wasmtime agree"
    );
    results.swap_remove(0)
}

fn run_wat(pool: &WorkerPool, wat: &str, b: ManifestBuilder) -> ExecResult {
    run_bytes(pool, &wat::parse_str(wat).expect("wat"), b"", b)
}

fn hello_ok(pool: &WorkerPool) {
    let r = run_wat(
        pool,
        include_str!("../../examples/wat/hello.wat"),
        ManifestBuilder::new(),
    );
    assert_eq!((r.outcome, r.exit_code), (Outcome::Exited, Some(0)));
    assert_eq!(r.stdout, b"hello from plasm\n");
}

#[test]
fn hostile_modules_get_the_right_outcome_and_the_pool_survives() {
    let pool = pool();
    let small_fuel = || ManifestBuilder::new().fuel(5_000_000);
    let cases: Vec<(&str, String, ManifestBuilder, Outcome)> = vec![
        ("tight loop", "(module (func (export \"_start\") (loop (br 0))))".into(), small_fuel(), Outcome::OutOfFuel),
        (
            "loop in start function",
            "(module (func $s (loop (br 0))) (start $s) (func (export \"_start\")))".into(),
            small_fuel(),
            Outcome::OutOfFuel,
        ),
        (
            "memory bomb",
            "(module (memory 1) (func (export \"_start\") (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable))".into(),
            ManifestBuilder::new().memory_bytes(16 * 1024 * 1024),
            Outcome::MemoryLimit,
        ),
        (
            "deep recursion",
            "(module (func $f (call $f)) (func (export \"_start\") (call $f)))".into(),
            ManifestBuilder::new(),
            Outcome::StackOverflow,
        ),
        (
            "output flood",
            format!(
                "(module {FD_WRITE} (memory 1) (func (export \"_start\")
                   (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 4096))
                   (loop (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0))))"
            ),
            ManifestBuilder::new().output_bytes(100_000),
            Outcome::OutputLimit,
        ),
        // Issue 22: wasm3 once stopped these at its own limits and wasmtime did not.
        (
            "recursion through a loop",
            "(module (func $f (loop (call $f))) (func (export \"_start\") (call $f)))".into(),
            ManifestBuilder::new(),
            Outcome::StackOverflow,
        ),
        (
            "depth 15,000 with 100 constants a frame",
            recursion_with_constants(15_000),
            ManifestBuilder::new(),
            Outcome::StackOverflow,
        ),
        (
            "depth 1,500 with 100 constants a frame",
            recursion_with_constants(1_500),
            ManifestBuilder::new(),
            Outcome::Exited,
        ),
        (
            "nesting 999",
            format!(
                "(module (func (export \"_start\") {} {}))",
                "(block ".repeat(999),
                ")".repeat(999)
            ),
            ManifestBuilder::new(),
            Outcome::InvalidModule,
        ),
        (
            "8,001 locals",
            "(module (func (export \"_start\") (local i32) (local i64) (local f32) (local f64)))"
                .replace("(local i32)", &"(local i32)".repeat(8_001)),
            ManifestBuilder::new(),
            Outcome::InvalidModule,
        ),
        (
            "operand stack of 8,001",
            format!(
                "(module (func (export \"_start\") {} {}))",
                "i32.const 1 ".repeat(8_001),
                "drop ".repeat(8_001)
            ),
            ManifestBuilder::new(),
            Outcome::InvalidModule,
        ),
        ("trap", "(module (func (export \"_start\") unreachable))".into(), ManifestBuilder::new(), Outcome::Trapped),
        (
            "out-of-bounds store",
            "(module (memory 1) (func (export \"_start\") (i32.store (i32.const 70000) (i32.const 1))))".into(),
            ManifestBuilder::new(),
            Outcome::Trapped,
        ),
        (
            "unknown import",
            "(module (import \"env\" \"open_socket\" (func)) (func (export \"_start\")))".into(),
            ManifestBuilder::new(),
            Outcome::InvalidModule,
        ),
        (
            "huge initial memory",
            "(module (memory 2000) (func (export \"_start\")))".into(),
            ManifestBuilder::new(),
            Outcome::MemoryLimit,
        ),
        (
            "missing entry",
            "(module (func (export \"main\")))".into(),
            ManifestBuilder::new(),
            Outcome::InvalidModule,
        ),
    ];
    for (name, wat, b, expected) in cases {
        let r = run_wat(&pool, &wat, b);
        assert_eq!(r.outcome, expected, "{name}: {r:?}");
        if expected == Outcome::OutOfFuel {
            assert_eq!(r.fuel_used, 5_000_000, "{name}");
        }
        hello_ok(&pool);
    }
    // The flood kept exactly the cap.
    let flood = format!(
        "(module {FD_WRITE} (memory 1) (func (export \"_start\")
           (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 4096))
           (loop (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0))))"
    );
    assert_eq!(
        run_wat(&pool, &flood, ManifestBuilder::new().output_bytes(10_000))
            .stdout
            .len(),
        10_000
    );

    for (name, bytes) in [
        ("garbage bytes", b"this is not wasm at all".to_vec()),
        ("truncated module", {
            let full = wat::parse_str(include_str!("../../examples/wat/hello.wat")).expect("wat");
            full[..full.len() / 2].to_vec()
        }),
        ("empty module bytes", Vec::new()),
    ] {
        let r = run_bytes(&pool, &bytes, b"", ManifestBuilder::new());
        assert_eq!(r.outcome, Outcome::InvalidModule, "{name}: {r:?}");
        assert!(r.detail.is_some(), "{name} explains itself");
        hello_ok(&pool);
    }
}

#[test]
fn proc_exit_and_returned_codes_are_exit_codes() {
    let pool = pool();
    let exit3 = format!(
        "(module {PROC_EXIT} (func (export \"_start\") (call $proc_exit (i32.const 3)) unreachable))"
    );
    let r = run_wat(&pool, &exit3, ManifestBuilder::new());
    assert_eq!((r.outcome, r.exit_code), (Outcome::Exited, Some(3)));
    assert_eq!(job::exit_status(&r), 3);
    let ret = "(module (func (export \"_start\") (result i32) (i32.const 7)))";
    let r = run_wat(&pool, ret, ManifestBuilder::new());
    assert_eq!((r.outcome, r.exit_code), (Outcome::Exited, Some(7)));
    let big = format!(
        "(module {PROC_EXIT} (func (export \"_start\") (call $proc_exit (i32.const 300))))"
    );
    assert_eq!(
        job::exit_status(&run_wat(&pool, &big, ManifestBuilder::new())),
        120
    );
}

#[test]
fn unknown_import_is_named() {
    let pool = pool();
    let r = run_wat(
        &pool,
        "(module (import \"env\" \"open_socket\" (func)) (func (export \"_start\")))",
        ManifestBuilder::new(),
    );
    let detail = r.detail.unwrap_or_default();
    assert!(detail.contains("\"env\".\"open_socket\""), "{detail}");
    let r = run_wat(
        &pool,
        "(module (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32))) (func (export \"_start\")))",
        ManifestBuilder::new(),
    );
    assert!(r.detail.unwrap_or_default().contains("fd_write"));
}

#[test]
fn fuel_is_exact_for_straight_line_code() {
    // Entry charge counts every instruction of the body: i32.const, drop, end = 3.
    let pool = pool();
    let r = run_wat(
        &pool,
        "(module (func (export \"_start\") (drop (i32.const 1))))",
        ManifestBuilder::new(),
    );
    assert_eq!(r.fuel_used, 3);
    // A loop of 10 iterations whose body (outside the loop op) has 9 instructions.
    let counted = "(module (func (export \"_start\") (local i32)
        (loop (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br_if 0 (i32.lt_u (local.get 0) (i32.const 10))))))";
    let r = run_wat(&pool, counted, ManifestBuilder::new());
    // Outside the loop: `loop` and the function's `end` = 2; each iteration: 8 instructions + the loop's `end` = 9.
    assert_eq!(r.fuel_used, 2 + 9 * 10);
}

#[test]
fn full_pool_refuses_at_once() {
    let pool = WorkerPool::new(Arc::new(Wasm3Runtime), 1, 1).expect("pool");
    let spin = wat::parse_str("(module (func (export \"_start\") (loop (br 0))))").expect("wat");
    let manifest = ManifestBuilder::new()
        .fuel(300_000_000)
        .build(&spin, b"")
        .expect("manifest");
    let req = || job::exec_request(&manifest, spin.clone().into(), vec![]).expect("request");
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..5 {
        match pool.submit(req()) {
            Ok(rx) => held.push(rx),
            Err(PoolError::Busy { .. }) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        held.len() <= 2 && refused >= 3,
        "held {} refused {refused}",
        held.len()
    );
    for rx in held {
        let r = rx.blocking_recv().expect("result");
        assert_eq!(r.outcome, Outcome::OutOfFuel);
    }
}

/// Closing the pool (shutdown) drops queued jobs without running them, their
/// waiters hear it at once, and the running job is left to finish.
#[test]
fn closing_drops_queued_jobs_and_spares_the_running_one() {
    let pool = WorkerPool::new(Arc::new(Wasm3Runtime), 1, 8).expect("pool");
    let spin = wat::parse_str("(module (func (export \"_start\") (loop (br 0))))").expect("wat");
    let manifest = ManifestBuilder::new()
        .fuel(200_000_000)
        .build(&spin, b"")
        .expect("manifest");
    let req = || job::exec_request(&manifest, spin.clone().into(), vec![]).expect("request");
    let running = pool.submit(req()).expect("first");
    while pool.stats().running == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let queued: Vec<_> = (0..4)
        .map(|_| pool.submit(req()).expect("queued"))
        .collect();
    assert_eq!(pool.close(), 4, "every queued job is dropped");
    for rx in queued {
        assert!(rx.blocking_recv().is_err(), "a queued job never runs");
    }
    assert_eq!(pool.submit(req()).err(), Some(PoolError::Closed));
    let r = running.blocking_recv().expect("the running job finishes");
    assert_eq!(r.outcome, Outcome::OutOfFuel);
    assert_eq!(pool.stats().queued, 0);
}

/// A job that asks for memory beyond its limit, sees `memory.grow` return -1 and
/// then exits on its own has exited, with its code; the receipt flags the limit.
/// Only a job the limit stopped (a trap after the refusal) is `memory_limit`.
#[test]
fn a_refused_grow_then_an_exit_is_exited_with_the_flag() {
    let pool = pool();
    let id = Identity::from_seed([5u8; 32]);
    let wat = format!(
        "(module {PROC_EXIT} (memory 1)
           (func (export \"_start\")
             (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1))
               (then (call $proc_exit (i32.const 3))))))"
    );
    let module = wat::parse_str(&wat).expect("wat");
    let manifest = ManifestBuilder::new()
        .memory_bytes(4 * 65536)
        .build(&module, b"")
        .expect("manifest");
    let out = job::run_blocking(&pool, &id, &manifest, module.into(), vec![]).expect("job");
    assert_eq!(
        (
            out.result.outcome,
            out.result.exit_code,
            out.result.memory_limit_hit
        ),
        (Outcome::Exited, Some(3), true)
    );
    out.receipt.verify().expect("verifies");
    assert_eq!(out.receipt.str_field("outcome"), Some("exited"));
    assert_eq!(out.receipt.as_map()["memory_limit_hit"], true);
    // The memory bomb, which traps after the refusal, is stopped by the limit.
    let bomb = run_wat(
        &pool,
        "(module (memory 1) (func (export \"_start\") (drop (memory.grow (i32.const 1000))) unreachable))",
        ManifestBuilder::new().memory_bytes(4 * 65536),
    );
    assert_eq!(
        (bomb.outcome, bomb.memory_limit_hit),
        (Outcome::MemoryLimit, true)
    );
    // A job within its limit does not carry the flag.
    let fine = run_wat(
        &pool,
        "(module (memory 1) (func (export \"_start\") (drop (memory.grow (i32.const 1)))))",
        ManifestBuilder::new().memory_bytes(4 * 65536),
    );
    assert_eq!(
        (fine.outcome, fine.memory_limit_hit),
        (Outcome::Exited, false)
    );
}

/// `poll_oneoff` is deterministic: descriptor subscriptions are ready at once
/// (stdin readable with its unread bytes, stdout writable, another descriptor
/// `EBADF`) and a clock beside them stays pending; a poll of a clock alone fires
/// it (a sleep returns). `sock_*` answer `ENOTSOCK` on 0-2 and `EBADF` elsewhere.
/// The module exits with the number of the first check that failed (0: all held).
#[test]
fn poll_oneoff_and_sockets_have_deterministic_answers() {
    let wat = format!(
        r#"(module {PROC_EXIT}
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_shutdown" (func $shut (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func $check (param $ok i32) (param $n i32)
        (if (i32.eqz (local.get $ok)) (then (call $proc_exit (local.get $n)))))
      (func (export "_start")
        ;; 0: clock, userdata 7, timeout 1 s (a sleep)
        (i64.store (i32.const 0) (i64.const 7))
        (i32.store8 (i32.const 8) (i32.const 0))
        (i64.store (i32.const 24) (i64.const 1000000000))
        ;; 48: fd_read on stdin, userdata 9
        (i64.store (i32.const 48) (i64.const 9))
        (i32.store8 (i32.const 56) (i32.const 1))
        (i32.store (i32.const 64) (i32.const 0))
        ;; 96: fd_write on stdout, userdata 10
        (i64.store (i32.const 96) (i64.const 10))
        (i32.store8 (i32.const 104) (i32.const 2))
        (i32.store (i32.const 112) (i32.const 1))
        ;; 144: fd_read on fd 5, userdata 11
        (i64.store (i32.const 144) (i64.const 11))
        (i32.store8 (i32.const 152) (i32.const 1))
        (i32.store (i32.const 160) (i32.const 5))
        ;; events at 256 (32 bytes each), count at 512
        (call $check (i32.eqz (call $poll (i32.const 0) (i32.const 256) (i32.const 4) (i32.const 512))) (i32.const 1))
        ;; three events, the descriptors' (the clock stays pending)
        (call $check (i32.eq (i32.load (i32.const 512)) (i32.const 3)) (i32.const 2))
        (call $check (i64.eq (i64.load (i32.const 256)) (i64.const 9)) (i32.const 3))
        (call $check (i32.eqz (i32.load16_u (i32.const 264))) (i32.const 4))
        (call $check (i32.eq (i32.load8_u (i32.const 266)) (i32.const 1)) (i32.const 5))
        (call $check (i64.eq (i64.load (i32.const 272)) (i64.const 5)) (i32.const 6))
        (call $check (i64.eq (i64.load (i32.const 288)) (i64.const 10)) (i32.const 7))
        (call $check (i32.eq (i32.load8_u (i32.const 298)) (i32.const 2)) (i32.const 8))
        (call $check (i64.gt_u (i64.load (i32.const 304)) (i64.const 0)) (i32.const 9))
        (call $check (i64.eq (i64.load (i32.const 320)) (i64.const 11)) (i32.const 10))
        (call $check (i32.eq (i32.load16_u (i32.const 328)) (i32.const 8)) (i32.const 11))
        ;; the clock alone: it fires (virtual time jumps)
        (call $check (i32.eqz (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512))) (i32.const 16))
        (call $check (i32.eq (i32.load (i32.const 512)) (i32.const 1)) (i32.const 17))
        (call $check (i64.eq (i64.load (i32.const 256)) (i64.const 7)) (i32.const 12))
        (call $check (i32.eqz (i32.load8_u (i32.const 266))) (i32.const 18))
        ;; no subscriptions: EINVAL (28)
        (call $check (i32.eq (call $poll (i32.const 0) (i32.const 256) (i32.const 0) (i32.const 512)) (i32.const 28)) (i32.const 13))
        ;; sockets: ENOTSOCK (57) on stdin, EBADF (8) on fd 5
        (call $check (i32.eq (call $recv (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)) (i32.const 57)) (i32.const 14))
        (call $check (i32.eq (call $shut (i32.const 5) (i32.const 0)) (i32.const 8)) (i32.const 15))
        (call $proc_exit (i32.const 0))))"#
    );
    let pool = pool();
    let module = wat::parse_str(&wat).expect("wat");
    let r = run_bytes(&pool, &module, b"hello", ManifestBuilder::new());
    assert_eq!(
        (r.outcome, r.exit_code),
        (Outcome::Exited, Some(0)),
        "{:?}",
        r.detail
    );
}

/// Recursion to `depth` in a function that uses 100 distinct constants (wasm3
/// keeps them in each frame: decision 0046).
fn recursion_with_constants(depth: u32) -> String {
    let consts: String = (0..100)
        .map(|i| format!("(drop (i64.const {}))", 1_000_003 * i))
        .collect();
    format!(
        "(module (func $r (param i32) {consts}
           (if (local.get 0) (then (call $r (i32.sub (local.get 0) (i32.const 1))))))
         (func (export \"_start\") (call $r (i32.const {depth}))))"
    )
}

/// Modules an attack on issue 22 found that plasm accepted and wasm3 could not
/// compile or parse (blocks with many results or parameters on wasm3's compile
/// stack; its parse-time limits on types, arity, names, exports, imports): both
/// engines must now end them alike (run_bytes compares everything), refused by
/// plasm's named limits (decision 0046).
#[test]
fn engine_limits_found_by_the_attack_end_alike() {
    let pool = pool();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/engine-limits");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        cases.push((
            path.display().to_string(),
            wat::parse_str(&text).expect("wat"),
        ));
    }
    let types: String = (0..8_001)
        .map(|i| {
            format!(
                "(type (func (param i32) (result {})))",
                "i64 ".repeat(1 + i % 3)
            )
        })
        .collect();
    let exports: String = (0..10_001)
        .map(|i| format!("(export \"e{i}\" (func $s))"))
        .collect();
    let imports: String = (0..10_001)
        .map(|i| {
            format!("(import \"wasi_snapshot_preview1\" \"sched_yield\" (func $y{i} (result i32)))")
        })
        .collect();
    for (what, w) in [
        (
            "8,001 types",
            format!("(module {types} (func (export \"_start\")))"),
        ),
        (
            "10,001 exports",
            format!("(module (func $s) {exports} (func (export \"_start\")))"),
        ),
        (
            "10,001 imports",
            format!("(module {imports} (func (export \"_start\")))"),
        ),
    ] {
        cases.push((what.into(), wat::parse_str(&w).expect("wat")));
    }
    for (what, module) in &cases {
        let r = run_bytes(&pool, module, b"", ManifestBuilder::new());
        assert!(
            r.outcome == Outcome::InvalidModule
                && r.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with("module refused")),
            "{what}: {:?} {:?}",
            r.outcome,
            r.detail
        );
    }
}

/// The attacker who stays just inside each shape limit of decision 0046: every
/// module here is accepted, and both engines run it to the same exit
/// (run_bytes compares everything), so the limits sit below what wasm3 compiles
/// and parses with the instrumentation's own additions counted.
#[test]
fn shapes_just_inside_every_limit_run_alike() {
    use plasm::runtime::instrument::{
        MAX_FUNCTION_SLOTS, MAX_IMPORTS_EXPORTS, MAX_LOCALS, MAX_NAME_BYTES, MAX_NESTING,
        MAX_TABLE_ENTRIES, MAX_TYPE_ARITY, MAX_TYPES,
    };
    let pool = pool();
    let i32s = |n: usize| "i32 ".repeat(n);
    // Nesting at the limit (the function's own block counts), a loop innermost
    // (the fuel charge nests one more) around a float store (so does its check).
    let depth = MAX_NESTING - 2;
    let nesting = format!(
        "(module (memory 1) (func (export \"_start\") {} (loop (f64.store (i32.const 0) (f64.const nan:0x1))) {}))",
        "(block ".repeat(depth),
        ")".repeat(depth)
    );
    // Every local allowed, and no operand stack to speak of.
    let locals = format!(
        "(module (func (export \"_start\") (local {}) (local.set 0 (i32.const 1))))",
        i32s(MAX_LOCALS as usize - 1)
    );
    // Locals and operand stack together at the joint limit: 3,000 locals, and
    // 4,000 operands of which 2,997 are wasm3's records of three open blocks.
    let stacked = format!(
        "(module (type $t (func (result {r}))) (func (export \"_start\") (local {l})
           (block (type $t) (block (type $t) (block (type $t) {c})))
           {d}))",
        r = i32s(999),
        l = i32s(MAX_FUNCTION_SLOTS as usize - 4_000),
        c = "(i32.const 7) ".repeat(999),
        d = "drop ".repeat(999)
    );
    // 7,998 here, the arity type and `() -> ()`: 8,000.
    let types: String = (2..MAX_TYPES)
        .map(|i| {
            format!(
                "(type (func (param i32) (result {})))",
                "i64 ".repeat(1 + (i % 3) as usize)
            )
        })
        .collect();
    let half = MAX_TYPE_ARITY / 2;
    let module_wide = format!(
        "(module {types} (type (func (param {p}) (result {p})))
           (table 1 {MAX_TABLE_ENTRIES} funcref)
           (func $s) {exports} (export \"{name}\" (func $s))
           (func (export \"_start\")))",
        p = i32s(half),
        exports = (0..MAX_IMPORTS_EXPORTS - 2)
            .map(|i| format!("(export \"e{i}\" (func $s))"))
            .collect::<String>(),
        name = "_".repeat(MAX_NAME_BYTES),
    );
    let imports = format!(
        "(module {} (func (export \"_start\")))",
        (0..MAX_IMPORTS_EXPORTS)
            .map(|i| format!(
                "(import \"wasi_snapshot_preview1\" \"sched_yield\" (func $y{i} (result i32)))"
            ))
            .collect::<String>()
    );
    for (what, wat) in [
        ("nesting", nesting),
        ("locals", locals),
        ("locals and operands", stacked),
        ("types, arity, table, exports, name", module_wide),
        ("imports", imports),
    ] {
        let module = wat::parse_str(&wat).expect("wat");
        let r = run_bytes(&pool, &module, b"", ManifestBuilder::new());
        assert_eq!(
            (r.outcome, r.exit_code),
            (Outcome::Exited, Some(0)),
            "{what}: {:?}",
            r.detail
        );
    }
}

/// The float profile (decision 0045): every NaN whose bits become visible is the
/// canonical NaN, whatever operation made it, whatever path moved it, and on
/// both engines (run_bytes compares them). x86's own default NaN (0xffc00000,
/// what 0/0 gives here) and a signalling NaN moved through locals, globals,
/// calls, `select`, loads and reinterprets (which wasm3 quiets) must not survive.
#[test]
fn every_visible_nan_is_the_canonical_nan_on_both_engines() {
    // f32 values stored at 100 + 4k, f64 at 200 + 8k.
    let f32s = [
        "(f32.div (f32.const 0) (f32.const 0))",
        "(f32.sqrt (f32.const -1))",
        "(f32.sub (f32.const inf) (f32.const inf))",
        "(f32.mul (f32.const inf) (f32.const 0))",
        "(f32.add (f32.const nan:0x200001) (f32.const 1))",
        "(f32.mul (f32.const -nan:0x12345) (f32.const 2))",
        "(f32.min (f32.const -nan) (f32.const 1))",
        "(f32.max (f32.const 1) (f32.const nan:0x1))",
        "(f32.ceil (f32.const -nan:0x7))",
        "(f32.nearest (f32.const nan:0x7))",
        "(f32.demote_f64 (f64.const -nan:0x4000000000001))",
        "(f32.neg (f32.const nan))",
        "(f32.abs (f32.const -nan:0x1))",
        "(f32.copysign (f32.const nan) (f32.const -1))",
        "(f32.reinterpret_i32 (i32.const 0x7f800001))",
        "(f32.reinterpret_i32 (i32.const 0xffc00000))",
        "(call $id32 (f32.reinterpret_i32 (i32.const 0xff800001)))",
        "(local.tee $l32 (f32.reinterpret_i32 (i32.const 0x7fa00000)))",
        "(block (result f32) (global.get $g32))",
        "(select (f32.reinterpret_i32 (i32.const 0x7f800001)) (f32.const 1) (i32.const 1))",
        "(f32.load (i32.const 8))",
    ];
    let f64s = [
        "(f64.div (f64.const 0) (f64.const 0))",
        "(f64.sqrt (f64.const -1))",
        "(f64.sub (f64.const -inf) (f64.const -inf))",
        "(f64.add (f64.const nan:0x4000000000001) (f64.const 1))",
        "(f64.min (f64.const nan) (f64.const 1))",
        "(f64.max (f64.const -nan:0x1) (f64.const -nan:0x2))",
        "(f64.floor (f64.const -nan:0x5))",
        "(f64.promote_f32 (f32.reinterpret_i32 (i32.const 0x7f800001)))",
        "(f64.neg (f64.const nan))",
        "(f64.copysign (f64.const nan) (f64.const -1))",
        "(f64.reinterpret_i64 (i64.const 0x7ff0000000000001))",
        "(call $id64 (f64.reinterpret_i64 (i64.const 0xfff0000000000001)))",
        "(f64.load (i32.const 16))",
    ];
    let mut body = String::new();
    for (k, e) in f32s.iter().enumerate() {
        body += &format!("(f32.store (i32.const {}) {e})\n", 100 + 4 * k);
    }
    for (k, e) in f64s.iter().enumerate() {
        body += &format!("(f64.store (i32.const {}) {e})\n", 200 + 8 * k);
    }
    // Through reinterprets to integers, and copysign's sign from a NaN.
    let n32 = f32s.len();
    body += &format!(
        "(i32.store (i32.const 400) (i32.reinterpret_f32 (f32.div (f32.const 0) (f32.const 0))))
         (i64.store (i32.const 408) (i64.reinterpret_f64 (f64.reinterpret_i64 (i64.const 0xfff0000000000001))))
         (f32.store (i32.const 416) (f32.copysign (f32.const 1) (f32.div (f32.const 0) (f32.const 0))))
         (f64.store (i32.const 424) (f64.copysign (f64.const 1) (f64.sqrt (f64.const -1))))
         (i32.store (i32.const 0) (i32.const 100))
         (i32.store (i32.const 4) (i32.const {}))
         (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 40)))
         (i32.store (i32.const 4) (i32.const {}))
         (i32.store (i32.const 0) (i32.const 200))
         (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 40)))
         (i32.store (i32.const 0) (i32.const 400))
         (i32.store (i32.const 4) (i32.const 32))
         (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 40)))",
        4 * n32,
        8 * f64s.len()
    );
    let wat = format!(
        r#"(module {FD_WRITE} (memory 1)
      (data (i32.const 8) "\01\00\80\7f\00\00\00\00\01\00\00\00\00\00\f0\ff")
      (global $g32 (mut f32) (f32.const nan:0x200001))
      (func $id32 (param f32) (result f32) (local.get 0))
      (func $id64 (param f64) (result f64) (local.get 0))
      (func (export "_start") (local $l32 f32)
        {body}))"#
    );
    let r = run_wat(&pool(), &wat, ManifestBuilder::new());
    assert_eq!(r.outcome, Outcome::Exited, "{:?}", r.detail);
    let out = &r.stdout;
    assert_eq!(out.len(), 4 * n32 + 8 * f64s.len() + 32);
    for (k, e) in f32s.iter().enumerate() {
        let bits = u32::from_le_bytes(out[4 * k..4 * k + 4].try_into().expect("4"));
        assert_eq!(bits, 0x7fc0_0000, "{e} gave {bits:#010x}");
    }
    for (k, e) in f64s.iter().enumerate() {
        let at = 4 * n32 + 8 * k;
        let bits = u64::from_le_bytes(out[at..at + 8].try_into().expect("8"));
        assert_eq!(bits, 0x7ff8_0000_0000_0000, "{e} gave {bits:#018x}");
    }
    let tail = &out[4 * n32 + 8 * f64s.len()..];
    assert_eq!(
        tail[..4],
        0x7fc0_0000u32.to_le_bytes(),
        "i32.reinterpret_f32 of 0/0"
    );
    assert_eq!(
        tail[8..16],
        0x7ff8_0000_0000_0000u64.to_le_bytes(),
        "i64.reinterpret_f64"
    );
    assert_eq!(
        tail[16..20],
        1.0f32.to_le_bytes(),
        "copysign takes the canonical (+) sign"
    );
    assert_eq!(
        tail[24..32],
        1.0f64.to_le_bytes(),
        "copysign takes the canonical (+) sign"
    );
    // Ordinary values keep their bits: -0.0, subnormals, infinities.
    let plain = format!(
        r#"(module {FD_WRITE} (memory 1)
      (func (export "_start")
        (f32.store (i32.const 100) (f32.neg (f32.const 0)))
        (f32.store (i32.const 104) (f32.reinterpret_i32 (i32.const 1)))
        (f64.store (i32.const 108) (f64.const -inf))
        (f32.store (i32.const 116) (f32.copysign (f32.const 2) (f32.const -0)))
        (i32.store (i32.const 0) (i32.const 100))
        (i32.store (i32.const 4) (i32.const 20))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 40)))))"#
    );
    let r = run_wat(&pool(), &plain, ManifestBuilder::new());
    let mut want = Vec::new();
    want.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(&f64::NEG_INFINITY.to_le_bytes());
    want.extend_from_slice(&(-2.0f32).to_le_bytes());
    assert_eq!(r.stdout, want);
}

/// plasm-fuel/2 bounds time: a bulk operation pays for its length, and host-call
/// work counts against the fuel limit, so neither can turn one unit of fuel into
/// unbounded work (there is no wall-clock interrupt).
#[test]
fn bulk_operations_and_host_calls_pay_for_their_size() {
    let pool = pool();
    let fill = |len: u32| {
        format!(
            "(module (memory 1) (func (export \"_start\") (memory.fill (i32.const 0) (i32.const 7) (i32.const {len}))))"
        )
    };
    let small = run_wat(&pool, &fill(0), ManifestBuilder::new());
    let large = run_wat(&pool, &fill(65536), ManifestBuilder::new());
    assert_eq!(
        (small.outcome, large.outcome),
        (Outcome::Exited, Outcome::Exited)
    );
    assert_eq!(large.fuel_used - small.fuel_used, 65536 / 64);
    // A fill loop runs out of fuel after a bounded number of bytes.
    let bomb = "(module (memory 1) (func (export \"_start\")
        (loop (memory.fill (i32.const 0) (i32.const 7) (i32.const 65536)) (br 0))))";
    let r = run_wat(&pool, bomb, ManifestBuilder::new().fuel(1_000_000));
    assert_eq!((r.outcome, r.fuel_used), (Outcome::OutOfFuel, 1_000_000));
    // random_get of 64 KiB in a loop: the host work runs out before the instructions do.
    let random = "(module
        (import \"wasi_snapshot_preview1\" \"random_get\" (func $rg (param i32 i32) (result i32)))
        (memory 2) (func (export \"_start\")
        (loop (drop (call $rg (i32.const 0) (i32.const 65536))) (br 0))))";
    let r = run_wat(&pool, random, ManifestBuilder::new().fuel(1_000_000));
    assert_eq!(r.outcome, Outcome::OutOfFuel, "{r:?}");
    assert!(
        r.detail
            .as_deref()
            .is_some_and(|d| d.contains("host calls")),
        "{r:?}"
    );
    assert_eq!(r.fuel_used, 1_000_000);
}

/// Every C example (built by examples/build.sh, which the test script runs
/// first) gives the same output, exit code and fuel on both engines.
#[test]
fn every_c_example_agrees_on_both_engines() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/build");
    let cases: &[(&str, &[&str], &[u8])] = &[
        ("primes", &["20000"], b""),
        ("reverse", &[], b"stressed"),
        ("sha256sum", &[], b"abc"),
        ("sleep", &[], b""),
        ("sieve", &["100000"], b""),
        ("matmul", &["20"], b""),
        ("dp", &["200"], b""),
    ];
    let pool = pool();
    let mut ran = 0;
    for (name, args, input) in cases {
        let Ok(module) = std::fs::read(root.join(format!("{name}.wasm"))) else {
            eprintln!("{name}.wasm not built (run examples/build.sh): skipped");
            continue;
        };
        let mut b = ManifestBuilder::new();
        for a in *args {
            b = b.arg(*a);
        }
        let r = run_bytes(&pool, &module, input, b);
        assert_eq!(
            (r.outcome, r.exit_code),
            (Outcome::Exited, Some(0)),
            "{name}: {r:?}"
        );
        assert!(!r.stdout.is_empty(), "{name} printed nothing");
        ran += 1;
    }
    // The test script builds the examples; without them this test proves nothing.
    if std::env::var_os("PLASM_EXAMPLES_REQUIRED").is_some() {
        assert_eq!(ran, cases.len());
    }
}
