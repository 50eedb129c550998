//! The HTTP API of a real node on port 0: every route, every error class, the
//! token rules, and the router held to `schemas/openapi.yaml`.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use plasm::apiclient::{self, HttpResponse};
use plasm::manifest::ManifestBuilder;
use plasm::node::{Mode, Node, NodeConfig};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

fn api_config(dir: &std::path::Path, tokens: Option<std::path::PathBuf>) -> NodeConfig {
    let mut c = memory_config(Mode::Node, &[]);
    c.api = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    c.data_dir = Some(dir.to_path_buf());
    c.api_tokens = tokens;
    c.grace = Duration::from_secs(2);
    c
}

async fn call(
    node: &Node,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let url = format!("http://{}{path}", node.api_addr().expect("api"));
    apiclient::request(
        method,
        &url,
        token,
        Some("application/json"),
        body,
        Duration::from_secs(30),
    )
    .await
    .expect("http")
}

fn submission(
    module: &[u8],
    input: &[u8],
    b: ManifestBuilder,
    placement: &str,
) -> (String, Vec<u8>) {
    let m = b.build(module, input).expect("manifest");
    let body = json!({"manifest": m.as_value(), "module": B64.encode(module), "input": B64.encode(input), "placement": placement});
    (m.job_id().to_owned(), body.to_string().into_bytes())
}

fn error_code(r: &HttpResponse) -> String {
    r.json()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = start(api_config(dir.path(), None)).await;
    let module = hello();

    let r = call(&node, "PUT", "/v1/modules", None, &module).await;
    assert_eq!(r.status, 200);
    let sha = r.json().expect("json")["sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    let r = call(&node, "GET", &format!("/v1/modules/{sha}"), None, b"").await;
    assert_eq!((r.status, r.body.clone()), (200, module.clone()));

    // The module is held now: submit without it, and wait for the end.
    let m = ManifestBuilder::new()
        .build(&module, b"")
        .expect("manifest");
    let body = json!({"manifest": m.as_value(), "placement": "local"}).to_string();
    let r = call(&node, "POST", "/v1/jobs?wait=true", None, body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let job = r.json().expect("json");
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["executor"], json!(node.peer_id().to_string()));
    let id = m.job_id();

    let r = call(&node, "GET", &format!("/v1/jobs/{id}"), None, b"").await;
    assert_eq!(r.json().expect("json")["receipt"]["job_id"], json!(id));
    let r = call(&node, "GET", &format!("/v1/jobs/{id}/output"), None, b"").await;
    assert_eq!(r.body, b"hello from plasm\n");
    let receipt = call(&node, "GET", &format!("/v1/receipts/{id}"), None, b"").await;
    assert_eq!(receipt.status, 200);
    let v = call(&node, "POST", "/v1/receipts/verify", None, &receipt.body)
        .await
        .json()
        .expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["executor"]["peer_id"], json!(node.peer_id().to_string()));
    let mut forged: Value = serde_json::from_slice(&receipt.body).expect("json");
    forged["output"] = json!(format!("sha256:{}", "0".repeat(64)));
    let v = call(
        &node,
        "POST",
        "/v1/receipts/verify",
        None,
        forged.to_string().as_bytes(),
    )
    .await
    .json()
    .expect("json");
    assert_eq!(
        (v["valid"].clone(), v["check"].clone()),
        (json!(false), json!("signature"))
    );
    // One reading (decision 0047): the signed receipt with a forged copy of two
    // members in front (a first-copy reader sees them, a last-copy one does not)
    // is not a receipt, at the top or nested, escaped or not.
    let text = String::from_utf8(receipt.body.clone()).expect("utf8");
    for front in [
        format!(
            "\"outcome\":\"trapped\",\"output\":\"sha256:{}\",",
            "0".repeat(64)
        ),
        "\"\\u006futcome\":\"trapped\",".to_owned(),
    ] {
        let dup = text.replacen('{', &format!("{{{front}"), 1);
        let r = call(&node, "POST", "/v1/receipts/verify", None, dup.as_bytes()).await;
        assert_eq!(
            (r.status, error_code(&r)),
            (400, "malformed".into()),
            "{dup}"
        );
        let msg = r.json().expect("json")["error"]["message"].to_string();
        assert!(msg.contains("duplicate member \\\"outcome\\\""), "{msg}");
    }
    let nested = text
        .replacen("\"runtime\":{", "\"runtime\":{\"name\":\"x\",", 1)
        .replacen("\"runtime\": {", "\"runtime\": {\"name\":\"x\",", 1);
    assert_ne!(nested, text, "the receipt has a runtime object");
    let r = call(
        &node,
        "POST",
        "/v1/receipts/verify",
        None,
        nested.as_bytes(),
    )
    .await;
    assert_eq!((r.status, error_code(&r)), (400, "malformed".into()));
    // A submission whose manifest names a member twice is refused too.
    let (_, body) = submission(&hello(), b"", ManifestBuilder::new(), "local");
    let body = String::from_utf8(body).expect("utf8");
    let dup = body.replacen(
        "\"manifest\":{",
        "\"manifest\":{\"entry\":\"x\",\"entry\":\"y\",",
        1,
    );
    assert_ne!(dup, body);
    let r = call(&node, "POST", "/v1/jobs", None, dup.as_bytes()).await;
    assert_eq!((r.status, error_code(&r)), (400, "malformed".into()));
    // The open verify route takes a receipt's size, not a job's 48 MiB.
    let mut padded = forged.clone();
    padded["padding"] = json!("x".repeat(plasm::api::MAX_RECEIPT_BYTES));
    let r = call(
        &node,
        "POST",
        "/v1/receipts/verify",
        None,
        padded.to_string().as_bytes(),
    )
    .await;
    assert_eq!((r.status, error_code(&r)), (413, "too_large".into()));

    let mut events = Vec::new();
    let url = format!(
        "http://{}/v1/jobs/{id}/events",
        node.api_addr().expect("api")
    );
    apiclient::events(&url, None, |_, data| {
        events.push(data.to_owned());
        false
    })
    .await
    .expect("sse");
    assert!(events[0].contains("succeeded"), "{events:?}");

    // Asynchronous submission, then the event stream until the end.
    let (id2, body) = submission(&module, b"", ManifestBuilder::new(), "local");
    let r = call(&node, "POST", "/v1/jobs", None, &body).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json().expect("json")["job_id"], json!(id2));
    let mut last = String::new();
    apiclient::events(
        &format!(
            "http://{}/v1/jobs/{id2}/events",
            node.api_addr().expect("api")
        ),
        None,
        |_, d| {
            last = d.to_owned();
            !(d.contains("\"succeeded\"") || d.contains("\"failed\""))
        },
    )
    .await
    .expect("sse");
    assert!(last.contains("succeeded"), "{last}");

    let n = call(&node, "GET", "/v1/node", None, b"")
        .await
        .json()
        .expect("json");
    assert_eq!(n["peer_id"], json!(node.peer_id().to_string()));
    assert_eq!(n["capabilities"]["runtime"], "wasmtime");
    assert_eq!(n["capabilities"]["runtimes"], json!(["wasmtime", "wasm3"]));
    assert!(n["capacity"]["workers"].as_u64().is_some());
    let r = call(
        &node,
        "PATCH",
        "/v1/node/capacity",
        None,
        br#"{"workers": 2, "queue": 3}"#,
    )
    .await;
    assert_eq!(r.json().expect("json"), json!({"workers": 2, "queue": 3}));
    let n = call(&node, "GET", "/v1/node", None, b"")
        .await
        .json()
        .expect("json");
    assert_eq!(
        (
            n["capacity"]["workers"].clone(),
            n["capacity"]["queue"].clone()
        ),
        (json!(2), json!(3))
    );
    let r = call(
        &node,
        "PATCH",
        "/v1/node/capacity",
        None,
        br#"{"workers": 0}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(
        call(&node, "GET", "/v1/peers", None, b"")
            .await
            .json()
            .expect("json")["peers"]
            .is_array()
    );
    assert_eq!(call(&node, "GET", "/healthz", None, b"").await.status, 200);
    let metrics =
        String::from_utf8(call(&node, "GET", "/metrics", None, b"").await.body).expect("utf8");
    for name in [
        "plasm_jobs_total{outcome=\"exited\"} 2",
        "plasm_queue_depth",
        "plasm_running_jobs",
        "plasm_fuel_consumed_total",
        "plasm_connected_peers",
        "plasm_routing_table_size",
        "plasm_http_request_duration_seconds_bucket",
        "plasm_records_served_total 0",
        "plasm_records_rate_limited_total 0",
        "plasm_records_malformed_total 0",
        "plasm_records_busy_total 0",
        "plasm_records_sent_total",
        "plasm_records_received_bytes_total",
        "plasm_records_sent_bytes_total",
        "plasm_replicas_stored_total",
        "plasm_replicas_refused_total 0",
        "plasm_replicas_published_total",
        "plasm_replicas_fetched_total",
        "plasm_replicas_records ",
        "plasm_replicas_record_bytes ",
        "plasm_replicas_blobs ",
        "plasm_replicas_blob_bytes ",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_class_has_its_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = api_config(dir.path(), None);
    c.queue = 1;
    let node = start(c).await;
    let module = hello();

    let r = call(&node, "POST", "/v1/jobs", None, b"{\"manifest\": ").await;
    assert_eq!((r.status, error_code(&r)), (400, "malformed".into()));
    assert!(
        String::from_utf8_lossy(&r.body).contains("line 1"),
        "the position is named"
    );
    let (_, body) = submission(&module, b"", ManifestBuilder::new(), "everywhere");
    assert_eq!(
        call(&node, "POST", "/v1/jobs", None, &body).await.status,
        400
    );
    let r = call(
        &node,
        "POST",
        "/v1/jobs",
        None,
        br#"{"manifest": {"version": "plasm.job/v1"}}"#,
    )
    .await;
    assert_eq!((r.status, error_code(&r)), (422, "invalid_manifest".into()));
    let m = ManifestBuilder::new()
        .build(b"\0asm\x01\0\0\0", b"")
        .expect("m");
    let r = call(
        &node,
        "POST",
        "/v1/jobs",
        None,
        json!({"manifest": m.as_value()}).to_string().as_bytes(),
    )
    .await;
    assert_eq!((r.status, error_code(&r)), (422, "unprocessable".into()));
    assert!(String::from_utf8_lossy(&r.body).contains("not held"));

    let (_, body) = submission(&module, b"", ManifestBuilder::new(), "local");
    assert_eq!(
        call(&node, "POST", "/v1/jobs?wait=true", None, &body)
            .await
            .status,
        200
    );
    let r = call(&node, "POST", "/v1/jobs", None, &body).await;
    assert_eq!((r.status, error_code(&r)), (409, "replayed_nonce".into()));

    for path in [
        "/v1/jobs/nope",
        "/v1/jobs/nope/output",
        "/v1/receipts/nope",
        "/v1/modules/00",
        "/v1/nothing",
    ] {
        let r = call(&node, "GET", path, None, b"").await;
        assert_eq!(
            (r.status, error_code(&r)),
            (404, "not_found".into()),
            "{path}"
        );
    }
    let big = vec![b'x'; plasm::api::MAX_BODY_BYTES + 1];
    let r = call(&node, "PUT", "/v1/modules", None, &big).await;
    assert_eq!((r.status, error_code(&r)), (413, "too_large".into()));

    // One worker, one queue slot: a burst of slow jobs is partly refused with 429.
    let spin = wat::parse_str("(module (func (export \"_start\") (loop (br 0))))").expect("wat");
    let mut refused = 0;
    for _ in 0..6 {
        let (_, body) = submission(
            &spin,
            b"",
            ManifestBuilder::new().fuel(100_000_000),
            "local",
        );
        let r = call(&node, "POST", "/v1/jobs", None, &body).await;
        if r.status == 429 {
            assert_eq!(r.header("retry-after"), Some("1"));
            assert_eq!(error_code(&r), "queue_full");
            refused += 1;
        } else {
            assert_eq!(r.status, 202);
        }
    }
    assert!(refused >= 3, "refused {refused}");

    node.service().expect("service").begin_shutdown();
    let (_, body) = submission(&module, b"", ManifestBuilder::new(), "local");
    let r = call(&node, "POST", "/v1/jobs", None, &body).await;
    assert_eq!((r.status, error_code(&r)), (503, "shutting_down".into()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_carry_scopes_and_beyond_loopback_needs_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# token scopes\nreader-token-0123456789 read\nsubmitter-token-0123456789 submit\nadmin-token-0123456789 admin\n")
        .expect("write");
    // A token file others can read is refused, as ssh refuses an open key.
    set_mode(&tokens, 0o644);
    let mut open_file = api_config(&dir.path().join("open-file"), Some(tokens.clone()));
    open_file.api = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let err = Node::start(open_file).await.expect_err("0644 token file");
    assert!(err.to_string().contains("chmod 600"), "{err}");
    set_mode(&tokens, 0o600);
    let node = start(api_config(&dir.path().join("node"), Some(tokens.clone()))).await;
    let module = hello();
    let (_, body) = submission(&module, b"", ManifestBuilder::new(), "local");

    assert_eq!(call(&node, "GET", "/v1/node", None, b"").await.status, 401);
    assert_eq!(
        call(
            &node,
            "GET",
            "/v1/node",
            Some("wrong-token-0123456789"),
            b""
        )
        .await
        .status,
        401
    );
    assert_eq!(
        call(
            &node,
            "GET",
            "/v1/node",
            Some("reader-token-0123456789"),
            b""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(
            &node,
            "POST",
            "/v1/jobs",
            Some("reader-token-0123456789"),
            &body
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(
            &node,
            "GET",
            "/v1/node",
            Some("submitter-token-0123456789"),
            b""
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(
            &node,
            "POST",
            "/v1/jobs",
            Some("submitter-token-0123456789"),
            &body
        )
        .await
        .status,
        202
    );
    assert_eq!(
        call(
            &node,
            "GET",
            "/metrics",
            Some("admin-token-0123456789"),
            b""
        )
        .await
        .status,
        200
    );
    assert_eq!(call(&node, "GET", "/healthz", None, b"").await.status, 200);
    assert_eq!(
        call(&node, "POST", "/v1/receipts/verify", None, b"{\"a\":1}")
            .await
            .status,
        200
    );
    let cap = br#"{"queue": 5}"#;
    let r = call(
        &node,
        "PATCH",
        "/v1/node/capacity",
        Some("submitter-token-0123456789"),
        cap,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        &node,
        "PATCH",
        "/v1/node/capacity",
        Some("admin-token-0123456789"),
        cap,
    )
    .await;
    assert_eq!(r.status, 200);
    node.shutdown().await;

    let mut open = api_config(&dir.path().join("open"), None);
    open.api = Some(SocketAddr::from(([0, 0, 0, 0], 0)));
    let err = Node::start(open).await.expect_err("refuses to start");
    assert!(err.to_string().contains("--api-token-file"), "{err}");
    let mut bad = api_config(&dir.path().join("bad"), None);
    std::fs::write(dir.path().join("bad-tokens"), "short read\n").expect("write");
    set_mode(&dir.path().join("bad-tokens"), 0o600);
    bad.api_tokens = Some(dir.path().join("bad-tokens"));
    assert!(Node::start(bad).await.is_err());
}

#[test]
fn the_router_matches_the_openapi_document() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = std::fs::read_to_string(root.join("plasm/src/api/mod.rs")).expect("api/mod.rs");
    let spec = std::fs::read_to_string(root.join("schemas/openapi.yaml")).expect("openapi.yaml");
    let mut routed = std::collections::BTreeSet::new();
    for line in source
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(".route(\""))
    {
        let path = line.split('"').nth(1).expect("path");
        // `get(h)`, and chained methods: `get(h).delete(h2)`.
        let handlers = line.split_once(", ").map(|x| x.1).expect("methods");
        let mut methods = 0;
        for part in handlers.split(['.', ' ']) {
            if let Some(m) = part.split('(').next()
                && part.contains('(')
                && ["get", "post", "put", "patch", "delete"].contains(&m)
            {
                routed.insert((path.to_owned(), m.to_owned()));
                methods += 1;
            }
        }
        assert!(methods > 0, "no method in {line}");
    }
    let mut documented = std::collections::BTreeSet::new();
    let mut current = String::new();
    for line in spec.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            current = format!("/{p}");
        } else if let Some(m) = line.strip_prefix("    ").and_then(|m| m.strip_suffix(':'))
            && ["get", "post", "put", "patch", "delete"].contains(&m)
            && !current.is_empty()
        {
            documented.insert((current.clone(), m.to_owned()));
        }
    }
    assert!(routed.len() >= 12, "{routed:?}");
    assert_eq!(routed, documented);
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Jobs handed to peers are bounded in count and bytes: past either bound a
/// submission gets 429 `overloaded` with `Retry-After`, and nothing is recorded
/// for it; when the jobs out end, there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_jobs_in_flight_are_bounded_in_count_and_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = api_config(dir.path(), None);
    c.remote = plasm::service::RemoteLimits {
        jobs: 2,
        bytes: 1 << 20,
    };
    // No peers: every remote job looks for an executor for a few seconds, then fails.
    let node = start(c).await;
    let module = hello();
    let big = vec![7u8; 700 * 1024];
    let submit = |input: Vec<u8>| {
        let (id, body) = submission(&module, &input, ManifestBuilder::new(), "remote");
        let node = &node;
        async move { (id, call(node, "POST", "/v1/jobs", None, &body).await) }
    };
    let (_, r) = submit(big.clone()).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    // A second 700 KiB job would hold 1.4 MiB out with peers: refused.
    let (refused, r) = submit(big.clone()).await;
    assert_eq!((r.status, error_code(&r)), (429, "overloaded".into()));
    assert!(
        r.headers.iter().any(|(k, _)| k == "retry-after"),
        "{:?}",
        r.headers
    );
    let r = call(&node, "GET", &format!("/v1/jobs/{refused}"), None, b"").await;
    assert_eq!(r.status, 404, "a refused job is not recorded");
    let (_, r) = submit(vec![]).await;
    assert_eq!(r.status, 202);
    // Two jobs out: a third is refused, whatever its size.
    let (_, r) = submit(vec![]).await;
    assert_eq!((r.status, error_code(&r)), (429, "overloaded".into()));
    let service = node.service().expect("service").clone();
    assert_eq!(service.remote_load().0, 2);
    assert_eq!(service.in_flight(), 2, "refused jobs hold no event channel");
    // Once both have failed (nobody to run them), there is room again.
    let freed = eventually(Duration::from_secs(30), || {
        let s = service.clone();
        async move { (s.remote_load() == (0, 0)).then_some(()) }
    })
    .await;
    assert!(freed.is_some(), "remote slots were never given back");
    let (_, r) = submit(big).await;
    assert_eq!(r.status, 202);
    node.shutdown().await;
}

/// Sends one raw HTTP/1.1 request and reads the answer until `until` holds for
/// the text so far, the server closes, or 20 s pass (an event stream never ends).
async fn raw_until(addr: SocketAddr, request_head: &str, until: impl Fn(&str) -> bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request_head.as_bytes()).await.expect("write");
    let (mut text, mut buf) = (String::new(), [0u8; 4096]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !until(&text) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => break,
        }
    }
    text
}

fn event_ids(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_wide_stream_lists_resumes_and_keeps_browsers_to_their_origin() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = start(api_config(dir.path(), None)).await;
    let addr = node.api_addr().expect("api");
    let stream = |last: Option<u64>| {
        let extra = last
            .map(|l| format!("Last-Event-ID: {l}\r\n"))
            .unwrap_or_default();
        format!(
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{extra}\r\n"
        )
    };
    let done = |t: &str| t.contains("\"state\":\"succeeded\"");

    // Follow the node, then submit: the stream carries the job from queued to succeeded.
    let head = stream(None);
    let follower = tokio::spawn(async move { raw_until(addr, &head, done).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (id, body) = submission(&hello(), b"", ManifestBuilder::new(), "local");
    assert_eq!(
        call(&node, "POST", "/v1/jobs", None, &body).await.status,
        202
    );
    let text = follower.await.expect("follower");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("event: state"), "{text}");
    assert!(text.contains(&format!("\"job_id\":\"{id}\"")), "{text}");
    assert!(text.contains("\"state\":\"queued\""), "{text}");
    assert!(
        text.contains("\"fuel_used\":"),
        "the final event names the fuel: {text}"
    );
    let ids = event_ids(&text);
    assert!(
        ids.len() >= 3 && ids.windows(2).all(|w| w[0] < w[1]),
        "{ids:?}"
    );

    // Reconnecting after the first event replays only the later ones.
    let again = raw_until(addr, &stream(Some(ids[0])), done).await;
    assert_eq!(event_ids(&again), ids[1..].to_vec(), "{again}");

    // The job list, newest first, with a bounded limit.
    let r = call(&node, "GET", "/v1/jobs?limit=1", None, b"").await;
    assert_eq!(r.json().expect("json")["jobs"][0]["job_id"], json!(id));
    for bad in ["limit=0", "limit=501", "limit=x", "other=1"] {
        let r = call(&node, "GET", &format!("/v1/jobs?{bad}"), None, b"").await;
        assert_eq!(
            (r.status, error_code(&r)),
            (400, "malformed".into()),
            "{bad}"
        );
    }

    // The page and its assets; no other file.
    let page = call(&node, "GET", "/", None, b"").await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains(&node.peer_id().to_string()));
    assert_eq!(
        call(&node, "GET", "/ui/app.js", None, b"").await.status,
        200
    );
    assert_eq!(
        call(&node, "GET", "/ui/../Cargo.toml", None, b"")
            .await
            .status,
        404
    );

    // Another site's page cannot submit; a rebinding name cannot ask; this origin can.
    let close = |t: &str| t.contains("\r\n\r\n");
    let post = |origin: &str| {
        format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let r = raw_until(addr, &post("http://evil.example"), |_| false).await;
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("forbidden_origin"),
        "{r}"
    );
    let r = raw_until(addr, &post(&format!("http://{addr}")), |_| false).await;
    assert!(
        r.starts_with("HTTP/1.1 400"),
        "same origin reaches the route: {r}"
    );
    let r = raw_until(
        addr,
        "GET /v1/node HTTP/1.1\r\nHost: evil.example:4611\r\nConnection: close\r\n\r\n",
        close,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    node.shutdown().await;
}
