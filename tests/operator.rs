//! The command tree and the operator's promises, tried as a user would with real
//! processes: the job and node commands against an API serving TLS with a
//! self-signed certificate (trusted with `--cacert`, refused without it), plain
//! HTTP beyond loopback refused without `--insecure-http`, SIGHUP survived by a
//! bootstrap node, systemd readiness and watchdog pings on `NOTIFY_SOCKET`, and
//! a shutdown with a full queue that keeps its grace period.

mod common;

use common::{Proc, plasm_bin, spawn_node as start};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

fn plasm(args: &[&str]) -> Output {
    Command::new(plasm_bin())
        .args(args)
        .output()
        .expect("run plasm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A self-signed certificate made the way operators make one (`openssl req -x509`,
/// which marks it `CA:TRUE`) for `names` (subjectAltName entries such as
/// `IP:127.0.0.1`): (cert path, key path).
fn openssl_self_signed(dir: &Path, stem: &str, names: &str) -> (String, String) {
    let (cert, key) = openssl_cert(
        dir,
        stem,
        "/CN=plasm test",
        &[&format!("subjectAltName={names}")],
    );
    let shown = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", &cert])
        .output()
        .expect("openssl x509");
    assert!(
        text(&shown.stdout).contains("CA:TRUE"),
        "the usual self-signed certificate is a CA certificate"
    );
    (cert, key)
}

/// `openssl req -x509` with a subject and `-addext` extensions: (cert path, key path).
fn openssl_cert(dir: &Path, stem: &str, subject: &str, addext: &[&str]) -> (String, String) {
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
    ])
    .args(["-nodes", "-days", "30", "-subj", subject]);
    for e in addext {
        cmd.args(["-addext", e]);
    }
    let out = cmd
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (cert.display().to_string(), key.display().to_string())
}

/// The operators' self-signed certificate for 127.0.0.1 and localhost.
fn self_signed(dir: &Path) -> (String, String) {
    openssl_self_signed(dir, "api", "IP:127.0.0.1,DNS:localhost")
}

#[test]
fn job_and_node_commands_work_over_tls_with_a_private_ca() {
    let d = tempfile::tempdir().expect("tmp");
    let (cert, key) = self_signed(d.path());
    let node = start(
        d.path(),
        "n",
        &[
            "--listen",
            QUIC,
            "--api-tls-cert",
            &cert,
            "--api-tls-key",
            &key,
        ],
    );
    assert!(node.api.starts_with("https://127.0.0.1:"), "{}", node.api);
    let module = d.path().join("reverse.wat");
    std::fs::write(&module, include_str!("../examples/wat/reverse.wat")).expect("write");
    let input = d.path().join("in.txt");
    std::fs::write(&input, "over tls").expect("write");
    let m = module.display().to_string();
    let i = input.display().to_string();
    let api = ["--api", node.api.as_str(), "--cacert", cert.as_str()];

    // submit --wait prints the output once the job has succeeded.
    let mut args = vec![
        "job",
        "submit",
        "--wait",
        "--placement",
        "local",
        "--input",
        &i,
    ];
    args.extend(api);
    args.push(&m);
    let out = plasm(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"slt revo");
    assert!(
        text(&out.stderr).contains("succeeded"),
        "progress lines on stderr when piped: {}",
        text(&out.stderr)
    );

    // submit without --wait prints the id; status, watch, output and receipt follow it.
    let mut args = vec!["job", "submit", "--arg", "x"];
    args.extend(api);
    args.push(&m);
    let out = plasm(&args);
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 64, "{}", text(&out.stderr));
    let with_api = |cmd: &[&str]| {
        let mut a = cmd.to_vec();
        a.extend(api);
        plasm(&a)
    };
    let watched = with_api(&["job", "watch", &id]);
    assert_eq!(watched.status.code(), Some(0), "{}", text(&watched.stderr));
    let status = with_api(&["job", "status", &id]);
    assert!(
        text(&status.stdout).contains("\"succeeded\""),
        "{}",
        text(&status.stdout)
    );
    let output = with_api(&["job", "output", &id]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let receipt = with_api(&["job", "receipt", &id]);
    let r = d.path().join("r.json");
    std::fs::write(&r, &receipt.stdout).expect("write");
    let v = plasm(&["receipt", "verify", &r.display().to_string()]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
    let got = with_api(&["receipt", "get", &id]);
    assert_eq!(got.stdout, receipt.stdout);

    let status = with_api(&["node", "status"]);
    let s = text(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
    assert!(
        s.contains(&format!("peer_id       {}", node.peer_id())),
        "{s}"
    );
    assert!(
        s.contains("reachability  unknown (DHT client mode, profile wan)"),
        "{s}"
    );
    assert!(s.contains("peers         0 connected"), "{s}");

    // Without the CA the certificate is refused, and the error says so.
    let out = plasm(&["job", "status", &id, "--api", &node.api]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&out.stderr)
    );
    // An unknown job is a clear 404.
    let out = with_api(&["job", "status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));

    // What curl --cacert accepts, plasm accepts; what it refuses, plasm refuses:
    // another self-signed certificate, and the right one for another name.
    let curl = |ca: &str, url: &str| {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--cacert", ca])
            .arg(format!("{url}/healthz"))
            .status()
            .expect("curl")
            .success()
    };
    assert!(
        curl(&cert, &node.api),
        "curl accepts the node's certificate"
    );
    let (other, _) = openssl_self_signed(d.path(), "other", "IP:127.0.0.1");
    assert!(!curl(&other, &node.api));
    let out = plasm(&["node", "status", "--api", &node.api, "--cacert", &other]);
    assert_eq!(out.status.code(), Some(1), "another certificate is refused");
    let by_name = node.api.replace("127.0.0.1", "localhost");
    assert!(curl(&cert, &by_name), "localhost is in the certificate");
    let out = plasm(&["node", "status", "--api", &by_name, "--cacert", &cert]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `--cacert` with the node's own certificate, when it does not name the host dialed,
/// is refused (as curl refuses it): pinning never skips the name check.
#[test]
fn a_pinned_certificate_must_name_the_host() {
    let d = tempfile::tempdir().expect("tmp");
    let (cert, key) = openssl_self_signed(d.path(), "api", "DNS:node.example");
    let node = start(
        d.path(),
        "n",
        &[
            "--listen",
            QUIC,
            "--api-tls-cert",
            &cert,
            "--api-tls-key",
            &key,
        ],
    );
    let curl = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--cacert", &cert])
        .arg(format!("{}/healthz", node.api))
        .status()
        .expect("curl");
    assert!(
        !curl.success(),
        "curl refuses a certificate for another name"
    );
    let out = plasm(&["node", "status", "--api", &node.api, "--cacert", &cert]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).to_lowercase().contains("name"),
        "{}",
        text(&out.stderr)
    );
    drop(node);

    // `openssl req -x509 -subj /CN=localhost` with no subjectAltName: curl falls back
    // to the common name, and so does plasm; a certificate for client authentication
    // only, or for signing certificates only, is refused by both.
    let cases: [(&str, &str, &[&str], bool); 3] = [
        ("cn", "/CN=localhost", &[], true),
        (
            "client",
            "/CN=plasm test",
            &[
                "subjectAltName=DNS:localhost",
                "extendedKeyUsage=clientAuth",
            ],
            false,
        ),
        (
            "signing",
            "/CN=plasm test",
            &[
                "subjectAltName=DNS:localhost",
                "keyUsage=critical,keyCertSign",
            ],
            false,
        ),
    ];
    for (stem, subject, addext, accepted) in cases {
        let (cert, key) = openssl_cert(d.path(), stem, subject, addext);
        let node = start(
            d.path(),
            stem,
            &[
                "--listen",
                QUIC,
                "--api-tls-cert",
                &cert,
                "--api-tls-key",
                &key,
            ],
        );
        let url = node.api.replace("127.0.0.1", "localhost");
        let curl = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--cacert", &cert])
            .arg(format!("{url}/healthz"))
            .status()
            .expect("curl");
        let out = plasm(&["node", "status", "--api", &url, "--cacert", &cert]);
        assert_eq!(curl.success(), accepted, "{stem}: curl");
        assert_eq!(
            out.status.success(),
            accepted,
            "{stem}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn plain_http_beyond_loopback_needs_insecure_http() {
    let d = tempfile::tempdir().expect("tmp");
    let tokens = d.path().join("tokens");
    std::fs::write(&tokens, "0123456789abcdef0123 admin\n").expect("write");
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let out = Command::new(plasm_bin())
        .args([
            "start",
            "--api",
            "0.0.0.0:0",
            "--listen",
            QUIC,
            "--api-token-file",
        ])
        .arg(&tokens)
        .arg("--data-dir")
        .arg(d.path().join("n"))
        .output()
        .expect("plasm start");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("--insecure-http") && err.contains("--api-tls-cert"),
        "{err}"
    );
}

/// Sends `signal` (e.g. `-HUP`) to the process.
fn kill(p: &Proc, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &p.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// Waits until the node's stderr log contains `needle`.
fn log_contains(p: &Proc, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if p.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_bootstrap_node_survives_sighup_and_says_what_it_applied() {
    let d = tempfile::tempdir().expect("tmp");
    let mut b = start(
        d.path(),
        "b",
        &["--mode", "bootstrap", "--public", "--listen", QUIC],
    );
    kill(&b, "-HUP");
    assert!(log_contains(&b, "plasm: SIGHUP:"), "{}", b.log());
    assert_eq!(b.child.try_wait().expect("wait"), None, "still running");
    kill(&b, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = b.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}: {}", b.log());
}

#[test]
fn readiness_and_watchdog_reach_notify_socket() {
    let d = tempfile::tempdir().expect("tmp");
    let path = d.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut child = Command::new(plasm_bin())
        .args([
            "start",
            "--api",
            "127.0.0.1:0",
            "--listen",
            QUIC,
            "--data-dir",
        ])
        .arg(d.path().join("n"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        match sock.recv(&mut buf) {
            Ok(n) => seen.push_str(&text(&buf[..n])),
            Err(e) => panic!("no notification ({e}); got so far: {seen}"),
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    while !seen.contains("STOPPING=1") {
        match sock.recv(&mut buf) {
            Ok(n) => seen.push_str(&text(&buf[..n])),
            Err(e) => panic!("no STOPPING=1 ({e}); got: {seen}"),
        }
    }
    assert!(child.wait().expect("wait").success());
}

/// Five long jobs on one worker (one running, four queued), then SIGTERM with a
/// 1 s grace: the node exits 0 within the grace plus a small bound, the queued
/// jobs never ran and say so, and the running one is recorded failed.
#[test]
fn shutdown_with_a_full_queue_keeps_its_grace() {
    let d = tempfile::tempdir().expect("tmp");
    let config = d.path().join("plasm.toml");
    std::fs::write(&config, "shutdown_grace_seconds = 1\n").expect("config");
    let config = config.display().to_string();
    let mut node = start(
        d.path(),
        "n",
        &[
            "--config",
            &config,
            "--workers",
            "1",
            "--queue",
            "8",
            "--listen",
            QUIC,
        ],
    );
    // Each job spins until its fuel runs out: minutes, far beyond the grace.
    let spin = wat::parse_str("(module (func (export \"_start\") (loop (br 0))))").expect("wat");
    let module = d.path().join("spin.wasm");
    std::fs::write(&module, &spin).expect("module");
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = plasm::manifest::ManifestBuilder::new()
            .fuel(9_000_000_000)
            .build(&spin, b"")
            .expect("manifest");
        let path = d.path().join(format!("job{i}.json"));
        std::fs::write(&path, m.as_value().to_string()).expect("manifest file");
        let out = plasm(&[
            "job",
            "submit",
            &path.display().to_string(),
            "--module",
            &module.display().to_string(),
            "--placement",
            "local",
            "--api",
            &node.api,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        ids.push(m.job_id().to_owned());
    }
    // The first job holds the worker.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = plasm(&["job", "status", &ids[0], "--api", &node.api]);
        if text(&out.stdout).contains("running") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out.stdout));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The others wait for the worker, and say so.
    let out = plasm(&["job", "status", &ids[1], "--api", &node.api]);
    assert!(
        text(&out.stdout).contains("\"queued\""),
        "{}",
        text(&out.stdout)
    );
    let stopping = Instant::now();
    kill(&node, "-TERM");
    let status = loop {
        if let Some(s) = node.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM with a 1 s grace"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = stopping.elapsed();
    eprintln!("exit {took:?} after SIGTERM (grace 1 s)");
    assert!(status.success(), "{status:?}: {}", node.log());
    // Grace plus the API's and the swarm's own stop, far under TimeoutStopSec (90 s).
    assert!(
        took < Duration::from_secs(6),
        "took {took:?}: {}",
        node.log()
    );
    let store = plasm::store::Store::open(&d.path().join("n"), false, 100).expect("store");
    for (i, id) in ids.iter().enumerate() {
        let row = store.job(id).expect("read").expect("job recorded");
        let error = row.error.clone().unwrap_or_default();
        assert_eq!(row.state.as_str(), "failed", "job {i}: {error}");
        assert!(row.receipt.is_none(), "job {i} has a receipt");
        let want = if i == 0 {
            "before the job finished"
        } else {
            "before the job started"
        };
        assert!(error.contains(want), "job {i}: {error}");
    }
}

/// The sieve example (examples/build.sh), a job of about half a second.
fn sieve() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/build/sieve.wasm");
    assert!(
        p.exists(),
        "{} is missing: run examples/build.sh",
        p.display()
    );
    p.display().to_string()
}

#[test]
fn job_watch_draws_a_live_line_on_a_terminal_and_plain_lines_when_piped() {
    let d = tempfile::tempdir().expect("tmp");
    // Started the documented way (a QUIC listener on loopback for the test's sake).
    let node = start(d.path(), "n", &["--listen", QUIC]);
    let module = sieve();
    let submit = || {
        let out = plasm(&[
            "job",
            "submit",
            "--api",
            &node.api,
            "--placement",
            "local",
            "--fuel",
            "9000000000",
            "--arg",
            "60000000",
            &module,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };

    // Piped: one `key=value` line per change, nothing redrawn.
    let id = submit();
    let out = plasm(&["job", "watch", "--api", &node.api, &id]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&format!("job={} state=", &id[..12]))),
        "{err}"
    );
    let last = lines.last().expect("a line");
    assert!(
        last.contains("state=succeeded") && last.contains(" fuel=") && last.contains("elapsed="),
        "{last}"
    );
    assert!(last.contains("where=\"here (local pool)\""), "{last}");

    // On a terminal (a pseudo-terminal from script(1)): a live line redrawn in
    // place, ending with the state, the place, the fuel and the elapsed time.
    let id = submit();
    let cmd = format!(
        "{} job watch --api {} {id}",
        plasm_bin().display(),
        node.api
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .output()
        .expect("script(1) from bsdutils");
    let tty = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{tty}");
    assert!(
        tty.contains('\r') || tty.contains("\x1b["),
        "redrawn in place: {tty:?}"
    );
    assert!(
        !tty.contains("job="),
        "no piped lines on a terminal: {tty:?}"
    );
    let end = tty.rsplit('\r').next().unwrap_or_default();
    assert!(
        tty.contains("succeeded · here (local pool) · fuel ") && tty.contains("s]"),
        "{tty:?} (last: {end:?})"
    );
}
