//! Where a job runs: the requester's placement state, kept apart from the
//! network layer that feeds it (decisions 0049-0052).
//!
//! The network layer reports what it sees of each candidate (the load it
//! advertised in its last beat, the round trip, the detector's verdict); this
//! module adds what only this node knows (each peer's circuit breaker, its local
//! reputation, how many of this node's jobs it holds) and ranks candidates by
//! the score of [`score`], best first, with the reason for every veto, so that
//! `--explain` can print why a job went where it went. A job takes a
//! [`Ticket`] on its executor, which holds one of the peer's bounded job slots
//! for this requester (below the connection's stream limit); a requester with
//! more jobs than its executors can take waits for a ticket instead of failing.

pub mod breaker;
pub mod detector;
pub mod reputation;
pub mod score;

use breaker::{Breaker, BreakerConfig, BreakerState};
use detector::Liveness;
use libp2p::PeerId;
use reputation::{Evidence, Record};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an executor says of itself in each beat (decision 0049). It only ever
/// informs the load and queue terms: a peer that lies about its load is sent
/// jobs it then times out on or declines, which its reputation and breaker
/// remember.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Load {
    /// Jobs running now.
    pub running: u32,
    /// Jobs waiting for a worker.
    pub queued: u32,
    /// Workers.
    pub slots: u32,
    /// Jobs that may wait for a worker.
    pub queue_cap: u32,
    /// CPU cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Engines offered to others.
    pub engines: Vec<String>,
    /// Labels advertised.
    pub labels: Vec<String>,
    /// Connection profile.
    pub profile: String,
    /// Whether it takes jobs from others at all.
    pub accepting: bool,
}

/// Most engines or labels a beat may name, and their longest name.
pub const MAX_LOAD_NAMES: usize = 32;
/// Longest engine, label or profile name in a beat.
pub const MAX_LOAD_NAME_BYTES: usize = 64;

impl Load {
    /// Whether the advertisement is within bounds (else it is dropped and counted).
    pub fn is_sane(&self) -> bool {
        let names_ok = |v: &[String]| {
            v.len() <= MAX_LOAD_NAMES && v.iter().all(|s| s.len() <= MAX_LOAD_NAME_BYTES)
        };
        names_ok(&self.engines)
            && names_ok(&self.labels)
            && self.profile.len() <= MAX_LOAD_NAME_BYTES
            && self.slots <= 1_000_000
            && self.queue_cap <= 1_000_000
    }

    /// Jobs it holds, running or queued.
    pub fn busy(&self) -> u32 {
        self.running.saturating_add(self.queued)
    }

    /// Jobs it can hold at once.
    pub fn capacity(&self) -> u32 {
        self.slots.saturating_add(self.queue_cap)
    }
}

/// What the network layer knows of one candidate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    /// Its last advertisement, and how old it is.
    pub load: Option<(Load, Duration)>,
    /// Round trip, from the last beat or ping.
    pub rtt: Option<Duration>,
    /// The detector's verdict, when the peer is watched or was found failed.
    pub liveness: Option<Liveness>,
}

/// Placement settings (`[placement]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedConfig {
    /// Weights of the score.
    pub weights: score::Weights,
    /// Circuit breakers.
    pub breaker: BreakerConfig,
    /// This node's jobs one executor holds at once: below the connection's
    /// 16 streams, which offers, bundles and the other direction share.
    pub max_per_peer: usize,
    /// How long a job waits for an executor with room before it fails.
    pub queue_wait: Duration,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            weights: score::Weights::default(),
            breaker: BreakerConfig::default(),
            max_per_peer: 8,
            queue_wait: Duration::from_secs(120),
        }
    }
}

/// Peers whose placement state is kept at once; beyond, the one used longest
/// ago is forgotten (its reputation stays in the store).
pub const MAX_PEERS: usize = 4096;

#[derive(Debug)]
struct Entry {
    breaker: Breaker,
    record: Record,
    outstanding: usize,
    last_score: Option<score::Score>,
    used: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            breaker: Breaker::default(),
            record: Record::default(),
            outstanding: 0,
            last_score: None,
            used: now,
        }
    }
}

/// One candidate as placement saw it: its score, or why it was ruled out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The peer.
    pub peer: String,
    /// The score (lower is better); `None` when vetoed.
    pub score: Option<score::Score>,
    /// Why it may not take the job now.
    pub veto: Option<String>,
    /// Round trip used, ms.
    pub rtt_ms: Option<f64>,
    /// Slots advertised.
    pub slots: Option<u32>,
    /// Jobs it holds (advertised, or this node's own there if more).
    pub busy: u32,
    /// Local reliability.
    pub reliability: f64,
    /// Its breaker.
    pub breaker: BreakerState,
}

/// Placement state shared by every job this node sends out.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedConfig,
    peers: Mutex<HashMap<PeerId, Entry>>,
    /// Peers whose reputation changed since the store last took it.
    dirty: Mutex<HashSet<PeerId>>,
    /// Woken whenever a ticket is given back or a breaker changes.
    room: tokio::sync::Notify,
    trips: prometheus_client::metrics::counter::Counter,
}

/// A job slot on one executor, held while the job is there.
#[derive(Debug)]
pub struct Ticket {
    sched: Arc<Scheduler>,
    peer: PeerId,
}

impl Ticket {
    /// The executor.
    pub fn peer(&self) -> PeerId {
        self.peer
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut p) = self.sched.peers.lock()
            && let Some(e) = p.get_mut(&self.peer)
        {
            e.outstanding = e.outstanding.saturating_sub(1);
        }
        self.sched.room.notify_waiters();
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What a job's attempt at a peer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Evidence about the peer.
    Evidence(Evidence),
    /// No verdict (a busy decline, a cancel).
    Neutral,
}

impl Scheduler {
    /// A scheduler with `config`.
    pub fn new(config: SchedConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            peers: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            room: tokio::sync::Notify::new(),
            trips: Default::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// Times a breaker opened (for `/metrics`).
    pub fn trips(&self) -> prometheus_client::metrics::counter::Counter {
        self.trips.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Entry>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(map: &mut HashMap<PeerId, Entry>, peer: PeerId, now: Instant) -> &mut Entry {
        if !map.contains_key(&peer) && map.len() >= MAX_PEERS {
            let idle = map
                .iter()
                .filter(|(_, e)| e.outstanding == 0)
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| *p);
            if let Some(p) = idle {
                map.remove(&p);
            }
        }
        let e = map.entry(peer).or_insert_with(|| Entry::new(now));
        e.used = now;
        e
    }

    /// Loads reputation records kept by the store.
    pub fn restore(&self, records: impl IntoIterator<Item = (PeerId, Record)>) {
        let now = Instant::now();
        let mut map = self.lock();
        for (peer, record) in records {
            if record.is_sane() {
                Self::entry(&mut map, peer, now).record = record;
            }
        }
    }

    /// Reputation records changed since the last call (for the store).
    pub fn take_dirty(&self) -> Vec<(PeerId, Record)> {
        let peers: Vec<PeerId> = self
            .dirty
            .lock()
            .map(|mut d| d.drain().collect())
            .unwrap_or_default();
        let map = self.lock();
        peers
            .into_iter()
            .filter_map(|p| map.get(&p).map(|e| (p, e.record)))
            .collect()
    }

    /// Ranks `views`: eligible candidates by score (best first, ties broken by
    /// `salt`, so equal peers share the work), then the vetoed ones.
    pub fn rank(&self, views: &[(PeerId, View)], salt: u64) -> Vec<(PeerId, Candidate)> {
        let now = Instant::now();
        let unix = unix_now();
        let mut map = self.lock();
        let mut out: Vec<(PeerId, Candidate, u64)> = Vec::new();
        for (peer, view) in views {
            let e = Self::entry(&mut map, *peer, now);
            let reliability = e.record.reliability(unix);
            let advertised = view.load.as_ref().map(|(l, _)| l);
            let busy = advertised.map_or(0, Load::busy).max(e.outstanding as u32);
            let rtt_ms = view.rtt.map(|d| d.as_secs_f64() * 1000.0);
            let inputs = score::Inputs {
                rtt_ms,
                slots: advertised.map(|l| l.slots),
                busy,
                reliability,
            };
            let breaker = e.breaker.state(now);
            let mine_cap = match advertised {
                Some(l) => (l.capacity() as usize).clamp(1, self.config.max_per_peer),
                None => self.config.max_per_peer,
            };
            let veto = if view.liveness == Some(Liveness::Failed) {
                Some("failed: missed its beats".to_owned())
            } else if breaker == BreakerState::Open {
                Some("breaker open".to_owned())
            } else if !e.breaker.admits(now) {
                Some("breaker half-open, its trial job is out".to_owned())
            } else if advertised.is_some_and(|l| !l.accepting) {
                Some("takes no jobs from others".to_owned())
            } else if e.outstanding >= mine_cap {
                Some(format!("full: holds {} of this node's jobs", e.outstanding))
            } else if let Some(l) = advertised
                && l.busy() >= l.capacity()
            {
                Some(format!(
                    "full: {} running, {} queued of {}+{}",
                    l.running, l.queued, l.slots, l.queue_cap
                ))
            } else {
                None
            };
            let s = score::score(&self.config.weights, &inputs);
            e.last_score = Some(s);
            let tie = {
                let b = peer.to_bytes();
                let n = b.len();
                let tail =
                    u64::from_le_bytes(b[n.saturating_sub(8)..].try_into().unwrap_or([0; 8]));
                tail ^ salt
            };
            out.push((
                *peer,
                Candidate {
                    peer: peer.to_string(),
                    score: veto.is_none().then_some(s),
                    veto,
                    rtt_ms,
                    slots: inputs.slots,
                    busy,
                    reliability,
                    breaker,
                },
                tie,
            ));
        }
        out.sort_by(|a, b| {
            let key = |c: &Candidate| c.score.map_or(f64::INFINITY, |s| s.total);
            key(&a.1).total_cmp(&key(&b.1)).then(a.2.cmp(&b.2))
        });
        out.into_iter().map(|(p, c, _)| (p, c)).collect()
    }

    /// Takes a job slot on `peer` (and the half-open trial): `None` when its
    /// breaker or this node's share of it says no.
    pub fn take(self: &Arc<Self>, peer: PeerId, capacity: Option<u32>) -> Option<Ticket> {
        let now = Instant::now();
        let mut map = self.lock();
        let e = Self::entry(&mut map, peer, now);
        let cap = capacity.map_or(self.config.max_per_peer, |c| {
            (c as usize).clamp(1, self.config.max_per_peer)
        });
        if e.outstanding >= cap || !e.breaker.take(now) {
            return None;
        }
        e.outstanding += 1;
        Some(Ticket {
            sched: self.clone(),
            peer,
        })
    }

    /// Records what an attempt at `peer` came to.
    pub fn record(&self, peer: PeerId, outcome: Outcome) {
        let now = Instant::now();
        let mut map = self.lock();
        let e = Self::entry(&mut map, peer, now);
        match outcome {
            Outcome::Neutral => e.breaker.neutral(),
            Outcome::Evidence(ev) => {
                e.record.observe(ev, unix_now());
                if ev == Evidence::Valid {
                    e.breaker.success();
                } else if e.breaker.failure(now, &self.config.breaker) {
                    self.trips.inc();
                    tracing::warn!(%peer, "circuit breaker opened");
                }
                if let Ok(mut d) = self.dirty.lock()
                    && d.len() < MAX_PEERS
                {
                    d.insert(peer);
                }
            }
        }
        drop(map);
        self.room.notify_waiters();
    }

    /// Waits until a ticket is given back or `max` passes.
    pub async fn wait_for_room(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.room.notified()).await;
    }

    /// What this node holds on each peer it knows: breaker, reliability, last
    /// score, its jobs there.
    pub fn snapshot(&self) -> Vec<PeerState> {
        let now = Instant::now();
        let unix = unix_now();
        self.lock()
            .iter()
            .map(|(p, e)| PeerState {
                peer: *p,
                breaker: e.breaker.state(now),
                trips: e.breaker.trips,
                reliability: e.record.reliability(unix),
                score: e.last_score.map(|s| s.total),
                outstanding: e.outstanding,
            })
            .collect()
    }
}

/// One peer's placement state, for `GET /v1/peers` and `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerState {
    /// The peer.
    pub peer: PeerId,
    /// Its breaker.
    pub breaker: BreakerState,
    /// Times its breaker opened.
    pub trips: u64,
    /// Local reliability.
    pub reliability: f64,
    /// Its score when last ranked.
    pub score: Option<f64>,
    /// This node's jobs it holds.
    pub outstanding: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(rtt_ms: u64, running: u32, queued: u32, slots: u32) -> View {
        View {
            load: Some((
                Load {
                    running,
                    queued,
                    slots,
                    queue_cap: 4,
                    accepting: true,
                    ..Load::default()
                },
                Duration::ZERO,
            )),
            rtt: Some(Duration::from_millis(rtt_ms)),
            liveness: None,
        }
    }

    #[test]
    fn a_full_near_peer_loses_to_a_free_far_one_and_vetoes_say_why() {
        let s = Scheduler::new(SchedConfig::default());
        let (near, far, dead) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut dead_view = view(1, 0, 0, 4);
        dead_view.liveness = Some(Liveness::Failed);
        let ranked = s.rank(
            &[
                (near, view(1, 2, 0, 2)),
                (far, view(60, 0, 0, 2)),
                (dead, dead_view),
            ],
            7,
        );
        assert_eq!(ranked[0].0, far);
        assert_eq!(ranked[1].0, near);
        assert_eq!(
            ranked[2].1.veto.as_deref(),
            Some("failed: missed its beats")
        );
        let full = s.rank(&[(near, view(1, 2, 4, 2))], 7);
        assert!(
            full[0]
                .1
                .veto
                .as_deref()
                .is_some_and(|v| v.starts_with("full"))
        );
    }

    #[test]
    fn tickets_bound_this_nodes_jobs_per_peer_and_breakers_veto() {
        let s = Scheduler::new(SchedConfig {
            max_per_peer: 2,
            ..SchedConfig::default()
        });
        let p = PeerId::random();
        let a = s.take(p, None).expect("first");
        let _b = s.take(p, None).expect("second");
        assert!(s.take(p, None).is_none(), "at most max_per_peer");
        assert!(s.rank(&[(p, View::default())], 0)[0].1.veto.is_some());
        drop(a);
        let _c = s.take(p, Some(100)).expect("a slot came back");
        let q = PeerId::random();
        for _ in 0..3 {
            s.record(q, Outcome::Evidence(Evidence::Timeout));
        }
        assert!(s.take(q, None).is_none(), "breaker open");
        assert_eq!(s.trips().get(), 1);
        let r = s.rank(&[(q, View::default())], 0);
        assert_eq!(r[0].1.veto.as_deref(), Some("breaker open"));
        assert_eq!(s.take_dirty().len(), 1);
    }
}
