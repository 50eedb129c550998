//! The node as a service: accepts submissions, places them locally or on a peer,
//! records every step durably, and publishes per-job progress events.
//!
//! The HTTP layer (`api`) is a thin mapping onto [`Service`]; the CLI's API
//! commands and the PHP SDK see only the HTTP layer.

use crate::identity::Identity;
use crate::job;
use crate::manifest::{Manifest, ManifestError};
use crate::net::Client;
use crate::net::remote::{self, RemoteOptions};
use crate::runtime::pool::{PoolError, WorkerPool};
use crate::store::{JobRow, Store, StoreError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

pub mod audit;
pub mod replica;
mod swarm;

/// Where a job should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On this node.
    Local,
    /// On another peer.
    Remote,
    /// Here when there is capacity, else on a peer.
    Any,
}

impl Placement {
    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(Self::Local),
            "remote" => Some(Self::Remote),
            "any" => Some(Self::Any),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
            Self::Any => "any",
        }
    }
}

/// Failures kept in memory when the store cannot record them.
const MAX_UNRECORDED: usize = 1024;

/// Bounds on jobs handed to peers and not yet answered: each holds its module
/// and input in memory (and an event channel) until its executor answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteLimits {
    /// Jobs out with peers at once.
    pub jobs: usize,
    /// Module and input bytes those jobs hold.
    pub bytes: u64,
}

impl Default for RemoteLimits {
    fn default() -> Self {
        Self {
            jobs: 256,
            bytes: 256 * 1024 * 1024,
        }
    }
}

/// Jobs and bytes out with peers now.
#[derive(Debug, Default)]
struct RemoteLoad {
    jobs: usize,
    bytes: u64,
}

/// One remote job's share of [`RemoteLimits`], given back when dropped.
struct RemoteSlot {
    load: Arc<Mutex<RemoteLoad>>,
    bytes: u64,
}

impl Drop for RemoteSlot {
    fn drop(&mut self) {
        if let Ok(mut l) = self.load.lock() {
            l.jobs -= 1;
            l.bytes -= self.bytes;
        }
    }
}

/// Why the service refused or failed a request; the HTTP layer maps each to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is not what the API expects (not JSON, bad base64, unknown placement). HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// The manifest breaks the schema. HTTP 422.
    #[error("manifest violates the schema at {path} ({rule}): {message}")]
    InvalidManifest {
        /// JSON pointer.
        path: String,
        /// Schema keyword.
        rule: String,
        /// Explanation.
        message: String,
    },
    /// Valid JSON but unusable: bytes do not match the manifest, module not held, placement impossible. HTTP 422.
    #[error("{0}")]
    Unprocessable(String),
    /// A limit of the manifest is above the node's maximum (named). HTTP 422.
    #[error("{0}")]
    LimitExceeded(String),
    /// The request conflicts with the job's state (cancel of a finished job). HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The job id or nonce was already submitted. HTTP 409.
    #[error("a job with this manifest or nonce was already submitted (job {0})")]
    Duplicate(String),
    /// The queue is full. HTTP 429 with Retry-After.
    #[error("the job queue is full; retry later")]
    Busy,
    /// Too many jobs (or bytes) are already out with peers. HTTP 429 with Retry-After.
    #[error("{0}; retry later")]
    Overloaded(String),
    /// The node is shutting down. HTTP 503.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Nothing with that id. HTTP 404.
    #[error("{0} not found")]
    NotFound(String),
    /// The node's disk is full: nothing new can be stored. HTTP 507.
    #[error("the node's disk is full; nothing new can be stored until an operator frees space")]
    StorageFull,
    /// Something failed inside the node; details are logged, not returned. HTTP 500.
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e.classify() {
            StoreError::DiskFull => {
                tracing::error!(
                    "the disk under the data dir is full: refusing new jobs and modules"
                );
                Self::StorageFull
            }
            e => {
                tracing::error!(error = %e, "store");
                Self::Internal
            }
        }
    }
}

/// A state change of a job, as streamed to clients.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobEvent {
    /// The event's id on this node: increasing, and across restarts too (at
    /// least the microseconds since the epoch), so a client's `Last-Event-ID`
    /// from before a restart never hides newer events. Sent as the SSE `id`.
    #[serde(skip)]
    pub id: u64,
    /// Job id.
    pub job_id: String,
    /// `queued`, `offered`, `running`, `succeeded`, `failed`.
    pub state: String,
    /// Executor peer id, when known.
    pub executor: Option<String>,
    /// Where the job runs and which way its bytes went, when known.
    pub placement: Option<Route>,
    /// Extra detail.
    pub detail: Option<String>,
    /// RFC 3339 time.
    pub at: String,
    /// Fuel the job used, once known (when it ends with a receipt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// The receipt's outcome, when the job ends with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// `plasm run`'s exit status for the job (0 is the only success), when it ends
    /// with a receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u8>,
}

/// What a job's final event says about a receipt.
#[derive(Debug, Default)]
struct Ended {
    fuel_used: Option<u64>,
    outcome: Option<String>,
    exit_status: Option<u8>,
}

/// How many recent events the node keeps for clients of `GET /v1/events` that
/// reconnect with `Last-Event-ID` (older ones are gone: such a client is told to
/// reload).
pub const EVENT_HISTORY: usize = 256;

/// The node-wide event feed: recent events, for replay, and the live channel.
#[derive(Debug)]
struct Feed {
    recent: std::collections::VecDeque<JobEvent>,
    tx: broadcast::Sender<JobEvent>,
}

/// What a node-wide subscriber gets: the events after its `Last-Event-ID` still
/// held ([`EVENT_HISTORY`]), whether they are all of them, and the live channel
/// from there on (no gap: both are taken under one lock).
#[derive(Debug)]
pub struct FeedSubscription {
    /// Held events newer than the id asked for, oldest first.
    pub replay: Vec<JobEvent>,
    /// False when events after that id were already dropped from the history.
    pub complete: bool,
    /// Everything from now on.
    pub live: broadcast::Receiver<JobEvent>,
}

/// Where a job ran and how its bytes got there: the `placement` object of the
/// job status and of its events (remote execution is always visible).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// The executor's peer id.
    pub executor: String,
    /// `local` (this node's pool), `direct`, `hole-punched` or `relayed`.
    pub path: String,
    /// The relay's peer id, when relayed.
    pub relay: Option<String>,
}

impl Route {
    /// A job on this node's own pool.
    fn local(me: &str) -> Self {
        Self {
            executor: me.to_owned(),
            path: "local".into(),
            relay: None,
        }
    }
}

/// A submission, decoded.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The manifest value.
    pub manifest: Value,
    /// Module bytes, if sent.
    pub module: Option<Vec<u8>>,
    /// Input bytes.
    pub input: Vec<u8>,
    /// Placement.
    pub placement: Placement,
    /// Publish the signed manifest, the module and the input beside the receipt,
    /// so any node can audit the job (decision 0057). Private by default.
    pub publish: bool,
}

/// The label of `plasm_jobs_total`: a receipt outcome, or `failed`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabel {
    /// e.g. `exited`, `out_of_fuel`, `failed`.
    pub outcome: String,
}

/// A submission that passed validation: what every later step works on.
struct Accepted {
    manifest: Manifest,
    module: Arc<[u8]>,
    input: Vec<u8>,
    /// What the pool runs; taken by [`Service::place`] when it starts the job here.
    request: Option<crate::runtime::ExecRequest>,
    placement: Placement,
    /// Its share of the remote bounds, once it is bound for a peer.
    slot: Option<RemoteSlot>,
}

/// Where [`Service::place`] put a job.
enum Placed {
    /// Started on this node's pool (its cancel token also says whether it was stolen).
    Local(Arc<WorkerPool>, job::Submitted, crate::runtime::CancelToken),
    /// To be offered to peers.
    Peer,
}

/// The label of `plasm_jobs_by_path_total`: `local`, `direct`, `hole-punched`, `relayed`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PathLabel {
    /// The path.
    pub path: String,
}

/// Counters exported on `/metrics` (registered by `api::metrics`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Finished jobs by outcome (receipt outcomes) plus `failed`.
    pub jobs: Family<OutcomeLabel, Counter>,
    /// Jobs with a receipt, by the path their bytes took.
    pub by_path: Family<PathLabel, Counter>,
    /// Fuel consumed by jobs executed here.
    pub fuel: Counter,
    /// Submissions refused because too many jobs or bytes were out with peers.
    pub overloaded: Counter,
    /// Submissions refused because a limit was above the node's maximum.
    pub over_maximum: Counter,
    /// Jobs cancelled through the API.
    pub cancelled: Counter,
    /// Audits this node ran, by verdict (`outcome` is the verdict).
    pub audits: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    fn audits(&self, verdict: &str) {
        self.audits
            .get_or_create(&OutcomeLabel {
                outcome: verdict.to_owned(),
            })
            .inc();
    }

    fn finished(&self, outcome: &str) {
        self.jobs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// How to stop a job in flight.
enum Stop {
    /// Queued or running on this node's pool.
    Local(crate::runtime::CancelToken),
    /// Out with a peer: tells the task waiting for it to give up (taken once).
    Peer(Option<tokio::sync::oneshot::Sender<()>>),
}

/// The largest limits a job submitted to this node's API may ask for; above
/// them the job is refused (422) with the limit named. Defaults: what the
/// executor accepts from peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobMaxima {
    /// Largest `limits.fuel`.
    pub fuel: u64,
    /// Largest `limits.memory_bytes`.
    pub memory_bytes: u64,
    /// Largest `limits.output_bytes`.
    pub output_bytes: u64,
}

impl Default for JobMaxima {
    fn default() -> Self {
        let p = crate::net::executor::ExecutorPolicy::default();
        Self {
            fuel: p.max_fuel,
            memory_bytes: p.max_memory_bytes,
            output_bytes: p.max_output_bytes,
        }
    }
}

impl JobMaxima {
    /// Refuses limits above the maxima, naming the limit, its maximum and the key that raises it.
    pub fn check(&self, limits: &crate::manifest::Limits) -> Result<(), ServiceError> {
        for (name, key, asked, max) in [
            ("limits.fuel", "limits.max_fuel", limits.fuel, self.fuel),
            (
                "limits.memory_bytes",
                "limits.max_memory_bytes",
                limits.memory_bytes,
                self.memory_bytes,
            ),
            (
                "limits.output_bytes",
                "limits.max_output_bytes",
                limits.output_bytes,
                self.output_bytes,
            ),
        ] {
            if asked > max {
                return Err(ServiceError::LimitExceeded(format!(
                    "{name} {asked} is above this node's maximum {max}: ask for less, or raise `{key}` in the node's configuration"
                )));
            }
        }
        Ok(())
    }
}

/// Module and input bytes a job holds in memory.
fn job_bytes(job: &Accepted) -> u64 {
    (job.module.len() + job.input.len()) as u64
}

/// The service.
pub struct Service {
    store: Arc<Store>,
    pool: Option<Arc<WorkerPool>>,
    identity: Arc<Identity>,
    client: Option<Client>,
    /// Jobs in flight: their event channel and the id of their latest event.
    events: Mutex<HashMap<String, (broadcast::Sender<JobEvent>, u64)>>,
    /// Every job's events, for the node-wide stream.
    feed: Mutex<Feed>,
    /// The latest event id handed out.
    event_seq: std::sync::atomic::AtomicU64,
    /// Failures the store could not record (a full disk), newest last, bounded:
    /// answered from here until a restart marks the jobs failed in the store.
    unrecorded: Mutex<std::collections::VecDeque<(String, String)>>,
    shutting_down: AtomicBool,
    remote_limits: RemoteLimits,
    remote: Arc<Mutex<RemoteLoad>>,
    /// The largest limits a job submitted here may ask for.
    maxima: JobMaxima,
    /// How to stop each job in flight (`DELETE /v1/jobs/{id}`).
    cancels: Mutex<HashMap<String, Stop>>,
    /// Placement state shared by every job sent to peers.
    sched: Arc<crate::sched::Scheduler>,
    /// Where receipts are replicated and fetched from (decision 0056).
    replicas: Option<Arc<replica::Replicas>>,
    /// Share of receipts from peers this node audits by running the job again.
    audit_rate: f64,
    /// Metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("peer_id", &self.identity.peer_id())
            .finish_non_exhaustive()
    }
}

/// A uniform number in [0, 1) from the OS's generator (an executor must not be
/// able to predict which of its receipts are audited).
fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 1.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ServiceError::Internal)?
        .map_err(ServiceError::from)
}

impl Service {
    /// Creates the service.
    pub fn new(
        store: Arc<Store>,
        pool: Option<Arc<WorkerPool>>,
        identity: Arc<Identity>,
        client: Option<Client>,
    ) -> Self {
        Self {
            store,
            pool,
            identity,
            client,
            events: Mutex::new(HashMap::new()),
            feed: Mutex::new(Feed {
                recent: std::collections::VecDeque::with_capacity(EVENT_HISTORY),
                tx: broadcast::channel(EVENT_HISTORY).0,
            }),
            event_seq: std::sync::atomic::AtomicU64::new(0),
            unrecorded: Mutex::new(std::collections::VecDeque::new()),
            shutting_down: AtomicBool::new(false),
            remote_limits: RemoteLimits::default(),
            remote: Arc::default(),
            maxima: JobMaxima::default(),
            cancels: Mutex::default(),
            sched: crate::sched::Scheduler::new(Default::default()),
            replicas: None,
            audit_rate: 0.0,
            metrics: Metrics::default(),
        }
    }

    /// Shares the node's placement state (breakers, reputation, jobs per executor).
    pub fn with_scheduler(mut self, sched: Arc<crate::sched::Scheduler>) -> Self {
        self.sched = sched;
        self
    }

    /// Replicates every receipt this node stores, with its acceptance.
    pub fn with_replicas(mut self, replicas: Option<Arc<replica::Replicas>>) -> Self {
        self.replicas = replicas;
        self
    }

    /// Audits this share (0 to 1) of the receipts peers sign for this node's jobs.
    pub fn with_audit_rate(mut self, rate: f64) -> Self {
        self.audit_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// The replica service, when the node holds replicas.
    pub fn replicas(&self) -> Option<&Arc<replica::Replicas>> {
        self.replicas.as_ref()
    }

    /// The placement state.
    pub fn scheduler(&self) -> &Arc<crate::sched::Scheduler> {
        &self.sched
    }

    /// Replaces the largest limits a submitted job may ask for.
    pub fn with_maxima(mut self, maxima: JobMaxima) -> Self {
        self.maxima = maxima;
        self
    }

    /// Cancels a job in flight: one queued or running here is stopped (its
    /// worker killed); one out with a peer is abandoned and its remote slot
    /// released (the executor is not told: decision 0033). The job ends
    /// `failed` with a `cancelled` reason and no receipt. A finished job is
    /// refused with [`ServiceError::Conflict`].
    pub async fn cancel(&self, job_id: &str) -> Result<(), ServiceError> {
        // Decided under the map's lock: `run_local` removes the entry under the
        // same lock before it keeps a result, so a cancel answered 202 always wins.
        // The entry stays until the job's final event: cancelling again is 202 too.
        let taken = {
            let mut cancels = self.cancels.lock().map_err(|_| ServiceError::Internal)?;
            match cancels.get_mut(job_id) {
                Some(Stop::Local(token)) => {
                    let first = !token.is_cancelled();
                    token.cancel();
                    Some(first)
                }
                Some(Stop::Peer(stop)) => {
                    // The task records the failure (unless its answer came first).
                    let first = stop.take().map(|s| s.send(())).is_some();
                    Some(first)
                }
                None => None,
            }
        };
        match taken {
            Some(first) => {
                if first {
                    self.metrics.cancelled.inc();
                }
                Ok(())
            }
            None => {
                let row = self.job(job_id).await?;
                Err(ServiceError::Conflict(format!(
                    "job {job_id} has finished (or is finishing: {}) and can no longer be cancelled",
                    row.state.as_str()
                )))
            }
        }
    }

    /// Counts fuel in `fuel` (the node's total, shared with its executor) instead of
    /// a counter of the service's own.
    pub fn with_fuel_counter(mut self, fuel: Counter) -> Self {
        self.metrics.fuel = fuel;
        self
    }

    /// Sets the bounds on jobs out with peers.
    pub fn with_remote_limits(mut self, limits: RemoteLimits) -> Self {
        self.remote_limits = limits;
        self
    }

    /// Jobs out with peers now, and the bytes they hold.
    pub fn remote_load(&self) -> (usize, u64) {
        self.remote.lock().map_or((0, 0), |l| (l.jobs, l.bytes))
    }

    /// Takes a share of the remote bounds for a job holding `bytes`, or refuses.
    fn reserve_remote(&self, bytes: u64) -> Result<RemoteSlot, ServiceError> {
        let lim = self.remote_limits;
        let mut l = self.remote.lock().map_err(|_| ServiceError::Internal)?;
        if l.jobs >= lim.jobs {
            self.metrics.overloaded.inc();
            return Err(ServiceError::Overloaded(format!(
                "{} jobs are already out with peers (at most {})",
                l.jobs, lim.jobs
            )));
        }
        // One job alone may use the whole byte budget.
        if l.jobs > 0 && l.bytes + bytes > lim.bytes {
            self.metrics.overloaded.inc();
            return Err(ServiceError::Overloaded(format!(
                "jobs out with peers already hold {} MiB (at most {} MiB)",
                l.bytes >> 20,
                lim.bytes >> 20
            )));
        }
        l.jobs += 1;
        l.bytes += bytes;
        Ok(RemoteSlot {
            load: self.remote.clone(),
            bytes,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
    /// The pool (executing nodes).
    pub fn pool(&self) -> Option<&Arc<WorkerPool>> {
        self.pool.as_ref()
    }
    /// The identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }
    /// The network client.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// Stops accepting submissions.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Marks every job still in flight as failed with `why` (end of a shutdown grace period).
    pub async fn fail_in_flight(&self, why: &str) {
        let ids: Vec<String> = self
            .events
            .lock()
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.fail(&id, why).await;
        }
    }

    /// Jobs still in flight (with an event channel open).
    pub fn in_flight(&self) -> usize {
        self.events.lock().map(|e| e.len()).unwrap_or(0)
    }

    fn emit(&self, job_id: &str, state: &str, route: Option<Route>, detail: Option<String>) {
        self.emit_event(job_id, state, route, detail, None);
    }

    fn emit_event(
        &self,
        job_id: &str,
        state: &str,
        route: Option<Route>,
        detail: Option<String>,
        ended: Option<Ended>,
    ) {
        let ended = ended.unwrap_or_default();
        let now = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros(),
        )
        .unwrap_or(u64::MAX);
        let prev = self
            .event_seq
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or(0);
        let event = JobEvent {
            id: now.max(prev.saturating_add(1)),
            job_id: job_id.to_owned(),
            state: state.to_owned(),
            executor: route.as_ref().map(|r| r.executor.clone()),
            placement: route,
            detail,
            at: crate::time::now_rfc3339(),
            fuel_used: ended.fuel_used,
            outcome: ended.outcome,
            exit_status: ended.exit_status,
        };
        if let Ok(mut map) = self.events.lock() {
            if let Some((tx, last)) = map.get_mut(job_id) {
                *last = event.id;
                let _ = tx.send(event.clone());
            }
            if state == "succeeded" || state == "failed" {
                map.remove(job_id);
                if let Ok(mut c) = self.cancels.lock() {
                    c.remove(job_id);
                }
            }
        }
        if let Ok(mut feed) = self.feed.lock() {
            if feed.recent.len() >= EVENT_HISTORY {
                feed.recent.pop_front();
            }
            feed.recent.push_back(event.clone());
            let _ = feed.tx.send(event);
        }
    }

    /// Live events of a job still in flight, with the id of its latest event.
    pub fn subscribe(&self, job_id: &str) -> Option<(broadcast::Receiver<JobEvent>, u64)> {
        self.events
            .lock()
            .ok()?
            .get(job_id)
            .map(|(tx, last)| (tx.subscribe(), *last))
    }

    /// Every job's events from now on, after the ones newer than `after` still held.
    pub fn subscribe_all(&self, after: Option<u64>) -> Option<FeedSubscription> {
        let feed = self.feed.lock().ok()?;
        let (replay, complete) = match after {
            None => (Vec::new(), true),
            Some(after) => {
                let replay: Vec<JobEvent> = feed
                    .recent
                    .iter()
                    .filter(|e| e.id > after)
                    .cloned()
                    .collect();
                // Complete when the history reaches back to `after` (or nothing
                // was ever dropped from it).
                let complete = feed.recent.len() < EVENT_HISTORY
                    || feed.recent.front().is_some_and(|e| e.id <= after);
                (replay, complete)
            }
        };
        Some(FeedSubscription {
            replay,
            complete,
            live: feed.tx.subscribe(),
        })
    }

    /// The newest `limit` jobs, newest first.
    pub async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRow>, ServiceError> {
        let store = self.store.clone();
        let mut rows = blocking(move || store.recent_jobs(limit)).await?;
        for row in &mut rows {
            self.local_path(row);
        }
        Ok(rows)
    }

    /// The newest `limit` jobs this node ran for peers, newest first.
    pub async fn served(&self, limit: usize) -> Result<Vec<crate::job::ServedJob>, ServiceError> {
        let store = self.store.clone();
        blocking(move || store.served(limit)).await
    }

    /// Accepts a submission; returns the job id once the job is durably queued.
    ///
    /// The steps: [`Self::validate`] (schema, module bytes, placement),
    /// [`Self::record`] (durable before anything runs), [`Self::place`] (here when
    /// allowed and there is room, else a peer), then one task runs it
    /// ([`Self::run_local`] or [`Self::run_on_peer`]).
    pub async fn submit(self: &Arc<Self>, sub: Submission) -> Result<String, ServiceError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        let publish = sub.publish;
        let mut job = self.validate(sub).await?;
        if job.placement == Placement::Remote {
            // Refused before anything is written.
            job.slot = Some(self.reserve_remote(job_bytes(&job))?);
        }
        self.record(&job).await?;
        if publish {
            self.publish_job(&job);
        }
        let job_id = job.manifest.job_id().to_owned();
        let (tx, _) = broadcast::channel(16);
        if let Ok(mut map) = self.events.lock() {
            map.insert(job_id.clone(), (tx, 0));
        }
        match self.place(&mut job).await? {
            Placed::Local(pool, submitted, token) => {
                let me = self.identity.peer_id().to_string();
                self.emit(&job_id, "queued", Some(Route::local(&me)), None);
                tokio::spawn(self.clone().run_local(job, pool, submitted, token, me));
            }
            Placed::Peer => {
                self.emit(
                    &job_id,
                    "offered",
                    None,
                    Some("looking for an executor".into()),
                );
                let (stop, stopped) = tokio::sync::oneshot::channel();
                if let Ok(mut c) = self.cancels.lock() {
                    c.insert(job_id.clone(), Stop::Peer(Some(stop)));
                }
                tokio::spawn(self.clone().run_on_peer(job, stopped, None));
            }
        }
        Ok(job_id)
    }

    /// Checks the manifest against the schema, finds the module bytes (sent, or
    /// held by the store), checks them against the manifest, and decides whether
    /// the placement asked for is possible on this node.
    async fn validate(&self, sub: Submission) -> Result<Accepted, ServiceError> {
        match (sub.placement, &self.pool, &self.client) {
            (Placement::Local, None, _) => {
                return Err(ServiceError::Unprocessable(
                    "this node does not execute jobs".into(),
                ));
            }
            (Placement::Remote, _, None) => {
                return Err(ServiceError::Unprocessable(
                    "this node has no network".into(),
                ));
            }
            (Placement::Remote, _, _) if self.sched.config().mode == crate::sched::Mode::Solo => {
                return Err(ServiceError::Unprocessable(
                    "this node is solo ([placement] mode): its jobs never leave it".into(),
                ));
            }
            _ => {}
        }
        // Schema validation, a module file read and hashing up to 32 MiB: on the
        // blocking pool, never on the async threads.
        let (store, maxima) = (self.store.clone(), self.maxima);
        let checked = tokio::task::spawn_blocking(move || Self::check(&store, sub, &maxima))
            .await
            .map_err(|_| ServiceError::Internal)?;
        if let Err(ServiceError::LimitExceeded(_)) = &checked {
            self.metrics.over_maximum.inc();
        }
        checked
    }

    /// The blocking part of [`Self::validate`].
    fn check(store: &Store, sub: Submission, maxima: &JobMaxima) -> Result<Accepted, ServiceError> {
        let manifest = Manifest::from_value(sub.manifest).map_err(|e| match e {
            ManifestError::Schema {
                path,
                rule,
                message,
            } => ServiceError::InvalidManifest {
                path,
                rule,
                message,
            },
            other => ServiceError::Unprocessable(other.to_string()),
        })?;
        maxima.check(&manifest.limits)?;
        let module: Arc<[u8]> = match sub.module {
            Some(bytes) => bytes.into(),
            None => store
                .module(&manifest.module.sha256)?
                .map(Into::into)
                .ok_or_else(|| {
                    ServiceError::Unprocessable(format!(
                        "module {} is not held by this node: send it in `module` or PUT /v1/modules first",
                        manifest.module.sha256
                    ))
                })?,
        };
        let request = job::exec_request(&manifest, module.clone(), sub.input.clone())
            .map_err(|e| ServiceError::Unprocessable(e.to_string()))?;
        Ok(Accepted {
            manifest,
            module,
            input: sub.input,
            // A job bound for a peer never runs here: keep one copy of its input, not two.
            request: (sub.placement != Placement::Remote).then_some(request),
            placement: sub.placement,
            slot: None,
        })
    }

    /// Keeps the module and records the job as queued, in one trip to the
    /// blocking pool; a job id or nonce seen before is refused.
    async fn record(&self, job: &Accepted) -> Result<(), ServiceError> {
        let job_id = job.manifest.job_id().to_owned();
        let (store, m, id, nonce, text, p) = (
            self.store.clone(),
            job.module.clone(),
            job_id.clone(),
            job.manifest.nonce.clone(),
            job.manifest.as_value().to_string(),
            job.placement.as_str(),
        );
        let inserted = tokio::task::spawn_blocking(move || {
            store.put_module(&m)?;
            store.insert_job(&id, &nonce, &text, p)
        })
        .await
        .map_err(|_| ServiceError::Internal)?;
        match inserted {
            Err(StoreError::Duplicate) => Err(ServiceError::Duplicate(job_id)),
            other => Ok(other?),
        }
    }

    /// Local first when allowed and the pool has room; otherwise a peer. A job the
    /// pool refuses is forgotten, so the same manifest can be submitted again.
    async fn place(&self, job: &mut Accepted) -> Result<Placed, ServiceError> {
        // A job asking for an engine this node does not offer runs on a peer that
        // does (placement any), or is refused (placement local).
        let asked = job.manifest.requirements.runtime.clone();
        let pool = self
            .pool
            .as_ref()
            .filter(|p| p.runtime().offers(asked.as_deref()));
        if self.pool.is_some() && pool.is_none() && job.placement == Placement::Local {
            return Err(ServiceError::Unprocessable(format!(
                "this node does not offer runtime {}",
                asked.as_deref().unwrap_or("any")
            )));
        }
        let refused = match (job.placement, pool, job.request.take()) {
            (Placement::Local | Placement::Any, Some(pool), Some(request)) => {
                let token = request.cancel.clone();
                if let Ok(mut c) = self.cancels.lock() {
                    c.insert(job.manifest.job_id().to_owned(), Stop::Local(token.clone()));
                }
                match job::Submitted::start(pool, request) {
                    Ok(submitted) => {
                        if job.placement == Placement::Any {
                            // Swarm mode: an idle peer may take it while it waits.
                            self.list_stealable(job, &token);
                        }
                        return Ok(Placed::Local(pool.clone(), submitted, token));
                    }
                    Err(PoolError::Busy { .. })
                        if job.placement == Placement::Any
                            && self.client.is_some()
                            && self.sched.config().mode != crate::sched::Mode::Solo =>
                    {
                        // The pool is full: a peer, if the remote bounds allow one more.
                        match self.reserve_remote(job_bytes(job)) {
                            Ok(slot) => {
                                job.slot = Some(slot);
                                return Ok(Placed::Peer);
                            }
                            Err(e) => e,
                        }
                    }
                    Err(PoolError::Busy { .. }) => ServiceError::Busy,
                    Err(_) => ServiceError::Internal,
                }
            }
            (Placement::Any, None, _) if self.sched.config().mode == crate::sched::Mode::Solo => {
                ServiceError::Unprocessable(
                    "this node is solo ([placement] mode) and does not execute jobs".into(),
                )
            }
            (Placement::Any, None, _) if job.slot.is_none() => {
                match self.reserve_remote(job_bytes(job)) {
                    Ok(slot) => {
                        job.slot = Some(slot);
                        return Ok(Placed::Peer);
                    }
                    Err(e) => e,
                }
            }
            // (The taken request is dropped here: a job for a peer keeps one copy of its input.)
            _ => return Ok(Placed::Peer),
        };
        // Refused: forget the job, so the same manifest can be submitted again.
        let job_id = job.manifest.job_id().to_owned();
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(&job_id);
        }
        let (store, id) = (self.store.clone(), job_id.clone());
        let _ = blocking(move || store.delete_job(&id)).await;
        if let Ok(mut map) = self.events.lock() {
            map.remove(&job_id);
        }
        Err(refused)
    }

    /// Waits for a job started on this node's pool, signs and stores its receipt.
    async fn run_local(
        self: Arc<Self>,
        job: Accepted,
        pool: Arc<WorkerPool>,
        submitted: job::Submitted,
        token: crate::runtime::CancelToken,
        me: String,
    ) {
        let id = job.manifest.job_id().to_owned();
        let mut submitted = submitted;
        // "running" only once a worker has begun it; until then it is queued.
        let started = submitted.started().await;
        self.unlist_stealable(&id);
        if started.is_none() && token.is_stolen() {
            // Stolen while queued (swarm mode): its stealer owns it now.
            return;
        }
        if started.is_some() {
            let (store, rid, rme) = (self.store.clone(), id.clone(), me.clone());
            let _ = blocking(move || store.mark_running(&rid, &rme)).await;
            self.emit(&id, "running", Some(Route::local(&me)), None);
        }
        let finished = submitted.finish(&pool, &self.identity, &job.manifest).await;
        // Settle a race with `cancel`, under the map's lock: a cancel that came
        // first (answered 202) makes the job end cancelled even if its result came
        // first; once the entry is gone, later cancels find it finished (409).
        let cancelled_meanwhile = self
            .cancels
            .lock()
            .map(|mut c| match c.remove(&id) {
                Some(Stop::Local(token)) => token.is_cancelled(),
                _ => false,
            })
            .unwrap_or(false);
        if cancelled_meanwhile && finished.is_ok() {
            return self
                .fail(
                    &id,
                    "cancelled: the cancel came as the job finished; its result was discarded",
                )
                .await;
        }
        match finished {
            Ok(out) => {
                self.metrics.fuel.inc_by(out.result.fuel_used);
                self.finish(&id, Route::local(&me), out.receipt, out.result.stdout)
                    .await;
            }
            Err(job::JobError::Pool(PoolError::Closed))
                if self.shutting_down.load(Ordering::SeqCst) =>
            {
                self.fail(&id, "the node shut down before the job started")
                    .await;
            }
            // The grace ended and the shutdown killed the job's worker: that, not a
            // crash, is why it has no receipt (the same words as `fail_in_flight`,
            // whichever of the two records it first).
            Err(job::JobError::Aborted(_)) if self.shutting_down.load(Ordering::SeqCst) => {
                self.fail(&id, "the node shut down before the job finished")
                    .await;
            }
            Err(e) => {
                tracing::error!(job_id = id, error = %e, "job finished without a receipt");
                self.fail(&id, &e.to_string()).await;
            }
        }
    }

    /// Finds an executor through the DHT, runs the job there, stores its verified receipt.
    /// The job's remote slot is given back when this returns.
    /// A job stolen from this node's queue (swarm mode) goes to its `thief` only,
    /// and comes back to the local queue if the thief does not run it.
    async fn run_on_peer(
        self: Arc<Self>,
        job: Accepted,
        stopped: tokio::sync::oneshot::Receiver<()>,
        thief: Option<(libp2p::PeerId, crate::runtime::pool::Reserved)>,
    ) {
        let (thief, place) = match thief {
            Some((t, p)) => (Some(t), Some(p)),
            None => (None, None),
        };
        let _slot = job.slot;
        let id = job.manifest.job_id().to_owned();
        let Some(client) = self.client.clone() else {
            return self.fail(&id, "this node has no network").await;
        };
        let rounds: remote::ExplainSink = Arc::default();
        let options = RemoteOptions {
            sched: Some(self.sched.clone()),
            explain: Some(rounds.clone()),
            peers: thief.into_iter().collect(),
            stolen_from: thief.map(|_| self.identity.peer_id()),
            job_timeout: if thief.is_some() {
                swarm::STOLEN_JOB_TIMEOUT
            } else {
                RemoteOptions::default().job_timeout
            },
            ..RemoteOptions::default()
        };
        // A stolen job keeps its bytes until it has a receipt: it may come back.
        let kept = thief.map(|_| (job.module.clone(), job.input.clone()));
        // A sampled job keeps them too, to be run again (the executor cannot tell).
        let sampled = (thief.is_none() && self.audit_rate > 0.0 && unit_random() < self.audit_rate)
            .then(|| {
                (
                    job.manifest.as_value().clone(),
                    job.module.clone(),
                    job.input.clone(),
                )
            });
        let run = remote::run_remote(&client, &job.manifest, job.module, job.input, &options);
        let r = tokio::select! {
            r = run => r,
            Ok(()) = stopped => {
                if thief.is_some() {
                    // A stolen job cancelled while out: it ends here, given back.
                    self.count_given(false);
                }
                return self.fail(&id, "cancelled: abandoned while out with a peer").await;
            }
        };
        // The placement, as `--explain` prints it: one event per round.
        let rounds = rounds.lock().map(|r| r.clone()).unwrap_or_default();
        for round in &rounds {
            self.emit(&id, "placing", None, Some(round.to_string()));
        }
        let attempts = match &r {
            Ok(out) => &out.attempts,
            Err(remote::RemoteError::AllFailed(a)) => a,
            Err(_) => &Vec::new(),
        };
        let listed: Vec<Value> = attempts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "executor": a.peer.to_string(),
                    "outcome": a.outcome,
                })
            })
            .collect();
        if !listed.is_empty() {
            let (store, sid, text) = (
                self.store.clone(),
                id.clone(),
                Value::Array(listed).to_string(),
            );
            let _ = blocking(move || store.set_attempts(&sid, &text)).await;
        }
        match r {
            Ok(out) => {
                let route = Route {
                    executor: out.executor.to_string(),
                    path: out.path.kind.as_str().to_owned(),
                    relay: out.path.relay.map(|r| r.to_string()),
                };
                self.emit(
                    &id,
                    "running",
                    Some(route.clone()),
                    Some(format!("accepted by {}", route.executor)),
                );
                if thief.is_some() {
                    self.count_given(true);
                }
                if let Some((manifest, module, input)) = sampled {
                    let request = audit::AuditRequest {
                        receipt: out.receipt.clone(),
                        manifest: Some(manifest),
                        module: Some(module.to_vec()),
                        input: Some(input),
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = this.audit(request).await {
                            tracing::debug!(error = %e, "sampled audit did not run");
                        }
                    });
                }
                self.finish(&id, route, out.receipt, out.stdout).await;
            }
            Err(e) => match (thief, kept, place) {
                (Some(thief), Some((module, input)), Some(place)) => {
                    let why = format!("stolen by {thief}, which did not run it ({e})");
                    self.requeue(job.manifest, (module, input, place), &why)
                        .await;
                }
                _ => self.fail(&id, &e.to_string()).await,
            },
        }
    }

    async fn finish(
        &self,
        job_id: &str,
        route: Route,
        receipt: crate::receipt::Receipt,
        stdout: Vec<u8>,
    ) {
        let outcome = receipt.str_field("outcome").unwrap_or("unknown").to_owned();
        let fuel_used = receipt.as_map().get("fuel_used").and_then(Value::as_u64);
        let exit_status = crate::job::receipt_exit_status(receipt.as_map());
        let text = serde_json::to_string(receipt.as_map()).unwrap_or_default();
        let (store, id, r) = (self.store.clone(), job_id.to_owned(), route.clone());
        // Durable before anyone hears about it.
        let stored = blocking(move || {
            store.finish(
                &id,
                &r.executor,
                (&r.path, r.relay.as_deref()),
                &text,
                &stdout,
            )
        });
        if let Err(e) = stored.await {
            tracing::error!(job_id, error = %e, "could not store a receipt");
            let why = match e {
                ServiceError::StorageFull => {
                    "the node's disk is full: the job ran but its receipt could not be stored"
                }
                _ => "could not store the receipt",
            };
            // Record the failure if the store still takes a small write; a restart
            // marks the job failed otherwise (Store::recover).
            self.fail(job_id, why).await;
            return;
        }
        self.metrics.finished(&outcome);
        self.metrics
            .by_path
            .get_or_create(&PathLabel {
                path: route.path.clone(),
            })
            .inc();
        // A job that ended with a receipt succeeded only when `plasm run` would exit 0
        // for it: a trap, running out of fuel or exit code 3 is a failure with a receipt.
        let state = if exit_status == Some(0) {
            "succeeded"
        } else {
            "failed"
        };
        self.emit_event(
            job_id,
            state,
            Some(route),
            Some(outcome.clone()),
            Some(Ended {
                fuel_used,
                outcome: Some(outcome),
                exit_status,
            }),
        );
        // After the counters and the event: a waiter sees the job finished before
        // its acceptance is signed and sent.
        self.replicate(job_id, &receipt);
    }

    /// Signs a publication of the job's manifest and stores it, with the module
    /// and the input, on the peers closest to the job (the submitter opted in).
    fn publish_job(&self, job: &Accepted) {
        let Some(replicas) = self.replicas.clone() else {
            return;
        };
        let publication = match crate::receipt::signed::publish(&job.manifest, &self.identity) {
            Ok(p) => p.to_json(),
            Err(e) => {
                tracing::warn!(error = %e, "could not sign a publication");
                return;
            }
        };
        let mut blobs = vec![(job.manifest.module.sha256.clone(), job.module.to_vec())];
        if let Some(input) = &job.manifest.input {
            blobs.push((input.sha256.clone(), job.input.clone()));
        }
        let id = job.manifest.job_id().to_owned();
        tokio::spawn(async move {
            let reached = replicas.publish(&id, vec![publication], blobs).await;
            tracing::debug!(job_id = id, reached, "manifest published");
        });
    }

    /// Signs this node's acceptance of `receipt` (it submitted the job) and
    /// stores both on the peers closest to the job, in the background.
    fn replicate(&self, job_id: &str, receipt: &crate::receipt::Receipt) {
        let Some(replicas) = self.replicas.clone() else {
            return;
        };
        let acceptance = match crate::receipt::signed::accept(receipt, &self.identity) {
            Ok(a) => a.to_json(),
            Err(e) => {
                tracing::warn!(job_id, error = %e, "could not sign an acceptance");
                return;
            }
        };
        let records = vec![
            serde_json::to_string(receipt.as_map()).unwrap_or_default(),
            acceptance,
        ];
        let id = job_id.to_owned();
        tokio::spawn(async move {
            let reached = replicas.publish(&id, records, Vec::new()).await;
            tracing::debug!(job_id = id, reached, "receipt replicated");
        });
    }

    async fn fail(&self, job_id: &str, why: &str) {
        let (store, id, w) = (self.store.clone(), job_id.to_owned(), why.to_owned());
        if blocking(move || store.fail(&id, &w)).await.is_err()
            && let Ok(mut u) = self.unrecorded.lock()
        {
            if u.len() >= MAX_UNRECORDED {
                u.pop_front();
            }
            u.push_back((job_id.to_owned(), why.to_owned()));
        }
        self.metrics.finished("failed");
        self.emit(job_id, "failed", None, Some(why.to_owned()));
    }

    /// The stored job (with a failure the store could not record, if any).
    pub async fn job(&self, job_id: &str) -> Result<JobRow, ServiceError> {
        let (store, id) = (self.store.clone(), job_id.to_owned());
        let mut row = blocking(move || store.job(&id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("job {job_id}")))?;
        if !matches!(
            row.state,
            crate::store::JobState::Failed | crate::store::JobState::Succeeded
        ) && let Ok(u) = self.unrecorded.lock()
            && let Some((_, why)) = u.iter().rev().find(|(id, _)| id == job_id)
        {
            row.state = crate::store::JobState::Failed;
            row.error = Some(why.clone());
        }
        self.local_path(&mut row);
        Ok(row)
    }

    /// A job running on this node's own pool has no stored path until it ends
    /// (the path is written with the receipt): it is `local` all the same.
    fn local_path(&self, row: &mut JobRow) {
        if row.path.is_none()
            && row.executor.as_deref() == Some(self.identity.peer_id().to_string().as_str())
        {
            row.path = Some("local".into());
        }
    }

    /// Waits until the job ends or `timeout` passes, then returns its stored state.
    pub async fn wait(&self, job_id: &str, timeout: Duration) -> Result<JobRow, ServiceError> {
        if let Some((mut rx, _)) = self.subscribe(job_id) {
            let _ = tokio::time::timeout(timeout, async {
                while let Ok(e) = rx.recv().await {
                    if e.state == "succeeded" || e.state == "failed" {
                        break;
                    }
                }
            })
            .await;
        }
        self.job(job_id).await
    }
}
