//! `plasm bench --only engines`: wasmtime against wasm3, native code and the
//! wasmtime CLI.
//!
//! * CPU-bound C kernels (`examples/c/{sieve,matmul,dp}.c`) as whole processes:
//!   native `gcc -O2`, `plasm run --runtime wasmtime`, `plasm run --runtime wasm3`
//!   and, when a `wasmtime` CLI is found (`$WASMTIME` or `PATH`), `wasmtime run`;
//! * a tiny job as a whole process, cold (empty cache) and warm;
//! * Cranelift compile time and cache-hit instantiation time;
//! * the release binary's size.
//!
//! Whole-process times include start-up, reading the module, checking the cache
//! and signing the receipt: what a user waits for. Each is the median of
//! `runs` runs after one warm-up run (which fills the caches).

use super::report::{Figure, Report};
use super::{BenchError, fail, ms};
use crate::runtime::instrument::instrument;
use crate::runtime::wasi;
use crate::runtime::wasmtime::WasmtimeRuntime;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The kernels and the argument each runs with (sized for ~0.2-1 s natively).
const KERNELS: &[(&str, &str)] = &[("sieve", "60000000"), ("matmul", "700"), ("dp", "16000")];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median wall time of `cmd` over `runs` runs, after one warm-up; checks that
/// every run succeeds and returns its stdout.
fn time_process(mut cmd: Command, runs: usize) -> Result<(Duration, Vec<u8>), BenchError> {
    let mut times = Vec::new();
    let mut stdout = Vec::new();
    for i in 0..=runs {
        let t = Instant::now();
        let out = cmd.output().map_err(fail)?;
        let elapsed = t.elapsed();
        if !out.status.success() {
            return Err(fail(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        if i > 0 {
            times.push(elapsed);
        }
        stdout = out.stdout;
    }
    Ok((median(times), stdout))
}

fn plasm_run(exe: &Path, dir: &Path, engine: &str, wasm: &Path, arg: Option<&str>) -> Command {
    let mut c = Command::new(exe);
    c.arg("run")
        .arg("--runtime")
        .arg(engine)
        .arg("--fuel")
        .arg("1000000000000")
        .arg("--data-dir")
        .arg(dir)
        .arg(wasm);
    if let Some(a) = arg {
        c.arg(format!("--arg={a}"));
    }
    c
}

fn wasmtime_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WASMTIME") {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("wasmtime"))
            .find(|p| p.is_file())
    })
}

/// The `engines` section.
pub fn figures(report: &mut Report, runs: usize) -> Result<(), BenchError> {
    let runs = runs.clamp(3, 7);
    let exe = std::env::current_exe().map_err(fail)?;
    let dir = super::tempfile_dir()?;
    let cli = wasmtime_cli();
    outln!(
        "engines   (median of {runs} whole-process runs after a warm-up; wasmtime CLI: {})",
        cli.as_ref().map_or("not found (set WASMTIME)".into(), |p| p
            .display()
            .to_string())
    );
    for (name, arg) in KERNELS {
        let wasm = PathBuf::from(format!("examples/build/{name}.wasm"));
        let src = PathBuf::from(format!("examples/c/{name}.c"));
        if !wasm.is_file() || !src.is_file() {
            outln!("engines   ({name} skipped: run examples/build.sh from the repository root)");
            continue;
        }
        let native = dir.join(name);
        let built = Command::new("gcc")
            .args(["-O2", "-o"])
            .arg(&native)
            .arg(&src)
            .status()
            .map_err(|e| fail(format!("gcc: {e}")))?;
        if !built.success() {
            return Err(fail(format!("gcc could not build {}", src.display())));
        }
        let mut n = Command::new(&native);
        n.arg(arg);
        let (t_native, out_native) = time_process(n, runs)?;
        let (t_wt, out_wt) =
            time_process(plasm_run(&exe, &dir, "wasmtime", &wasm, Some(arg)), runs)?;
        if out_wt != out_native {
            return Err(fail(format!("{name}: wasmtime output differs from native")));
        }
        let ratio = |t: Duration| t.as_secs_f64() / t_native.as_secs_f64();
        report.add(
            Figure::new(
                &format!("engines.{name}.wasmtime_vs_native"),
                format!(
                    "{name} {arg}: native {:.0} ms, plasm run --runtime wasmtime {:.0} ms (metered); ratio",
                    ms(t_native),
                    ms(t_wt)
                ),
                ratio(t_wt),
                "x",
            )
            .method("whole processes, gcc -O2 against plasm run with a warm cache")
            .goal("<= 1.30x"),
        );
        if *name == "sieve" {
            let (t_w3, out_w3) = time_process(plasm_run(&exe, &dir, "wasm3", &wasm, Some(arg)), 1)?;
            if out_w3 != out_native {
                return Err(fail(format!("{name}: wasm3 output differs from native")));
            }
            report.add(
                Figure::new(
                    "engines.sieve.wasm3_vs_native",
                    format!(
                        "sieve {arg}: plasm run --runtime wasm3 {:.0} ms; ratio to native",
                        ms(t_w3)
                    ),
                    ratio(t_w3),
                    "x",
                )
                .method("whole process, one run after a warm-up"),
            );
        }
        if let Some(cli) = &cli {
            let mut c = Command::new(cli);
            c.arg("run").arg(&wasm).arg(arg);
            let (t_cli, out_cli) = time_process(c, runs)?;
            if out_cli != out_native {
                return Err(fail(format!("{name}: wasmtime CLI output differs")));
            }
            report.add(
                Figure::new(
                    &format!("engines.{name}.plasm_vs_wasmtime_cli"),
                    format!(
                        "{name} {arg}: wasmtime run {:.0} ms (unmetered, its cache warm); plasm / CLI",
                        ms(t_cli)
                    ),
                    t_wt.as_secs_f64() / t_cli.as_secs_f64(),
                    "x",
                )
                .method("whole processes, both caches warm")
                .goal("<= 1.15x"),
            );
        }
    }
    tiny(report, &exe, &dir, runs, cli.as_deref())?;
    compile_and_instantiate(report)?;
    if let Ok(meta) = std::fs::metadata(&exe) {
        report.add(
            Figure::new(
                "engines.binary_mib",
                format!("size of {}", exe.display()),
                meta.len() as f64 / (1024.0 * 1024.0),
                "MiB",
            )
            .method("file size of the running binary (a release build for the real figure)"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A tiny job (hello) as a whole process: empty cache, warm cache, and the CLI.
fn tiny(
    report: &mut Report,
    exe: &Path,
    dir: &Path,
    runs: usize,
    cli: Option<&Path>,
) -> Result<(), BenchError> {
    let wasm = dir.join("hello.wasm");
    std::fs::write(&wasm, wat::parse_str(super::HELLO).map_err(fail)?).map_err(fail)?;
    for engine in ["wasmtime", "wasm3"] {
        // Cold: the cache directory removed before every run.
        let mut cold = Vec::new();
        for _ in 0..runs {
            let _ = std::fs::remove_dir_all(dir.join("cache"));
            let t = Instant::now();
            let out = plasm_run(exe, dir, engine, &wasm, None)
                .output()
                .map_err(fail)?;
            cold.push(t.elapsed());
            if !out.status.success() {
                return Err(fail("tiny job failed"));
            }
        }
        let (warm, _) = time_process(plasm_run(exe, dir, engine, &wasm, None), runs)?;
        report.add(
            Figure::new(
                &format!("engines.tiny.{engine}"),
                format!(
                    "tiny job (hello) on {engine}: cold cache {:.1} ms, warm cache; whole process",
                    ms(median(cold))
                ),
                ms(warm),
                "ms",
            )
            .method("fork+exec of plasm run to its exit, signed receipt included; median"),
        );
    }
    if let Some(cli) = cli {
        let mut c = Command::new(cli);
        c.arg("run").arg(&wasm);
        let (t, _) = time_process(c, runs)?;
        report.add(
            Figure::new(
                "engines.tiny.wasmtime_cli",
                "tiny job (hello): wasmtime run, its cache warm",
                ms(t),
                "ms",
            )
            .method("fork+exec of the wasmtime CLI to its exit; median"),
        );
    }
    Ok(())
}

/// Cranelift compile time of the instrumented sieve, and instantiation of a
/// compiled module; and metering overhead under wasmtime (the call alone).
fn compile_and_instantiate(report: &mut Report) -> Result<(), BenchError> {
    let engine = WasmtimeRuntime::new().map_err(fail)?;
    let Ok(plain) = std::fs::read("examples/build/sieve.wasm") else {
        return Ok(());
    };
    let metered = instrument(&plain, wasi::signature).map_err(fail)?;
    let args = ["job".to_owned(), "30000000".to_owned()];
    let mut best_plain = Duration::MAX;
    let mut best_metered = Duration::MAX;
    let mut compile = Duration::MAX;
    let mut instantiate = Duration::MAX;
    for _ in 0..5 {
        let p = engine
            .time_call(&plain, "_start", &args[1..], None)
            .map_err(fail)?;
        let m = engine
            .time_call(&metered.bytes, "_start", &args[1..], Some(1 << 50))
            .map_err(fail)?;
        best_plain = best_plain.min(p.call);
        best_metered = best_metered.min(m.call);
        compile = compile.min(m.compile);
        instantiate = instantiate.min(m.instantiate);
    }
    report.add(
        Figure::new(
            "metering.sieve.wasmtime",
            format!(
                "C sieve 3e7 on wasmtime: plain {:.1} ms, metered {:.1} ms; overhead",
                ms(best_plain),
                ms(best_metered)
            ),
            best_metered.as_secs_f64() / best_plain.as_secs_f64(),
            "x",
        )
        .method("the call alone (compile and instantiation excluded), best of 5 each")
        .goal("<= 1.15x"),
    );
    report.add(
        Figure::new(
            "engines.compile_ms",
            format!(
                "Cranelift compile of the instrumented sieve ({} bytes)",
                metered.bytes.len()
            ),
            ms(compile),
            "ms",
        )
        .method("Module::new, best of 5"),
    );
    report.add(
        Figure::new(
            "engines.instantiate_us",
            "instantiation of a compiled module (the cache-hit path)",
            instantiate.as_secs_f64() * 1e6,
            "us",
        )
        .method("InstancePre::instantiate with plasm's WASI linked, best of 5"),
    );
    Ok(())
}
