//! The HTTP API under load: sequential latency, sustained throughput, and the
//! soak that shows throughput staying flat as the store grows.
//!
//! Request bodies are built before any timer starts; the clients then wait on
//! one barrier, the timer starts when it opens, and it stops when the last
//! client has its last answer, so the figure is answers received over exactly
//! the time it took to receive them. Only `200` answers count; refusals and
//! errors are counted apart and printed.

use super::report::{Figure, Report};
use super::{BenchError, HELLO, fail, ms, percentile, tempfile_dir};
use crate::manifest::ManifestBuilder;
use crate::node::{Mode, Node};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A node with its API on loopback and a durable store in a temporary dir.
pub struct ApiNode {
    node: Node,
    dir: std::path::PathBuf,
    /// `http://127.0.0.1:PORT/v1/jobs?wait=true`.
    pub url: String,
    module: Vec<u8>,
}

impl ApiNode {
    /// Starts the node (`workers` workers, the default queue) and uploads hello.wasm.
    pub async fn start(workers: usize) -> Result<Self, BenchError> {
        let dir = tempfile_dir()?;
        let mut c = super::loopback_config(Mode::Node, &[])?;
        c.listen = vec![];
        c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        c.data_dir = Some(dir.clone());
        c.workers = workers;
        // The default queue (four per worker), as `plasm start` has it: clients beyond
        // it are answered 429 and counted, never queued without bound.
        c.queue = workers * 4;
        let node = Node::start(c).await.map_err(fail)?;
        let base = node.api_url().ok_or_else(|| fail("no api"))?;
        let module = wat::parse_str(HELLO).map_err(fail)?;
        crate::apiclient::request(
            "PUT",
            &format!("{base}/v1/modules"),
            None,
            None,
            &module,
            Duration::from_secs(10),
        )
        .await
        .map_err(fail)?;
        Ok(Self {
            node,
            dir,
            url: format!("{base}/v1/jobs?wait=true"),
            module,
        })
    }

    /// `n` submission bodies naming the uploaded module by hash, each with its own nonce.
    pub fn bodies(&self, n: usize) -> Result<Vec<Vec<u8>>, BenchError> {
        (0..n)
            .map(|_| {
                let m = ManifestBuilder::new()
                    .build(&self.module, b"")
                    .map_err(fail)?;
                Ok(
                    serde_json::json!({"manifest": m.as_value(), "placement": "local"})
                        .to_string()
                        .into_bytes(),
                )
            })
            .collect()
    }

    /// Stops the node and removes its data.
    pub async fn stop(self) {
        self.node.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn post(url: &str, body: &[u8]) -> Result<u16, BenchError> {
    crate::apiclient::request(
        "POST",
        url,
        None,
        Some("application/json"),
        body,
        Duration::from_secs(30),
    )
    .await
    .map(|r| r.status)
    .map_err(fail)
}

/// Answers of one sequential client: the latency of each `200`, in order.
pub async fn sequential(url: &str, bodies: Vec<Vec<u8>>) -> Result<Vec<Duration>, BenchError> {
    let mut lat = Vec::with_capacity(bodies.len());
    for b in bodies {
        let t = Instant::now();
        let status = post(url, &b).await?;
        let took = t.elapsed();
        if status != 200 {
            return Err(fail(format!("HTTP {status}")));
        }
        lat.push(took);
    }
    Ok(lat)
}

/// What a concurrent run measured.
#[derive(Debug, Clone, Copy)]
pub struct Driven {
    /// `200` answers.
    pub ok: u64,
    /// `429` answers.
    pub refused: u64,
    /// Other statuses and transport errors.
    pub errors: u64,
    /// From the barrier opening to the last client's last answer.
    pub elapsed: Duration,
}

impl Driven {
    /// `200` answers per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Drives `url` with one client per element of `per_client`, each posting its
/// bodies in turn until they run out or `stop_after` (measured from the barrier)
/// passes. With `retry_refused`, a body answered 429 is posted again (the node
/// forgets a refused job), so every body ends up stored.
pub async fn drive(
    url: &str,
    per_client: Vec<Vec<Vec<u8>>>,
    stop_after: Option<Duration>,
    retry_refused: bool,
) -> Driven {
    let (ok, refused, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(per_client.len() + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut clients = Vec::with_capacity(per_client.len());
    for bodies in per_client {
        let (url, ok, refused, errors, barrier, start) = (
            url.to_owned(),
            ok.clone(),
            refused.clone(),
            errors.clone(),
            barrier.clone(),
            start.clone(),
        );
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            let t0 = *start.get_or_init(Instant::now);
            'bodies: for b in bodies {
                loop {
                    if stop_after.is_some_and(|d| t0.elapsed() >= d) {
                        break 'bodies;
                    }
                    match post(&url, &b).await {
                        Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(429) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            if retry_refused {
                                continue;
                            }
                            0
                        }
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    break;
                }
            }
        }));
    }
    barrier.wait().await;
    let t0 = *start.get_or_init(Instant::now);
    for c in clients {
        let _ = c.await;
    }
    Driven {
        ok: ok.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: t0.elapsed(),
    }
}

fn split(bodies: Vec<Vec<u8>>, clients: usize) -> Vec<Vec<Vec<u8>>> {
    let mut per: Vec<Vec<Vec<u8>>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, b) in bodies.into_iter().enumerate() {
        per[i % clients].push(b);
    }
    per
}

/// Sequential latency and sustained throughput of `POST /v1/jobs?wait=true`.
pub async fn figures(
    report: &mut Report,
    iterations: usize,
    clients: usize,
    duration: Duration,
) -> Result<(), BenchError> {
    let node = ApiNode::start(2).await?;
    let n = (iterations * 10).max(200);
    // Warm-up: connection, page cache, first SQLite pages.
    sequential(&node.url, node.bodies(50)?).await?;
    let mut lat = sequential(&node.url, node.bodies(n)?).await?;
    lat.sort();
    report.add(
        Figure::new(
            "api.p50",
            "trivial job, POST /v1/jobs?wait=true, durable receipt, one sequential client: p50",
            ms(percentile(&lat, 0.5)),
            "ms",
        )
        .method(format!(
            "each request timed from send to the full 200 answer, {n} requests after 50 warm-up, body prebuilt, keep-alive; median"
        ))
        .goal("<= 1 ms"),
    );
    report.add(
        Figure::new(
            "api.p99",
            "the same requests: p99",
            ms(percentile(&lat, 0.99)),
            "ms",
        )
        .method(format!("99th percentile of the same {n} requests"))
        .goal("<= 5 ms"),
    );
    // Enough bodies for 6,000 jobs/s over the whole window; running out ends a client early.
    let total = (6_000.0 * duration.as_secs_f64()) as usize;
    let bodies = node.bodies(total)?;
    let d = drive(&node.url, split(bodies, clients), Some(duration), false).await;
    report.add(
        Figure::new(
            "api.throughput",
            format!("sustained throughput, {clients} clients, receipts committed before each answer"),
            d.rate(),
            "jobs/s",
        )
        .method(format!(
            "{} answers of 200 over {:.2} s, from the clients' common start to the last answer; {} bodies prebuilt before the timer; {} refused (429), {} errors",
            d.ok,
            d.elapsed.as_secs_f64(),
            total,
            d.refused,
            d.errors
        ))
        .goal(">= 2000 jobs/s"),
    );
    node.stop().await;
    Ok(())
}

/// Submits `jobs` jobs in windows of `window`, printing throughput and
/// sequential p50 per window, to show both stay flat as the store grows.
pub async fn soak(
    report: &mut Report,
    jobs: u64,
    window: u64,
    clients: usize,
) -> Result<(), BenchError> {
    let node = ApiNode::start(2).await?;
    let mut stored = 0u64;
    let mut first: Option<(f64, f64)> = None;
    while stored < jobs {
        let n = window.min(jobs - stored) as usize;
        let bodies = node.bodies(n)?;
        let d = drive(&node.url, split(bodies, clients), None, true).await;
        stored += d.ok;
        if d.ok == 0 {
            return Err(fail("the soak stalled: no job was accepted in a window"));
        }
        let mut lat = sequential(&node.url, node.bodies(2_000)?).await?;
        stored += lat.len() as u64;
        lat.sort();
        let p50 = ms(percentile(&lat, 0.5));
        let (r0, p0) = *first.get_or_insert((d.rate(), p50));
        report.add(
            Figure::new(
                &format!("soak.{stored}"),
                format!(
                    "store at {stored} jobs: {:.0} jobs/s ({:+.1}% vs first window), sequential p50 {p50:.3} ms ({:+.1}%)",
                    d.rate(),
                    (d.rate() / r0 - 1.0) * 100.0,
                    (p50 / p0 - 1.0) * 100.0
                ),
                d.rate(),
                "jobs/s",
            )
            .method(format!(
                "{} answers of 200 from {clients} clients over {:.2} s ({} answers of 429, each body re-posted until stored; {} errors; bodies prebuilt), then 2,000 sequential requests for p50",
                d.ok,
                d.elapsed.as_secs_f64(),
                d.refused,
                d.errors
            )),
        );
    }
    node.stop().await;
    Ok(())
}
