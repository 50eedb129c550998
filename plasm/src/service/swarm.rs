//! Swarm mode, the busy side (decision 0053): queued jobs that idle peers take
//! with their consent.
//!
//! Listed for stealing: jobs submitted here with placement `any` (by the service)
//! and jobs of requesters that accept hand-offs (by the executor), while they wait
//! in the pool's queue. When the queue has waited a second, [`Service::give_loop`]
//! announces the overflow to a few peers (`/plasm/steal/1.0.0`), and for each that
//! answers idle (it opted in, nothing waits there, it can run these jobs) takes up
//! to as many jobs as it offered and this node's placement allows there (breaker
//! closed, per-peer share), newest first, with the pool's compare-and-swap claim,
//! which a worker starting the job would have won instead: a started job is never
//! moved. A stolen job keeps its place in the queue until its thief ran it.
//!
//! Each stolen job goes through the job protocol to that thief alone, with
//! `placement.stolen_from` in its bundle; the thief's executor checks its own
//! policy again and signs `stolen_from` into the receipt, which this node checks.
//! This node's own job is then finished like any job out with a peer; another
//! requester's is answered with the thief's receipt and this node's signed
//! hand-off. A thief that declines or fails gives the job back: it runs here, in
//! the place it kept (never refused for room), and is not listed again.
//!
//! Bounded: one announcement round per tick, to at most [`ASK_PEERS`] peers, each
//! answer within the consent timeout; the list by [`crate::net::steal::MAX_LISTED`].

use super::{Accepted, Placement, Service, Stop};
use crate::job;
use crate::manifest::Manifest;
use crate::net::remote::{self, RemoteOptions};
use crate::net::steal::{Handed, Listed, Need, Origin, StealAnswer};
use crate::receipt::handoff::Handoff;
use crate::runtime::CancelToken;
use crate::runtime::pool::Reserved;
use libp2p::PeerId;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Peers asked in one announcement round.
pub const ASK_PEERS: usize = 8;
/// How often the queue is looked at.
const TICK: Duration = Duration::from_millis(500);
/// How long the queue must have waited before it is announced.
const PATIENCE: Duration = Duration::from_secs(1);
/// How long a stolen job may take at its thief: the beats find a dead thief, so
/// this is only the backstop (the remote default, 120 s, would take a long job
/// back while it still runs).
pub const STOLEN_JOB_TIMEOUT: Duration = Duration::from_secs(3600);
/// Executors found through the DHT kept for the announcements (oldest dropped).
const MAX_FOUND: usize = 64;
/// How long executors found through the DHT are asked before a new lookup.
const LOOKUP_EVERY: Duration = Duration::from_secs(30);

impl Service {
    /// Lists a job just queued on the pool, in swarm mode (its input moves to
    /// the list: the pool's request holds its own copy).
    pub(super) fn list_stealable(&self, job: &mut Accepted, token: &CancelToken) {
        let Some(client) = &self.client else { return };
        let gate = client.steal_gate();
        if !gate.policy.give || !gate.giving.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let listed = Listed {
            job_id: job.manifest.job_id().to_owned(),
            token: token.clone(),
            manifest: job.manifest.clone(),
            module: job.module.clone(),
            input: std::mem::take(&mut job.input),
            need: Need::of(&job.manifest),
            origin: Origin::Own,
        };
        if let Err(back) = gate.list.push(listed) {
            job.input = back.input;
        }
    }

    /// Forgets a listed job (a worker began it, or it ended).
    pub(super) fn unlist_stealable(&self, job_id: &str) {
        if let Some(client) = &self.client {
            client.steal_gate().list.remove(job_id);
        }
    }

    /// Starts swarm mode's busy side, when the node is in swarm mode and executes.
    pub fn start_swarm(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.sched.config().mode != crate::sched::Mode::Swarm
            || self.pool.is_none()
            || self.client.is_none()
        {
            return None;
        }
        if let Some(client) = &self.client {
            client
                .steal_gate()
                .giving
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Some(tokio::spawn(Self::give_loop(Arc::downgrade(self))))
    }

    /// Announces a queue that has waited, and hands jobs to the peers that answer idle.
    async fn give_loop(service: std::sync::Weak<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut waiting_since: Option<Instant> = None;
        let found: Arc<std::sync::Mutex<Vec<PeerId>>> = Arc::default();
        let mut lookup: Option<tokio::task::JoinHandle<()>> = None;
        let mut looked_at: Option<Instant> = None;
        let mut turn = 0usize;
        loop {
            tick.tick().await;
            let Some(svc) = service.upgrade() else {
                return;
            };
            if svc.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let (Some(client), Some(pool)) = (svc.client.clone(), svc.pool.clone()) else {
                return;
            };
            let gate = client.steal_gate();
            let Some((overflow, first)) = gate.list.overflow() else {
                waiting_since = None;
                continue;
            };
            if pool.stats().queued == 0 {
                waiting_since = None;
                continue;
            }
            // Ticks land a little either side of their marks: without the slack the
            // check at the 1 s mark saw 999 ms about half the time and the first
            // round waited for the next tick, by when a queue of short jobs had
            // often gone.
            let waited = waiting_since.get_or_insert_with(Instant::now).elapsed();
            if waited + TICK / 10 < PATIENCE {
                continue;
            }
            // Whom to ask: executors found through the DHT for these jobs (looked
            // up again now and then), then the peers already connected.
            // Executors found through the DHT for these jobs, looked up in the
            // background (a lookup may take seconds; the queue does not wait). One
            // settles soon after its first answers, so it may miss some: the found
            // ones accumulate (bounded), and while fewer than a round's worth are
            // known the lookup runs more often.
            let known = found.lock().map_or(0, |f| f.len());
            let every = if known < ASK_PEERS {
                LOOKUP_EVERY / 6
            } else {
                LOOKUP_EVERY
            };
            if lookup
                .as_ref()
                .is_none_or(|l: &tokio::task::JoinHandle<()>| l.is_finished())
                && looked_at.is_none_or(|at: Instant| at.elapsed() > every)
            {
                looked_at = Some(Instant::now());
                let (client, found) = (client.clone(), found.clone());
                lookup = Some(tokio::spawn(async move {
                    let looked =
                        crate::net::remote::find_executors(&client, &first, ASK_PEERS).await;
                    if let Ok(mut f) = found.lock() {
                        for p in looked.unwrap_or_default() {
                            if !f.contains(&p) {
                                if f.len() >= MAX_FOUND {
                                    f.remove(0);
                                }
                                f.push(p);
                            }
                        }
                    }
                }));
            }
            let mut peers = found.lock().map(|f| f.clone()).unwrap_or_default();
            if let Ok(info) = client.info().await {
                for p in info.connected {
                    if !peers.contains(&p) {
                        peers.push(p);
                    }
                }
            }
            let me = svc.identity.peer_id();
            peers.retain(|p| *p != me);
            if peers.is_empty() {
                continue;
            }
            // A different window of peers each round, when there are many.
            turn = turn.wrapping_add(1);
            let start = (turn * ASK_PEERS) % peers.len();
            peers.rotate_left(start);
            peers.truncate(ASK_PEERS);
            let timeout = gate.policy.consent_timeout;
            let asks = peers.iter().map(|p| {
                let (client, overflow, p) = (client.clone(), overflow.clone(), *p);
                async move {
                    let answer = tokio::time::timeout(timeout, client.ask_steal(p, overflow)).await;
                    (p, answer)
                }
            });
            let answers = futures::future::join_all(asks).await;
            for (peer, answer) in answers {
                let Ok(Ok(answer @ StealAnswer::Idle { free_slots, .. })) = answer else {
                    continue;
                };
                // No more than this node's own placement allows there (its
                // breaker closed, its share of the peer not used up).
                let room = (free_slots as usize).min(svc.sched.room(peer));
                for _ in 0..room {
                    let Some((job, place)) = gate.list.take(peer, &answer, |t| pool.steal(t))
                    else {
                        break;
                    };
                    svc.give(job, place, peer);
                }
            }
        }
    }

    /// Sends a job taken from the queue to its thief: this node's own job is
    /// followed like any job out with a peer; another requester's goes back to
    /// the executor task answering that requester, with a hand-off.
    fn give(self: &Arc<Self>, s: Listed, place: Reserved, thief: PeerId) {
        tracing::info!(job_id = s.job_id, %thief, "queued job stolen by an idle peer (swarm)");
        match s.origin {
            Origin::Own => self.give_own(s, place, thief),
            Origin::Peer { .. } => {
                tokio::spawn(self.clone().give_peers(s, place, thief));
            }
        }
    }

    /// Counts a stolen job's end: run by its thief, or given back.
    pub(super) fn count_given(&self, ran: bool) {
        if let Some(client) = &self.client {
            let stats = &client.steal_gate().stats;
            let c = if ran { &stats.given } else { &stats.given_back };
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// This node's own job, stolen: it is followed like a job out with a peer.
    fn give_own(self: &Arc<Self>, s: Listed, place: Reserved, thief: PeerId) {
        let id = s.job_id.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        if let Ok(mut c) = self.cancels.lock() {
            // Under the cancels' lock: a cancel that came before this sees the
            // token (checked here), one after finds the peer stop.
            c.insert(id.clone(), Stop::Peer(Some(stop)));
            if s.token.is_cancelled()
                && let Some(Stop::Peer(tx)) = c.get_mut(&id)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
        self.emit(
            &id,
            "stolen",
            None,
            Some(format!(
                "stolen by {thief} (swarm mode): it was idle and opted in"
            )),
        );
        let job = Accepted {
            manifest: s.manifest,
            module: s.module,
            input: s.input,
            request: None,
            placement: Placement::Any,
            slot: None,
        };
        tokio::spawn(self.clone().run_on_peer(job, stopped, Some((thief, place))));
    }

    /// Another requester's job, stolen: run by the thief under the requester's
    /// attempt, and answered with the thief's receipt and this node's signed
    /// hand-off; if the thief does not run it, it comes back to run here.
    async fn give_peers(self: Arc<Self>, s: Listed, place: Reserved, thief: PeerId) {
        let Origin::Peer {
            requester,
            attempt,
            taken_over_from,
            mut deliver,
        } = s.origin
        else {
            return;
        };
        let Some(client) = self.client.clone() else {
            let _ = deliver.send(Handed::Back {
                module: s.module,
                input: s.input,
                place,
            });
            return;
        };
        let options = RemoteOptions {
            sched: Some(self.sched.clone()),
            peers: vec![thief],
            stolen_from: Some(self.identity.peer_id()),
            attempt_as: Some((attempt, taken_over_from)),
            job_timeout: STOLEN_JOB_TIMEOUT,
            ..RemoteOptions::default()
        };
        let run = remote::run_remote(
            &client,
            &s.manifest,
            s.module.clone(),
            s.input.clone(),
            &options,
        );
        // The requester gone (its executor task dropped): nobody to answer.
        let answer = tokio::select! {
            r = run => r,
            () = deliver.closed() => {
                self.count_given(false);
                return;
            }
        };
        let handed = match answer.map_err(|e| e.to_string()).and_then(|out| {
            let h = Handoff::sign(
                s.manifest.job_id(),
                &out.executor.to_string(),
                &requester.to_string(),
                &self.identity,
            )
            .map_err(|e| e.to_string())?;
            Ok((out, h))
        }) {
            Ok((out, h)) => {
                self.count_given(true);
                drop(place);
                Handed::Done {
                    receipt: serde_json::to_string(out.receipt.as_map()).unwrap_or_default(),
                    stdout: out.stdout,
                    stderr: out.stderr,
                    handoff: h.to_json(),
                }
            }
            Err(e) => {
                tracing::info!(job_id = s.job_id, %thief, error = %e, "the thief did not run a stolen job: it runs here");
                self.count_given(false);
                Handed::Back {
                    module: s.module,
                    input: s.input,
                    place,
                }
            }
        };
        let _ = deliver.send(handed);
    }

    /// A stolen job its thief did not run goes back to the local queue (never
    /// listed again); if the queue is full now, the job fails with the reason.
    pub(super) async fn requeue(
        self: &Arc<Self>,
        manifest: Manifest,
        (module, input, place): (Arc<[u8]>, Vec<u8>, Reserved),
        why: &str,
    ) {
        self.count_given(false);
        let id = manifest.job_id().to_owned();
        let Some(pool) = self.pool.clone() else {
            return self.fail(&id, why).await;
        };
        let request = match job::exec_request(&manifest, module.clone(), input) {
            Ok(r) => r,
            Err(e) => return self.fail(&id, &format!("{why}; {e}")).await,
        };
        let token = request.cancel.clone();
        // A cancel answered while the job was out (its stop taken) stands.
        let cancelled = self.cancels.lock().is_ok_and(|mut c| {
            let gone = matches!(c.get(&id), Some(Stop::Peer(None)));
            if !gone {
                c.insert(id.clone(), Stop::Local(token.clone()));
            }
            gone
        });
        if cancelled {
            if let Ok(mut c) = self.cancels.lock() {
                c.remove(&id);
            }
            return self
                .fail(&id, "cancelled: abandoned while out with a peer")
                .await;
        }
        match job::Submitted::start_reserved(&pool, request, place) {
            Ok(submitted) => {
                tracing::info!(job_id = id, %why, "stolen job back in the local queue");
                let me = self.identity.peer_id().to_string();
                self.emit(
                    &id,
                    "queued",
                    Some(super::Route::local(&me)),
                    Some(format!("back in the local queue: {why}")),
                );
                let job = Accepted {
                    manifest,
                    module,
                    input: Vec::new(),
                    request: None,
                    placement: Placement::Local,
                    slot: None,
                };
                tokio::spawn(self.clone().run_local(job, pool, submitted, token, me));
            }
            Err(e) => {
                if let Ok(mut c) = self.cancels.lock() {
                    c.remove(&id);
                }
                self.fail(&id, &format!("{why}; {e}")).await;
            }
        }
    }
}
