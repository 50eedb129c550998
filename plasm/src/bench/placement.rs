//! `plasm bench --placement`: how well placement spreads work, against random
//! and round-robin, on five in-process executors of 1, 1, 2, 4 and 8 slots.
//!
//! Two cores cannot run sixteen real workers, so the executors run a runtime
//! whose job holds its slot for the time in its first argument (a simulated
//! service time) and returns; everything else is the real stack: nodes on
//! libp2p's memory transport, beats, offers, bundles, signed receipts checked by
//! the requester. The memory transport has no latency, so the round-trip term
//! plays no part here (it is covered by `sched::score`'s tests).

use super::BenchError;
use crate::identity::Identity;
use crate::manifest::ManifestBuilder;
use crate::net::TransportKind;
use crate::net::remote::{self, RemoteOptions};
use crate::node::{IdentitySource, Mode, Node, NodeConfig, RuntimeOverride};
use crate::runtime::{ExecRequest, ExecResult, Instrumented, Outcome, Runtime};
use crate::sched::{Policy, SchedConfig, Scheduler};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slots of the five executors.
const SLOTS: [usize; 5] = [1, 1, 2, 4, 8];
/// Jobs per run.
const JOBS: usize = 200;

/// Holds its slot for `args[0]` milliseconds.
struct Sleep;

impl Runtime for Sleep {
    fn info(&self) -> crate::execution::RuntimeInfo {
        crate::execution::RuntimeInfo {
            name: "sleep".into(),
            version: "0".into(),
            metering: crate::runtime::instrument::METERING.into(),
            config_sha256: crate::execution::RuntimeInfo::config_hash("sleep"),
        }
    }

    fn execute(&self, _module: &Instrumented, request: &ExecRequest) -> ExecResult {
        self.run_job(request)
    }

    fn run_job(&self, request: &ExecRequest) -> ExecResult {
        let ms: u64 = request
            .args
            .first()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        let mut r = ExecResult::refused(Outcome::Exited, String::new());
        r.detail = None;
        r.exit_code = Some(0);
        r.fuel_used = ms;
        r
    }
}

/// Service times in ms from a fixed seed: half 100 ms, a third 400 ms, the rest 1.5 s.
fn service_times(seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..JOBS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 100 {
                0..50 => 100,
                50..85 => 400,
                _ => 1500,
            }
        })
        .collect()
}

fn memory_addr(n: u64) -> libp2p::Multiaddr {
    let base = u64::from(std::process::id()) << 24;
    format!("/memory/{}", base + n)
        .parse()
        .unwrap_or_else(|_| libp2p::Multiaddr::empty())
}

async fn node(mode: Mode, listen: Option<u64>, slots: usize) -> Result<Node, BenchError> {
    let mut c = NodeConfig::new(std::path::PathBuf::new());
    let id = Identity::generate().map_err(|e| BenchError::Failed(e.to_string()))?;
    c.identity = IdentitySource::Given(Arc::new(id));
    c.mode = mode;
    c.listen = listen.map(memory_addr).into_iter().collect();
    c.net.transport = TransportKind::Memory;
    c.workers = slots.max(1);
    c.queue = 16;
    c.api = None;
    c.data_dir = None;
    c.runtime = Some(RuntimeOverride(Arc::new(Sleep)));
    Node::start(c)
        .await
        .map_err(|e| BenchError::Failed(e.to_string()))
}

/// What one policy achieved.
struct Outcomes {
    makespan: f64,
    mean_in_system: f64,
}

/// Runs the jobs of `times` through one requester on fresh executors; each job is
/// submitted at its `arrivals` offset (all zero: at once). Returns the makespan and
/// the mean time from submission to verified receipt, in seconds.
async fn one_run(
    policy: Policy,
    times: &[u64],
    arrivals: &[Duration],
    base: u64,
) -> Result<Outcomes, BenchError> {
    let mut executors = Vec::new();
    for (i, &slots) in SLOTS.iter().enumerate() {
        executors.push(node(Mode::Node, Some(base + i as u64), slots).await?);
    }
    let client = node(Mode::Client, None, 1).await?;
    for e in &executors {
        let addr = e.listen_addrs()[0]
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(e.peer_id()));
        client
            .client()
            .dial(addr)
            .await
            .map_err(|e| BenchError::Failed(e.to_string()))?;
    }
    let peers: Vec<_> = executors.iter().map(Node::peer_id).collect();
    let sched = Scheduler::new(SchedConfig {
        policy,
        ..SchedConfig::default()
    });
    let module: Arc<[u8]> = wat::parse_str(r#"(module (func (export "_start")))"#)
        .map_err(|e| BenchError::Failed(e.to_string()))?
        .into();
    let t0 = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for (&ms, &at) in times.iter().zip(arrivals) {
        let (c, sched, peers, module) = (
            client.client().clone(),
            sched.clone(),
            peers.clone(),
            module.clone(),
        );
        jobs.spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + at)).await;
            let submitted = Instant::now();
            let m = ManifestBuilder::new()
                .arg(ms.to_string())
                .build(&module, b"")
                .map_err(|e| e.to_string())?;
            let options = RemoteOptions {
                peers,
                sched: Some(sched),
                ..RemoteOptions::default()
            };
            remote::run_remote(&c, &m, module, vec![], &options)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((submitted.elapsed(), t0.elapsed()))
        });
    }
    let (mut total, mut last) = (Duration::ZERO, Duration::ZERO);
    let mut failed = 0;
    while let Some(r) = jobs.join_next().await {
        match r {
            Ok(Ok((in_system, done))) => {
                total += in_system;
                last = last.max(done);
            }
            _ => failed += 1,
        }
    }
    client.shutdown().await;
    for e in executors {
        e.shutdown().await;
    }
    if failed > 0 {
        return Err(BenchError::Failed(format!(
            "{failed} of {} jobs failed under {policy:?}",
            times.len()
        )));
    }
    Ok(Outcomes {
        makespan: last.as_secs_f64(),
        mean_in_system: total.as_secs_f64() / times.len() as f64,
    })
}

/// Prints the placement figures with their method.
pub fn run() -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    rt.block_on(async {
        let times = service_times(23);
        let work: u64 = times.iter().sum();
        let slots: usize = SLOTS.iter().sum();
        let longest = times.iter().copied().max().unwrap_or(0);
        let bound = (work as f64 / slots as f64).max(longest as f64) / 1000.0;
        let mean_service = work as f64 / times.len() as f64 / 1000.0;
        println!(
            "placement: {JOBS} jobs (service times 100/400/1500 ms, mean {mean_service:.3} s, {:.1} s of work) \
             from one requester to 5 executors of {SLOTS:?} slots ({slots} in all) on the memory \
             transport, each job holding its slot for its service time; lower bound of the \
             makespan max(work / slots, longest job) = {bound:.2} s",
            work as f64 / 1000.0
        );
        // Poisson arrivals at 90% of capacity for the mean-time figure.
        let rate = 0.9 * slots as f64 / mean_service;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut t = 0.0f64;
        let poisson: Vec<Duration> = (0..JOBS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                t += -u.ln() / rate;
                Duration::from_secs_f64(t)
            })
            .collect();
        let at_once = vec![Duration::ZERO; JOBS];
        let mut base = 1;
        let mut rows = Vec::new();
        for policy in [Policy::Score, Policy::Random, Policy::RoundRobin] {
            let burst = one_run(policy, &times, &at_once, base).await?;
            base += 10;
            let steady = one_run(policy, &times, &poisson, base).await?;
            base += 10;
            rows.push((policy, burst.makespan, steady.mean_in_system));
        }
        println!(
            "{:<12} {:>14} {:>10} {:>26}",
            "policy", "makespan (s)", "/ bound", "mean time at 90% load (s)"
        );
        for (p, makespan, mean) in &rows {
            println!(
                "{:<12} {makespan:>14.2} {:>10.2} {mean:>26.2}",
                format!("{p:?}"),
                makespan / bound
            );
        }
        let score = rows[0];
        let random = rows[1];
        println!(
            "score against random: makespan {:.2}x better, mean time at 90% load {:.2}x better \
             (arrivals Poisson at {rate:.1} jobs/s, {:.1} s of arrivals)",
            random.1 / score.1,
            random.2 / score.2,
            t
        );
        Ok(())
    })
}
