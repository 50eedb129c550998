//! The `plasm` binary as a user runs it: exit statuses, receipts, determinism
//! across data dirs, and the C examples built with clang for wasm32-wasi.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const PLASM: &str = env!("CARGO_BIN_EXE_plasm");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the C examples once (needs Debian's clang, lld, wasi-libc, libclang-rt-14-dev-wasm32).
fn c_example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("examples/build.sh"))
            .output()
            .expect("run examples/build.sh");
        assert!(
            out.status.success(),
            "examples/build.sh failed (run scripts/setup.sh to install clang for wasm32-wasi): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    root().join("examples/build").join(format!("{name}.wasm"))
}

fn plasm(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(PLASM)
        .args(args)
        .env_remove("PLASM_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plasm");
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(stdin);
    }
    child.wait_with_output().expect("plasm output")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn receipt(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("receipt file"))
        .expect("receipt json")
}

#[test]
fn run_writes_a_receipt_that_verifies_and_tampering_is_caught() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r.json");
    let hello = root().join("examples/wat/hello.wat");
    let out = plasm(
        &[
            "run",
            s(&hello),
            "--data-dir",
            s(d.path()),
            "--receipt",
            s(&r),
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello from plasm\n");
    let v = plasm(&["receipt", "verify", s(&r)], b"");
    assert_eq!(v.status.code(), Some(0));
    let id = plasm(&["id", "--data-dir", s(d.path())], b"");
    let rec = receipt(&r);
    let peer = rec["executor"]["peer_id"].as_str().expect("peer id");
    assert!(String::from_utf8_lossy(&id.stdout).contains(peer));
    assert_eq!(
        rec["output"],
        Value::from(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"hello from plasm\n"))
        ))
    );

    let mut tampered = rec.clone();
    tampered["fuel_used"] = Value::from(1);
    let t = d.path().join("t.json");
    std::fs::write(&t, tampered.to_string()).expect("write");
    let v = plasm(&["receipt", "verify", s(&t)], b"");
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stderr).contains("signature"));
    let v = plasm(&["receipt", "verify", "-"], b"{not json");
    assert_eq!(v.status.code(), Some(121));
    let v = plasm(
        &["receipt", "verify", s(&d.path().join("missing.json"))],
        b"",
    );
    assert_eq!(v.status.code(), Some(121));
    let v = plasm(&["receipt", "verify", "-"], rec.to_string().as_bytes());
    assert_eq!(v.status.code(), Some(0));
}

#[test]
fn same_job_from_two_data_dirs_is_deterministic() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let module = c_example("reverse");
    let input = a.path().join("in.txt");
    std::fs::write(&input, "Grüße aus plasm, 2026 ✓\n".repeat(200)).expect("write");
    let m = a.path().join("m.json");
    let (ra, rb, rc) = (
        a.path().join("a.json"),
        b.path().join("b.json"),
        b.path().join("c.json"),
    );
    let first = plasm(
        &[
            "run",
            s(&module),
            "--input",
            s(&input),
            "--data-dir",
            s(a.path()),
            "--receipt",
            s(&ra),
            "--manifest-out",
            s(&m),
        ],
        b"",
    );
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The same manifest on another node (data dir, key), twice.
    for r in [&rb, &rc] {
        let again = plasm(
            &[
                "run",
                s(&m),
                "--module",
                s(&module),
                "--input",
                s(&input),
                "--data-dir",
                s(b.path()),
                "--receipt",
                s(r),
            ],
            b"",
        );
        assert_eq!(
            again.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(again.stdout, first.stdout);
    }
    let (x, y, z) = (receipt(&ra), receipt(&rb), receipt(&rc));
    for key in [
        "job_id",
        "module",
        "input",
        "output",
        "fuel_used",
        "outcome",
        "exit_code",
    ] {
        assert_eq!(x[key], y[key], "{key}");
        assert_eq!(y[key], z[key], "{key}");
    }
    assert_ne!(x["executor"], y["executor"]);
    assert!(x["fuel_used"].as_u64().expect("fuel") > 1000);
    let expected: String = "Grüße aus plasm, 2026 ✓\n"
        .repeat(200)
        .chars()
        .rev()
        .collect();
    assert_eq!(String::from_utf8(first.stdout).expect("utf8"), expected);

    // Flags cannot silently change a manifest, and bytes must match it.
    let bad = plasm(
        &[
            "run",
            s(&m),
            "--module",
            s(&module),
            "--fuel",
            "5",
            "--data-dir",
            s(b.path()),
        ],
        b"",
    );
    assert_eq!(bad.status.code(), Some(121));
    let wrong_input = plasm(
        &[
            "run",
            s(&m),
            "--module",
            s(&module),
            "--data-dir",
            s(b.path()),
        ],
        b"",
    );
    assert_eq!(wrong_input.status.code(), Some(121));
    assert!(String::from_utf8_lossy(&wrong_input.stderr).contains("input bytes do not match"));
}

#[test]
fn c_examples_compute_the_right_answers() {
    let d = tempfile::tempdir().expect("tmp");
    let data = b"The quick brown fox jumps over the lazy dog";
    let out = plasm(
        &[
            "run",
            s(&c_example("sha256sum")),
            "--input",
            "-",
            "--data-dir",
            s(d.path()),
        ],
        data,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}  -\n", hex::encode(Sha256::digest(data)))
    );
    let out = plasm(
        &[
            "run",
            s(&c_example("primes")),
            "--arg",
            "100000",
            "--data-dir",
            s(d.path()),
        ],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "9592\n");
    // wasi-libc's sleep, usleep and nanosleep (poll_oneoff) return at once, in virtual time.
    let out = plasm(
        &["run", s(&c_example("sleep")), "--data-dir", s(d.path())],
        b"",
    );
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
        ),
        (Some(0), "slept; 0 ns of virtual time passed\n".to_owned()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exit_statuses_name_the_outcome() {
    let d = tempfile::tempdir().expect("tmp");
    let cases: [(&str, &[&str], i32); 5] = [
        (
            "(module (func (export \"_start\") (loop (br 0))))",
            &["--fuel", "100000"],
            124,
        ),
        ("(module (func (export \"_start\") unreachable))", &[], 127),
        (
            "(module (memory 100) (func (export \"_start\")))",
            &["--memory", "65536"],
            125,
        ),
        (
            "(module (import \"env\" \"f\" (func)) (func (export \"_start\")))",
            &[],
            123,
        ),
        (
            "(module (func (export \"_start\") (result i32) (i32.const 42)))",
            &[],
            42,
        ),
    ];
    for (i, (wat, extra, code)) in cases.iter().enumerate() {
        let path = d.path().join(format!("m{i}.wat"));
        std::fs::write(&path, wat).expect("write");
        let mut args = vec!["run", s(&path), "--data-dir", s(d.path())];
        args.extend_from_slice(extra);
        let out = plasm(&args, b"");
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{wat}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let manifest = d.path().join("bad.json");
    std::fs::write(&manifest, r#"{"version":"plasm.job/v1","module":{"sha256":"00","size":1},"nonce":"0123456789abcdef","created_at":"2026-11-20T00:00:00Z"}"#).expect("write");
    let out = plasm(&["run", s(&manifest), "--data-dir", s(d.path())], b"");
    assert_eq!(out.status.code(), Some(121));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/module/sha256") && err.contains("pattern"),
        "{err}"
    );
}

#[test]
fn identity_key_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path().join("fresh");
    let out = plasm(&["id", "--data-dir", s(&dir)], b"");
    assert_eq!(out.status.code(), Some(0));
    let mode = std::fs::metadata(dir.join("identity.key"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let again = plasm(&["id", "--data-dir", s(&dir)], b"");
    assert_eq!(again.stdout, out.stdout);
    assert!(
        !String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains("secret")
    );
}

/// Root pointed at another user's data dir (`--data-dir`, `sudo` keeping `HOME`)
/// must neither sign with a key that user planted nor load a cache entry that user
/// planted (decision 0036). Runs only as root (CI runs as root); the other user is
/// `nobody`, and `runuser` plants as that user.
#[test]
fn another_users_data_dir_key_and_cache_are_refused() {
    if rustix_euid() != 0 {
        eprintln!("skipped: needs root to own files as another user");
        return;
    }
    let d = tempfile::tempdir().expect("tmp");
    let hello = root().join("examples/wat/hello.wat");
    // A data dir created and filled by `nobody`.
    let theirs = d.path().join("theirs");
    std::fs::create_dir(&theirs).expect("dir");
    let chown = |p: &Path| {
        let ok = Command::new("chown")
            .args(["-R", "nobody", s(p)])
            .status()
            .expect("chown");
        assert!(ok.success());
    };
    chown(&theirs);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // `nobody` makes an identity there with the same binary.
    let planted = Command::new("runuser")
        .args(["-u", "nobody", "--", PLASM, "id", "--data-dir", s(&theirs)])
        .output()
        .expect("runuser");
    assert!(
        planted.status.success(),
        "{}",
        String::from_utf8_lossy(&planted.stderr)
    );
    let out = plasm(&["run", s(&hello), "--data-dir", s(&theirs)], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "root ran with nobody's data dir: {err}"
    );
    assert!(
        err.contains("chown") && err.contains("belongs to uid"),
        "{err}"
    );
    // A group-writable data dir of root's own is refused too.
    let open = d.path().join("open");
    std::fs::create_dir(&open).expect("dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let out = plasm(&["run", s(&hello), "--data-dir", s(&open)], b"");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod go-w"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // root's own data dir, whose cache/ another user took over and planted in:
    // the cache is off, the job runs right, nothing planted is used.
    let mine = d.path().join("mine");
    let out = plasm(&["run", s(&hello), "--data-dir", s(&mine)], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cache = mine.join("cache");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_none_or(|n| n != ".key"))
        .collect();
    assert!(!entries.is_empty(), "the first run filled the cache");
    // Another module's compiled code moved under this module's name (a valid entry
    // of this very cache, so its MAC checks out for its own name only): refused.
    let other = root().join("examples/wat/reverse.wat");
    let out = plasm(&["run", s(&other), "--data-dir", s(&mine)], b"swapped");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compiled = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("cache")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        v.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        v
    };
    let both = compiled(&cache);
    assert_eq!(both.len(), 2, "{both:?}");
    std::fs::copy(&both[1], &both[0]).expect("swap");
    let out = plasm(&["run", s(&hello), "--data-dir", s(&mine)], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from plasm\n");
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .expect("cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_none_or(|n| n != ".key"))
        .collect();
    for e in &entries {
        // Planted: same names, garbage payloads with a fresh SHA-256 header (the old check).
        let payload = b"planted by another user";
        let mut bytes = Sha256::digest(payload).to_vec();
        bytes.extend_from_slice(payload);
        std::fs::write(e, bytes).expect("plant");
    }
    chown(&cache);
    let out = plasm(&["run", s(&hello), "--data-dir", s(&mine)], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from plasm\n");
    // Given back to root, the planted entries fail their MAC and are replaced.
    let ok = Command::new("chown")
        .args(["-R", "root", s(&cache)])
        .status()
        .expect("chown");
    assert!(ok.success());
    let out = plasm(&["run", s(&hello), "--data-dir", s(&mine)], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = plasm(
        &["run", s(&other), "--input", "-", "--data-dir", s(&mine)],
        b"again",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "niaga");
    for e in &entries {
        let bytes = std::fs::read(e).unwrap_or_default();
        assert!(
            !bytes.ends_with(b"planted by another user"),
            "{} was kept",
            e.display()
        );
    }
}

fn rustix_euid() -> u32 {
    // The tests crate has no rustix: `id -u` is what a user would run.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}
