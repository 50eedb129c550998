//! `plasm bench --replication`: the figures of a verifiable network (issue 24).
//!
//! * **Fetch by job id** from a 50-node mesh on libp2p's memory transport (every
//!   node a DHT server, as reachable nodes are): receipts and acceptances are
//!   published through the real replica service (`k` = 3), then each of 200 job
//!   ids is fetched from a node that does not hold it; the timer wraps
//!   `Replicas::fetch` only (closest-peer lookup, `Get` to the holders,
//!   verification, storage).
//! * **Storage and traffic per 10,000 replicated receipts**: the record bytes the
//!   holders store (the JSON texts; SQLite's own overhead is not counted, the
//!   stores are in memory) and the records protocol's payload bytes and requests
//!   sent. Kademlia's lookup messages are not counted (libp2p does not expose
//!   them); one lookup per publish is.
//! * **Audit time against the original run**: one node with real worker
//!   processes runs a CPU-bound job, then audits its receipt (manifest, module and
//!   input given); both timers wrap the service calls (submit to receipt, audit
//!   to signed verdict).

use super::{BenchError, fail, ms, percentile};
use crate::identity::Identity;
use crate::manifest::ManifestBuilder;
use crate::net::TransportKind;
use crate::node::{IdentitySource, Mode, Node, NodeConfig};
use crate::receipt::{Receipt, ReceiptBody, ReceiptPlacement};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn memory_addr(n: u64) -> libp2p::Multiaddr {
    let base = (u64::from(std::process::id()) << 24) + (1 << 23);
    format!("/memory/{}", base + n)
        .parse()
        .unwrap_or_else(|_| libp2p::Multiaddr::empty())
}

async fn server(n: u64, bootstrap: &[libp2p::Multiaddr]) -> Result<Node, BenchError> {
    let mut c = NodeConfig::new(std::path::PathBuf::new());
    c.identity = IdentitySource::Given(Arc::new(Identity::generate().map_err(fail)?));
    c.mode = Mode::Bootstrap;
    c.listen = vec![memory_addr(n)];
    c.bootstrap = bootstrap.to_vec();
    c.net.transport = TransportKind::Memory;
    c.api = None;
    c.data_dir = None;
    Node::start(c).await.map_err(fail)
}

/// A receipt of job number `i`, signed by `executor`.
fn receipt(i: usize, executor: &Identity) -> Result<Receipt, BenchError> {
    let job_id = crate::job::sha256_hex(format!("bench job {i}").as_bytes());
    Receipt::sign(
        &ReceiptBody {
            job_id,
            module_sha256: "2".repeat(64),
            input_sha256: "3".repeat(64),
            output_sha256: crate::job::sha256_hex(&i.to_le_bytes()),
            outcome: crate::runtime::Outcome::Exited,
            exit_code: Some(0),
            detail: None,
            fuel_used: 1234 + i as u64,
            fuel_limit: 1_000_000,
            runtime: crate::execution::RuntimeInfo {
                name: "wasmtime".into(),
                version: "48.0.8".into(),
                metering: crate::runtime::instrument::METERING.into(),
                config_sha256: "5".repeat(64),
            },
            started_at: crate::time::now_rfc3339(),
            finished_at: crate::time::now_rfc3339(),
            stderr_sha256: "6".repeat(64),
            memory_limit_hit: false,
            queued_at: crate::time::now_rfc3339(),
            placement: ReceiptPlacement::local(),
        },
        executor,
    )
    .map_err(fail)
}

/// Runs the figures: `nodes` DHT servers, `receipts` published.
pub fn run(nodes: usize, receipts: usize) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(fail)?;
    rt.block_on(async {
        mesh(nodes.max(4), receipts.max(1)).await?;
        audit().await
    })
}

async fn mesh(n: usize, receipts: usize) -> Result<(), BenchError> {
    let first = server(0, &[]).await?;
    let boot = vec![
        first.listen_addrs()[0]
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(first.peer_id())),
    ];
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(server(i as u64, &boot).await?);
    }
    // Routing tables fill through the joins' bootstrap queries; one more round each.
    for node in &nodes {
        let _ = tokio::time::timeout(Duration::from_secs(10), node.client().bootstrap()).await;
    }
    let executor = Identity::generate().map_err(fail)?;
    let submitter = Identity::generate().map_err(fail)?;
    println!(
        "replication: {n} DHT servers on the memory transport, k = 3; {receipts} receipts \
         (each with its submitter's acceptance) published from random nodes, 16 at a time"
    );
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(receipts);
    let mut publishing = tokio::task::JoinSet::new();
    let mut reached_total = 0usize;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    for i in 0..receipts {
        let r = receipt(i, &executor)?;
        let job_id = r.str_field("job_id").unwrap_or("").to_owned();
        let acceptance = crate::receipt::signed::accept(&r, &submitter)
            .map_err(fail)?
            .to_json();
        let texts = vec![serde_json::to_string(r.as_map()).map_err(fail)?, acceptance];
        let replicas = nodes[next(n)]
            .replicas()
            .ok_or_else(|| fail("a node without replicas"))?
            .clone();
        ids.push(job_id.clone());
        if publishing.len() >= 16
            && let Some(done) = publishing.join_next().await
        {
            reached_total += done.map_err(fail)?;
        }
        publishing.spawn(async move { replicas.publish(&job_id, texts, Vec::new()).await });
    }
    while let Some(done) = publishing.join_next().await {
        reached_total += done.map_err(fail)?;
    }
    let publish_time = t0.elapsed();
    let (mut records, mut bytes, mut sent, mut out_bytes) = (0u64, 0u64, 0u64, 0u64);
    for node in &nodes {
        if let Some(r) = node.replicas() {
            let (n, b, _, _) = r.store().usage().map_err(fail)?;
            records += n;
            bytes += b;
        }
        let s = node.client().records_stats();
        sent += s.sent.load(Ordering::Relaxed);
        out_bytes += s.bytes_out.load(Ordering::Relaxed);
    }
    let per = 10_000.0 / receipts as f64;
    println!(
        "  published in {:.1} s ({:.2} ms each at 16 in flight); holders reached per receipt: {:.2} \
         (besides the publisher's own copy)",
        publish_time.as_secs_f64(),
        ms(publish_time) / receipts as f64,
        reached_total as f64 / receipts as f64
    );
    println!(
        "  storage per 10,000 receipts: {:.0} records, {:.2} MiB of record text on all holders \
         ({:.0} bytes per receipt and acceptance per copy)",
        records as f64 * per,
        bytes as f64 * per / 1_048_576.0,
        bytes as f64 / records.max(1) as f64 * 2.0
    );
    println!(
        "  traffic per 10,000 receipts: {:.0} records requests, {:.2} MiB of records payload sent \
         (requests and answers); plus 10,000 closest-peer lookups (Kademlia, not counted)",
        sent as f64 * per,
        out_bytes as f64 * per / 1_048_576.0
    );
    // Fetches: each from a node that does not hold the job.
    let mut times = Vec::new();
    let loop_start = Instant::now();
    let mut failures = 0;
    for _ in 0..200.min(receipts) {
        let id = ids[next(ids.len())].clone();
        let mut fetcher = None;
        for _ in 0..n {
            let r = nodes[next(n)]
                .replicas()
                .ok_or_else(|| fail("a node without replicas"))?
                .clone();
            if r.local(&id).await.map(|h| h.is_empty()).unwrap_or(false) {
                fetcher = Some(r);
                break;
            }
        }
        let Some(r) = fetcher else { continue };
        let t = Instant::now();
        let got = r.fetch(&id).await;
        let took = t.elapsed();
        match got {
            Ok(h) if h.accepted().is_some() => times.push(took),
            _ => failures += 1,
        }
    }
    let loop_time = loop_start.elapsed();
    times.sort();
    let sum: Duration = times.iter().sum();
    println!(
        "  fetch by job id from a node without a copy: {} fetched, {failures} failed; p50 {:.2} ms, \
         p95 {:.2} ms, max {:.2} ms (timer around Replicas::fetch only; the {} timed fetches sum \
         to {:.0} ms of the loop's {:.0} ms, the rest is choosing a fetcher)",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        ms(times.last().copied().unwrap_or_default()),
        times.len(),
        ms(sum),
        ms(loop_time)
    );
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

async fn audit() -> Result<(), BenchError> {
    let dir = std::env::temp_dir().join(format!("plasm-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let mut c = NodeConfig::new(dir.clone());
    c.identity = IdentitySource::Given(Arc::new(Identity::generate().map_err(fail)?));
    c.mode = Mode::Node;
    c.listen = vec![memory_addr(1 << 20)];
    c.net.transport = TransportKind::Memory;
    c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    c.data_dir = Some(dir.clone());
    c.workers = 1;
    let node = Node::start(c).await.map_err(fail)?;
    let service = node.service().ok_or_else(|| fail("no service"))?.clone();
    let module = wat::parse_str(
        r#"(module (func (export "_start") (local $i i64)
            (local.set $i (i64.const 200000000))
            (loop $l (local.set $i (i64.sub (local.get $i) (i64.const 1)))
              (br_if $l (i64.ne (local.get $i) (i64.const 0))))))"#,
    )
    .map_err(fail)?;
    let (mut runs, mut audits) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let m = ManifestBuilder::new()
            .fuel(5_000_000_000)
            .build(&module, b"")
            .map_err(fail)?;
        let t = Instant::now();
        let id = service
            .submit(crate::service::Submission {
                manifest: m.as_value().clone(),
                module: Some(module.clone()),
                input: Vec::new(),
                placement: crate::service::Placement::Local,
                publish: false,
            })
            .await
            .map_err(fail)?;
        let row = service
            .wait(&id, Duration::from_secs(120))
            .await
            .map_err(fail)?;
        runs.push(t.elapsed());
        let receipt = Receipt::from_json(row.receipt.as_deref().unwrap_or("")).map_err(fail)?;
        let t = Instant::now();
        let v = service
            .audit(crate::service::audit::AuditRequest {
                receipt,
                manifest: Some(m.as_value().clone()),
                module: Some(module.clone()),
                input: Some(Vec::new()),
            })
            .await
            .map_err(fail)?;
        audits.push(t.elapsed());
        if v["verdict"] != "confirmed" {
            return Err(fail(format!("the audit said {v}")));
        }
    }
    runs.sort();
    audits.sort();
    println!(
        "audit: a 200M-iteration loop on one worker process, 5 times: original run (submit to stored \
         receipt) median {:.0} ms, audit (verify, re-run, compare, sign) median {:.0} ms: {:.2}x",
        ms(runs[2]),
        ms(audits[2]),
        audits[2].as_secs_f64() / runs[2].as_secs_f64()
    );
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
