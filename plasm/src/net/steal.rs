//! Swarm mode's consent messages, on their own protocol `/plasm/steal/1.0.0`
//! (decision 0053).
//!
//! A busy node whose queue has waited asks a few connected peers, in one small
//! request, whether they would take some of it ([`Overflow`]: how much waits and
//! what those jobs need). A node that opted in (`[placement] mode = "swarm"`)
//! and is idle answers with its capabilities and how many it would take
//! ([`StealAnswer::Idle`]); anyone else answers [`StealAnswer::NotStealing`] with
//! the reason. The busy node then offers each job through the job protocol, so
//! the rest of the handshake (offer → accept → bundle → started → completed) is
//! the one every job already goes through, and the executor checks the bundle
//! against the same policy ([`StealGate`]) before it runs a stolen job.
//!
//! Everything is bounded: the messages (4 KiB, read with a cap, at most
//! [`MAX_NEEDS`] needs), inbound overflow announcements per peer (a token
//! bucket), the peers remembered for it, and the stolen jobs run at once
//! (`max_concurrent`). Mobile and hostile profiles never steal (refused at start).

use crate::sched::Load;
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Protocol id of swarm mode's consent messages.
pub const STEAL_PROTOCOL: StreamProtocol = StreamProtocol::new("/plasm/steal/1.0.0");
/// Largest steal message read from a stream, either way.
pub const MAX_STEAL_BYTES: u64 = 4096;
/// Most needs one overflow announcement lists.
pub const MAX_NEEDS: usize = 8;
/// Longest runtime or label name in a steal message.
pub const MAX_STEAL_NAME_BYTES: usize = 64;
/// Most labels (or engines) one need or answer names.
pub const MAX_STEAL_NAMES: usize = 4;
/// Inbound overflow announcements per peer per second, sustained, and in a burst.
pub const OVERFLOW_RATE: f64 = 2.0;
/// See [`OVERFLOW_RATE`].
pub const OVERFLOW_BURST: f64 = 5.0;
/// How long the slots an `Idle` answer offered stay promised to the node that
/// asked (decision 0063). A busy node waits at most its consent timeout (1 s by
/// default) for all its answers and then offers at once; the offer, the accept and
/// a bundle fit in the rest on the links swarm mode is for. Slots a busy node does
/// not use (fewer of its jobs fit) are kept from others this long at most.
pub const PROMISE_HOLD: Duration = Duration::from_secs(5);
/// How long a node whose promise ran out unused is promised nothing more (its
/// answers are still `Idle` when slots are free, as before promises). Without it
/// one peer announcing every 5 s, and never sending a bundle, would keep every
/// slot promised to itself for free.
pub const UNKEPT_COOLDOWN: Duration = Duration::from_secs(30);
/// Most peers remembered as having let a promise run out.
pub const MAX_UNKEPT: usize = 1024;

/// Slots promised by `Idle` answers, and the peers that let one run out.
#[derive(Debug, Default)]
struct Promises {
    /// One entry (asker, until) per slot, at most `max_concurrent`.
    slots: std::collections::VecDeque<(PeerId, Instant)>,
    /// Peers promised nothing until the instant (bounded by [`MAX_UNKEPT`]).
    unkept: HashMap<PeerId, Instant>,
}

impl Promises {
    /// Drops the promises that ran out, marking their askers.
    fn expire(&mut self, now: Instant) {
        let unkept = &mut self.unkept;
        self.slots.retain(|(peer, until)| {
            if *until > now {
                return true;
            }
            if unkept.len() >= MAX_UNKEPT {
                unkept.retain(|_, t| *t > now);
            }
            if unkept.len() < MAX_UNKEPT || unkept.contains_key(peer) {
                unkept.insert(*peer, now + UNKEPT_COOLDOWN);
            }
            false
        });
    }

    /// Uses up (or lets go of) one slot promised to `peer`.
    fn take(&mut self, peer: &PeerId) {
        if let Some(i) = self.slots.iter().position(|(p, _)| p == peer) {
            self.slots.remove(i);
        }
    }
}
/// Peers whose announcement rate is remembered.
pub const MAX_STEAL_PEERS: usize = 4096;

/// What one queued job needs from a thief.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Need {
    /// The engine it asks for (`None`: any).
    pub runtime: Option<String>,
    /// The labels it requires.
    pub labels: Vec<String>,
    /// Its memory cap, bytes.
    pub memory_bytes: u64,
    /// Its module and input, bytes.
    pub bundle_bytes: u64,
}

/// Busy node → peer: "my queue has waited; would you take some of it?"
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Overflow {
    /// Jobs waiting in its queue that may be stolen.
    pub queued: u32,
    /// What some of them need (at most [`MAX_NEEDS`]).
    pub needs: Vec<Need>,
}

/// Peer → busy node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StealAnswer {
    /// Opted in and idle: how many jobs it would take now, and what it can run.
    Idle {
        /// Jobs it would take now (free workers, within `max_concurrent`).
        free_slots: u32,
        /// Engines it runs.
        engines: Vec<String>,
        /// Labels it advertises.
        labels: Vec<String>,
        /// Labels a job must require to be taken (its steal policy).
        require_labels: Vec<String>,
        /// Its memory, MiB.
        memory_mb: u64,
        /// The largest bundle it takes, bytes.
        max_bundle_bytes: u64,
    },
    /// Does not take the work, and why (not opted in, busy, nothing it can run).
    NotStealing {
        /// Why, for people.
        reason: String,
    },
}

fn names_ok(v: &[String]) -> bool {
    v.len() <= MAX_STEAL_NAMES && v.iter().all(|s| s.len() <= MAX_STEAL_NAME_BYTES)
}

impl Need {
    /// What a job of `manifest` needs. A job whose needs do not fit the
    /// message's bounds ([`Self::is_sane`]) is never announced, so never stolen.
    pub fn of(manifest: &crate::manifest::Manifest) -> Self {
        Self {
            runtime: manifest.requirements.runtime.clone(),
            labels: manifest.requirements.labels.clone(),
            memory_bytes: manifest.limits.memory_bytes,
            bundle_bytes: manifest
                .module
                .size
                .saturating_add(manifest.input.as_ref().map_or(0, |i| i.size)),
        }
    }

    /// Whether it is within the message's bounds.
    pub fn is_sane(&self) -> bool {
        names_ok(&self.labels)
            && self
                .runtime
                .as_ref()
                .is_none_or(|r| r.len() <= MAX_STEAL_NAME_BYTES)
    }
}

impl Overflow {
    /// Whether the announcement is within bounds (else it is dropped and counted).
    pub fn is_sane(&self) -> bool {
        self.needs.len() <= MAX_NEEDS && self.needs.iter().all(Need::is_sane)
    }
}

impl StealAnswer {
    /// Whether the answer is within bounds (else it counts as no answer).
    pub fn is_sane(&self) -> bool {
        match self {
            Self::Idle {
                engines,
                labels,
                require_labels,
                free_slots,
                ..
            } => {
                names_ok(engines)
                    && names_ok(labels)
                    && names_ok(require_labels)
                    && *free_slots <= 1024
            }
            Self::NotStealing { reason } => reason.len() <= 256,
        }
    }

    /// Whether a thief that answered this could take a job needing `need`.
    pub fn fits(&self, need: &Need) -> bool {
        let Self::Idle {
            engines,
            labels,
            require_labels,
            memory_mb,
            max_bundle_bytes,
            ..
        } = self
        else {
            return false;
        };
        let runtime_ok = need
            .runtime
            .as_deref()
            .is_none_or(|r| r == "any" || engines.iter().any(|e| e == r));
        runtime_ok
            && need.labels.iter().all(|l| labels.contains(l))
            && require_labels.iter().all(|l| need.labels.contains(l))
            && need.memory_bytes <= memory_mb.saturating_mul(1024 * 1024)
            && need.bundle_bytes <= *max_bundle_bytes
    }
}

/// A node's steal policy: whether it takes other nodes' queued work, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StealPolicy {
    /// Opted in (`[placement] mode = "swarm"`), and the profile allows it.
    pub enabled: bool,
    /// Stolen jobs run here at once.
    pub max_concurrent: usize,
    /// Labels a job must require to be stolen by this node.
    pub require_labels: Vec<String>,
    /// Memory this node must have, MiB, to take anything.
    pub min_memory_mb: u64,
    /// Largest stolen bundle (module + input), bytes.
    pub max_bundle_bytes: u64,
    /// How long a busy node waits for an answer (and the thief for the bundle's offer).
    pub consent_timeout: Duration,
    /// This node's own queued jobs (and those of requesters that accept
    /// hand-offs) may be stolen: swarm mode, on any profile.
    pub give: bool,
}

impl Default for StealPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            max_concurrent: 2,
            require_labels: Vec::new(),
            min_memory_mb: 0,
            max_bundle_bytes: 33 * 1024 * 1024,
            consent_timeout: Duration::from_millis(1000),
            give: false,
        }
    }
}

/// Counters of swarm mode, for `/metrics`.
#[derive(Debug, Default)]
pub struct StealStats {
    /// Overflow announcements sent.
    pub asked: AtomicU64,
    /// Announcements answered `Idle`.
    pub idle_answers: AtomicU64,
    /// Announcements received and answered.
    pub answered: AtomicU64,
    /// Inbound announcements dropped by the per-peer rate limit.
    pub rate_limited: AtomicU64,
    /// Steal messages dropped as oversized, undecodable or out of bounds.
    pub malformed: AtomicU64,
    /// Queued jobs of this node that idle peers stole and ran.
    pub given: AtomicU64,
    /// Stolen jobs whose thief did not run them (back in this node's queue).
    pub given_back: AtomicU64,
    /// Jobs stolen from another node that this node ran.
    pub taken: AtomicU64,
    /// Stolen bundles refused by the policy.
    pub refused: AtomicU64,
}

/// The policy and the count of stolen jobs running here, shared by the
/// consent answers (event loop) and the executor, which enforces it.
#[derive(Debug, Default)]
pub struct StealGate {
    /// The policy.
    pub policy: StealPolicy,
    running: AtomicUsize,
    /// Slots offered in `Idle` answers whose bundles have not come yet.
    promised: std::sync::Mutex<Promises>,
    /// Counters.
    pub stats: StealStats,
    /// Queued jobs idle peers may take (the busy side).
    pub list: StealList,
    /// Whether the busy side runs (the node's service started it): jobs are
    /// listed only then.
    pub giving: std::sync::atomic::AtomicBool,
}

/// One stolen job running here; its slot is given back when dropped.
#[derive(Debug)]
pub struct StolenSlot(Arc<StealGate>);

impl Drop for StolenSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StealGate {
    /// A gate enforcing `policy`.
    pub fn new(policy: StealPolicy) -> Self {
        Self {
            policy,
            running: AtomicUsize::new(0),
            promised: Default::default(),
            stats: StealStats::default(),
            list: StealList::default(),
            giving: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stolen jobs running here now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn promises(&self) -> std::sync::MutexGuard<'_, Promises> {
        self.promised.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Slots promised now (answers not yet followed by their bundles).
    #[cfg(test)]
    fn promised(&self, now: Instant) -> usize {
        let mut promised = self.promises();
        promised.expire(now);
        promised.slots.len()
    }

    /// Ends one slot promised to `from`: a stolen bundle of its came (the
    /// executor calls this for every one, admitted or refused).
    pub fn release(&self, from: &PeerId) {
        self.promises().take(from);
    }

    /// Admits one stolen bundle needing `need`, or says why not (the executor
    /// fails the bundle with it): the thief's consent, checked again on the bytes.
    pub fn admit(self: &Arc<Self>, need: &Need) -> Result<StolenSlot, String> {
        let p = &self.policy;
        let refuse = |why: String| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            Err(why)
        };
        if !p.enabled {
            return refuse("this node does not take stolen work (not in swarm mode)".into());
        }
        if !p.require_labels.iter().all(|l| need.labels.contains(l)) {
            return refuse(format!(
                "this node steals only jobs requiring the labels {:?}",
                p.require_labels
            ));
        }
        if need.bundle_bytes > p.max_bundle_bytes {
            return refuse(format!(
                "a stolen bundle of {} bytes is over this node's {} bytes",
                need.bundle_bytes, p.max_bundle_bytes
            ));
        }
        let taken = self
            .running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < p.max_concurrent).then_some(n + 1)
            });
        if taken.is_err() {
            return refuse(format!(
                "this node runs at most {} stolen jobs at once",
                p.max_concurrent
            ));
        }
        self.stats.taken.fetch_add(1, Ordering::Relaxed);
        Ok(StolenSlot(self.clone()))
    }

    /// The answer to `peer`'s overflow announcement, given this node's own load,
    /// less the slots already promised: an `Idle` answer promises its free slots
    /// to `peer` for [`PROMISE_HOLD`] (or until its bundles come), so a second
    /// announcement, from it or another, while those bundles travel is not
    /// offered the same slots again. Without this a busy node asking every 0.5 s
    /// was told the same slots were free again, sent jobs the thief then had to
    /// refuse, and those ran at home (decision 0063).
    pub fn answer_to(
        &self,
        peer: PeerId,
        overflow: &Overflow,
        load: Option<&Load>,
        now: Instant,
    ) -> StealAnswer {
        let mut promised = self.promises();
        promised.expire(now);
        let answer = self.answer_holding(overflow, load, promised.slots.len());
        let trusted = promised.unkept.get(&peer).is_none_or(|t| *t <= now);
        if let (StealAnswer::Idle { free_slots, .. }, true) = (&answer, trusted) {
            let until = now + PROMISE_HOLD;
            let entry = (peer, until);
            promised
                .slots
                .extend(std::iter::repeat_n(entry, *free_slots as usize));
        }
        answer
    }

    /// The answer to a first announcement, with nothing promised (tests).
    #[cfg(test)]
    fn answer(&self, overflow: &Overflow, load: Option<&Load>) -> StealAnswer {
        self.answer_holding(overflow, load, 0)
    }

    fn answer_holding(&self, overflow: &Overflow, load: Option<&Load>, held: usize) -> StealAnswer {
        let p = &self.policy;
        let no = |reason: &str| StealAnswer::NotStealing {
            reason: reason.into(),
        };
        if !p.enabled {
            return no("not in swarm mode");
        }
        let Some(load) = load.filter(|l| l.accepting) else {
            return no("takes no jobs");
        };
        if load.memory_mb < p.min_memory_mb {
            return no("short of memory for its steal policy");
        }
        // Idle: nothing waits here and a worker is free.
        let held = u32::try_from(held).unwrap_or(u32::MAX);
        let free_workers = load
            .slots
            .saturating_sub(load.running.saturating_add(load.queued))
            .saturating_sub(held);
        let room = (p.max_concurrent.saturating_sub(self.running()) as u32).saturating_sub(held);
        let free_slots = free_workers.min(room).min(overflow.queued);
        if load.queued > 0 || free_slots == 0 {
            return no("busy");
        }
        let idle = StealAnswer::Idle {
            free_slots,
            engines: load.engines.iter().take(MAX_STEAL_NAMES).cloned().collect(),
            labels: load.labels.iter().take(MAX_STEAL_NAMES).cloned().collect(),
            require_labels: p.require_labels.clone(),
            memory_mb: load.memory_mb,
            max_bundle_bytes: p.max_bundle_bytes,
        };
        if !overflow.needs.is_empty() && !overflow.needs.iter().any(|n| idle.fits(n)) {
            return no("none of the jobs fits its steal policy");
        }
        idle
    }
}

/// Queued jobs an idle peer may take, newest last; bounded.
#[derive(Debug, Default)]
pub struct StealList(std::sync::Mutex<std::collections::VecDeque<Listed>>);

/// Most jobs listed at once (beyond, a queued job is simply not stealable).
pub const MAX_LISTED: usize = 65_536;

/// A queued job listed for stealing.
#[derive(Debug)]
pub struct Listed {
    /// Its job id.
    pub job_id: String,
    /// The pool's claim on it (through its cancel token).
    pub token: crate::runtime::CancelToken,
    /// Its manifest.
    pub manifest: crate::manifest::Manifest,
    /// Its module.
    pub module: Arc<[u8]>,
    /// Its input.
    pub input: Vec<u8>,
    /// What it needs from a thief.
    pub need: Need,
    /// Whose job it is.
    pub origin: Origin,
}

/// Whose queued job it is.
#[derive(Debug)]
pub enum Origin {
    /// Submitted to this node's API: the service follows it.
    Own,
    /// Given to this node by a requester that accepts hand-offs: the executor
    /// task answering that requester waits on `deliver`.
    Peer {
        /// The requester.
        requester: PeerId,
        /// The attempt the requester asked to be signed.
        attempt: u32,
        /// The executor the requester took it over from.
        taken_over_from: Option<String>,
        /// Where the thief's answer goes.
        deliver: tokio::sync::oneshot::Sender<Handed>,
    },
}

/// What became of a job of another requester that a thief took.
#[derive(Debug)]
pub enum Handed {
    /// The thief ran it: its receipt, outputs, and this node's hand-off.
    Done {
        /// The thief's receipt JSON.
        receipt: String,
        /// stdout.
        stdout: Vec<u8>,
        /// stderr.
        stderr: Vec<u8>,
        /// The hand-off JSON this node signed.
        handoff: String,
    },
    /// The thief did not run it: the job comes back to run here, in the place
    /// in the queue it kept.
    Back {
        /// Its module.
        module: Arc<[u8]>,
        /// Its input.
        input: Vec<u8>,
        /// Its place in the queue.
        place: crate::runtime::pool::Reserved,
    },
}

impl StealList {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Listed>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a job just queued (not when the list is full or its needs do not
    /// fit an announcement).
    pub fn push(&self, job: Listed) -> Result<(), Box<Listed>> {
        let mut list = self.lock();
        if list.len() >= MAX_LISTED || !job.need.is_sane() {
            return Err(Box::new(job));
        }
        list.push_back(job);
        Ok(())
    }

    /// Forgets a listed job (a worker began it, or it ended).
    pub fn remove(&self, job_id: &str) {
        let mut list = self.lock();
        if let Some(i) = list.iter().position(|s| s.job_id == job_id) {
            list.remove(i);
        }
    }

    /// Jobs listed now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The announcement for what is listed (distinct needs, newest first, at
    /// most [`MAX_NEEDS`]) and one listed manifest; `None` when nothing is.
    pub fn overflow(&self) -> Option<(Overflow, crate::manifest::Manifest)> {
        let list = self.lock();
        let first = list.front()?.manifest.clone();
        let mut needs: Vec<Need> = Vec::new();
        for s in list.iter().rev() {
            if needs.len() >= MAX_NEEDS {
                break;
            }
            if !needs.contains(&s.need) {
                needs.push(s.need.clone());
            }
        }
        let queued = u32::try_from(list.len()).unwrap_or(u32::MAX);
        Some((Overflow { queued, needs }, first))
    }

    /// Takes the newest listed job that `answer` fits and that `claim` wins
    /// (the pool's compare-and-swap: a job a worker began is dropped from the
    /// list instead); `None` when there is none.
    pub fn take<P>(
        &self,
        thief: PeerId,
        answer: &StealAnswer,
        claim: impl Fn(&crate::runtime::CancelToken) -> Option<P>,
    ) -> Option<(Listed, P)> {
        let mut list = self.lock();
        // Never to the job's own requester, nor to the peer it was taken over
        // from: neither could accept the receipt (and the first would run its
        // own job through a stranger).
        let fits = |s: &Listed| {
            answer.fits(&s.need)
                && !s.token.is_cancelled()
                && match &s.origin {
                    Origin::Own => true,
                    Origin::Peer {
                        requester,
                        taken_over_from,
                        ..
                    } => {
                        *requester != thief
                            && taken_over_from.as_deref() != Some(thief.to_string().as_str())
                    }
                }
        };
        while let Some(i) = list.iter().rposition(fits) {
            let s = list.remove(i)?;
            if let Some(place) = claim(&s.token) {
                return Some((s, place));
            }
        }
        None
    }
}

/// The answer to one overflow announcement sent.
pub type StealReply = tokio::sync::oneshot::Sender<Result<StealAnswer, String>>;

/// The event loop's part of swarm mode: the gate, the buckets, the asks in flight.
#[derive(Debug)]
pub struct StealDesk {
    /// Policy, stolen jobs running, counters.
    pub gate: Arc<StealGate>,
    /// Inbound announcements per peer.
    pub buckets: StealBuckets,
    /// Announcements sent, waiting for their answer (at most [`MAX_STEAL_PEERS`]).
    pub pending: HashMap<libp2p::request_response::OutboundRequestId, StealReply>,
}

impl StealDesk {
    /// A desk enforcing `gate`.
    pub fn new(gate: Arc<StealGate>) -> Self {
        Self {
            gate,
            buckets: StealBuckets::default(),
            pending: HashMap::new(),
        }
    }
}

/// The per-peer token buckets of inbound announcements.
#[derive(Debug, Default)]
pub struct StealBuckets(HashMap<PeerId, (f64, Instant)>);

impl StealBuckets {
    /// Whether one more announcement from `peer` is admitted now.
    pub fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.0.len() >= MAX_STEAL_PEERS && !self.0.contains_key(&peer) {
            // Forget buckets that have refilled (they hold no state worth keeping).
            self.0.retain(|_, (_, at)| {
                now.duration_since(*at).as_secs_f64() * OVERFLOW_RATE < OVERFLOW_BURST
            });
            if self.0.len() >= MAX_STEAL_PEERS {
                return false;
            }
        }
        let (tokens, at) = self.0.entry(peer).or_insert((OVERFLOW_BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * OVERFLOW_RATE).min(OVERFLOW_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_load() -> Load {
        Load {
            running: 0,
            queued: 0,
            slots: 4,
            queue_cap: 8,
            cores: 2,
            memory_mb: 4096,
            engines: vec!["wasm3".into(), "wasmtime".into()],
            labels: vec!["gpu".into()],
            profile: "desktop".into(),
            accepting: true,
        }
    }

    fn gate(enabled: bool) -> Arc<StealGate> {
        Arc::new(StealGate::new(StealPolicy {
            enabled,
            ..StealPolicy::default()
        }))
    }

    fn overflow() -> Overflow {
        Overflow {
            queued: 20,
            needs: vec![Need::default()],
        }
    }

    #[test]
    fn only_an_opted_in_idle_node_answers_idle() {
        let load = idle_load();
        assert!(matches!(
            gate(false).answer(&overflow(), Some(&load)),
            StealAnswer::NotStealing { .. }
        ));
        let StealAnswer::Idle { free_slots, .. } = gate(true).answer(&overflow(), Some(&load))
        else {
            panic!("an opted-in idle node answers idle");
        };
        // Four free workers, but at most `max_concurrent` (2) stolen jobs at once.
        assert_eq!(free_slots, 2);
        let busy = Load {
            queued: 1,
            ..idle_load()
        };
        assert!(matches!(
            gate(true).answer(&overflow(), Some(&busy)),
            StealAnswer::NotStealing { .. }
        ));
        let full = Load {
            running: 4,
            ..idle_load()
        };
        assert!(matches!(
            gate(true).answer(&overflow(), Some(&full)),
            StealAnswer::NotStealing { .. }
        ));
        assert!(matches!(
            gate(true).answer(&overflow(), None),
            StealAnswer::NotStealing { .. }
        ));
    }

    #[test]
    fn the_gate_enforces_max_concurrent_labels_and_size() {
        let g = Arc::new(StealGate::new(StealPolicy {
            enabled: true,
            max_concurrent: 2,
            require_labels: vec!["gpu".into()],
            max_bundle_bytes: 1000,
            ..StealPolicy::default()
        }));
        let gpu = Need {
            labels: vec!["gpu".into()],
            bundle_bytes: 10,
            ..Need::default()
        };
        assert!(g.admit(&Need::default()).is_err(), "label required");
        assert!(
            g.admit(&Need {
                bundle_bytes: 1001,
                ..gpu.clone()
            })
            .is_err(),
            "bundle over the cap"
        );
        let a = g.admit(&gpu).expect("first");
        let _b = g.admit(&gpu).expect("second");
        assert!(
            g.admit(&gpu).is_err(),
            "a third at once is over max_concurrent"
        );
        drop(a);
        assert!(g.admit(&gpu).is_ok(), "a slot given back is taken again");
        assert!(gate(false).admit(&gpu).is_err(), "not opted in");
        assert_eq!(g.stats.refused.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn idle_slots_are_promised_until_their_bundles_come_or_the_hold_ends() {
        let g = gate(true);
        let load = idle_load();
        let (busy, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let slots = |a: &StealAnswer| match a {
            StealAnswer::Idle { free_slots, .. } => *free_slots,
            StealAnswer::NotStealing { .. } => 0,
        };
        // Four free workers, two stolen at most: both promised to the first asker.
        assert_eq!(slots(&g.answer_to(busy, &overflow(), Some(&load), t0)), 2);
        assert_eq!(g.promised(t0), 2);
        // Asked again before the bundles come (the load it reports has not
        // changed): nothing is offered twice, to it or to another.
        let again = g.answer_to(busy, &overflow(), Some(&load), t0);
        assert!(
            matches!(again, StealAnswer::NotStealing { .. }),
            "{again:?}"
        );
        assert_eq!(slots(&g.answer_to(other, &overflow(), Some(&load), t0)), 0);
        // A bundle from the asker uses one of its promised slots, not another's.
        g.release(&other);
        let _a = g.admit(&Need::default()).expect("admitted");
        assert_eq!(g.promised(t0), 2, "other was promised nothing");
        drop(_a);
        g.release(&busy);
        let a = g.admit(&Need::default()).expect("admitted");
        assert_eq!(g.promised(t0), 1);
        // One running, one promised: nothing left to offer.
        assert_eq!(slots(&g.answer_to(other, &overflow(), Some(&load), t0)), 0);
        drop(a);
        // A promise not used is let go after the hold.
        let later = t0 + PROMISE_HOLD + Duration::from_millis(1);
        assert_eq!(g.promised(later), 0);
        assert_eq!(
            slots(&g.answer_to(other, &overflow(), Some(&load), later)),
            2
        );
        // Fewer jobs announced than slots free: only those are promised.
        let g = gate(true);
        let one = Overflow {
            queued: 1,
            ..overflow()
        };
        assert_eq!(slots(&g.answer_to(busy, &one, Some(&load), t0)), 1);
        assert_eq!(slots(&g.answer_to(other, &overflow(), Some(&load), t0)), 1);
        assert_eq!(g.promised(t0), 2, "never more than max_concurrent promised");
    }

    #[test]
    fn a_peer_that_lets_its_promise_run_out_is_promised_nothing_for_a_while() {
        let g = gate(true);
        let load = idle_load();
        let (idler, honest) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let idle = |a: &StealAnswer| matches!(a, StealAnswer::Idle { .. });
        // It announces, is promised both slots, and never sends a bundle.
        assert!(idle(&g.answer_to(idler, &overflow(), Some(&load), t0)));
        let t1 = t0 + PROMISE_HOLD + Duration::from_millis(1);
        // Asked again after the hold: still told the slots are free, but they
        // are no longer held for it, so another busy node is offered them too.
        assert!(idle(&g.answer_to(idler, &overflow(), Some(&load), t1)));
        assert_eq!(
            g.promised(t1),
            0,
            "no promise for a peer that let one run out"
        );
        assert!(idle(&g.answer_to(honest, &overflow(), Some(&load), t1)));
        assert_eq!(g.promised(t1), 2);
        // After the cool-down it is promised slots again.
        let t2 = t1 + UNKEPT_COOLDOWN + PROMISE_HOLD + Duration::from_millis(2);
        assert!(idle(&g.answer_to(idler, &overflow(), Some(&load), t2)));
        assert_eq!(g.promised(t2), 2);
        // A refused stolen bundle lets go of its slot.
        g.release(&idler);
        assert_eq!(g.promised(t2), 1);
        // The peers remembered are bounded.
        let g = gate(true);
        for i in 0..(MAX_UNKEPT + 10) {
            let at = t0 + Duration::from_millis(i as u64);
            g.answer_to(PeerId::random(), &overflow(), Some(&load), at);
            g.promised(at + PROMISE_HOLD + Duration::from_millis(1));
        }
        assert!(g.promises().unkept.len() <= MAX_UNKEPT);
    }

    #[test]
    fn answers_say_which_jobs_fit() {
        let idle = gate(true).answer(&overflow(), Some(&idle_load()));
        assert!(idle.fits(&Need::default()));
        assert!(idle.fits(&Need {
            runtime: Some("wasmtime".into()),
            labels: vec!["gpu".into()],
            ..Need::default()
        }));
        assert!(!idle.fits(&Need {
            runtime: Some("other".into()),
            ..Need::default()
        }));
        assert!(!idle.fits(&Need {
            labels: vec!["arm".into()],
            ..Need::default()
        }));
        assert!(!idle.fits(&Need {
            memory_bytes: 8 << 30,
            ..Need::default()
        }));
        // An announcement whose every job needs what it lacks gets a no.
        let picky = Overflow {
            queued: 3,
            needs: vec![Need {
                labels: vec!["arm".into()],
                ..Need::default()
            }],
        };
        assert!(matches!(
            gate(true).answer(&picky, Some(&idle_load())),
            StealAnswer::NotStealing { .. }
        ));
    }

    #[test]
    fn announcements_are_bounded_and_rate_limited() {
        let many = Overflow {
            queued: 1,
            needs: vec![Need::default(); MAX_NEEDS + 1],
        };
        assert!(!many.is_sane());
        let long = Overflow {
            queued: 1,
            needs: vec![Need {
                runtime: Some("x".repeat(MAX_STEAL_NAME_BYTES + 1)),
                ..Need::default()
            }],
        };
        assert!(!long.is_sane());
        // The largest sane announcement fits in one message.
        let largest = Overflow {
            queued: u32::MAX,
            needs: vec![
                Need {
                    runtime: Some("r".repeat(MAX_STEAL_NAME_BYTES)),
                    labels: vec!["l".repeat(MAX_STEAL_NAME_BYTES); MAX_STEAL_NAMES],
                    memory_bytes: u64::MAX,
                    bundle_bytes: u64::MAX,
                };
                MAX_NEEDS
            ],
        };
        assert!(largest.is_sane());
        use futures::executor::block_on;
        use libp2p::request_response::Codec as _;
        let mut codec =
            libp2p::request_response::cbor::codec::Codec::<Overflow, StealAnswer>::default()
                .set_request_size_maximum(MAX_STEAL_BYTES)
                .set_response_size_maximum(MAX_STEAL_BYTES);
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_request(&STEAL_PROTOCOL, &mut out, largest.clone())).expect("encode");
        let bytes = out.into_inner();
        assert!(
            bytes.len() as u64 <= MAX_STEAL_BYTES,
            "{} bytes",
            bytes.len()
        );
        let back =
            block_on(codec.read_request(&STEAL_PROTOCOL, &mut futures::io::Cursor::new(bytes)))
                .expect("decodes under the cap");
        assert_eq!(back, largest);
        // One byte more than the cap does not decode.
        let mut huge = largest;
        huge.needs[0].labels[0] = "l".repeat(MAX_STEAL_BYTES as usize);
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_request(&STEAL_PROTOCOL, &mut out, huge)).expect("encode");
        assert!(
            block_on(codec.read_request(
                &STEAL_PROTOCOL,
                &mut futures::io::Cursor::new(out.into_inner())
            ))
            .is_err()
        );
        let mut b = StealBuckets::default();
        let (p, now) = (PeerId::random(), Instant::now());
        let admitted = (0..100).filter(|_| b.admit(p, now)).count();
        assert_eq!(admitted, OVERFLOW_BURST as usize);
        assert!(b.admit(p, now + Duration::from_secs(1)));
    }
}
