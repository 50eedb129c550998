//! The executor side of the job protocol: consent, replay protection, bounded
//! reservations, and running accepted jobs on the worker pool.
//!
//! It runs as its own task, fed by the event loop's bounded inbound channel. An
//! offer is answered from memory (schema, policy, nonce, capacity); a bundle is
//! checked against its reservation and handed to the pool, and a spawned task
//! signs and sends the receipt, so one long job never holds up other requests.

use super::protocol::{DeclineReason, FailureReason, JobRequest, JobResponse};
use super::{Client, InboundJob};
use crate::identity::Identity;
use crate::job;
use crate::manifest::Manifest;
use crate::runtime::pool::WorkerPool;
use libp2p::PeerId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What an executor accepts from others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorPolicy {
    /// Runtime name this node runs.
    pub runtime: String,
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
    /// How long an accepted offer waits for its bundle.
    pub reservation_ttl: Duration,
    /// How far `created_at` may be from this node's clock.
    pub max_clock_skew: Duration,
    /// Nonces remembered (each for twice the clock skew).
    pub max_nonces: usize,
    /// Bytes of modules kept in memory by hash.
    pub module_cache_bytes: usize,
}

impl Default for ExecutorPolicy {
    fn default() -> Self {
        Self {
            runtime: "wasm3".into(),
            labels: Vec::new(),
            max_fuel: 10_000_000_000,
            max_memory_bytes: 256 * 1024 * 1024,
            max_output_bytes: 4 * 1024 * 1024,
            max_module_bytes: 16 * 1024 * 1024,
            max_input_bytes: 16 * 1024 * 1024,
            max_bundle_bytes: u64::MAX,
            max_reservations: 256,
            reservation_ttl: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(600),
            max_nonces: 100_000,
            module_cache_bytes: 256 * 1024 * 1024,
        }
    }
}

struct Reservation {
    peer: PeerId,
    manifest: Manifest,
    expires: Instant,
}

/// Remembers nonces for a bounded time and count.
struct NonceGuard {
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
    keep: Duration,
    max: usize,
}

impl NonceGuard {
    fn purge(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if now.duration_since(*t) < self.keep {
                break;
            }
            if let Some((_, n)) = self.order.pop_front() {
                self.seen.remove(&n);
            }
        }
    }

    /// Records `nonce`; `Err(true)` when replayed, `Err(false)` when the guard is full.
    fn check(&mut self, nonce: &str, now: Instant) -> Result<(), bool> {
        self.purge(now);
        if self.seen.contains_key(nonce) {
            return Err(true);
        }
        if self.seen.len() >= self.max {
            return Err(false);
        }
        self.seen.insert(nonce.to_owned(), now);
        self.order.push_back((now, nonce.to_owned()));
        Ok(())
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
    nonces: NonceGuard,
    modules: ModuleCache,
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
    ) -> Self {
        let nonces = NonceGuard {
            seen: HashMap::new(),
            order: VecDeque::new(),
            keep: policy.max_clock_skew * 2,
            max: policy.max_nonces,
        };
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
            nonces,
            modules,
        }
    }

    /// Serves inbound requests until the channel closes.
    pub async fn run(mut self, mut inbound: mpsc::Receiver<InboundJob>) {
        while let Some(InboundJob {
            peer,
            request,
            path,
            channel,
        }) = inbound.recv().await
        {
            match request {
                JobRequest::Offer { manifest } => {
                    let response = self.on_offer(peer, &manifest);
                    let _ = self.client.respond(channel, response).await;
                }
                JobRequest::Bundle {
                    job_id,
                    module,
                    input,
                } => match self.on_bundle(peer, path, &job_id, module, input) {
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

    fn on_offer(&mut self, peer: PeerId, text: &str) -> JobResponse {
        if text.len() > super::protocol::MAX_MANIFEST_BYTES {
            return decline(DeclineReason::OverLimit, "manifest larger than 64 KiB");
        }
        let manifest = match Manifest::from_json(text) {
            Ok(m) => m,
            Err(e) => return decline(DeclineReason::Policy, format!("invalid manifest: {e}")),
        };
        let p = &self.policy;
        if let Some(rt) = &manifest.requirements.runtime
            && *rt != p.runtime
        {
            return decline(
                DeclineReason::UnsupportedRuntime,
                format!("this node runs {}, not {rt}", p.runtime),
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
        if let Err(why) = check_clock(&manifest.created_at, p.max_clock_skew) {
            return decline(DeclineReason::Policy, why);
        }
        let now = Instant::now();
        self.reservations.retain(|_, r| r.expires > now);
        if self.reservations.len() >= p.max_reservations {
            return decline(
                DeclineReason::Busy,
                "too many accepted offers waiting for their bundle",
            );
        }
        let stats = self.pool.stats();
        if stats.queued >= self.pool.capacity().1 {
            return decline(DeclineReason::Busy, "the job queue is full");
        }
        match self.nonces.check(&manifest.nonce, now) {
            Err(true) => {
                return decline(
                    DeclineReason::ReplayedNonce,
                    "this nonce was already offered here",
                );
            }
            Err(false) => return decline(DeclineReason::Busy, "the replay guard is full"),
            Ok(()) => {}
        }
        let job_id = manifest.job_id().to_owned();
        tracing::info!(job_id, %peer, "accepted offer");
        let has_module = self.modules.get(&manifest.module.sha256).is_some();
        self.reservations.insert(
            job_id.clone(),
            Reservation {
                peer,
                manifest,
                expires: now + p.reservation_ttl,
            },
        );
        JobResponse::Accept { job_id, has_module }
    }

    #[allow(clippy::result_large_err)]
    fn on_bundle(
        &mut self,
        peer: PeerId,
        path: super::Path,
        job_id: &str,
        module: Option<Vec<u8>>,
        input: Vec<u8>,
    ) -> Result<impl std::future::Future<Output = JobResponse> + use<>, JobResponse> {
        let now = Instant::now();
        let reservation = match self.reservations.remove(job_id) {
            Some(r) if r.peer == peer && r.expires > now => r,
            Some(r) => {
                if r.peer != peer {
                    // Not this requester's reservation: leave it in place.
                    self.reservations.insert(job_id.to_owned(), r);
                }
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
        };
        let manifest = reservation.manifest;
        let module: Arc<[u8]> = match module {
            Some(bytes) => bytes.into(),
            None => self.modules.get(&manifest.module.sha256).ok_or_else(|| {
                failure(
                    FailureReason::ModuleMismatch,
                    "module bytes missing and not held here",
                )
            })?,
        };
        let request = job::exec_request(&manifest, module.clone(), input).map_err(|e| match e {
            job::JobError::ModuleMismatch { .. } => {
                failure(FailureReason::ModuleMismatch, e.to_string())
            }
            job::JobError::InputMismatch { .. } => {
                failure(FailureReason::InputMismatch, e.to_string())
            }
            job::JobError::Pool(_) => failure(FailureReason::Internal, e.to_string()),
        })?;
        self.modules.insert(manifest.module.sha256.clone(), module);
        tracing::info!(job_id, %peer, "running job");
        let submitted = job::Submitted::start(&self.pool, request)
            .map_err(|e| failure(FailureReason::Busy, e.to_string()))?
            .placed(crate::receipt::ReceiptPlacement {
                path: path.kind.as_str().into(),
                relay: path.relay.map(|r| r.to_string()),
                attempt: None,
                taken_over_from: None,
            });
        let (pool, identity) = (self.pool.clone(), self.identity.clone());
        Ok(async move {
            match submitted.finish(&pool, &identity, &manifest).await {
                Ok(out) => JobResponse::Result {
                    receipt: serde_json::to_string(out.receipt.as_map()).unwrap_or_default(),
                    stdout: out.result.stdout,
                    stderr: out.result.stderr,
                },
                Err(_) => failure(FailureReason::Internal, "the worker pool stopped"),
            }
        })
    }
}

fn check_clock(created_at: &str, skew: Duration) -> Result<(), String> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_guard_refuses_replays_and_is_bounded() {
        let mut g = NonceGuard {
            seen: HashMap::new(),
            order: VecDeque::new(),
            keep: Duration::from_secs(60),
            max: 2,
        };
        let t = Instant::now();
        assert_eq!(g.check("a", t), Ok(()));
        assert_eq!(g.check("a", t), Err(true));
        assert_eq!(g.check("b", t), Ok(()));
        assert_eq!(g.check("c", t), Err(false));
        // After the keep period the memory is freed.
        assert_eq!(g.check("c", t + Duration::from_secs(61)), Ok(()));
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
    fn clock_skew_is_enforced() {
        assert!(check_clock(&crate::time::now_rfc3339(), Duration::from_secs(60)).is_ok());
        assert!(check_clock("2020-01-01T00:00:00Z", Duration::from_secs(60)).is_err());
        assert!(check_clock("not a time", Duration::from_secs(60)).is_err());
    }
}
