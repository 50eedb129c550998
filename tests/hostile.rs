//! Strangers' code against a node started the documented way (`plasm start`,
//! no extra flags): compile bombs, table bombs, runaway time, unbounded limits,
//! cancel. Each case must end with a clear outcome within a bound, and the node
//! must answer the next job. Issue 20; decisions 0033-0035.

mod common;

use base64::Engine as _;
use common::{Proc, spawn_node};
use plasm::apiclient::ApiClient;
use plasm::manifest::ManifestBuilder;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

fn node(dir: &std::path::Path, name: &str) -> Proc {
    spawn_node(dir, name, &["--listen", QUIC])
}

fn client(p: &Proc) -> ApiClient {
    ApiClient::new(&p.api, None, None)
        .expect("client")
        .with_timeout(Duration::from_secs(120))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Submits `module` (placement local) with `b`'s limits; returns the job id.
async fn submit(api: &ApiClient, module: &[u8], b: ManifestBuilder) -> String {
    let m = b.build(module, b"").expect("manifest");
    let body = json!({
        "manifest": m.as_value(),
        "module": base64::engine::general_purpose::STANDARD.encode(module),
        "placement": "local",
    });
    let r = api
        .request("POST", "/v1/jobs", body.to_string().as_bytes())
        .await
        .expect("submit");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    m.job_id().to_owned()
}

/// Waits until the job is final; returns its status.
async fn finished(api: &ApiClient, id: &str, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let r = api
            .request("GET", &format!("/v1/jobs/{id}"), b"")
            .await
            .expect("status");
        let v = r.json().expect("json");
        if v["state"] == "succeeded" || v["state"] == "failed" {
            return v;
        }
        assert!(
            t.elapsed() < within,
            "job {id} still {} after {within:?}",
            v["state"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hello() -> Vec<u8> {
    common::hello()
}

/// The node is up and runs an ordinary job.
async fn answers(api: &ApiClient, what: &str) {
    let id = submit(api, &hello(), ManifestBuilder::new()).await;
    let v = finished(api, &id, Duration::from_secs(60)).await;
    assert_eq!(v["state"], "succeeded", "after {what}: {v}");
}

/// One function: `locals` i64 locals loaded from memory, `blocks` `if` blocks on
/// them, then all summed, so every local is live across every block (the shape
/// that made Cranelift ask for 52 GB).
fn live_locals(locals: usize, blocks: usize) -> Vec<u8> {
    let mut w = String::from("(module (memory 1) (func (export \"_start\") (local $acc i64)");
    for i in 0..locals {
        let _ = write!(w, " (local $l{i} i64)");
    }
    for i in 0..locals {
        let _ = write!(
            w,
            " (local.set $l{i} (i64.load (i32.const {})))",
            (i * 8) % 65_000
        );
    }
    for b in 0..blocks {
        let (x, y) = (b % locals, (b * 7) % locals);
        let _ = write!(
            w,
            " (if (i64.eqz (local.get $l{x})) (then (local.set $l{y} (i64.add (local.get $l{y}) (i64.const 1)))))"
        );
    }
    for i in 0..locals {
        let _ = write!(
            w,
            " (local.set $acc (i64.add (local.get $acc) (local.get $l{i})))"
        );
    }
    w.push_str("))");
    parse(&w)
}

/// Text to bytes; a parse error is shown without the (megabytes of) source.
fn parse(w: &str) -> Vec<u8> {
    wat::parse_str(w).unwrap_or_else(|e| {
        let mut m = e.to_string();
        m.truncate(300);
        panic!("wat: {m}")
    })
}

fn deep_nesting(depth: usize) -> Vec<u8> {
    let mut w = String::from("(module (func (export \"_start\")");
    for _ in 0..depth {
        w.push_str(" (block");
    }
    for _ in 0..depth {
        w.push(')');
    }
    w.push_str("))");
    parse(&w)
}

fn huge_br_table(targets: usize) -> Vec<u8> {
    let mut w =
        String::from("(module (func (export \"_start\") block $out loop $l i32.const 1 br_table");
    for i in 0..targets {
        w.push_str(if i % 2 == 0 { " $l" } else { " $out" });
    }
    w.push_str(" $out end end))");
    parse(&w)
}

fn many_functions(n: usize) -> Vec<u8> {
    let mut w = String::from("(module");
    for i in 0..n {
        let _ = write!(
            w,
            " (func $f{i} (result i32) (i32.add (i32.const {i}) (i32.const 1)))"
        );
    }
    w.push_str(" (func (export \"_start\") (drop (call $f0))))");
    parse(&w)
}

fn many_signatures(n: usize) -> Vec<u8> {
    let mut w = String::from("(module (table 1 funcref)");
    for i in 0..n {
        let params = " i32".repeat(1 + i % 8);
        let _ = write!(w, " (type $t{i} (func (param{params}) (result i64)))");
    }
    w.push_str(" (func (export \"_start\") (local $x i32)");
    for i in 0..n {
        let args = " (local.get $x)".repeat(1 + i % 8);
        let _ = write!(
            w,
            " (if (local.get $x) (then (drop (call_indirect (type $t{i}){args} (i32.const 0)))))"
        );
    }
    w.push_str("))");
    parse(&w)
}

/// Random nests of blocks, loops and locals inside every shape limit (seeded).
fn random_shape(seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    };
    let locals = 1 + next(2_000) as usize;
    let mut w = String::from("(module (memory 1) (func (export \"_start\")");
    for i in 0..locals {
        let _ = write!(w, " (local $l{i} i64)");
    }
    let mut open = 0;
    for _ in 0..next(6_000) {
        match next(5) {
            0 if open < 200 => {
                w.push_str(" (block");
                open += 1;
            }
            1 if open > 0 => {
                w.push(')');
                open -= 1;
            }
            _ => {
                let (x, y) = (next(locals as u64), next(locals as u64));
                let _ = write!(
                    w,
                    " (if (i64.eqz (local.get $l{x})) (then (local.set $l{y} (i64.add (local.get $l{y}) (i64.load (i32.const {}))))))",
                    next(60_000)
                );
            }
        }
    }
    for _ in 0..open {
        w.push(')');
    }
    w.push_str("))");
    parse(&w)
}

#[test]
fn compile_bombs_cost_only_their_job() {
    let d = tempfile::tempdir().expect("tmp");
    let n = node(d.path(), "n");
    let api = client(&n);
    let battery: Vec<(&str, Vec<u8>)> = vec![
        (
            "live locals across blocks (the 52 GB shape, at 6,500 locals: 8,000 is now over the locals limit)",
            live_locals(6_500, 60_000),
        ),
        (
            "live locals just inside the shape limit",
            live_locals(1_000, 4_000),
        ),
        (
            "blocks just inside the block limit",
            live_locals(20, 32_000),
        ),
        ("deep nesting", deep_nesting(4_000)),
        ("nesting just inside the limit", deep_nesting(958)),
        ("huge br_table", huge_br_table(400_000)),
        ("br_table at its limit", huge_br_table(32_767)),
        ("100,000 small functions", many_functions(99_000)),
        ("many call_indirect signatures", many_signatures(20_000)),
        ("random shape 1", random_shape(1)),
        ("random shape 2", random_shape(2)),
        ("random shape 3", random_shape(3)),
    ];
    rt().block_on(async {
        for (what, module) in &battery {
            let t = Instant::now();
            let b = ManifestBuilder::new();
            let id = submit(&api, module, b).await;
            // The compile deadline (10 s) plus the run of a small job.
            let v = finished(&api, &id, Duration::from_secs(60)).await;
            let took = t.elapsed();
            let kb = module.len() as f64 / 1024.0;
            let outcome = format!(
                "{} {}",
                v["receipt"]["outcome"].as_str().unwrap_or("-"),
                v["receipt"]["detail"].as_str().unwrap_or("")
            );
            let error = v["error"].as_str().unwrap_or("-").to_owned();
            eprintln!(
                "{what}: {kb:.0} KB, {:.2} s ({:.1} ms/KB), state {}, outcome {outcome}, error {error}",
                took.as_secs_f64(),
                took.as_secs_f64() * 1000.0 / kb,
                v["state"]
            );
            // A clear ending: a receipt, or a named machine limit.
            assert!(
                v["receipt"].is_object()
                    || error.starts_with("compile_limit")
                    || error.starts_with("deadline"),
                "{what}: {v}"
            );
            assert!(took < Duration::from_secs(30), "{what} took {took:?}");
            assert!(n_alive(&n), "{what} killed the node: {}", n.log());
            answers(&api, what).await;
        }
        // The 52 GB shape is refused before compiling, with the limit named.
        let id = submit(
            &api,
            &battery[0].1,
            ManifestBuilder::new(),
        )
        .await;
        let v = finished(&api, &id, Duration::from_secs(30)).await;
        assert_eq!(v["receipt"]["outcome"], "invalid_module", "{v}");
        let detail = v["receipt"]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("locals × blocks") || detail.contains("blocks (at most"),
            "{detail}"
        );
    });
}

fn n_alive(p: &Proc) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &p.child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn tables_count_against_the_memory_limit() {
    let d = tempfile::tempdir().expect("tmp");
    let n = node(d.path(), "n");
    let api = client(&n);
    // 16 funcref tables of 10 M entries: 2.5 GB of entries under a 64 KiB... 256 MiB limit.
    let mut w = String::from("(module");
    for _ in 0..16 {
        w.push_str(" (table 10000000 funcref)");
    }
    w.push_str(" (func (export \"_start\")))");
    let bomb = parse(&w);
    // 17 tables: refused by count.
    let mut w17 = String::from("(module");
    for _ in 0..17 {
        w17.push_str(" (table 1 funcref)");
    }
    w17.push_str(" (func (export \"_start\")))");
    let many = parse(&w17);
    rt().block_on(async {
        let id = submit(&api, &bomb, ManifestBuilder::new()).await;
        let v = finished(&api, &id, Duration::from_secs(30)).await;
        assert_eq!(v["receipt"]["outcome"], "memory_limit", "{v}");
        assert!(
            v["receipt"]["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("tables"),
            "{v}"
        );
        let id = submit(&api, &many, ManifestBuilder::new()).await;
        let v = finished(&api, &id, Duration::from_secs(30)).await;
        assert_eq!(v["receipt"]["outcome"], "invalid_module", "{v}");
        answers(&api, "table bombs").await;
    });
    assert!(n_alive(&n));
}

#[test]
fn the_api_refuses_limits_above_the_node_maximum() {
    let d = tempfile::tempdir().expect("tmp");
    let n = node(d.path(), "n");
    let api = client(&n);
    rt().block_on(async {
        for (what, b) in [
            ("limits.fuel", ManifestBuilder::new().fuel((1 << 53) - 1)),
            (
                "limits.memory_bytes",
                ManifestBuilder::new().memory_bytes(4 << 30),
            ),
        ] {
            let m = b.build(&hello(), b"").expect("manifest");
            let body = json!({
                "manifest": m.as_value(),
                "module": base64::engine::general_purpose::STANDARD.encode(hello()),
                "placement": "local",
            });
            let r = api
                .request("POST", "/v1/jobs", body.to_string().as_bytes())
                .await
                .expect("submit");
            let v = r.json().expect("json");
            assert_eq!(r.status, 422, "{what}: {v}");
            assert_eq!(v["error"]["code"], "over_maximum", "{v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(what) && msg.contains("maximum"), "{msg}");
        }
        let metrics = api.request("GET", "/metrics", b"").await.expect("metrics");
        let text = String::from_utf8_lossy(&metrics.body);
        assert!(text.contains("plasm_api_over_maximum_total 2"), "{text}");
    });
}

/// A job that spins until its fuel runs out (minutes at 9e9 fuel).
fn spin() -> Vec<u8> {
    wat::parse_str("(module (func (export \"_start\") (loop (br 0))))").expect("wat")
}

#[test]
fn a_running_job_is_cancelled_on_either_engine_and_the_worker_replaced() {
    let d = tempfile::tempdir().expect("tmp");
    let n = node(d.path(), "n");
    let api = client(&n);
    rt().block_on(async {
        for engine in ["wasmtime", "wasm3"] {
            let b = ManifestBuilder::new().fuel(9_000_000_000).runtime(engine);
            let id = submit(&api, &spin(), b).await;
            // Running: then cancel.
            let t = Instant::now();
            loop {
                let v = api
                    .request("GET", &format!("/v1/jobs/{id}"), b"")
                    .await
                    .expect("status")
                    .json()
                    .expect("json");
                if v["state"] == "running" {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(20), "{v}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = api
                .request("DELETE", &format!("/v1/jobs/{id}"), b"")
                .await
                .expect("cancel");
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            let t = Instant::now();
            let v = finished(&api, &id, Duration::from_secs(10)).await;
            eprintln!("{engine}: cancelled in {:?}", t.elapsed());
            assert_eq!(v["state"], "failed", "{v}");
            assert!(v["receipt"].is_null(), "{v}");
            assert!(
                v["error"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("cancelled"),
                "{v}"
            );
            // Cancelling it again: it has finished.
            let r = api
                .request("DELETE", &format!("/v1/jobs/{id}"), b"")
                .await
                .expect("cancel");
            assert_eq!(r.status, 409);
            answers(&api, engine).await;
        }
        let r = api
            .request("DELETE", "/v1/jobs/0000", b"")
            .await
            .expect("cancel");
        assert_eq!(r.status, 404);
        let metrics = api.request("GET", "/metrics", b"").await.expect("metrics");
        let text = String::from_utf8_lossy(&metrics.body);
        assert!(
            text.contains("plasm_jobs_aborted_cancelled_total 2"),
            "{text}"
        );
    });
}

#[test]
fn the_node_reports_its_sandbox_and_a_worker_cannot_open_a_socket() {
    let d = tempfile::tempdir().expect("tmp");
    let n = node(d.path(), "n");
    let api = client(&n);
    rt().block_on(async {
        let v = api
            .request("GET", "/v1/node", b"")
            .await
            .expect("node")
            .json()
            .expect("json");
        let s = &v["sandbox"];
        eprintln!("sandbox: {s}");
        assert_eq!(s["worker_processes"], true, "{v}");
        assert_eq!(s["seccomp"], true, "{s}");
        assert_eq!(s["env_cleared"], true, "{s}");
        assert!(s["memory_limit_bytes"].as_u64().unwrap_or(0) > 0, "{s}");
    });
    // A worker's filter kills it on socket(2): the probe must die by SIGSYS.
    let out = std::process::Command::new(common::plasm_bin())
        .args(["worker", "--probe-socket"])
        .env_clear()
        .output()
        .expect("probe");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(31), "{:?}", out.status);
}

/// Host and port of a node's API URL.
fn host_port(p: &Proc) -> String {
    p.api
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[test]
fn a_trickling_body_is_cut_off_and_holds_nothing() {
    use std::io::{Read, Write};
    let d = tempfile::tempdir().expect("tmp");
    let n = node(d.path(), "n");
    let api = client(&n);
    let addr = host_port(&n);
    // Two connections declare 48 + 37 MiB and send a byte every second.
    let trickle = |mib: usize| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            let head = format!(
                "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                mib << 20
            );
            s.write_all(head.as_bytes()).expect("head");
            let t = Instant::now();
            for _ in 0..60 {
                if s.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
                s.set_nonblocking(true).expect("nonblocking");
                let mut buf = [0u8; 512];
                let got = s.read(&mut buf).unwrap_or(0);
                s.set_nonblocking(false).expect("blocking");
                if got > 0 {
                    return (
                        String::from_utf8_lossy(&buf[..got]).into_owned(),
                        t.elapsed(),
                    );
                }
            }
            (String::new(), t.elapsed())
        })
    };
    let (a, b) = (trickle(48), trickle(37));
    std::thread::sleep(Duration::from_secs(1));
    // Meanwhile an ordinary 1 MiB submission is taken once the tricklers are cut
    // off (429 with Retry-After while they hold the budget, never for long).
    rt().block_on(async {
        let input = vec![b'x'; 1 << 20];
        let m = ManifestBuilder::new()
            .build(&hello(), &input)
            .expect("manifest");
        let body = json!({
            "manifest": m.as_value(),
            "module": base64::engine::general_purpose::STANDARD.encode(hello()),
            "input": base64::engine::general_purpose::STANDARD.encode(&input),
            "placement": "local",
        });
        let t = Instant::now();
        loop {
            let r = api
                .request("POST", "/v1/jobs", body.to_string().as_bytes())
                .await
                .expect("submit");
            if r.status == 202 {
                break;
            }
            assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
            assert!(t.elapsed() < Duration::from_secs(15), "budget still held");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        eprintln!("an ordinary submission was taken after {:?}", t.elapsed());
    });
    for t in [a, b] {
        let (answer, took) = t.join().expect("trickler");
        eprintln!(
            "trickler answered after {took:?}: {}",
            answer.lines().next().unwrap_or("")
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("too_slow"), "{answer}");
        assert!(took < Duration::from_secs(12), "{took:?}");
    }
}

#[test]
fn one_client_cannot_hold_every_event_stream() {
    use std::io::{Read, Write};
    let d = tempfile::tempdir().expect("tmp");
    let tokens = d.path().join("tokens");
    std::fs::write(
        &tokens,
        "holder-token-0123456789 read,submit\nother-token-0123456789 read\n",
    )
    .expect("tokens");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let n = spawn_node(
        d.path(),
        "n",
        &[
            "--listen",
            QUIC,
            "--api-token-file",
            &tokens.display().to_string(),
        ],
    );
    let addr = host_port(&n);
    let open = |token: &str| {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        let req = format!(
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("request");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let got = s.read(&mut buf).expect("status line");
        (s, String::from_utf8_lossy(&buf[..got]).into_owned())
    };
    let mut held = Vec::new();
    for i in 0..16 {
        let (s, status) = open("holder-token-0123456789");
        assert!(status.starts_with("HTTP/1.1 200"), "stream {i}: {status}");
        held.push(s);
    }
    let (_, status) = open("holder-token-0123456789");
    assert!(status.starts_with("HTTP/1.1 429"), "the 17th: {status}");
    let (_other, status) = open("other-token-0123456789");
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "another client: {status}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let (_again, status) = open("holder-token-0123456789");
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "after closing: {status}"
    );
}
