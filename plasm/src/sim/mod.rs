//! `plasm sim`: many real nodes in one process, with churn (issue 25).
//!
//! Every simulated node is a [`Node`] started as `plasm start --public` starts
//! one (plasm's Kademlia configuration, capability advertisement, job protocol,
//! beats and placement), on libp2p's memory transport instead of QUIC and TCP.
//! Nothing is a model: lookups are Kademlia queries, jobs are offered, run and
//! signed. What the nodes share is what one machine cannot give each of them:
//! one worker pool (two real worker processes) and in-memory stores.
//!
//! * **Who.** `bootstraps` bootstrap nodes that never leave, and `nodes`
//!   executors (DHT servers, as reachable nodes are) that each provide their
//!   own key `plasm-sim:<peer id>` beside plasm's capability keys, so a lookup
//!   can target one live provider.
//! * **Churn.** `churn` percent of the executors leave each minute, spread
//!   evenly (a fraction carries over), each replaced at once by a new node that
//!   joins through the bootstrap nodes.
//! * **Time scale.** Kademlia's hour-long timers (provider record TTL 1 h,
//!   republish 20 min) are divided by `time_scale` (default 60: 60 s and 20 s),
//!   so a run of minutes sees records expire and republish. Everything else
//!   (query timeout, idle connections, pings, plasm's advertisement) runs at
//!   its real pace: libp2p's timers are wall-clock, and tokio's paused time
//!   would not speed them up.
//! * **Workload.** Lookups of a random live provider's key from a random live
//!   node, capability lookups, and small jobs (`hello`) placed by a random live
//!   node, each at its rate.
//! * **Reproducible.** Identities, who leaves, and who asks for whom come from
//!   `seed`; the timing of a multi-threaded process does not.
//!
//! What it measures, and how, is in [`report`].

pub mod report;

use crate::identity::Identity;
use crate::manifest::ManifestBuilder;
use crate::net::{KadSettings, TransportKind};
use crate::node::{IdentitySource, Mode, Node, NodeConfig};
use crate::runtime::pool::WorkerPool;
use libp2p::{Multiaddr, PeerId};
use report::{Sample, SimReport};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Largest simulation (memory transport ports, threads and memory bound it well before).
pub const MAX_NODES: usize = 100_000;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Executors (bootstrap nodes come on top).
    pub nodes: usize,
    /// Percent of executors replaced per minute.
    pub churn: f64,
    /// How long the workload runs once every node has joined.
    pub duration: Duration,
    /// Seed of identities and choices.
    pub seed: u64,
    /// Provider lookups per second.
    pub lookup_rate: f64,
    /// Capability lookups per second.
    pub capability_rate: f64,
    /// Jobs per second.
    pub job_rate: f64,
    /// Divides Kademlia's hour-long timers.
    pub time_scale: u32,
    /// Bootstrap nodes (0: one per 250 executors, at least 2).
    pub bootstraps: usize,
    /// Nodes starting at once.
    pub join_parallelism: usize,
    /// The negative control: nodes store no provider records from peers.
    pub control_no_records: bool,
    /// Nodes join nobody (no bootstrap): what a node costs with no connection.
    pub isolated: bool,
    /// Stop starting nodes once the process's RSS passes this (0: no limit).
    pub max_rss_bytes: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 100,
            churn: 10.0,
            duration: Duration::from_secs(60),
            seed: 1,
            lookup_rate: 10.0,
            capability_rate: 1.0,
            job_rate: 1.0,
            time_scale: 60,
            bootstraps: 0,
            join_parallelism: 16,
            control_no_records: false,
            isolated: false,
            max_rss_bytes: 20 << 30,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot be run.
    #[error("invalid simulation: {0}")]
    Invalid(String),
    /// A node or the shared worker pool did not start.
    #[error("simulation failed: {0}")]
    Start(String),
}

/// A small deterministic generator (SplitMix64): the seed's choices only.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// The key a simulated node provides for itself.
pub fn sim_key(peer: &PeerId) -> libp2p::kad::RecordKey {
    libp2p::kad::RecordKey::new(&format!("plasm-sim:{peer}"))
}

/// The job every simulated placement runs: prints "hello from plasm".
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from plasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 17))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn memory_addr(n: u64) -> Multiaddr {
    // Ports apart from other processes' tests and benches on the same hub.
    let base = (u64::from(std::process::id()) << 24) + (3 << 22);
    format!("/memory/{}", base + n)
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty())
}

/// A live simulated node.
struct Member {
    node: Node,
    /// Its own key is provided (lookups target only such nodes).
    ready: bool,
    bootstrap: bool,
}

/// The shared state of a run.
struct World {
    members: Mutex<HashMap<PeerId, Member>>,
    samples: Mutex<Vec<Sample>>,
    config: SimConfig,
    pool: Arc<WorkerPool>,
    bootstrap_addrs: Mutex<Vec<Multiaddr>>,
    joins: Semaphore,
    next_port: std::sync::atomic::AtomicU64,
    failed_starts: std::sync::atomic::AtomicU64,
    /// Why nodes stopped being started, if they did.
    stopped: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    fn node_config(&self, identity: Identity, bootstrap: bool) -> NodeConfig {
        let mut c = NodeConfig::new(std::path::PathBuf::new());
        c.identity = IdentitySource::Given(Arc::new(identity));
        c.mode = if bootstrap {
            Mode::Bootstrap
        } else {
            Mode::Node
        };
        c.public = true;
        let port = self
            .next_port
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        c.listen = vec![memory_addr(port)];
        c.bootstrap = lock(&self.bootstrap_addrs).clone();
        if self.config.isolated {
            c.bootstrap.clear();
        }
        c.net.transport = TransportKind::Memory;
        let scale = self.config.time_scale.max(1);
        let defaults = KadSettings::default();
        c.net.kad = KadSettings {
            provider_ttl: defaults.provider_ttl / scale,
            provider_republish: defaults.provider_republish / scale,
            store_provider_records: !self.config.control_no_records,
            ..defaults
        };
        c.workers = 1;
        c.queue = 16;
        c.pool = Some(self.pool.clone());
        c.api = None;
        c.data_dir = None;
        c
    }

    /// Starts one node and, for an executor, provides its own key.
    async fn join(self: &Arc<Self>, index: u64, bootstrap: bool) -> Option<PeerId> {
        let _permit = self.joins.acquire().await.ok()?;
        if self.config.max_rss_bytes > 0 && report::rss_bytes() > self.config.max_rss_bytes {
            let mut stopped = lock(&self.stopped);
            if stopped.is_none() {
                let started = lock(&self.members).len();
                *stopped = Some(format!(
                    "RSS passed {} MiB with {started} nodes running: no more nodes started",
                    self.config.max_rss_bytes >> 20
                ));
            }
            return None;
        }
        let identity = Identity::from_seed(seed_bytes(self.config.seed, index));
        let config = self.node_config(identity, bootstrap);
        let node = match Node::start(config).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "a simulated node did not start");
                self.failed_starts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return None;
            }
        };
        let peer = node.peer_id();
        let client = node.client().clone();
        if bootstrap {
            lock(&self.bootstrap_addrs).extend(node.listen_addrs());
        }
        lock(&self.members).insert(
            peer,
            Member {
                node,
                ready: false,
                bootstrap,
            },
        );
        if !bootstrap {
            let world = self.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let provided = tokio::time::timeout(
                        Duration::from_secs(30),
                        client.start_providing(sim_key(&peer)),
                    )
                    .await;
                    if let Ok(Err(e)) = &provided {
                        tracing::debug!(error = %e, "providing a simulated key failed");
                    }
                    if matches!(provided, Ok(Ok(()))) {
                        if let Some(m) = lock(&world.members).get_mut(&peer) {
                            m.ready = true;
                        }
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        Some(peer)
    }

    fn is_live(&self, peer: &PeerId) -> bool {
        lock(&self.members).contains_key(peer)
    }

    /// Two distinct ready executors, chosen by `rng`: who asks, and for whom.
    fn pick_pair(&self, rng: &mut Rng) -> Option<(crate::net::Client, PeerId)> {
        let members = lock(&self.members);
        let ready = ready_executors(&members);
        if ready.len() < 2 {
            return None;
        }
        let a = rng.below(ready.len());
        let mut b = rng.below(ready.len() - 1);
        if b >= a {
            b += 1;
        }
        let client = members.get(&ready[a])?.node.client().clone();
        Some((client, ready[b]))
    }

    fn pick_one(&self, rng: &mut Rng) -> Option<crate::net::Client> {
        let members = lock(&self.members);
        let ready = ready_executors(&members);
        if ready.is_empty() {
            return None;
        }
        let a = rng.below(ready.len());
        Some(members.get(&ready[a])?.node.client().clone())
    }

    /// Removes a random executor (chosen by `rng`) and shuts it down.
    fn leave(self: &Arc<Self>, rng: &mut Rng) -> bool {
        let node = {
            let mut members = lock(&self.members);
            let mut executors: Vec<PeerId> = members
                .iter()
                .filter(|(_, m)| !m.bootstrap)
                .map(|(p, _)| *p)
                .collect();
            executors.sort();
            if executors.is_empty() {
                return false;
            }
            let victim = executors[rng.below(executors.len())];
            members.remove(&victim).map(|m| m.node)
        };
        if let Some(node) = node {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await;
            });
        }
        true
    }
}

/// The ready executors, sorted (so a seed picks the same ranks).
fn ready_executors(members: &HashMap<PeerId, Member>) -> Vec<PeerId> {
    let mut ready: Vec<PeerId> = members
        .iter()
        .filter(|(_, m)| m.ready && !m.bootstrap)
        .map(|(p, _)| *p)
        .collect();
    ready.sort();
    ready
}

fn seed_bytes(seed: u64, index: u64) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(format!("plasm-sim {seed} {index}").as_bytes()).into()
}

/// Runs a simulation and reports what it measured.
pub async fn run(config: SimConfig) -> Result<SimReport, SimError> {
    if config.nodes < 2 || config.nodes > MAX_NODES {
        return Err(SimError::Invalid(format!(
            "--nodes must be between 2 and {MAX_NODES}"
        )));
    }
    if !(0.0..=100.0).contains(&config.churn) {
        return Err(SimError::Invalid(
            "--churn is a percent per minute, 0 to 100".into(),
        ));
    }
    for (name, rate) in [
        ("lookup", config.lookup_rate),
        ("capability", config.capability_rate),
        ("job", config.job_rate),
    ] {
        if !(0.0..=1000.0).contains(&rate) {
            return Err(SimError::Invalid(format!(
                "the {name} rate must be 0 to 1000 per second"
            )));
        }
    }
    let rss_before = report::rss_bytes();
    let cpu_before = report::cpu_seconds();
    // One pool for every node: two real worker processes, as a 2-core machine has.
    let runtime = tokio::task::spawn_blocking(|| {
        crate::runtime::worker::ProcessRuntime::new(
            Default::default(),
            crate::runtime::worker::Settings::default(),
            2,
        )
    })
    .await
    .map_err(|e| SimError::Start(e.to_string()))?
    .map_err(|e| SimError::Start(format!("worker processes: {e}")))?;
    let pool = Arc::new(
        WorkerPool::new(Arc::new(runtime), 2, 4096).map_err(|e| SimError::Start(e.to_string()))?,
    );
    let bootstraps = if config.bootstraps == 0 {
        (config.nodes / 250).max(2)
    } else {
        config.bootstraps
    };
    let world = Arc::new(World {
        members: Mutex::new(HashMap::new()),
        samples: Mutex::new(Vec::new()),
        pool: pool.clone(),
        bootstrap_addrs: Mutex::new(Vec::new()),
        joins: Semaphore::new(config.join_parallelism.max(1)),
        next_port: std::sync::atomic::AtomicU64::new(1),
        failed_starts: std::sync::atomic::AtomicU64::new(0),
        stopped: Mutex::new(None),
        config: config.clone(),
    });
    let mut index = 0u64;
    // Bootstrap nodes first, one after another (each joins the ones before).
    for _ in 0..bootstraps {
        index += 1;
        world
            .join(index, true)
            .await
            .ok_or_else(|| SimError::Start("a bootstrap node did not start".into()))?;
    }
    let join_started = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    for _ in 0..config.nodes {
        index += 1;
        let (w, i) = (world.clone(), index);
        joins.spawn(async move { w.join(i, false).await });
    }
    while joins.join_next().await.is_some() {}
    // Wait (bounded) until most executors have provided their key.
    let ready_deadline = Instant::now() + Duration::from_secs(60 + config.nodes as u64 / 20);
    loop {
        // Of the executors running: the memory guard may have stopped some starting.
        let (ready, running) = {
            let members = lock(&world.members);
            let running = members.values().filter(|m| !m.bootstrap).count();
            (members.values().filter(|m| m.ready).count(), running)
        };
        if ready * 100 >= running * 95 || Instant::now() > ready_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let join_time = join_started.elapsed();
    let rss_joined = report::rss_bytes();
    tracing::info!(?join_time, "every node joined; the workload starts");

    let outcomes = Arc::new(Mutex::new(report::Outcomes::default()));
    let mut rng = Rng::new(config.seed);
    let start = Instant::now();
    let cpu_start = report::cpu_seconds();
    let traffic_start = crate::net::traffic::snapshot();
    let module: Arc<[u8]> = wat::parse_str(HELLO)
        .map_err(|e| SimError::Start(e.to_string()))?
        .into();
    let mut job_number = 0u64;
    let tick = Duration::from_millis(100);
    let mut due = report::Due::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_sample = Instant::now();
    let mut sampling: Option<tokio::task::JoinHandle<()>> = None;
    while start.elapsed() < config.duration {
        tokio::time::sleep(tick).await;
        let secs = tick.as_secs_f64();
        // Churn: leave and join at once, so the population stays at `nodes`.
        for _ in 0..report::take(
            &mut due.churn,
            config.churn / 100.0 * config.nodes as f64 / 60.0 * secs,
        ) {
            if world.leave(&mut rng) {
                lock(&outcomes).left += 1;
                index += 1;
                let (w, i) = (world.clone(), index);
                tasks.spawn(async move {
                    w.join(i, false).await;
                });
            }
        }
        for _ in 0..report::take(&mut due.lookups, config.lookup_rate * secs) {
            let Some((client, target)) = world.pick_pair(&mut rng) else {
                continue;
            };
            let (w, out) = (world.clone(), outcomes.clone());
            tasks.spawn(async move {
                let begun = Instant::now();
                let res = tokio::time::timeout(
                    Duration::from_secs(30),
                    client.lookup_providers(sim_key(&target), 1),
                )
                .await;
                // A provider that left while it was looked up is not a live provider.
                let live = w.is_live(&target);
                let mut o = lock(&out);
                match res {
                    Ok(Ok(found)) => o.lookup(
                        live,
                        found.providers.contains(&target),
                        found.requests_to_first,
                        found.first_after.unwrap_or_else(|| begun.elapsed()),
                    ),
                    _ => o.lookup(live, false, None, begun.elapsed()),
                }
            });
        }
        for _ in 0..report::take(&mut due.capabilities, config.capability_rate * secs) {
            let Some(client) = world.pick_one(&mut rng) else {
                continue;
            };
            let (w, out) = (world.clone(), outcomes.clone());
            let key = crate::net::remote::capability_key("runtime", crate::runtime::engines::ANY);
            tasks.spawn(async move {
                let res =
                    tokio::time::timeout(Duration::from_secs(30), client.get_providers(key, 8))
                        .await;
                let found: Vec<PeerId> = match res {
                    Ok(Ok(f)) => f.into_iter().collect(),
                    _ => Vec::new(),
                };
                let live = found.iter().filter(|p| w.is_live(p)).count();
                lock(&out).capability(found.len(), live);
            });
        }
        for _ in 0..report::take(&mut due.jobs, config.job_rate * secs) {
            let Some(client) = world.pick_one(&mut rng) else {
                continue;
            };
            // Every job is a new one (its input numbers it): executors refuse a replay.
            job_number += 1;
            let input = format!("sim job {} {job_number}", config.seed).into_bytes();
            let Ok(m) = ManifestBuilder::new().build(&module, &input) else {
                continue;
            };
            let (module, out) = (module.clone(), outcomes.clone());
            lock(&out).jobs += 1;
            tasks.spawn(async move {
                let res = tokio::time::timeout(
                    Duration::from_secs(60),
                    crate::net::remote::run_remote(
                        &client,
                        &m,
                        module,
                        input,
                        &crate::net::remote::RemoteOptions::default(),
                    ),
                )
                .await;
                let ok = matches!(&res, Ok(Ok(o)) if o.stdout == b"hello from plasm\n");
                if let Ok(Err(e)) = &res {
                    tracing::debug!(error = %e, "a simulated job failed");
                }
                lock(&out).job(ok);
            });
        }
        if Instant::now() >= next_sample && sampling.as_ref().is_none_or(|t| t.is_finished()) {
            next_sample = Instant::now() + Duration::from_secs(5);
            let w = world.clone();
            sampling = Some(tokio::spawn(async move {
                w.sample().await;
            }));
        }
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let wall = start.elapsed();
    let cpu_end = report::cpu_seconds();
    let traffic_end = crate::net::traffic::snapshot();
    // In-flight work gets a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(35), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    if let Some(t) = sampling {
        t.abort();
    }
    let final_sample = world.sample().await;
    let rss_end = report::rss_bytes();
    let live_nodes = lock(&world.members).len();
    let samples = std::mem::take(&mut *lock(&world.samples));
    let outcomes = std::mem::take(&mut *lock(&outcomes));
    let report = SimReport::build(report::Inputs {
        config: &config,
        bootstraps,
        live_nodes,
        join_time,
        wall,
        rss_before,
        rss_joined,
        rss_end,
        cpu_before,
        cpu_start,
        cpu_end,
        traffic_start,
        traffic_end,
        samples,
        final_sample,
        outcomes,
        failed_starts: world
            .failed_starts
            .load(std::sync::atomic::Ordering::Relaxed),
        stopped: lock(&world.stopped).clone(),
    });
    // Stop every node (in parallel, bounded): the report is already made.
    let members: Vec<Member> = lock(&world.members).drain().map(|(_, m)| m).collect();
    let mut stops = tokio::task::JoinSet::new();
    for m in members {
        stops.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), m.node.shutdown()).await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while stops.join_next().await.is_some() {}
    })
    .await;
    pool.close();
    Ok(report)
}

impl World {
    /// Routing tables and connections of up to 200 live nodes.
    async fn sample(self: &Arc<Self>) -> Sample {
        let (live, clients, boots) = {
            let members = lock(&self.members);
            let live: HashSet<PeerId> = members.keys().copied().collect();
            let boots: Vec<crate::net::Client> = members
                .values()
                .filter(|m| m.bootstrap)
                .map(|m| m.node.client().clone())
                .collect();
            let mut peers: Vec<&PeerId> = members.keys().collect();
            peers.sort();
            let step = (peers.len() / 200).max(1);
            let clients = peers
                .iter()
                .step_by(step)
                .filter_map(|p| members.get(*p).map(|m| m.node.client().clone()))
                .collect::<Vec<_>>();
            (live, clients, boots)
        };
        let mut s = Sample::default();
        // All sampled nodes at once, the whole bounded: an overloaded process
        // must not pile up samples (one runs at a time, see `run`).
        let asks = clients.into_iter().map(|c| async move {
            let table = c.routing_peers().await.ok()?;
            let connections = c.info().await.map(|i| i.connected.len()).unwrap_or(0);
            Some((table, connections))
        });
        let answers =
            tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(asks))
                .await
                .unwrap_or_default();
        for (table, connections) in answers.into_iter().flatten() {
            let dead = table.iter().filter(|p| !live.contains(p)).count();
            s.nodes += 1;
            s.table_entries += table.len();
            s.dead_entries += dead;
            s.connections += connections;
        }
        for b in boots {
            if let Ok(Ok(i)) = tokio::time::timeout(Duration::from_secs(5), b.info()).await {
                s.bootstrap_connections = s.bootstrap_connections.max(i.connected.len());
            }
        }
        s.rss = report::rss_bytes();
        lock(&self.samples).push(s.clone());
        s
    }
}
