//! Beats: the load advertisement and the failure detector's messages, on their
//! own protocol `/plasm/beat/1.0.0` (decision 0049).
//!
//! A beat is a request-response exchange carrying each side's [`Load`] (a node
//! that runs nothing for others sends none). Beats go only to peers this node
//! watches, that is executors holding one of its jobs, every `interval`, and as a
//! probe to a candidate whose advertisement is older than that just before a
//! placement; so traffic grows with the jobs in flight, not with the mesh, and a
//! mobile node with nothing out sends none at all. The answers feed the
//! detector ([`crate::sched::detector`]) and the placement views.
//!
//! Everything is bounded: messages (4 KiB, read with a cap), the peers watched
//! or remembered, and inbound beats per peer (a token bucket); what is dropped is
//! counted in [`BeatStats`].

use crate::sched::detector::{Detector, DetectorConfig, Liveness};
use crate::sched::{Load, View};
use libp2p::PeerId;
use libp2p::StreamProtocol;
use libp2p::request_response::OutboundRequestId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Protocol id of beats.
pub const BEAT_PROTOCOL: StreamProtocol = StreamProtocol::new("/plasm/beat/1.0.0");
/// Largest beat read from a stream, either way.
pub const MAX_BEAT_BYTES: u64 = 4096;
/// Peers watched, advertisements kept and failed peers remembered, each.
pub const MAX_BEAT_PEERS: usize = 4096;
/// How long a peer found failed is skipped without a dial (unless it connects
/// or answers meanwhile): a dead provider's record outlives it by up to an hour.
pub const FAILED_MEMORY: Duration = Duration::from_secs(300);
/// Probes waiting on one beat in flight.
pub const MAX_PROBE_WAITERS: usize = 4096;
/// Inbound beats per peer per second, sustained, and in a burst.
pub const BEAT_RATE: f64 = 5.0;
/// See [`BEAT_RATE`].
pub const BEAT_BURST: f64 = 20.0;

/// One beat, either way.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Beat {
    /// The sender's load, when it runs jobs for others.
    pub load: Option<Load>,
}

/// Where a node's own load comes from (the worker pool, read when a beat is answered).
#[derive(Clone)]
pub struct LoadSource(pub Arc<dyn Fn() -> Load + Send + Sync>);

impl std::fmt::Debug for LoadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadSource")
    }
}

/// Counters of beats, for `/metrics`.
#[derive(Debug, Default)]
pub struct BeatStats {
    /// Beats sent (periodic and probes).
    pub sent: AtomicU64,
    /// Beats answered by their peer.
    pub answered: AtomicU64,
    /// Beats received and answered.
    pub served: AtomicU64,
    /// Inbound beats dropped by the per-peer rate limit.
    pub rate_limited: AtomicU64,
    /// Beats dropped as oversized, undecodable or out of bounds.
    pub malformed: AtomicU64,
    /// Peers declared suspect.
    pub suspected: AtomicU64,
    /// Peers declared failed.
    pub failed: AtomicU64,
}

/// The answer to a probe: the peer's load and the round trip.
pub type ProbeReply = oneshot::Sender<Result<(Option<Load>, Duration), String>>;

struct Watch {
    count: usize,
    detector: Detector,
    next: Instant,
    state: Liveness,
    /// When the suspect's probe went out.
    probe: Option<Instant>,
}

/// The beat bookkeeping of the event loop.
pub struct Beats {
    config: DetectorConfig,
    source: Option<LoadSource>,
    watched: HashMap<PeerId, Watch>,
    views: HashMap<PeerId, (Load, Instant)>,
    failed: HashMap<PeerId, Instant>,
    pending: HashMap<OutboundRequestId, (PeerId, Instant, Vec<ProbeReply>)>,
    /// Peers that do not speak beats (older releases): never suspected.
    beatless: HashMap<PeerId, Instant>,
    /// The beat in flight to each peer: probes wait for it rather than send another.
    inflight: HashMap<PeerId, OutboundRequestId>,
    buckets: HashMap<PeerId, (f64, Instant)>,
    /// Counters.
    pub stats: Arc<BeatStats>,
}

/// What the loop must do after a tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TickOut {
    /// Send a beat to each.
    pub send: Vec<PeerId>,
    /// Newly suspect.
    pub suspect: Vec<PeerId>,
    /// Newly failed.
    pub failed: Vec<PeerId>,
}

impl Beats {
    /// Bookkeeping with `config`.
    pub fn new(config: DetectorConfig, stats: Arc<BeatStats>) -> Self {
        Self {
            config,
            source: None,
            watched: HashMap::new(),
            views: HashMap::new(),
            failed: HashMap::new(),
            pending: HashMap::new(),
            beatless: Default::default(),
            inflight: HashMap::new(),
            buckets: HashMap::new(),
            stats,
        }
    }

    /// The detector's settings.
    pub fn config(&self) -> DetectorConfig {
        self.config
    }

    /// Sets where this node's load comes from.
    pub fn set_source(&mut self, source: LoadSource) {
        self.source = Some(source);
    }

    /// This node's beat.
    pub fn own(&self) -> Beat {
        Beat {
            load: self.source.as_ref().map(|s| (s.0)()),
        }
    }

    /// Starts (`on`) or ends one watch of `peer`; watches are counted.
    pub fn watch(&mut self, peer: PeerId, on: bool, now: Instant) {
        if on {
            if let Some(w) = self.watched.get_mut(&peer) {
                w.count += 1;
            } else if self.watched.len() < MAX_BEAT_PEERS {
                self.watched.insert(
                    peer,
                    Watch {
                        count: 1,
                        detector: Detector::new(now),
                        next: now + self.config.interval,
                        state: Liveness::Alive,
                        probe: None,
                    },
                );
            }
        } else if let Some(w) = self.watched.get_mut(&peer) {
            w.count -= 1;
            if w.count == 0 {
                self.watched.remove(&peer);
            }
        }
    }

    /// A beat to `peer` went out as request `id` (with a probe's reply, if any).
    pub fn sent(
        &mut self,
        id: OutboundRequestId,
        peer: PeerId,
        reply: Option<ProbeReply>,
        now: Instant,
    ) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.inflight.insert(peer, id);
        self.pending
            .insert(id, (peer, now, reply.into_iter().collect()));
    }

    /// Whether a beat to `peer` is in flight; if so, `reply` (a probe's) waits
    /// for its answer and `None` is returned, else `reply` is given back.
    pub fn join(&mut self, peer: PeerId, reply: ProbeReply) -> Option<ProbeReply> {
        match self
            .inflight
            .get(&peer)
            .and_then(|id| self.pending.get_mut(id))
        {
            Some((_, _, waiting)) if waiting.len() < MAX_PROBE_WAITERS => {
                waiting.push(reply);
                None
            }
            Some(_) => {
                let _ = reply.send(Err("too many probes of this peer waiting".into()));
                None
            }
            None => Some(reply),
        }
    }

    /// The answer to request `id`; returns the peer and round trip.
    pub fn answered(
        &mut self,
        id: OutboundRequestId,
        beat: Beat,
        now: Instant,
    ) -> Option<(PeerId, Duration)> {
        let (peer, sent, replies) = self.pending.remove(&id)?;
        // It speaks beats now (upgraded): the detector watches it again.
        self.beatless.remove(&peer);
        if self.inflight.get(&peer) == Some(&id) {
            self.inflight.remove(&peer);
        }
        let rtt = now.saturating_duration_since(sent);
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        self.heard(peer, now);
        let load = match beat.load {
            Some(l) if l.is_sane() => Some(l),
            Some(_) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        if let Some(l) = &load {
            if !self.views.contains_key(&peer) && self.views.len() >= MAX_BEAT_PEERS {
                let oldest = self
                    .views
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(p, _)| *p);
                if let Some(p) = oldest {
                    self.views.remove(&p);
                }
            }
            self.views.insert(peer, (l.clone(), now));
        }
        for reply in replies {
            let _ = reply.send(Ok((load.clone(), rtt)));
        }
        Some((peer, rtt))
    }

    /// Request `id` failed (no answer: the detector counts by time, not by this).
    pub fn lost(&mut self, id: OutboundRequestId, why: String, unsupported: bool) {
        if let Some((peer, _, replies)) = self.pending.remove(&id) {
            if self.inflight.get(&peer) == Some(&id) {
                self.inflight.remove(&peer);
            }
            if unsupported {
                if !self.beatless.contains_key(&peer) && self.beatless.len() >= MAX_BEAT_PEERS {
                    // The one marked longest ago goes (it may have been upgraded).
                    let oldest = self
                        .beatless
                        .iter()
                        .min_by_key(|(_, t)| **t)
                        .map(|(p, _)| *p);
                    if let Some(p) = oldest {
                        self.beatless.remove(&p);
                    }
                }
                self.beatless.insert(peer, Instant::now());
                if let Some(w) = self.watched.get_mut(&peer) {
                    w.state = Liveness::Alive;
                    w.probe = None;
                }
            }
            for reply in replies {
                let _ = reply.send(Err(why.clone()));
            }
        }
    }

    /// The peer was heard from (an answer, or a new connection).
    pub fn heard(&mut self, peer: PeerId, now: Instant) {
        self.failed.remove(&peer);
        if let Some(w) = self.watched.get_mut(&peer) {
            w.detector.heard(now);
            w.state = Liveness::Alive;
            w.probe = None;
        }
    }

    /// Placement found the peer unreachable: skip it without a dial for a while.
    pub fn mark_failed(&mut self, peer: PeerId, now: Instant) {
        if self.failed.len() >= MAX_BEAT_PEERS {
            self.failed
                .retain(|_, t| now.saturating_duration_since(*t) < FAILED_MEMORY);
            if self.failed.len() >= MAX_BEAT_PEERS {
                return;
            }
        }
        self.failed.insert(peer, now);
    }

    /// Whether an inbound beat from `peer` is within its rate.
    pub fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= MAX_BEAT_PEERS {
            self.buckets.retain(|_, (tokens, t)| {
                *tokens + now.saturating_duration_since(*t).as_secs_f64() * BEAT_RATE < BEAT_BURST
            });
            if self.buckets.len() >= MAX_BEAT_PEERS {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let (tokens, t) = self.buckets.entry(peer).or_insert((BEAT_BURST, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*t).as_secs_f64() * BEAT_RATE).min(BEAT_BURST);
        *t = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Due beats and the detector's new verdicts. A peer silent for two intervals
    /// is suspect and probed at once; it is failed only once its probe has had
    /// `probe_timeout` (so a late tick, or a requester that stalled, never fails a
    /// peer without asking it first).
    pub fn tick(&mut self, now: Instant) -> TickOut {
        let mut out = TickOut::default();
        let c = self.config;
        for (peer, w) in &mut self.watched {
            if self.beatless.contains_key(peer) {
                continue;
            }
            let silent = w.detector.state(now, &c) != Liveness::Alive;
            match (w.state, silent, w.probe) {
                (Liveness::Alive, true, _) => {
                    self.stats.suspected.fetch_add(1, Ordering::Relaxed);
                    out.suspect.push(*peer);
                    out.send.push(*peer);
                    w.state = Liveness::Suspect;
                    w.probe = Some(now);
                }
                (Liveness::Suspect, true, Some(sent))
                    if now.saturating_duration_since(sent) >= c.probe_timeout =>
                {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    out.failed.push(*peer);
                    w.state = Liveness::Failed;
                }
                _ => {}
            }
            if now >= w.next {
                w.next = now + c.interval;
                if !out.send.contains(peer) && !self.inflight.contains_key(peer) {
                    out.send.push(*peer);
                }
            }
        }
        for p in &out.failed {
            if self.failed.len() < MAX_BEAT_PEERS {
                self.failed.insert(*p, now);
            }
        }
        out
    }

    /// What is known of `peer` for placement.
    pub fn view(&self, peer: PeerId, rtt: Option<Duration>, now: Instant) -> View {
        let liveness = match self.watched.get(&peer) {
            Some(w) => Some(w.state),
            None => self
                .failed
                .get(&peer)
                .filter(|t| now.saturating_duration_since(**t) < FAILED_MEMORY)
                .map(|_| Liveness::Failed),
        };
        View {
            load: self
                .views
                .get(&peer)
                .map(|(l, t)| (l.clone(), now.saturating_duration_since(*t))),
            rtt,
            liveness,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_watched_peer_is_probed_then_failed_and_skipped() {
        let mut b = Beats::new(DetectorConfig::default(), Arc::default());
        let p = PeerId::random();
        let t0 = Instant::now();
        b.watch(p, true, t0);
        b.watch(p, true, t0);
        let s = |x: f64| t0 + Duration::from_secs_f64(x);
        assert_eq!(b.tick(s(1.0)), TickOut::default());
        assert_eq!(b.tick(s(5.0)).send, vec![p]);
        let out = b.tick(s(10.0));
        assert_eq!((out.suspect, out.send), (vec![p], vec![p]));
        let out = b.tick(s(11.0));
        assert_eq!(out.failed, vec![p]);
        assert_eq!(b.view(p, None, s(11.0)).liveness, Some(Liveness::Failed));
        // Unwatched, it stays failed (skipped without a dial) until heard.
        b.watch(p, false, s(11.0));
        b.watch(p, false, s(11.0));
        assert_eq!(b.view(p, None, s(12.0)).liveness, Some(Liveness::Failed));
        assert_eq!(b.view(p, None, s(12.0) + FAILED_MEMORY).liveness, None);
        b.heard(p, s(13.0));
        assert_eq!(b.view(p, None, s(13.0)).liveness, None);
    }

    #[test]
    fn a_late_tick_still_probes_before_it_fails() {
        let mut b = Beats::new(DetectorConfig::default(), Arc::default());
        let p = PeerId::random();
        let t0 = Instant::now();
        b.watch(p, true, t0);
        // The loop stalled for 30 s: the peer is asked before it is failed.
        let t1 = t0 + Duration::from_secs(30);
        let out = b.tick(t1);
        assert_eq!((out.suspect, out.failed.len()), (vec![p], 0));
        b.heard(p, t1 + Duration::from_millis(10));
        assert_eq!(b.tick(t1 + Duration::from_secs(2)).failed.len(), 0);
        assert_eq!(b.view(p, None, t1).liveness, Some(Liveness::Alive));
    }

    #[test]
    fn a_flood_of_beats_is_rate_limited_and_counted() {
        let mut b = Beats::new(DetectorConfig::default(), Arc::default());
        let p = PeerId::random();
        let now = Instant::now();
        let admitted = (0..100).filter(|_| b.admit(p, now)).count();
        assert_eq!(admitted, BEAT_BURST as usize);
        assert_eq!(
            b.stats.rate_limited.load(Ordering::Relaxed),
            100 - BEAT_BURST as u64
        );
        assert!(b.admit(p, now + Duration::from_secs(1)), "refilled");
        // Another peer has its own bucket.
        assert!(b.admit(PeerId::random(), now));
    }

    #[test]
    fn an_oversized_advertisement_is_dropped_and_counted() {
        use crate::sched::{MAX_LOAD_NAME_BYTES, MAX_LOAD_NAMES};
        let mut load = Load {
            labels: vec!["x".repeat(MAX_LOAD_NAME_BYTES + 1)],
            ..Load::default()
        };
        assert!(!load.is_sane());
        load.labels = vec!["gpu".into(); MAX_LOAD_NAMES + 1];
        assert!(!load.is_sane());
    }

    /// The largest load a node accepts (every name at its limit, every count
    /// at its largest) still fits in one beat, both ways, through the codec
    /// the node reads beats with.
    #[test]
    fn the_largest_sane_load_fits_in_a_beat() {
        use crate::sched::{MAX_LOAD_NAME_BYTES, MAX_LOAD_NAMES};
        use futures::executor::block_on;
        use libp2p::request_response::Codec as _;
        let name = "x".repeat(MAX_LOAD_NAME_BYTES);
        let beat = Beat {
            load: Some(Load {
                running: u32::MAX,
                queued: u32::MAX,
                slots: 1_000_000,
                queue_cap: 1_000_000,
                cores: u32::MAX,
                memory_mb: u64::MAX,
                engines: vec![name.clone(); MAX_LOAD_NAMES],
                labels: vec![name.clone(); MAX_LOAD_NAMES],
                profile: name,
                accepting: true,
            }),
        };
        assert!(beat.load.as_ref().is_some_and(Load::is_sane));
        let mut codec = libp2p::request_response::cbor::codec::Codec::<Beat, Beat>::default()
            .set_request_size_maximum(MAX_BEAT_BYTES)
            .set_response_size_maximum(MAX_BEAT_BYTES);
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_response(&BEAT_PROTOCOL, &mut out, beat.clone())).expect("encode");
        let bytes = out.into_inner();
        assert!(
            bytes.len() as u64 <= MAX_BEAT_BYTES,
            "{} bytes",
            bytes.len()
        );
        let back =
            block_on(codec.read_request(&BEAT_PROTOCOL, &mut futures::io::Cursor::new(bytes)))
                .expect("decodes under the cap");
        assert_eq!(back, beat);
    }
}
