//! `plasm bench --watch ADDR... --seconds S`: false suspicions of the failure
//! detector per peer-hour on a real network.
//!
//! A client node (the detector's side, as a requester holding jobs is) dials
//! each executor and watches it exactly as while one of its jobs is there:
//! a beat every `beat_seconds`, two missed make it suspect and send a probe, an
//! unanswered probe makes it failed (decision 0050). Every executor stays alive
//! for the whole window, so every suspicion and every failure counted is false.
//! `scripts/bench-suspicions.sh` runs it in network namespaces with random loss.

use super::BenchError;
use crate::identity::Identity;
use crate::net::NetEvent;
use crate::node::{IdentitySource, Mode, Node, NodeConfig};
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Watches the executors at `peers` for `window`; prints the counts and rates.
pub fn run(peers: &[Multiaddr], window: Duration) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    rt.block_on(watch(peers, window))
}

async fn watch(addrs: &[Multiaddr], window: Duration) -> Result<(), BenchError> {
    let fail = |e: &dyn std::fmt::Display| BenchError::Failed(e.to_string());
    let mut c = NodeConfig::new(std::path::PathBuf::new());
    c.identity = IdentitySource::Given(Arc::new(Identity::generate().map_err(|e| fail(&e))?));
    c.mode = Mode::Client;
    c.listen = Vec::new();
    c.api = None;
    c.data_dir = None;
    let node = Node::start(c).await.map_err(|e| fail(&e))?;
    let client = node.client().clone();
    let mut events = client.events();
    let mut peers = Vec::new();
    for a in addrs {
        let p = client.dial(a.clone()).await.map_err(|e| fail(&e))?;
        peers.push(p);
    }
    for p in &peers {
        client.watch(*p, true).await;
    }
    let beat = client.detector().interval;
    println!(
        "suspicions: watching {} executors for {} s, a beat every {} s, probe timeout {} ms",
        peers.len(),
        window.as_secs(),
        beat.as_secs(),
        client.detector().probe_timeout.as_millis()
    );
    let (mut suspect, mut failed): (HashMap<PeerId, u64>, HashMap<PeerId, u64>) =
        Default::default();
    let (mut reconnects, mut disconnects) = (0u64, 0u64);
    let started = Instant::now();
    let end = tokio::time::Instant::now() + window;
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Err(_) => break,
            Ok(Ok(NetEvent::PeerSuspect(p))) if peers.contains(&p) => {
                *suspect.entry(p).or_default() += 1;
                println!(
                    "suspicions: {p} suspect at {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(Ok(NetEvent::PeerFailed(p))) if peers.contains(&p) => {
                *failed.entry(p).or_default() += 1;
                println!(
                    "suspicions: {p} failed at {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                // Watched again at once, as a requester re-placing would not:
                // the window measures the detector, not one verdict.
                let _ = client.connect(p).await;
            }
            Ok(Ok(NetEvent::PeerDisconnected(p))) if peers.contains(&p) => disconnects += 1,
            Ok(Ok(NetEvent::PeerConnected(p))) if peers.contains(&p) => reconnects += 1,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
            Ok(_) => {}
        }
    }
    let hours = peers.len() as f64 * started.elapsed().as_secs_f64() / 3600.0;
    let stats = client.beat_stats();
    let (sent, answered) = (
        stats.sent.load(Ordering::Relaxed),
        stats.answered.load(Ordering::Relaxed),
    );
    let (s, f): (u64, u64) = (suspect.values().sum(), failed.values().sum());
    println!(
        "suspicions: {hours:.2} peer-hours: {s} suspicions ({:.2} per peer-hour), {f} false failures \
         ({:.2} per peer-hour); beats sent {sent}, answered {answered} ({:.2}% unanswered); \
         disconnects {disconnects}, reconnects {reconnects}",
        s as f64 / hours.max(f64::MIN_POSITIVE),
        f as f64 / hours.max(f64::MIN_POSITIVE),
        100.0 * sent.saturating_sub(answered) as f64 / sent.max(1) as f64,
    );
    node.shutdown().await;
    Ok(())
}
