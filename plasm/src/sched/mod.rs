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

/// Most engines or labels a beat may name: with names of at most
/// [`MAX_LOAD_NAME_BYTES`], the largest load a node accepts still fits in one
/// beat (4 KiB; tested in `net::beat`).
pub const MAX_LOAD_NAMES: usize = 16;
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

/// How candidates are ordered. Nodes place by [`Policy::Score`]; the other two
/// are the baselines `plasm bench --placement` measures it against (they skip
/// the load vetoes too: a full executor's own refusal is all that stops them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// By score, vetoes first (decision 0051).
    #[default]
    Score,
    /// Uniformly at random (a hash of the job's nonce).
    Random,
    /// Each job to the next executor in turn.
    RoundRobin,
}

/// Where this node's jobs may run (`[placement] mode`, decision 0053).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Never leaves this node: no job goes to a peer, and none is stolen.
    Solo,
    /// Jobs go to peers by score when asked for (or when this node is full).
    #[default]
    Mesh,
    /// Mesh, and idle peers that opted in take this node's queued jobs, and
    /// this node takes theirs when idle (work stealing with consent).
    Swarm,
}

impl Mode {
    /// Parses the configuration's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "solo" => Some(Self::Solo),
            "mesh" => Some(Self::Mesh),
            "swarm" => Some(Self::Swarm),
            _ => None,
        }
    }

    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Solo => "solo",
            Self::Mesh => "mesh",
            Self::Swarm => "swarm",
        }
    }
}

/// Placement settings (`[placement]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedConfig {
    /// How candidates are ordered.
    pub policy: Policy,
    /// Weights of the score.
    pub weights: score::Weights,
    /// Circuit breakers.
    pub breaker: BreakerConfig,
    /// This node's jobs one executor holds at once: below the connection's
    /// 16 streams, which offers, bundles and the other direction share.
    pub max_per_peer: usize,
    /// How long a job waits for an executor with room before it fails.
    pub queue_wait: Duration,
    /// Solo, mesh or swarm.
    pub mode: Mode,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Score,
            weights: score::Weights::default(),
            breaker: BreakerConfig::default(),
            max_per_peer: 8,
            queue_wait: Duration::from_secs(120),
            mode: Mode::Mesh,
        }
    }
}

/// Releases remembered per peer.
const MAX_RELEASES: usize = 64;

/// Peers whose placement state is kept at once, as many as the store keeps
/// reputation for; beyond, the one used longest ago is forgotten.
pub const MAX_PEERS: usize = 10_000;

#[derive(Debug)]
struct Entry {
    breaker: Breaker,
    record: Record,
    outstanding: usize,
    /// When this node's jobs there last ended (the newest [`MAX_RELEASES`]):
    /// an advertisement sent before a release still counts that job as busy.
    released: std::collections::VecDeque<(Instant, Instant)>,
    last_score: Option<score::Score>,
    used: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            breaker: Breaker::default(),
            record: Record::default(),
            outstanding: 0,
            released: Default::default(),
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
    /// The next turn of [`Policy::RoundRobin`].
    turn: std::sync::atomic::AtomicUsize,
}

/// A job slot on one executor, held while the job is there. Dropped without
/// [`Ticket::finish`] (a cancel, a busy decline) it says nothing of the peer and
/// gives back the half-open trial if it held it.
#[derive(Debug)]
pub struct Ticket {
    sched: Arc<Scheduler>,
    peer: PeerId,
    /// This job is the peer's half-open trial (its generation).
    trial: Option<u64>,
    /// When the peer took the job's bytes: its end frees a slot others wait for.
    ran: Option<Instant>,
    /// An outcome was recorded.
    finished: bool,
}

impl Ticket {
    /// The executor.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The executor took the job's bytes at `at`: when the ticket goes, a slot frees.
    pub fn ran(&mut self, at: Instant) {
        self.ran.get_or_insert(at);
    }

    /// Records what the job came to at this peer.
    pub fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        match outcome {
            Outcome::Evidence(e) => self.sched.record(self.peer, e),
            Outcome::Neutral => self.give_back_trial(),
        }
    }

    fn give_back_trial(&mut self) {
        if let Some(generation) = self.trial.take()
            && let Ok(mut p) = self.sched.peers.lock()
            && let Some(e) = p.get_mut(&self.peer)
        {
            e.breaker.neutral(generation);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.give_back_trial();
        }
        if let Ok(mut p) = self.sched.peers.lock()
            && let Some(e) = p.get_mut(&self.peer)
        {
            e.outstanding = e.outstanding.saturating_sub(1);
            if let Some(ran) = self.ran {
                if e.released.len() >= MAX_RELEASES {
                    e.released.pop_front();
                }
                e.released.push_back((ran, Instant::now()));
            }
        }
        // Only a job that held a slot frees one: a decline wakes nobody (else
        // every waiting job would offer again at once).
        if self.ran.is_some() {
            self.sched.room.notify_waiters();
        }
    }
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
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
            turn: Default::default(),
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
            // The one used longest ago with nothing to remember goes first (a
            // closed breaker, no job out); a flood of new peers cannot wipe an
            // open breaker while others remain.
            let idle = |e: &Entry| e.outstanding == 0;
            let victim = map
                .iter()
                .filter(|(_, e)| idle(e) && e.breaker.state(now) == BreakerState::Closed)
                .min_by_key(|(_, e)| e.used)
                .or_else(|| {
                    map.iter()
                        .filter(|(_, e)| idle(e))
                        .min_by_key(|(_, e)| e.used)
                })
                .map(|(p, _)| *p);
            if let Some(p) = victim {
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
        let unix = unix_now();
        // Those with the most evidence first, in case there are more than fit.
        let mut records: Vec<(PeerId, Record)> =
            records.into_iter().filter(|(_, r)| r.is_sane()).collect();
        records.sort_by(|a, b| b.1.weight(unix).total_cmp(&a.1.weight(unix)));
        let mut map = self.lock();
        for (peer, mut record) in records.into_iter().take(MAX_PEERS) {
            // A time in the future (a clock that jumped) would stop its decay.
            record.at = record.at.min(unix);
            Self::entry(&mut map, peer, now).record = record;
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
            // The advertisement counts this node's jobs that have ended since it
            // was sent: take those off (never below this node's own jobs there).
            // Only jobs that were there when it was sent (ran before, ended after).
            let released = view.load.as_ref().map_or(0, |(_, age)| {
                let since = now.checked_sub(*age);
                e.released
                    .iter()
                    .filter(|(ran, ended)| since.is_none_or(|s| *ran <= s && s < *ended))
                    .count()
            }) as u32;
            let busy = advertised
                .map_or(0, |l| l.busy().saturating_sub(released))
                .max(e.outstanding as u32);
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
                Some("failed: missed its beats or could not be dialled".to_owned())
            } else if advertised.is_some_and(|l| !l.accepting) {
                Some("takes no jobs from others".to_owned())
            } else if breaker == BreakerState::Open {
                Some("breaker open".to_owned())
            } else if !e.breaker.admits(now) {
                Some("breaker half-open, its trial job is out".to_owned())
            } else if self.config.policy != Policy::Score {
                None
            } else if e.outstanding >= mine_cap {
                Some(format!("full: holds {} of this node's jobs", e.outstanding))
            } else if let Some(l) = advertised
                && busy >= l.slots
            {
                // Late binding: a job waits here for a free slot rather than in
                // one executor's queue, so it goes to whichever frees first.
                Some(format!(
                    "full: no free slot ({busy} jobs on {} slots); waits here for room",
                    l.slots
                ))
            } else {
                None
            };
            let s = score::score(&self.config.weights, &inputs);
            e.last_score = Some(s);
            // A hash of (peer, job): uniform orderings, not the trie order of a XOR.
            let tie = {
                let b = peer.to_bytes();
                let n = b.len();
                let tail =
                    u64::from_le_bytes(b[n.saturating_sub(8)..].try_into().unwrap_or([0; 8]));
                splitmix(tail ^ splitmix(salt))
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
        let vetoed = |c: &Candidate| c.veto.is_some();
        match self.config.policy {
            Policy::Score => out.sort_by(|a, b| {
                let key = |c: &Candidate| c.score.map_or(f64::INFINITY, |s| s.total);
                key(&a.1).total_cmp(&key(&b.1)).then(a.2.cmp(&b.2))
            }),
            Policy::Random => out.sort_by_key(|(_, c, tie)| (vetoed(c), *tie)),
            Policy::RoundRobin => {
                out.sort_by_key(|(p, c, _)| (vetoed(c), *p));
                let open = out.iter().filter(|(_, c, _)| !vetoed(c)).count();
                if open > 0 {
                    let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    out[..open].rotate_left(turn % open);
                }
            }
        }
        out.into_iter().map(|(p, c, _)| (p, c)).collect()
    }

    /// Takes a job slot on `peer` (and the half-open trial): `None` when its
    /// breaker or this node's share of it says no. `capacity`: the slots the
    /// peer advertised (this node never holds more of its jobs there).
    pub fn take(self: &Arc<Self>, peer: PeerId, capacity: Option<u32>) -> Option<Ticket> {
        let now = Instant::now();
        let mut map = self.lock();
        let e = Self::entry(&mut map, peer, now);
        // The baselines do not look at the executor's room (its refusals stop them).
        let capacity = capacity.filter(|_| self.config.policy == Policy::Score);
        let cap = capacity.map_or(self.config.max_per_peer, |c| {
            (c as usize).clamp(1, self.config.max_per_peer)
        });
        if e.outstanding >= cap {
            return None;
        }
        let trial = e.breaker.take(now)?;
        e.outstanding += 1;
        Some(Ticket {
            sched: self.clone(),
            peer,
            trial,
            ran: None,
            finished: false,
        })
    }

    /// How many more of this node's jobs `peer` may be given now (swarm mode
    /// asks before it claims a queued job): none while its breaker is not
    /// closed, else what is left of `max_per_peer`.
    pub fn room(&self, peer: PeerId) -> usize {
        let now = Instant::now();
        let mut map = self.lock();
        let e = Self::entry(&mut map, peer, now);
        if e.breaker.state(now) != BreakerState::Closed {
            return 0;
        }
        self.config.max_per_peer.saturating_sub(e.outstanding)
    }

    /// Records evidence about `peer` (most callers go through [`Ticket::finish`]).
    pub fn record(&self, peer: PeerId, evidence: Evidence) {
        let now = Instant::now();
        let mut map = self.lock();
        let e = Self::entry(&mut map, peer, now);
        e.record.observe(evidence, unix_now());
        match evidence {
            Evidence::Valid => e.breaker.success(),
            // Light evidence, never a breaker failure.
            Evidence::Overstated => {}
            _ => {
                if e.breaker.failure(now, &self.config.breaker) {
                    self.trips.inc();
                    tracing::warn!(%peer, "circuit breaker opened");
                }
            }
        }
        drop(map);
        if let Ok(mut d) = self.dirty.lock()
            && d.len() < MAX_PEERS
        {
            d.insert(peer);
        }
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
        assert!(ranked[0].1.veto.is_none());
        let veto = |p: PeerId| {
            ranked
                .iter()
                .find(|(q, _)| *q == p)
                .and_then(|(_, c)| c.veto.clone())
                .unwrap_or_default()
        };
        assert!(
            veto(near).starts_with("full: no free slot"),
            "{}",
            veto(near)
        );
        assert_eq!(
            veto(dead),
            "failed: missed its beats or could not be dialled"
        );
        // Half busy and near beats free and far (1 + 50 against 60).
        let half = s.rank(&[(near, view(1, 1, 0, 2)), (far, view(60, 0, 0, 2))], 7);
        assert_eq!(half[0].0, near);
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
            s.record(q, Evidence::Timeout);
        }
        assert!(s.take(q, None).is_none(), "breaker open");
        assert_eq!(s.trips().get(), 1);
        let r = s.rank(&[(q, View::default())], 0);
        assert_eq!(r[0].1.veto.as_deref(), Some("breaker open"));
        assert_eq!(s.take_dirty().len(), 1);
    }

    /// A trial job that is cancelled (its ticket dropped unfinished) gives the
    /// trial back; one that fails opens the breaker again.
    #[test]
    fn a_cancelled_trial_gives_the_half_open_trial_back() {
        let s = Scheduler::new(SchedConfig {
            breaker: BreakerConfig {
                failures: 1,
                cooldown: Duration::ZERO,
            },
            ..SchedConfig::default()
        });
        let p = PeerId::random();
        s.record(p, Evidence::Timeout);
        let trial = s.take(p, None).expect("the trial");
        assert!(s.take(p, None).is_none(), "one trial at a time");
        drop(trial);
        let trial = s.take(p, None).expect("given back on drop");
        trial.finish(Outcome::Neutral);
        let trial = s.take(p, None).expect("given back as neutral");
        trial.finish(Outcome::Evidence(Evidence::Valid));
        assert_eq!(s.snapshot()[0].breaker, BreakerState::Closed);
    }
}
