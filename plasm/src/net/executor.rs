//! The executor side of the job protocol: consent, replay protection, bounded
//! reservations, fairness between peers, and running accepted jobs on the pool.
//!
//! It runs as its own task, fed by the event loop's bounded inbound channel. An
//! offer is answered from memory (schema, policy, rate, nonce, capacity); a
//! bundle is matched to its reservation and everything heavy after that (hashing
//! up to 32 MiB, waiting for the pool, signing) runs in a spawned task and on
//! tokio's blocking pool, so one peer's large bundle never holds up another
//! peer's offers.
//!
//! One peer cannot deny service to the others: each peer has a token bucket
//! for offers and a cap on the reservations it holds; when the shared tables are
//! full, the entry evicted is the oldest of the peer holding the most, so the
//! cost lands on whoever used the space. A nonce is remembered for good only once
//! its job runs (an offer holds it tentatively in its reservation), so offers
//! followed by bad bundles leave nothing behind. Refusals and evictions are
//! counted for `/metrics` ([`ExecutorMetrics`]).

use super::protocol::{DeclineReason, FailureReason, JobRequest, JobResponse};
use super::replay::{ReplayEntry, ReplayStore, ReplayWriter};
use super::steal::{Handed, Listed, Origin};
use super::{Client, InboundJob};
use crate::identity::Identity;
use crate::job;
use crate::job::ServedJob;
use crate::manifest::Manifest;
use crate::runtime::CancelToken;
use crate::runtime::engines::EngineChoice;
use crate::runtime::pool::WorkerPool;
use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What an executor accepts from others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorPolicy {
    /// Engines this node offers to others.
    pub engines: EngineChoice,
    /// Labels this node advertises.
    pub labels: Vec<String>,
    /// Largest fuel budget accepted.
    pub max_fuel: u64,
    /// Largest memory cap accepted.
    pub max_memory_bytes: u64,
    /// Largest output cap accepted.
    pub max_output_bytes: u64,
    /// Largest module accepted.
    pub max_module_bytes: u64,
    /// Largest input accepted.
    pub max_input_bytes: u64,
    /// Largest bundle (module + input) accepted: the link profile's cap.
    pub max_bundle_bytes: u64,
    /// Accepted offers waiting for their bundle.
    pub max_reservations: usize,
    /// Accepted offers one peer may hold at once.
    pub max_reservations_per_peer: usize,
    /// Offers a peer may send per second, sustained.
    pub offer_rate: u32,
    /// Offers a peer may send in a burst.
    pub offer_burst: u32,
    /// How long an accepted offer waits for its bundle.
    pub reservation_ttl: Duration,
    /// How far `created_at` may be from this node's clock.
    pub max_clock_skew: Duration,
    /// Nonces remembered (each for twice the clock skew).
    pub max_nonces: usize,
    /// Bytes of modules kept in memory by hash.
    pub module_cache_bytes: usize,
    /// Test hook: holds large bundles before their check (see [`CheckGate`]).
    pub check_gate: CheckGate,
}

impl Default for ExecutorPolicy {
    fn default() -> Self {
        Self {
            engines: EngineChoice::default(),
            labels: Vec::new(),
            max_fuel: 10_000_000_000,
            max_memory_bytes: 256 * 1024 * 1024,
            max_output_bytes: 4 * 1024 * 1024,
            max_module_bytes: 16 * 1024 * 1024,
            max_input_bytes: 16 * 1024 * 1024,
            max_bundle_bytes: u64::MAX,
            max_reservations: 256,
            max_reservations_per_peer: 16,
            offer_rate: 50,
            offer_burst: 200,
            reservation_ttl: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(600),
            max_nonces: 100_000,
            module_cache_bytes: 256 * 1024 * 1024,
            check_gate: CheckGate::default(),
        }
    }
}

/// A gate that bundles of at least `min_bytes` wait at, on the blocking pool,
/// just before their bytes are hashed. Open (absent) in every real node; a test
/// closes it to prove that a large bundle's check runs off the executor task: if
/// it ran on the task, the task would stop at the gate and nobody else's offer
/// would be answered.
#[derive(Clone, Default)]
pub struct CheckGate(Option<Arc<GateState>>);

#[doc(hidden)]
pub struct GateState {
    min_bytes: usize,
    open: Mutex<bool>,
    opened: Condvar,
    waiting: std::sync::atomic::AtomicUsize,
}

impl CheckGate {
    /// A closed gate for bundles of `min_bytes` or more.
    pub fn closed(min_bytes: usize) -> Self {
        Self(Some(Arc::new(GateState {
            min_bytes,
            open: Mutex::new(false),
            opened: Condvar::new(),
            waiting: 0.into(),
        })))
    }

    /// Lets every held and future bundle through.
    pub fn open(&self) {
        if let Some(g) = &self.0 {
            *g.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
            g.opened.notify_all();
        }
    }

    /// Bundles that reached the gate so far.
    pub fn arrived(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |g| g.waiting.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Blocks (on a blocking thread) while the gate is closed for `bytes`.
    fn pass(&self, bytes: usize) {
        let Some(g) = &self.0 else { return };
        if bytes < g.min_bytes {
            return;
        }
        g.waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut open = g.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = g.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl std::fmt::Debug for CheckGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "CheckGate(set)"
        } else {
            "CheckGate(none)"
        })
    }
}

impl PartialEq for CheckGate {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
impl Eq for CheckGate {}

/// The label of `plasm_executor_refusals_total`: why an offer was declined.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RefusalLabel {
    /// `rate`, `aborts`, `peer_reservations`, `reservations_full`, `queue_full`,
    /// `replayed_nonce`, `replayed_job` (decision 0054), `replay_window`.
    pub reason: String,
}

/// The label of `plasm_executor_evictions_total`: what was evicted from a full table.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct EvictionLabel {
    /// `reservation` or `nonce`.
    pub table: String,
}

/// The label of `plasm_executor_jobs_total`: how a job run for a peer ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ServedLabel {
    /// The receipt's outcome, or `failed` (no receipt).
    pub outcome: String,
}

/// The executor's counters, shared with `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ExecutorMetrics {
    /// Offers declined to protect the node or other peers, by reason.
    pub refusals: Family<RefusalLabel, Counter>,
    /// Entries evicted from a full table, charged to the peer holding the most.
    pub evictions: Family<EvictionLabel, Counter>,
    /// Jobs run for peers, by outcome.
    pub served: Family<ServedLabel, Counter>,
    /// Fuel used by jobs run for peers.
    pub fuel: Counter,
    /// The node's fuel total (`plasm_fuel_consumed_total`), shared with the service
    /// that counts its own jobs in it: jobs run for peers count there too.
    pub node_fuel: Counter,
}

/// Records of jobs run for peers waiting for the node to store them.
pub const SERVED_QUEUE: usize = 256;

impl ExecutorMetrics {
    fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&RefusalLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
    fn served(&self, outcome: &str, fuel: u64) {
        self.served
            .get_or_create(&ServedLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.fuel.inc_by(fuel);
        self.node_fuel.inc_by(fuel);
    }
    fn evicted(&self, table: &str) {
        self.evictions
            .get_or_create(&EvictionLabel {
                table: table.to_owned(),
            })
            .inc();
    }
}

struct Reservation {
    peer: PeerId,
    manifest: Manifest,
    /// The job already ran here (a re-offer): who first submitted it, and the
    /// largest attempt that ran. Its bundle must be a re-placement by that peer
    /// or a job stolen with consent (decision 0054).
    again: Option<(PeerId, u32)>,
    /// `manifest.created_at`, parsed when the offer was checked.
    created: time::OffsetDateTime,
    expires: Instant,
}

/// A token bucket per peer for offers.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Peers whose offer buckets are remembered; idle full buckets go first.
const MAX_BUCKETS: usize = 4096;

/// Remembers the nonces of jobs that ran, for a bounded time and count. When it
/// is full, the oldest nonce of the peer holding the most goes: a peer that
/// fills the guard pays for it, and nobody else is refused. A forgotten nonce
/// must not become replayable, so eviction raises a floor on `created_at`: a
/// manifest created at or before the newest evicted one is refused as too old
/// for this node's replay window (honest manifests are fresh; the floor trails
/// the present by the guard's turnover time).
struct NonceGuard {
    seen: HashMap<String, Seen>,
    /// Manifests created at or before this are refused (set by evictions).
    floor: Option<time::OffsetDateTime>,
    /// Each peer's nonces, oldest first (eviction).
    by_peer: HashMap<PeerId, VecDeque<(Instant, String)>>,
    /// Every nonce, oldest first (expiry); may hold evicted entries until compacted.
    order: VecDeque<(Instant, String)>,
    keep: Duration,
    max: usize,
}

/// A nonce whose job ran here.
#[derive(Debug, Clone)]
struct Seen {
    /// When it was recorded (it expires `keep` later).
    at: Instant,
    /// The peer that first submitted the job here.
    peer: PeerId,
    created: time::OffsetDateTime,
    job_id: String,
    /// The largest attempt that ran here.
    attempt: u32,
}

impl NonceGuard {
    fn new(keep: Duration, max: usize) -> Self {
        Self {
            seen: HashMap::new(),
            floor: None,
            by_peer: HashMap::new(),
            order: VecDeque::new(),
            keep,
            max: max.max(1),
        }
    }

    fn purge(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if now.duration_since(*t) < self.keep {
                break;
            }
            if let Some((t, n)) = self.order.pop_front()
                && self.seen.get(&n).is_some_and(|s| s.at == t)
                && let Some(s) = self.seen.remove(&n)
            {
                self.forget(s.peer, &n);
            }
        }
        // Evictions leave stale entries behind in `order`: keep it bounded.
        if self.order.len() > 2 * self.max {
            let seen = &self.seen;
            self.order
                .retain(|(t, n)| seen.get(n).is_some_and(|s| s.at == *t));
        }
    }

    fn forget(&mut self, peer: PeerId, nonce: &str) {
        if let Some(q) = self.by_peer.get_mut(&peer) {
            // Nonces expire oldest first, so the expired one is at the front
            // (evictions pop from the front too): no scan of the queue.
            if q.front().is_some_and(|(_, n)| n == nonce) {
                q.pop_front();
            } else {
                q.retain(|(_, n)| n != nonce);
            }
            if q.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// Whether a manifest created at `created` is inside the replay window.
    fn admits(&self, created: time::OffsetDateTime) -> bool {
        self.floor.is_none_or(|f| created > f)
    }

    fn get(&mut self, nonce: &str, now: Instant) -> Option<&Seen> {
        self.purge(now);
        self.seen.get(nonce)
    }

    #[cfg(test)]
    fn put(
        &mut self,
        nonce: &str,
        peer: PeerId,
        at: Instant,
        created: time::OffsetDateTime,
    ) -> bool {
        self.insert(
            nonce,
            Seen {
                at,
                peer,
                created,
                job_id: format!("job-{nonce}"),
                attempt: 1,
            },
        )
    }

    #[cfg(test)]
    fn contains(&mut self, nonce: &str, now: Instant) -> bool {
        self.get(nonce, now).is_some()
    }

    /// Records `nonce` for `peer`; returns whether another entry was evicted to
    /// make room. A nonce already recorded keeps its first submitter and time;
    /// only its attempt rises.
    fn insert(&mut self, nonce: &str, seen: Seen) -> bool {
        let now = seen.at;
        self.purge(now);
        if let Some(s) = self.seen.get_mut(nonce) {
            s.attempt = s.attempt.max(seen.attempt);
            return false;
        }
        let mut evicted = false;
        if self.seen.len() >= self.max {
            let heaviest = self
                .by_peer
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(p, _)| *p);
            if let Some(p) = heaviest
                && let Some(q) = self.by_peer.get_mut(&p)
                && let Some((_, old)) = q.pop_front()
            {
                if q.is_empty() {
                    self.by_peer.remove(&p);
                }
                if let Some(s) = self.seen.remove(&old) {
                    self.raise_floor(s.created);
                }
                evicted = true;
            }
        }
        self.by_peer
            .entry(seen.peer)
            .or_default()
            .push_back((now, nonce.to_owned()));
        self.order.push_back((now, nonce.to_owned()));
        self.seen.insert(nonce.to_owned(), seen);
        evicted
    }

    fn raise_floor(&mut self, created: time::OffsetDateTime) {
        self.floor = Some(self.floor.map_or(created, |f| f.max(created)));
    }

    /// Takes back the window persisted before a restart (oldest first), each
    /// entry expiring when it would have. Entries beyond the bound are evicted
    /// as usual (raising the floor).
    fn restore(&mut self, window: super::replay::ReplayWindow, now: Instant) {
        if let Some(f) = window.floor {
            self.raise_floor(f);
        }
        let now_ms = super::replay::now_ms();
        for e in window.entries {
            let Ok(peer) = e.peer.parse::<PeerId>() else {
                // Unreadable: refuse its manifest by the floor rather than forget it.
                self.raise_floor(e.created);
                continue;
            };
            let left = Duration::from_millis(u64::try_from(e.expires_ms - now_ms).unwrap_or(0));
            if left.is_zero() {
                continue;
            }
            let at = now
                .checked_sub(self.keep.saturating_sub(left))
                .unwrap_or(now);
            self.insert(
                &e.nonce,
                Seen {
                    at,
                    peer,
                    created: e.created,
                    job_id: e.job_id,
                    attempt: e.attempt,
                },
            );
        }
    }
}

/// Modules kept in memory by hash, oldest evicted first.
struct ModuleCache {
    map: HashMap<String, Arc<[u8]>>,
    order: VecDeque<String>,
    bytes: usize,
    max_bytes: usize,
}

impl ModuleCache {
    fn get(&self, sha256: &str) -> Option<Arc<[u8]>> {
        self.map.get(sha256).cloned()
    }

    fn insert(&mut self, sha256: String, module: Arc<[u8]>) {
        if self.map.contains_key(&sha256) || module.len() > self.max_bytes {
            return;
        }
        while self.bytes + module.len() > self.max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(m) = self.map.remove(&old) {
                self.bytes -= m.len();
            }
        }
        self.bytes += module.len();
        self.order.push_back(sha256.clone());
        self.map.insert(sha256, module);
    }
}

/// The executor task's state.
pub struct Executor {
    client: Client,
    pool: Arc<WorkerPool>,
    identity: Arc<Identity>,
    policy: ExecutorPolicy,
    reservations: HashMap<String, Reservation>,
    /// Nonces of reservations (offered, bundle not yet run): nonce -> job id.
    reserved_nonces: HashMap<String, String>,
    nonces: NonceGuard,
    buckets: HashMap<PeerId, Bucket>,
    modules: Arc<Mutex<ModuleCache>>,
    strikes: Arc<Mutex<Strikes>>,
    metrics: ExecutorMetrics,
    /// Bundles being checked (hashing up to 32 MiB each) at once.
    checks: Arc<tokio::sync::Semaphore>,
    /// Bundle tasks report here whether their job ran (its nonce is spent).
    /// Bounded by [`MAX_CHECKS`]: a task sends while it still holds its check
    /// permit, so at most that many reports are ever pending or waiting to send.
    reports: (mpsc::Sender<NonceReport>, mpsc::Receiver<NonceReport>),
    /// Where records of jobs run for peers go (the node stores them).
    served: Option<mpsc::Sender<ServedJob>>,
    /// The replay window on disk (decision 0054); in memory only without it.
    replay: Option<ReplayWriter>,
}

/// Jobs of one peer that may end by exhausting a worker (compile limit, crash,
/// deadline) within [`STRIKE_WINDOW`] before its offers are declined.
const MAX_STRIKES: usize = 3;
/// How long a strike counts.
const STRIKE_WINDOW: Duration = Duration::from_secs(600);
/// Peers whose strikes are remembered at once.
const MAX_STRIKE_PEERS: usize = 4096;

/// Recent jobs of each peer that exhausted a worker: a peer that keeps sending
/// bombs is refused for a while (`plasm_executor_refusals_total{reason="aborts"}`).
#[derive(Debug, Default)]
struct Strikes(HashMap<PeerId, VecDeque<Instant>>);

impl Strikes {
    fn add(&mut self, peer: PeerId, now: Instant) {
        if !self.0.contains_key(&peer) && self.0.len() >= MAX_STRIKE_PEERS {
            self.0.retain(|_, t| {
                t.back()
                    .is_some_and(|b| now.duration_since(*b) < STRIKE_WINDOW)
            });
            if self.0.len() >= MAX_STRIKE_PEERS {
                return;
            }
        }
        let t = self.0.entry(peer).or_default();
        t.push_back(now);
        while t.len() > MAX_STRIKES {
            t.pop_front();
        }
    }

    /// When `peer` may offer again, if it is refused now.
    fn refused_until(&mut self, peer: PeerId, now: Instant) -> Option<Instant> {
        let t = self.0.get_mut(&peer)?;
        while t
            .front()
            .is_some_and(|f| now.duration_since(*f) >= STRIKE_WINDOW)
        {
            t.pop_front();
        }
        if t.is_empty() {
            self.0.remove(&peer);
            return None;
        }
        (t.len() >= MAX_STRIKES).then(|| t.front().map_or(now, |f| *f + STRIKE_WINDOW))
    }
}

/// The largest attempt number signed into a receipt's placement.
const MAX_ATTEMPT: u32 = 1000;

/// How often expired rows of the replay window are deleted.
const REPLAY_PURGE: Duration = Duration::from_secs(60);

/// Bundles checked at once; more are refused `busy` (each holds up to 32 MiB).
const MAX_CHECKS: usize = 8;

/// What became of a bundle's nonce: spent when its job ran, free otherwise.
struct NonceReport {
    nonce: String,
    peer: PeerId,
    created: time::OffsetDateTime,
    job_id: String,
    attempt: u32,
    ran: bool,
}

/// An offer of a job whose nonce is in the replay window (decision 0054): the
/// job's first submitter and the attempt that ran, if it may be offered again
/// (by that submitter, or by anyone while this node takes stolen jobs: the bundle
/// decides), or the refusal's metrics label and message.
#[allow(clippy::type_complexity)]
fn reoffer(
    seen: Option<&Seen>,
    job_id: &str,
    peer: PeerId,
    stealing: bool,
) -> Result<Option<(PeerId, u32)>, (&'static str, &'static str)> {
    match seen {
        None => Ok(None),
        Some(seen) if seen.job_id != job_id => Err((
            "replayed_nonce",
            "this nonce was already used here by another job",
        )),
        Some(seen) if seen.peer == peer || stealing => Ok(Some((seen.peer, seen.attempt))),
        Some(_) => Err((
            "replayed_job",
            "replayed job: this job already ran here for another requester",
        )),
    }
}

/// Why the bundle of a job that already ran here is refused, if it is: it must
/// be its first submitter's re-placement under a higher attempt (decision 0050);
/// a stolen copy never runs again (any peer can claim to be `stolen_from`).
fn rerun_refusal(
    again: Option<(PeerId, u32)>,
    peer: PeerId,
    attempt: Option<u32>,
    stolen: bool,
) -> Option<String> {
    let (submitter, ran) = again?;
    if submitter == peer {
        (attempt.unwrap_or(1) <= ran).then(|| {
            format!(
                "replayed job: attempt {ran} of this job already ran here; a re-placement carries a higher attempt"
            )
        })
    } else if !stolen {
        Some("replayed job: this job already ran here for another requester".to_owned())
    } else {
        // Any peer may claim a bundle is stolen from itself: consent is node-wide,
        // not per job, so a stolen job that already ran here is never run again
        // (given back, it runs in its busy node's queue).
        Some("replayed job: this job already ran here; a stolen copy is not run again".to_owned())
    }
}

fn decline(reason: DeclineReason, message: impl Into<String>) -> JobResponse {
    JobResponse::Decline {
        reason,
        message: message.into(),
    }
}

fn failure(reason: FailureReason, message: impl Into<String>) -> JobResponse {
    JobResponse::Failure {
        reason,
        message: message.into(),
    }
}

impl Executor {
    /// Creates the executor.
    pub fn new(
        client: Client,
        pool: Arc<WorkerPool>,
        identity: Arc<Identity>,
        policy: ExecutorPolicy,
        metrics: ExecutorMetrics,
    ) -> Self {
        let nonces = NonceGuard::new(policy.max_clock_skew * 2, policy.max_nonces);
        let modules = ModuleCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes: policy.module_cache_bytes,
        };
        Self {
            client,
            pool,
            identity,
            policy,
            reservations: HashMap::new(),
            reserved_nonces: HashMap::new(),
            nonces,
            buckets: HashMap::new(),
            modules: Arc::new(Mutex::new(modules)),
            strikes: Arc::default(),
            metrics,
            checks: Arc::new(tokio::sync::Semaphore::new(MAX_CHECKS)),
            reports: mpsc::channel(MAX_CHECKS),
            served: None,
            replay: None,
        }
    }

    /// Keeps the replay window in `store` (decision 0054): the nonces persisted
    /// before a restart are refused again, and each job's nonce is committed
    /// there before the job starts.
    pub fn with_replay_store(mut self, store: ReplayStore) -> Self {
        let (window, writer) = store.into_parts();
        self.nonces.restore(window, Instant::now());
        self.replay = Some(writer);
        self
    }

    /// Sends a record of each job run for a peer to `tx` (bounded: [`SERVED_QUEUE`]).
    pub fn with_served(mut self, tx: mpsc::Sender<ServedJob>) -> Self {
        self.served = Some(tx);
        self
    }

    /// Serves inbound requests until the channel closes.
    pub async fn run(mut self, mut inbound: mpsc::Receiver<InboundJob>) {
        let mut purge = tokio::time::interval(REPLAY_PURGE);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                biased;
                Some(report) = self.reports.1.recv() => {
                    self.on_report(report);
                    continue;
                }
                _ = purge.tick() => {
                    if let Some(w) = &self.replay {
                        w.purge();
                    }
                    continue;
                }
                next = inbound.recv() => next,
            };
            let Some(InboundJob {
                peer,
                request,
                path,
                channel,
            }) = next
            else {
                return;
            };
            match request {
                JobRequest::Offer { manifest } => {
                    let response = self.on_offer(peer, &manifest);
                    let _ = self.client.respond(channel, response).await;
                }
                JobRequest::Bundle {
                    job_id,
                    module,
                    input,
                    placement,
                } => match self.on_bundle(peer, path, &job_id, module, input, placement) {
                    Ok(pending) => {
                        let client = self.client.clone();
                        tokio::spawn(async move {
                            let response = pending.await;
                            let _ = client.respond(channel, response).await;
                        });
                    }
                    Err(response) => {
                        let _ = self.client.respond(channel, response).await;
                    }
                },
            }
        }
    }

    /// A bundle's job ran (its nonce is remembered) or never will (freed).
    fn on_report(&mut self, r: NonceReport) {
        self.reserved_nonces.remove(&r.nonce);
        if r.ran
            && self.nonces.insert(
                &r.nonce,
                Seen {
                    at: Instant::now(),
                    peer: r.peer,
                    created: r.created,
                    job_id: r.job_id,
                    attempt: r.attempt,
                },
            )
        {
            self.metrics.evicted("nonce");
            if let (Some(w), Some(floor)) = (&self.replay, self.nonces.floor) {
                w.raise_floor(floor);
            }
        }
    }

    /// Takes one offer token from `peer`'s bucket; false when it is empty.
    fn take_token(&mut self, peer: PeerId, now: Instant) -> bool {
        let (rate, burst) = (
            f64::from(self.policy.offer_rate),
            f64::from(self.policy.offer_burst.max(1)),
        );
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= MAX_BUCKETS {
            // Forget peers whose bucket has refilled: they lose nothing.
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            if self.buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let b = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }

    /// Drops expired reservations (and their tentative nonces).
    fn expire_reservations(&mut self, now: Instant) {
        let nonces = &mut self.reserved_nonces;
        self.reservations.retain(|_, r| {
            let keep = r.expires > now;
            if !keep {
                nonces.remove(&r.manifest.nonce);
            }
            keep
        });
    }

    fn remove_reservation(&mut self, job_id: &str) -> Option<Reservation> {
        let r = self.reservations.remove(job_id)?;
        self.reserved_nonces.remove(&r.manifest.nonce);
        Some(r)
    }

    /// Makes room for one more reservation of `peer`, or says why not.
    fn reservation_room(&mut self, peer: PeerId) -> Result<(), JobResponse> {
        let p = &self.policy;
        let mut held: HashMap<PeerId, usize> = HashMap::new();
        for r in self.reservations.values() {
            *held.entry(r.peer).or_default() += 1;
        }
        let mine = held.get(&peer).copied().unwrap_or(0);
        if mine >= p.max_reservations_per_peer {
            self.metrics.refused("peer_reservations");
            return Err(decline(
                DeclineReason::Busy,
                format!(
                    "you hold {mine} accepted offers without their bundle (at most {})",
                    p.max_reservations_per_peer
                ),
            ));
        }
        if self.reservations.len() < p.max_reservations {
            return Ok(());
        }
        // Full: the peer holding the most gives up its oldest, if it holds more than this one.
        let heaviest = held.into_iter().max_by_key(|(_, n)| *n);
        if let Some((victim, n)) = heaviest
            && n > mine + 1
        {
            let oldest = self
                .reservations
                .iter()
                .filter(|(_, r)| r.peer == victim)
                .min_by_key(|(_, r)| r.expires)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.remove_reservation(&id);
                self.metrics.evicted("reservation");
                tracing::debug!(%victim, "evicted a reservation of the peer holding the most");
                return Ok(());
            }
        }
        self.metrics.refused("reservations_full");
        Err(decline(
            DeclineReason::Busy,
            "too many accepted offers waiting for their bundle",
        ))
    }

    fn on_offer(&mut self, peer: PeerId, text: &str) -> JobResponse {
        let now = Instant::now();
        if !self.take_token(peer, now) {
            self.metrics.refused("rate");
            return decline(
                DeclineReason::Busy,
                format!(
                    "offer rate limit: at most {} offers per second (bursts of {})",
                    self.policy.offer_rate, self.policy.offer_burst
                ),
            );
        }
        let until = self
            .strikes
            .lock()
            .ok()
            .and_then(|mut s| s.refused_until(peer, now));
        if let Some(until) = until {
            self.metrics.refused("aborts");
            return decline(
                DeclineReason::Busy,
                format!(
                    "{MAX_STRIKES} of this peer's jobs exhausted a worker (compile limit, crash or deadline) in the last {} s; offers refused for {} s more",
                    STRIKE_WINDOW.as_secs(),
                    until.saturating_duration_since(now).as_secs()
                ),
            );
        }
        if text.len() > super::protocol::MAX_MANIFEST_BYTES {
            return decline(DeclineReason::OverLimit, "manifest larger than 64 KiB");
        }
        let manifest = match Manifest::from_json(text) {
            Ok(m) => m,
            Err(e) => return decline(DeclineReason::Policy, format!("invalid manifest: {e}")),
        };
        let p = &self.policy;
        if let Some(rt) = &manifest.requirements.runtime
            && p.engines.resolve(Some(rt)).is_none()
        {
            let offered: Vec<&str> = p.engines.offered.iter().map(|e| e.as_str()).collect();
            return decline(
                DeclineReason::UnsupportedRuntime,
                format!("this node runs {}, not {rt}", offered.join(", ")),
            );
        }
        if let Some(missing) = manifest
            .requirements
            .labels
            .iter()
            .find(|l| !p.labels.contains(l))
        {
            return decline(
                DeclineReason::MissingLabel,
                format!("this node has no label {missing}"),
            );
        }
        let l = manifest.limits;
        let input_size = manifest.input.as_ref().map_or(0, |i| i.size);
        for (what, asked, max) in [
            ("fuel", l.fuel, p.max_fuel),
            ("memory_bytes", l.memory_bytes, p.max_memory_bytes),
            ("output_bytes", l.output_bytes, p.max_output_bytes),
            ("module size", manifest.module.size, p.max_module_bytes),
            ("input size", input_size, p.max_input_bytes),
            (
                "bundle size (module + input)",
                manifest.module.size.saturating_add(input_size),
                p.max_bundle_bytes,
            ),
        ] {
            if asked > max {
                return decline(
                    DeclineReason::OverLimit,
                    format!("{what} {asked} exceeds this node's maximum {max}"),
                );
            }
        }
        let created = match check_clock(&manifest.created_at, p.max_clock_skew) {
            Ok(t) => t,
            Err(why) => return decline(DeclineReason::Policy, why),
        };
        if !self.nonces.admits(created) {
            self.metrics.refused("replay_window");
            return decline(
                DeclineReason::Policy,
                "created_at is older than this node's replay window; build a fresh manifest",
            );
        }
        self.expire_reservations(now);
        if self.reserved_nonces.contains_key(&manifest.nonce) {
            self.metrics.refused("replayed_nonce");
            return decline(
                DeclineReason::ReplayedNonce,
                "this nonce was already offered here",
            );
        }
        // The job ran here before (decision 0054): only its first submitter
        // (re-placing it under a higher attempt) or a node that stole it with
        // this node's consent (swarm) may offer it again; the bundle says which.
        let stealing = self.client.steal_gate().policy.enabled;
        let seen = self.nonces.get(&manifest.nonce, now);
        let again = match reoffer(seen, manifest.job_id(), peer, stealing) {
            Ok(again) => again,
            Err((label, why)) => {
                self.metrics.refused(label);
                return decline(DeclineReason::ReplayedNonce, why);
            }
        };
        let stats = self.pool.stats();
        if stats.queued >= self.pool.capacity().1 {
            self.metrics.refused("queue_full");
            return decline(DeclineReason::Busy, "the job queue is full");
        }
        if let Err(refusal) = self.reservation_room(peer) {
            return refusal;
        }
        let job_id = manifest.job_id().to_owned();
        tracing::info!(job_id, %peer, "accepted offer");
        let has_module = self
            .modules
            .lock()
            .is_ok_and(|m| m.get(&manifest.module.sha256).is_some());
        self.reserved_nonces
            .insert(manifest.nonce.clone(), job_id.clone());
        self.reservations.insert(
            job_id.clone(),
            Reservation {
                peer,
                manifest,
                again,
                created,
                expires: now + self.policy.reservation_ttl,
            },
        );
        JobResponse::Accept {
            job_id,
            has_module,
            receipt: Some(crate::receipt::RECEIPT_VERSION.to_owned()),
        }
    }

    /// Matches a bundle to its reservation (here, on the task) and returns the
    /// rest of the work as a future: the bytes are checked on the blocking pool,
    /// then the job runs on the worker pool and its receipt is signed.
    #[allow(clippy::result_large_err)]
    fn on_bundle(
        &mut self,
        peer: PeerId,
        path: super::Path,
        job_id: &str,
        module: Option<Vec<u8>>,
        input: Vec<u8>,
        placement: Option<super::protocol::BundlePlacement>,
    ) -> Result<impl std::future::Future<Output = JobResponse> + use<>, JobResponse> {
        // Signed as the requester states it (its own account of the job's
        // history), within bounds: a peer id that parses, a small attempt number.
        // A stolen job names the busy node it was stolen from, and that is the
        // peer sending it (decision 0053): anything else is refused below.
        let stolen = placement.as_ref().and_then(|p| p.stolen_from.clone());
        // Swarm mode: a queued job of a requester that accepts hand-offs may be
        // taken by an idle peer (never one already stolen once).
        let steal_gate = self.client.steal_gate();
        let listable = stolen.is_none()
            && steal_gate.policy.give
            && steal_gate.giving.load(std::sync::atomic::Ordering::SeqCst)
            && placement.as_ref().is_some_and(|p| p.handoff);
        let (attempt, taken_over_from) = match placement {
            Some(p) if (1..=MAX_ATTEMPT).contains(&p.attempt) => (
                Some(p.attempt),
                p.taken_over_from.filter(|t| {
                    t.parse::<PeerId>()
                        .is_ok_and(|t| t != peer && t != self.identity.peer_id())
                }),
            ),
            _ => (None, None),
        };
        let now = Instant::now();
        match self.reservations.get(job_id) {
            Some(r) if r.peer == peer && r.expires > now => {}
            Some(_) => {
                // Not this requester's reservation (or expired): leave it to expire.
                return Err(failure(
                    FailureReason::UnknownJob,
                    "no accepted offer with this job id from you",
                ));
            }
            None => {
                return Err(failure(
                    FailureReason::UnknownJob,
                    "no accepted offer with this job id (expired?)",
                ));
            }
        }
        // A stolen bundle, admitted below or refused, ends one slot its sender was
        // promised (decision 0063): a refused one goes home, never sent again.
        if stolen.is_some() {
            steal_gate.release(&peer);
        }
        let Ok(permit) = self.checks.clone().try_acquire_owned() else {
            // The reservation goes, and its nonce with it: a requester retries a
            // busy answer with a new offer (as it does a busy decline), which a
            // nonce still reserved would decline as a replay. Nothing ran.
            self.remove_reservation(job_id);
            return Err(failure(
                FailureReason::Busy,
                "too many bundles are being checked; retry",
            ));
        };
        let Some(reservation) = self.reservations.remove(job_id) else {
            return Err(failure(FailureReason::UnknownJob, "no accepted offer"));
        };
        // The nonce stays reserved until the task reports: spent if the job ran.
        let nonce = NonceReport {
            nonce: reservation.manifest.nonce.clone(),
            peer,
            created: reservation.created,
            job_id: job_id.to_owned(),
            attempt: attempt.unwrap_or(1),
            ran: false,
        };
        // A job that already ran here (decision 0054): only a re-placement by its
        // first submitter under a higher attempt, never a stolen copy.
        if let Some(why) = rerun_refusal(reservation.again, peer, attempt, stolen.is_some()) {
            self.metrics.refused("replayed_job");
            self.on_report(nonce);
            return Err(failure(FailureReason::UnknownJob, why));
        }
        let fresh = reservation.again.is_none();
        // A stolen job runs only under this node's steal policy (its consent,
        // checked again on the bundle), and holds one of its stolen slots.
        let stolen_slot = match &stolen {
            None => None,
            Some(from) if *from != peer.to_string() => {
                self.on_report(nonce);
                return Err(failure(
                    FailureReason::Busy,
                    "a stolen job must come from the node it was stolen from",
                ));
            }
            Some(_) => match self
                .client
                .steal_gate()
                .admit(&super::steal::Need::of(&reservation.manifest))
            {
                Ok(slot) => Some(slot),
                Err(why) => {
                    self.on_report(nonce);
                    return Err(failure(FailureReason::Busy, why));
                }
            },
        };
        let manifest = reservation.manifest;
        let replay = self.replay.clone().map(|w| {
            let keep = i64::try_from(self.nonces.keep.as_millis()).unwrap_or(i64::MAX);
            let entry = ReplayEntry {
                nonce: manifest.nonce.clone(),
                job_id: job_id.to_owned(),
                peer: peer.to_string(),
                attempt: nonce.attempt,
                created: nonce.created,
                recorded_ms: 0,
                expires_ms: keep,
            };
            (w, entry)
        });
        // Sent bytes become an `Arc` (a copy of up to 16 MiB) on the blocking pool too.
        let module: Result<Vec<u8>, Arc<[u8]>> = match module {
            Some(bytes) => Ok(bytes),
            None => match self
                .modules
                .lock()
                .ok()
                .and_then(|m| m.get(&manifest.module.sha256))
            {
                Some(held) => Err(held),
                None => {
                    self.on_report(nonce);
                    return Err(failure(
                        FailureReason::ModuleMismatch,
                        "module bytes missing and not held here",
                    ));
                }
            },
        };
        let (pool, identity, modules, gate, reports, strikes) = (
            self.pool.clone(),
            self.identity.clone(),
            self.modules.clone(),
            self.policy.check_gate.clone(),
            self.reports.0.clone(),
            self.strikes.clone(),
        );
        let (served, metrics) = (self.served.clone(), self.metrics.clone());
        let (attempt_asked, from_asked) = (attempt.unwrap_or(1), taken_over_from.clone());
        Ok(async move {
            // Given back when the job's answer is ready (or the task is dropped).
            let _stolen_slot = stolen_slot;
            let bytes = module.as_ref().map_or_else(|m| m.len(), Vec::len) + input.len();
            let checked = tokio::task::spawn_blocking(move || {
                gate.pass(bytes);
                let module: Arc<[u8]> = module.map_or_else(|held| held, Into::into);
                // A listed job keeps a copy of its input for its thief.
                let kept = listable.then(|| input.clone());
                job::exec_request(&manifest, module.clone(), input)
                    .map(|request| (manifest, module, request, kept))
            })
            .await;
            let mut handed: Option<(tokio::sync::oneshot::Receiver<Handed>, CancelToken)> = None;
            let started = match checked {
                Ok(Ok((manifest, module, request, kept))) => {
                    if let Ok(mut m) = modules.lock() {
                        m.insert(manifest.module.sha256.clone(), module.clone());
                    }
                    let token = request.cancel.clone();
                    // The nonce is committed to the replay window before the job
                    // starts: a restart after this cannot run it a second time.
                    let recorded = match &replay {
                        None => true,
                        Some((w, entry)) => {
                            let now = super::replay::now_ms();
                            let entry = ReplayEntry {
                                recorded_ms: now,
                                expires_ms: now.saturating_add(entry.expires_ms),
                                ..entry.clone()
                            };
                            w.remember(entry).await
                        }
                    };
                    let started = if recorded {
                        job::Submitted::start(&pool, request)
                            .map(|s| (manifest, s))
                            .map_err(|e| failure(FailureReason::Busy, e.to_string()))
                    } else {
                        Err(failure(
                            FailureReason::Internal,
                            "this node could not record the job's nonce; the job did not run",
                        ))
                    };
                    if let (Err(_), true, true, Some((w, entry))) =
                        (&started, recorded, fresh, &replay)
                    {
                        w.forget(entry.nonce.clone());
                    }
                    if let (Ok((manifest, _)), Some(input)) = (&started, kept) {
                        let (deliver, rx) = tokio::sync::oneshot::channel();
                        let listed = Listed {
                            job_id: manifest.job_id().to_owned(),
                            token: token.clone(),
                            manifest: manifest.clone(),
                            module,
                            input,
                            need: super::steal::Need::of(manifest),
                            origin: Origin::Peer {
                                requester: peer,
                                attempt: attempt_asked,
                                taken_over_from: from_asked,
                                deliver,
                            },
                        };
                        if steal_gate.list.push(listed).is_ok() {
                            handed = Some((rx, token));
                        }
                    }
                    started
                }
                Ok(Err(e)) => Err(bundle_error(e)),
                Err(_) => Err(failure(FailureReason::Internal, "the bundle check failed")),
            };
            // Sent before the permit goes: the permits bound the channel. The
            // executor loop reads reports first, so a full channel drains at once.
            let _ = reports
                .send(NonceReport {
                    ran: started.is_ok(),
                    ..nonce
                })
                .await;
            drop(permit);
            let (manifest, submitted) = match started {
                Ok(v) => v,
                Err(response) => return response,
            };
            tracing::info!(job_id = manifest.job_id(), %peer, "running job");
            let started_at = crate::time::now_rfc3339();
            let placed = crate::receipt::ReceiptPlacement {
                path: path.kind.as_str().into(),
                relay: path.relay.map(|r| r.to_string()),
                attempt,
                taken_over_from,
                stolen_from: stolen,
            };
            let submitted = submitted.placed(placed.clone());
            let mut record = ServedJob {
                job_id: manifest.job_id().to_owned(),
                requester: peer.to_string(),
                outcome: None,
                exit_status: None,
                fuel_used: None,
                path: path.kind.as_str().into(),
                started_at,
                finished_at: String::new(),
                error: None,
                receipt: None,
            };
            let finished = match handed {
                None => submitted.finish(&pool, &identity, &manifest).await,
                Some((rx, token)) => {
                    let job_id = manifest.job_id().to_owned();
                    match finish_or_hand_off(
                        submitted,
                        (rx, &token, placed),
                        (&pool, &identity, &manifest),
                    )
                    .await
                    {
                        Ok(done) => {
                            steal_gate.list.remove(&job_id);
                            done
                        }
                        Err(response) => {
                            tracing::info!(job_id, %peer, "answered with a thief's receipt and a hand-off");
                            return response;
                        }
                    }
                }
            };
            let response = match finished {
                Ok(out) => {
                    let receipt = serde_json::to_string(out.receipt.as_map()).unwrap_or_default();
                    record.outcome = Some(out.result.outcome.as_str().to_owned());
                    record.exit_status = Some(job::exit_status(&out.result));
                    record.fuel_used = Some(out.result.fuel_used);
                    record.receipt = Some(receipt.clone());
                    metrics.served(out.result.outcome.as_str(), out.result.fuel_used);
                    JobResponse::Result {
                        receipt,
                        stdout: out.result.stdout,
                        stderr: out.result.stderr,
                        handoff: None,
                    }
                }
                Err(e) => {
                    if let job::JobError::Aborted(a) = &e
                        && a.kind != crate::runtime::AbortKind::Cancelled
                        && let Ok(mut s) = strikes.lock()
                    {
                        s.add(peer, Instant::now());
                    }
                    tracing::warn!(error = %e, %peer, "job finished without a receipt");
                    record.error = Some(e.to_string());
                    metrics.served("failed", 0);
                    failure(FailureReason::Internal, e.to_string())
                }
            };
            record.finished_at = crate::time::now_rfc3339();
            // Bounded: a full queue holds this task (and its response) until the
            // node's recorder catches up, which stores on the blocking pool.
            if let Some(tx) = served {
                let _ = tx.send(record).await;
            }
            response
        })
    }
}

/// A listed job (swarm mode): its own result when it ran here (`Ok`), or the
/// answer to send when an idle peer took it (`Err`: the thief's receipt with this
/// node's hand-off). A job its thief gave back runs here after all.
async fn finish_or_hand_off(
    submitted: job::Submitted,
    (mut rx, token, placed): (
        tokio::sync::oneshot::Receiver<Handed>,
        &CancelToken,
        crate::receipt::ReceiptPlacement,
    ),
    (pool, identity, manifest): (&Arc<WorkerPool>, &Arc<Identity>, &crate::manifest::Manifest),
) -> Result<Result<job::JobOutput, job::JobError>, JobResponse> {
    let finish = submitted.finish(pool, identity, manifest);
    tokio::pin!(finish);
    let handed = tokio::select! {
        done = &mut finish => {
            if !token.is_stolen() {
                return Ok(done);
            }
            // Stolen: the worker that dequeued it ran nothing; the thief answers.
            rx.await
        }
        handed = &mut rx => match handed {
            Ok(h) => Ok(h),
            // Dropped from the list unstolen (a worker began it): its own result.
            Err(_) => return Ok(finish.await),
        },
    };
    match handed {
        Ok(Handed::Done {
            receipt,
            stdout,
            stderr,
            handoff,
        }) => Err(JobResponse::Result {
            receipt,
            stdout,
            stderr,
            handoff: Some(handoff),
        }),
        Ok(Handed::Back {
            module,
            input,
            place,
        }) => {
            let again = job::exec_request(manifest, module, input)
                .map_err(|e| failure(FailureReason::Internal, e.to_string()))?;
            // Back in the place it kept: never refused for room.
            let submitted = job::Submitted::start_reserved(pool, again, place)
                .map_err(|e| failure(FailureReason::Internal, e.to_string()))?
                .placed(placed);
            Ok(submitted.finish(pool, identity, manifest).await)
        }
        Err(_) => Err(failure(
            FailureReason::Internal,
            "the job was stolen and its thief's answer was lost",
        )),
    }
}

fn bundle_error(e: job::JobError) -> JobResponse {
    match e {
        job::JobError::ModuleMismatch { .. } => {
            failure(FailureReason::ModuleMismatch, e.to_string())
        }
        job::JobError::InputMismatch { .. } => failure(FailureReason::InputMismatch, e.to_string()),
        job::JobError::Pool(_) | job::JobError::Unsignable(_) | job::JobError::Aborted(_) => {
            failure(FailureReason::Internal, e.to_string())
        }
    }
}

fn check_clock(created_at: &str, skew: Duration) -> Result<time::OffsetDateTime, String> {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let t = OffsetDateTime::parse(created_at, &Rfc3339).map_err(|e| format!("created_at: {e}"))?;
    let delta = (OffsetDateTime::now_utc() - t).abs();
    if delta > skew {
        return Err(format!(
            "created_at is {}s away from this node's clock (allowed {}s)",
            delta.whole_seconds(),
            skew.as_secs()
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_guard_is_bounded_and_charges_the_heaviest_peer() {
        let mut g = NonceGuard::new(Duration::from_secs(60), 3);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t = Instant::now();
        let at = |s: i64| time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        assert!(!g.put("a1", a, t, at(10)));
        assert!(!g.put("a2", a, t, at(20)));
        assert!(!g.put("b1", b, t, at(30)));
        assert!(g.contains("a1", t));
        assert!(g.admits(at(1)), "nothing evicted: no floor");
        // Full: b's nonce evicts the oldest of a, who holds the most.
        assert!(g.put("b2", b, t, at(40)));
        assert!(!g.contains("a1", t));
        for n in ["a2", "b1", "b2"] {
            assert!(g.contains(n, t), "{n}");
        }
        assert_eq!(g.seen.len(), 3);
        // The forgotten nonce cannot be replayed: its manifest (created at 10)
        // is below the floor, and so is anything as old.
        assert!(!g.admits(at(10)) && !g.admits(at(5)));
        assert!(g.admits(at(11)));
        // After the keep period the memory is freed.
        assert!(!g.contains("b1", t + Duration::from_secs(61)));
        assert!(g.seen.is_empty() && g.by_peer.is_empty());
        // Stale entries left by evictions do not pile up.
        for i in 0..100 {
            g.put(
                &format!("x{i}"),
                a,
                t + Duration::from_secs(62),
                at(100 + i),
            );
        }
        assert!(g.order.len() <= 2 * 3 + 1, "{}", g.order.len());
    }

    #[test]
    fn expiring_one_peers_many_nonces_is_linear() {
        // 100,000 nonces of one peer expiring together: the pass pops each from the
        // front of that peer's queue (a scan per nonce would be ~5e9 compares).
        let mut g = NonceGuard::new(Duration::from_secs(1), 100_000);
        let p = PeerId::random();
        let t = Instant::now();
        for i in 0..100_000 {
            g.put(&format!("n{i}"), p, t, time::OffsetDateTime::UNIX_EPOCH);
        }
        let started = Instant::now();
        assert!(!g.contains("n0", t + Duration::from_secs(2)));
        assert!(g.seen.is_empty() && g.by_peer.is_empty());
        // Generous: linear is a few ms even in a debug build; quadratic is minutes.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn module_cache_is_bounded() {
        let mut c = ModuleCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes: 10,
        };
        c.insert("a".into(), vec![0u8; 6].into());
        c.insert("b".into(), vec![0u8; 6].into());
        assert!(c.get("a").is_none() && c.get("b").is_some());
        c.insert("c".into(), vec![0u8; 11].into());
        assert!(c.get("c").is_none());
        assert!(c.bytes <= 10);
    }

    #[test]
    fn a_peer_whose_jobs_keep_exhausting_workers_is_refused_for_a_while() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = Strikes::default();
        let t0 = Instant::now();
        for i in 0..MAX_STRIKES {
            assert!(s.refused_until(a, t0).is_none(), "after {i} strikes");
            s.add(a, t0);
        }
        let until = s.refused_until(a, t0).expect("refused");
        assert_eq!(until, t0 + STRIKE_WINDOW);
        assert!(s.refused_until(b, t0).is_none(), "another peer is not");
        assert!(
            s.refused_until(a, t0 + STRIKE_WINDOW).is_none(),
            "the window passed"
        );
        for _ in 0..MAX_STRIKE_PEERS + 10 {
            s.add(PeerId::random(), t0);
        }
        assert!(s.0.len() <= MAX_STRIKE_PEERS, "bounded");
    }

    #[test]
    fn clock_skew_is_enforced() {
        assert!(check_clock(&crate::time::now_rfc3339(), Duration::from_secs(60)).is_ok());
        assert!(check_clock("2020-01-01T00:00:00Z", Duration::from_secs(60)).is_err());
        assert!(check_clock("not a time", Duration::from_secs(60)).is_err());
    }

    #[test]
    fn a_job_that_ran_is_run_again_only_for_its_submitters_next_attempt() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let seen = Seen {
            at: Instant::now(),
            peer: a,
            created: time::OffsetDateTime::UNIX_EPOCH,
            job_id: "j".into(),
            attempt: 2,
        };
        // Never seen: a new job.
        assert_eq!(reoffer(None, "j", b, false), Ok(None));
        // The submitter may re-place it; so may another peer while this node
        // takes stolen jobs (the bundle decides).
        assert_eq!(reoffer(Some(&seen), "j", a, false), Ok(Some((a, 2))));
        assert_eq!(reoffer(Some(&seen), "j", b, true), Ok(Some((a, 2))));
        // Anyone else is a replay; a nonce reused by another job too.
        assert_eq!(
            reoffer(Some(&seen), "j", b, false).map_err(|e| e.0),
            Err("replayed_job")
        );
        assert_eq!(
            reoffer(Some(&seen), "k", a, true).map_err(|e| e.0),
            Err("replayed_nonce")
        );

        // Bundles: a new job always passes.
        assert_eq!(rerun_refusal(None, b, None, false), None);
        // The submitter's re-placement needs a higher attempt than the one that ran.
        assert_eq!(rerun_refusal(Some((a, 2)), a, Some(3), false), None);
        for attempt in [None, Some(1), Some(2)] {
            let why = rerun_refusal(Some((a, 2)), a, attempt, false).expect("refused");
            assert!(why.contains("replayed job"), "{why}");
        }
        // Another peer: never, not even a bundle claiming to be stolen (any peer can
        // claim that; the review found a third peer replaying through it).
        assert!(rerun_refusal(Some((a, 2)), b, Some(1), true).is_some());
        assert!(rerun_refusal(Some((a, 2)), a, Some(1), true).is_some());
        assert!(rerun_refusal(Some((a, 2)), b, Some(3), false).is_some());
    }

    #[test]
    fn the_guard_refuses_across_a_reopen_of_its_store() {
        let dir = tempfile::tempdir().expect("dir");
        let keep = Duration::from_secs(1200);
        let (a, b) = (PeerId::random(), PeerId::random());
        let created = time::OffsetDateTime::now_utc();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        {
            let (_, writer) = ReplayStore::open(dir.path(), false, 100)
                .expect("open")
                .into_parts();
            let now = crate::net::replay::now_ms();
            rt.block_on(async {
                for (n, p) in [("n1", a), ("n2", b)] {
                    assert!(
                        writer
                            .remember(ReplayEntry {
                                nonce: n.into(),
                                job_id: format!("job-{n}"),
                                peer: p.to_string(),
                                attempt: 1,
                                created,
                                recorded_ms: now,
                                expires_ms: now + 1_200_000,
                            })
                            .await
                    );
                }
                writer.raise_floor(created - time::Duration::minutes(5));
                writer.purge();
            });
        }
        // "Restarted": a new guard fed from the reopened store, bounded to one entry.
        let store = ReplayStore::open(dir.path(), false, 100).expect("reopen");
        let mut g = NonceGuard::new(keep, 1);
        let t = Instant::now();
        g.restore(store.into_parts().0, t);
        // The newest stays; the other was evicted and the floor rose past it.
        let seen = g.get("n2", t).expect("remembered").clone();
        assert_eq!(
            (seen.peer, seen.job_id.as_str(), seen.attempt),
            (b, "job-n2", 1)
        );
        assert!(!g.contains("n1", t));
        assert!(!g.admits(created), "n1's manifest is below the floor");
        assert_eq!(
            reoffer(Some(&seen), "job-n2", a, false).map_err(|e| e.0),
            Err("replayed_job")
        );
        // It expires when it would have without the restart.
        assert!(g.contains("n2", t + keep - Duration::from_secs(5)));
        assert!(!g.contains("n2", t + keep + Duration::from_secs(1)));
    }
}
