//! The requester side: find executors, rank them by score (load, round trip,
//! local reliability), offer to the best, send the bytes, watch the executor
//! with beats, verify the receipt, and place the job again when it fails.

use super::protocol::{BundlePlacement, DeclineReason, FailureReason, JobRequest, JobResponse};
use super::{Client, NetError, NetEvent, Path, PathKind};
use crate::job::sha256_hex;
use crate::manifest::Manifest;
use crate::receipt::Receipt;
use crate::sched::reputation::Evidence;
use crate::sched::{Candidate, Outcome, SchedConfig, Scheduler, View};
use futures::StreamExt;
use libp2p::{PeerId, kad};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Dials of one candidate before it counts as unreachable, and the pause between them.
const CONNECT_TRIES: u32 = 3;
const CONNECT_PAUSE: Duration = Duration::from_millis(300);

/// How long one discovery round may take: a query that waits on a dead peer in the
/// DHT does not hold the run for Kademlia's own timeout, round after round.
const ROUND_LIMIT: Duration = Duration::from_secs(2);

/// Prefix of capability provider keys: `/plasm/cap/1/<kind>=<value>`.
pub const CAPABILITY_PREFIX: &str = "/plasm/cap/1/";

/// The DHT key under which executors with a capability provide.
pub fn capability_key(kind: &str, value: &str) -> kad::RecordKey {
    kad::RecordKey::new(&format!("{CAPABILITY_PREFIX}{kind}={value}"))
}

/// How a remote run looks for and treats executors.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Use these executors instead of a DHT lookup.
    pub peers: Vec<PeerId>,
    /// Time for one offer round trip.
    pub offer_timeout: Duration,
    /// Time for a bundle round trip (execution included).
    pub job_timeout: Duration,
    /// Executors looked up and ranked.
    pub max_candidates: usize,
    /// How long to wait for the first LAN peer (mDNS) before looking up (zero: do not wait).
    pub lan_wait: Duration,
    /// How long the bytes wait for a relayed connection to be hole-punched before
    /// they go through the relay anyway.
    pub punch_wait: Duration,
    /// Where the run is, for a progress display (a watch channel keeps only the
    /// latest stage: a slow reader never holds the run up).
    pub progress: Option<Arc<tokio::sync::watch::Sender<RemoteStage>>>,
    /// Placement state shared with the node's other jobs (breakers,
    /// reputation, jobs per executor); `None`: a fresh one for this run.
    pub sched: Option<Arc<Scheduler>>,
    /// Where each placement round goes (`--explain`).
    pub explain: Option<ExplainSink>,
    /// Swarm mode: this node stole the job from its own queue for the pinned
    /// thief (decision 0053). The bundle says so, the receipt must sign it, and
    /// a busy thief is not waited for: the job goes back to the local queue.
    pub stolen_from: Option<PeerId>,
    /// The attempt (and the executor taken over from) to sign instead of this
    /// run's own: a busy node running another requester's stolen job signs
    /// that requester's.
    pub attempt_as: Option<(u32, Option<String>)>,
}

/// How far a remote run has got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RemoteStage {
    /// Looking up executors (LAN, DHT).
    #[default]
    Looking,
    /// Ranked this many executors that may take the job; offering to the best.
    Offering(usize),
    /// Every executor is full: waiting for room.
    Queued,
    /// The job's bytes went to this executor, which runs it.
    Running(PeerId),
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            offer_timeout: Duration::from_secs(10),
            job_timeout: Duration::from_secs(120),
            max_candidates: 8,
            lan_wait: Duration::ZERO,
            punch_wait: Duration::from_secs(2),
            progress: None,
            sched: None,
            explain: None,
            stolen_from: None,
            attempt_as: None,
        }
    }
}

/// One executor tried, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The executor.
    pub peer: PeerId,
    /// Offer round trip, when it answered.
    pub rtt: Option<Duration>,
    /// `accepted`, `succeeded`, or why it failed.
    pub outcome: String,
}

/// A job run by another peer, its receipt verified.
#[derive(Debug, Clone)]
pub struct RemoteOutput {
    /// The executor that ran it.
    pub executor: PeerId,
    /// The verified receipt.
    pub receipt: Receipt,
    /// stdout.
    pub stdout: Vec<u8>,
    /// stderr.
    pub stderr: Vec<u8>,
    /// Every executor tried, in order.
    pub attempts: Vec<Attempt>,
    /// The way the job's bytes went to the executor and back.
    pub path: Path,
}

/// Why a remote run failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// No executor was found for the job's requirements.
    #[error("no executors found for {0}")]
    NoExecutors(String),
    /// Every candidate declined, failed, or returned a receipt that did not verify.
    #[error("no executor completed the job: {}", summary(.0))]
    AllFailed(Vec<Attempt>),
    /// The network layer failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

fn summary(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.peer, a.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Finds up to `want` executors for `manifest` (all the DHT knows when the query ends
/// first), looking up the first required label, else the runtime.
pub async fn find_executors(
    client: &Client,
    manifest: &Manifest,
    want: usize,
) -> Result<Vec<PeerId>, RemoteError> {
    use crate::runtime::engines::ANY;
    // A job that names no engine looks for `any`, and for `wasm3`, which nodes
    // older than the engine choice advertise alone.
    let keys = match (
        manifest.requirements.labels.first(),
        manifest.requirements.runtime.as_deref(),
    ) {
        (Some(label), _) => vec![capability_key("label", label)],
        (None, None | Some(ANY)) => vec![
            capability_key("runtime", ANY),
            capability_key("runtime", "wasm3"),
        ],
        (None, Some(rt)) => vec![capability_key("runtime", rt)],
    };
    // A node that has just started may not have joined the DHT yet: an empty answer
    // is retried a few times (pauses of 3.5 s in all) before it becomes an error. The
    // keys are looked up at once; when one lookup has found executors, the others get
    // `PROVIDER_SETTLE` more and no longer (a key nobody provides would otherwise hold
    // the run until Kademlia's query timeout), and a round ends after `ROUND_LIMIT`
    // whatever it waits on (a dead peer still in the routing table).
    let mut found = Vec::new();
    for pause_ms in [500u64, 1000, 2000, 0] {
        let mut lookups: futures::stream::FuturesUnordered<_> = keys
            .iter()
            .map(|key| find_once(client, key, want))
            .collect();
        let mut deadline = tokio::time::Instant::now() + ROUND_LIMIT;
        while let Ok(Some(peers)) = tokio::time::timeout_at(deadline, lookups.next()).await {
            for peer in peers {
                if found.len() < want && !found.contains(&peer) {
                    found.push(peer);
                }
            }
            if found.len() >= want {
                break;
            }
            if !found.is_empty() {
                deadline = deadline.min(tokio::time::Instant::now() + super::PROVIDER_SETTLE);
            }
        }
        if !found.is_empty() || pause_ms == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
    }
    if found.is_empty() {
        return Err(RemoteError::NoExecutors(
            keys.iter()
                .map(|k| String::from_utf8_lossy(k.as_ref()).into_owned())
                .collect::<Vec<_>>()
                .join(" or "),
        ));
    }
    Ok(found)
}

/// One round of discovery: DHT providers, then LAN peers.
async fn find_once(client: &Client, key: &kad::RecordKey, want: usize) -> Vec<PeerId> {
    let me = client.peer_id();
    // Providers from the DHT first, those on the LAN ahead; then other LAN peers
    // (mDNS finds them with no bootstrap at all, but answers come from anyone, so
    // they only fill the slots the DHT leaves).
    let lan: Vec<PeerId> = client.lan_peers().await.unwrap_or_default();
    let mut from_dht: Vec<PeerId> = client
        .get_providers(key.clone(), want)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|p| *p != me)
        .collect();
    from_dht.sort_by_key(|p| (!lan.contains(p), *p));
    let mut found = from_dht;
    for p in lan {
        if !found.contains(&p) {
            found.push(p);
        }
    }
    found.truncate(want.max(1));
    found
}

/// The kind of a response, never its contents (a hostile executor chooses those).
fn response_kind(r: &JobResponse) -> &'static str {
    match r {
        JobResponse::Accept { .. } => "accept",
        JobResponse::Decline { .. } => "decline",
        JobResponse::Result { .. } => "result",
        JobResponse::Failure { .. } => "failure",
    }
}

/// Checks a receipt returned by `peer` for `manifest` and `stdout`.
pub fn check_receipt(
    receipt: &Receipt,
    peer: PeerId,
    manifest: &Manifest,
    promised: Option<&str>,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<(), String> {
    let v = receipt
        .verify()
        .map_err(|e| format!("receipt invalid ({}): {e}", e.check()))?;
    // The version the executor's accept promised: no downgrade to version 1, which
    // binds no stderr (decision 0048).
    let version = receipt.str_field("version").unwrap_or_default();
    if let Some(p) = promised
        && p != version
    {
        return Err(format!(
            "receipt is {version} but the executor's accept promised {p}"
        ));
    }
    // The promise is not signed, so an executor could leave it out; but only
    // releases before plasm-fuel/4 signed version 1, and their metering is refused
    // below, so a fresh version 1 receipt is refused whatever was promised.
    if receipt.is_v1() {
        return Err(format!(
            "receipt is {version}: executors of this release sign {}",
            crate::receipt::RECEIPT_VERSION
        ));
    }
    // What ran is what was asked: the module, the input, the engine, the fuel limit.
    let digest = |field: &str| receipt.str_field(field).unwrap_or_default().to_owned();
    if digest("module") != format!("sha256:{}", manifest.module.sha256) {
        return Err("receipt module hash is not the manifest's module".into());
    }
    if digest("input") != format!("sha256:{}", manifest.input_sha256()) {
        return Err("receipt input hash is not the manifest's input".into());
    }
    let engine = receipt.as_map()["runtime"]["name"]
        .as_str()
        .unwrap_or_default();
    match manifest.requirements.runtime.as_deref() {
        None | Some("any") => {}
        Some(wanted) if wanted == engine => {}
        Some(wanted) => {
            return Err(format!(
                "receipt says the job ran on {engine} but the manifest requires {wanted}"
            ));
        }
    }
    if receipt.u64_field("fuel_limit") != Some(manifest.limits.fuel) {
        return Err("receipt fuel limit is not the manifest's".into());
    }
    // The answer a job has is the one its metering scheme defines: an executor of
    // another scheme (an older release, before the float profile) may print other
    // bits for the same job, so its receipt could not be audited against ours.
    let metering = receipt.as_map()["runtime"]["metering"]
        .as_str()
        .unwrap_or_default();
    if metering != crate::runtime::instrument::METERING {
        return Err(format!(
            "receipt metering is {metering} but this node runs {} (another release gives other answers)",
            crate::runtime::instrument::METERING
        ));
    }
    if v.peer_id != peer.to_string() {
        return Err(format!(
            "receipt signed by {} but the job ran on {peer}",
            v.peer_id
        ));
    }
    if v.job_id != manifest.job_id() {
        return Err("receipt is for another job".into());
    }
    if receipt.str_field("output") != Some(&format!("sha256:{}", sha256_hex(stdout))) {
        return Err("receipt output hash does not match the bytes received".into());
    }
    // Version 2 binds stderr too; a version 1 receipt (an older executor) cannot.
    if !receipt.is_v1()
        && receipt.str_field("stderr") != Some(&format!("sha256:{}", sha256_hex(stderr)))
    {
        return Err("receipt stderr hash does not match the bytes received".into());
    }
    Ok(())
}

/// The path a receipt's signed placement names (version 2), so that what the CLI, the
/// API and the dashboard print is what the executor signed; `None` for a version 1
/// receipt, which has no placement (the requester's own view is used then).
pub fn signed_path(receipt: &Receipt) -> Option<Path> {
    let p = receipt.as_map().get("placement")?;
    let kind = match p.get("path")?.as_str()? {
        "direct" => PathKind::Direct,
        "hole-punched" => PathKind::HolePunched,
        "relayed" => PathKind::Relayed,
        _ => return None,
    };
    let relay = match p.get("relay").and_then(|r| r.as_str()) {
        Some(r) => Some(r.parse().ok()?),
        None => None,
    };
    Some(Path { kind, relay })
}

/// When the only connection to `peer` goes through a relay, gives DCUtR up to
/// `within` to punch a direct one (the relay's byte and time limits are for
/// when it cannot); returns at once when a direct connection exists or DCUtR gives up.
async fn wait_for_direct(client: &Client, peer: PeerId, within: Duration) {
    let mut events = client.events();
    if within.is_zero() || client.has_direct(peer).await.unwrap_or(true) {
        return;
    }
    let _ = tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(NetEvent::HolePunched(p) | NetEvent::HolePunchFailed(p)) if p == peer => break,
                Ok(NetEvent::PeerDisconnected(p)) if p == peer => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                _ => {}
            }
        }
    })
    .await;
}

/// One placement round, as `--explain` prints it: every candidate with its
/// score or veto, and the one chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Round {
    /// The attempt this round placed (1 for the first executor, 2 after a take-over).
    pub attempt: u32,
    /// Candidates, best first; vetoed ones last.
    pub candidates: Vec<Candidate>,
    /// The executor offered the job first.
    pub chosen: Option<String>,
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "placement, attempt {}:", self.attempt)?;
        for c in &self.candidates {
            let mark = if self.chosen.as_deref() == Some(c.peer.as_str()) {
                "->"
            } else {
                "  "
            };
            match (&c.score, &c.veto) {
                (Some(s), _) => writeln!(
                    f,
                    "{mark} {}  score {:.1} = rtt {:.1} + load {:.1} + queue {:.1} + reliability {:.1}  (rtt {}, {} busy of {} slots, reliability {:.2}, breaker {})",
                    c.peer,
                    s.total,
                    s.rtt,
                    s.load,
                    s.queue,
                    s.reliability,
                    c.rtt_ms
                        .map_or("unknown".to_owned(), |r| format!("{r:.1} ms")),
                    c.busy,
                    c.slots.map_or("?".to_owned(), |n| n.to_string()),
                    c.reliability,
                    c.breaker.as_str(),
                )?,
                (None, veto) => writeln!(
                    f,
                    "   {}  vetoed: {}",
                    c.peer,
                    veto.as_deref().unwrap_or("?")
                )?,
            }
        }
        Ok(())
    }
}

/// Rounds kept for one job's explanation.
const MAX_ROUNDS: usize = 32;

/// Where a job's rounds go (`--explain`, the job's events).
pub type ExplainSink = Arc<std::sync::Mutex<Vec<Round>>>;

/// How long a probe of a candidate's load may take before it is ranked on what is known.
const PROBE_LIMIT: Duration = Duration::from_secs(2);

/// A manifest older than this is not offered again: executors decline manifests
/// older than their replay window (10 minutes), and this leaves a margin.
const FRESH_FOR: Duration = Duration::from_secs(540);

fn manifest_age(manifest: &Manifest) -> Duration {
    let parsed = time::OffsetDateTime::parse(
        &manifest.created_at,
        &time::format_description::well_known::Rfc3339,
    );
    match parsed {
        Ok(t) => {
            let age = time::OffsetDateTime::now_utc() - t;
            Duration::try_from(age).unwrap_or(Duration::ZERO)
        }
        Err(_) => Duration::ZERO,
    }
}

/// Refreshes the advertisement of candidates whose last one is older than a
/// beat interval (one probe each, at once, bounded by [`PROBE_LIMIT`]); a
/// candidate that does not answer is ranked on what is known.
async fn fresh_views(client: &Client, peers: &[PeerId], max_age: Duration) -> Vec<(PeerId, View)> {
    let views = client.views(peers.to_vec()).await.unwrap_or_default();
    let stale: Vec<PeerId> = peers
        .iter()
        .zip(&views)
        .filter(|(_, v)| {
            v.liveness != Some(crate::sched::detector::Liveness::Failed)
                && v.load.as_ref().is_none_or(|(_, age)| *age > max_age)
        })
        .map(|(p, _)| *p)
        .collect();
    // A failed probe says nothing certain of the peer (the dial may have failed
    // for a reason of this node: its connection limits, its own link): the peer
    // is ranked on what is known (an unknown load counts as half busy); an
    // offer's dial, tried three times, decides (decision 0050).
    let probes = stale
        .iter()
        .map(|&peer| tokio::time::timeout(PROBE_LIMIT, client.probe(peer)));
    let _ = futures::future::join_all(probes).await;
    let views = client.views(peers.to_vec()).await.unwrap_or_default();
    peers.iter().copied().zip(views).collect()
}

/// What became of one offer and its bundle.
enum Tried {
    /// The job ran and its receipt verified.
    Done(Box<RemoteOutput>),
    /// Declined because busy (and whether its job queue was full): try the
    /// next candidate, or wait for room.
    Busy(String, bool),
    /// Not this peer: leave it out of this job (with what it says of the peer).
    Exclude(String, Option<Evidence>),
    /// It held the job and failed (detector, timeout, connection): place the job again.
    TakeOver(String),
}

/// Runs `manifest` on another peer: ranks the candidates by score, offers to the
/// best first (the next on a decline), watches the executor while it holds the
/// job, and places the job again, under the same job id, when the executor
/// fails (`attempt` and `taken_over_from` in its receipt's placement). A job
/// with no executor free waits for room (up to the scheduler's `queue_wait`).
pub async fn run_remote(
    client: &Client,
    manifest: &Manifest,
    module: Arc<[u8]>,
    input: Vec<u8>,
    options: &RemoteOptions,
) -> Result<RemoteOutput, RemoteError> {
    let deadline = Instant::now() + options.lan_wait;
    while Instant::now() < deadline && client.lan_peers().await.unwrap_or_default().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let candidates = if options.peers.is_empty() {
        match find_executors(client, manifest, options.max_candidates).await {
            Ok(found) => found,
            // Looking on the LAN only, and nobody answered mDNS: say so, with the
            // usual cause (multicast filtered between the hosts).
            Err(RemoteError::NoExecutors(keys))
                if !options.lan_wait.is_zero()
                    && client.lan_peers().await.unwrap_or_default().is_empty() =>
            {
                return Err(RemoteError::NoExecutors(format!(
                    "{keys}: no bootstrap was given and no peer answered mDNS on the LAN \
                     (is multicast to 224.0.0.251 port 5353 allowed between the hosts? \
                     else give --bootstrap or --peer)"
                )));
            }
            Err(e) => return Err(e),
        }
    } else {
        // The lookup teaches the swarm the pinned executors' addresses (a private
        // executor is reachable only at the relayed addresses of its records);
        // not needed when every one is connected already.
        let connected = client.info().await.map(|i| i.connected).unwrap_or_default();
        if !options.peers.iter().all(|p| connected.contains(p)) {
            let _ = find_executors(client, manifest, options.max_candidates).await;
        }
        options.peers.clone()
    };
    let sched = options
        .sched
        .clone()
        .unwrap_or_else(|| Scheduler::new(SchedConfig::default()));
    let stage = |s: RemoteStage| {
        if let Some(p) = &options.progress {
            p.send_replace(s);
        }
    };
    let text = serde_json::to_string(manifest.as_value()).unwrap_or_default();
    // The job waits for room while its manifest stays fresh (decision 0050).
    let wait_window = || {
        let fresh_left = FRESH_FOR.saturating_sub(manifest_age(manifest));
        Instant::now() + sched.config().queue_wait.min(fresh_left)
    };
    let mut queue_until = wait_window();
    let salt = crate::job::sha256_hex(manifest.nonce.as_bytes())
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut excluded: std::collections::HashSet<PeerId> = Default::default();
    let mut attempt: u32 = 0;
    let mut taken_over_from: Option<PeerId> = None;
    let mut waited = Duration::from_millis(50);
    let mut last_vetoes: Vec<Attempt>;
    let mut has_waited = false;
    loop {
        let pool: Vec<PeerId> = candidates
            .iter()
            .copied()
            .filter(|p| !excluded.contains(p))
            .take(options.max_candidates.max(1))
            .collect();
        if pool.is_empty() {
            return Err(RemoteError::AllFailed(attempts));
        }
        // Advertisements older than a beat are refreshed; while the job waits
        // for room, older than the wait (a slot freed by another requester's job
        // is seen within a second).
        let max_age = if has_waited {
            client.detector().interval.min(waited * 2)
        } else {
            client.detector().interval
        };
        let views = fresh_views(client, &pool, max_age).await;
        let ranked = sched.rank(&views, salt);
        last_vetoes = ranked
            .iter()
            .filter_map(|(p, c)| {
                c.veto.as_ref().map(|v| Attempt {
                    peer: *p,
                    rtt: None,
                    outcome: format!("not offered: {v}"),
                })
            })
            .collect();
        let mut round = Round {
            attempt: attempt + 1,
            candidates: ranked.iter().map(|(_, c)| c.clone()).collect(),
            chosen: None,
        };
        stage(RemoteStage::Offering(
            ranked.iter().filter(|(_, c)| c.veto.is_none()).count(),
        ));
        let mut busy_seen = false;
        let mut took_over = false;
        for (peer, cand) in &ranked {
            let peer = *peer;
            if let Some(veto) = &cand.veto {
                // Failed peers and peers that take no jobs are left out of this
                // job for good; full ones (and open breakers) may free up.
                if veto.starts_with("failed") || veto.starts_with("takes no jobs") {
                    excluded.insert(peer);
                    attempts.push(Attempt {
                        peer,
                        rtt: None,
                        outcome: format!("skipped without a dial: {veto}"),
                    });
                } else {
                    busy_seen = true;
                }
                continue;
            }
            let Some(mut ticket) = sched.take(peer, cand.slots) else {
                busy_seen = true;
                continue;
            };
            round.chosen.get_or_insert_with(|| peer.to_string());
            let placement = match &options.attempt_as {
                Some((attempt, from)) => BundlePlacement {
                    attempt: *attempt,
                    taken_over_from: from.clone(),
                    stolen_from: options.stolen_from.map(|p| p.to_string()),
                    handoff: false,
                },
                None => BundlePlacement {
                    attempt: attempt + 1,
                    taken_over_from: taken_over_from.map(|p| p.to_string()),
                    stolen_from: options.stolen_from.map(|p| p.to_string()),
                    // A job this node stole is not stolen again.
                    handoff: options.stolen_from.is_none(),
                },
            };
            let tried = try_one(
                client,
                manifest,
                &text,
                (&module, &input),
                options,
                (peer, &placement, &mut ticket),
                &mut attempts,
                &stage,
            )
            .await;
            match tried {
                Tried::Done(out) => {
                    ticket.finish(Outcome::Evidence(Evidence::Valid));
                    explain(options, round);
                    let mut out = *out;
                    out.attempts = std::mem::take(&mut attempts);
                    return Ok(out);
                }
                Tried::Busy(why, queue_full) => {
                    // Its queue full although its advertisement said a slot was
                    // free: a light mark (decision 0052), so a peer that lies about
                    // its room to attract offers pays for the offers it wastes.
                    if queue_full && cand.slots.is_some_and(|s| cand.busy < s) {
                        sched.record(peer, Evidence::Overstated);
                    }
                    ticket.finish(Outcome::Neutral);
                    attempts.push(Attempt {
                        peer,
                        rtt: None,
                        outcome: why,
                    });
                    busy_seen = true;
                }
                Tried::Exclude(why, evidence) => {
                    ticket.finish(evidence.map_or(Outcome::Neutral, Outcome::Evidence));
                    excluded.insert(peer);
                    attempts.push(Attempt {
                        peer,
                        rtt: None,
                        outcome: why,
                    });
                }
                Tried::TakeOver(why) => {
                    ticket.finish(Outcome::Evidence(Evidence::Timeout));
                    tracing::warn!(%peer, %why, attempt = attempt + 1, "executor failed holding the job; placing it again");
                    excluded.insert(peer);
                    attempts.push(Attempt {
                        peer,
                        rtt: None,
                        outcome: why,
                    });
                    attempt += 1;
                    taken_over_from = Some(peer);
                    took_over = true;
                    // A job placed again may wait for room afresh (while its
                    // manifest stays fresh).
                    queue_until = wait_window();
                    break;
                }
            }
        }
        explain(options, round);
        if took_over {
            continue;
        }
        if !busy_seen || Instant::now() >= queue_until || options.stolen_from.is_some() {
            if attempts.is_empty() {
                // Nothing was tried: say why each candidate was ruled out.
                attempts = last_vetoes;
            }
            return Err(RemoteError::AllFailed(attempts));
        }
        // Every candidate is full or busy: wait for room (a job of this node
        // ending frees a slot, or the backoff passes), then rank again on fresh
        // advertisements. A decline wakes nobody, so the backoff always applies.
        stage(RemoteStage::Queued);
        sched.wait_for_room(waited).await;
        has_waited = true;
        waited = (waited * 2).min(Duration::from_secs(1));
        // Keep the record of busy declines short: a queued job may wait many rounds.
        if attempts.len() > 64 {
            attempts.drain(..attempts.len() - 64);
        }
    }
}

fn explain(options: &RemoteOptions, round: Round) {
    if let Some(sink) = &options.explain
        && let Ok(mut rounds) = sink.lock()
        && rounds.len() < MAX_ROUNDS
    {
        rounds.push(round);
    }
}

/// Connects to `peer`, offers the job, and if it accepts sends the bytes while
/// watching it with beats.
#[allow(clippy::too_many_arguments)]
async fn try_one(
    client: &Client,
    manifest: &Manifest,
    text: &str,
    (module, input): (&Arc<[u8]>, &[u8]),
    options: &RemoteOptions,
    (peer, placement, ticket): (PeerId, &BundlePlacement, &mut crate::sched::Ticket),
    attempts: &mut Vec<Attempt>,
    stage: &(dyn Fn(RemoteStage) + Sync),
) -> Tried {
    // Connect first: a request to an unreachable peer would otherwise wait for
    // its own dial. A failed dial is tried again while the offer's time lasts
    // (on a lossy link one attempt may lose its handshake).
    let until = tokio::time::Instant::now() + options.offer_timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        match tokio::time::timeout_at(until, client.connect(peer)).await {
            Ok(Ok(_)) => break,
            Ok(Err(_))
                if tries < CONNECT_TRIES && tokio::time::Instant::now() + CONNECT_PAUSE < until =>
            {
                tokio::time::sleep(CONNECT_PAUSE).await;
            }
            Ok(Err(e)) => {
                client.mark_failed(peer).await;
                return Tried::Exclude(e.to_string(), Some(Evidence::Timeout));
            }
            Err(_) => {
                client.mark_failed(peer).await;
                return Tried::Exclude("connection timed out".to_owned(), Some(Evidence::Timeout));
            }
        }
    }
    let t = Instant::now();
    let r = tokio::time::timeout(
        options.offer_timeout,
        client.request(
            peer,
            JobRequest::Offer {
                manifest: text.to_owned(),
            },
        ),
    )
    .await;
    let rtt = t.elapsed();
    let (has_module, promised) = match r {
        Ok(Ok(JobResponse::Accept {
            job_id,
            has_module,
            receipt,
        })) if job_id == manifest.job_id() => (has_module, receipt),
        Ok(Ok(JobResponse::Accept { .. })) => {
            return Tried::Exclude(
                "accepted under another job id".to_owned(),
                Some(Evidence::Invalid),
            );
        }
        Ok(Ok(JobResponse::Decline {
            reason: DeclineReason::Busy,
            message,
        })) => {
            // Only a full job queue contradicts an advertised free slot (rate
            // limits, strikes and reservation caps are about this requester).
            let full = message.contains("queue is full");
            return Tried::Busy(format!("declined (busy): {message}"), full);
        }
        Ok(Ok(JobResponse::Decline { reason, message })) => {
            // A decline about the job (runtime, label, limits) says nothing of the peer.
            let evidence = matches!(reason, DeclineReason::Policy | DeclineReason::ReplayedNonce)
                .then_some(Evidence::Refusal);
            return Tried::Exclude(format!("declined ({reason}): {message}"), evidence);
        }
        Ok(Ok(other)) => {
            return Tried::Exclude(
                format!("answered an offer with {}", response_kind(&other)),
                Some(Evidence::Invalid),
            );
        }
        Ok(Err(e)) => return Tried::Exclude(e.to_string(), Some(Evidence::Timeout)),
        Err(_) => {
            return Tried::Exclude("offer timed out".to_owned(), Some(Evidence::Timeout));
        }
    };
    wait_for_direct(client, peer, options.punch_wait).await;
    stage(RemoteStage::Running(peer));
    let bundle = JobRequest::Bundle {
        job_id: manifest.job_id().to_owned(),
        module: (!has_module).then(|| module.to_vec()),
        input: input.to_vec(),
        placement: Some(placement.clone()),
    };
    // Watched while it holds the job (the guard ends the watch however this
    // ends, a cancel included): a peer that misses its beats is failed and the
    // job placed again, long before the job's own timeout.
    let mut events = client.events();
    let watching = client.watching(peer).await;
    // Found failed under another job's watch before this one began: no new
    // event will come.
    let already_failed = client
        .views(vec![peer])
        .await
        .ok()
        .and_then(|v| v.first().and_then(|v| v.liveness))
        == Some(crate::sched::detector::Liveness::Failed);
    let failed = async {
        loop {
            match events.recv().await {
                Ok(NetEvent::PeerFailed(p)) if p == peer => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
        }
    };
    let sent_at = std::time::Instant::now();
    let answer = if already_failed {
        None
    } else {
        tokio::select! {
        r = tokio::time::timeout(options.job_timeout, client.request_traced(peer, bundle)) => Some(r),
        () = failed => None,
        }
    };
    drop(watching);
    // The executor held a slot for the job unless it refused the bytes as busy.
    if !matches!(
        answer,
        Some(Ok(Ok((
            JobResponse::Failure {
                reason: FailureReason::Busy,
                ..
            },
            _
        ))))
    ) {
        ticket.ran(sent_at);
    }
    let outcome = match answer {
        None => return Tried::TakeOver("failed while running the job: missed its beats".into()),
        Some(Err(_)) => return Tried::TakeOver("job timed out".into()),
        Some(Ok(Err(e))) => return Tried::TakeOver(e.to_string()),
        Some(Ok(Ok((
            JobResponse::Result {
                receipt,
                stdout,
                stderr,
                handoff,
            },
            path,
        )))) => match (
            Receipt::from_json(&receipt),
            handed_to(
                client.peer_id(),
                manifest,
                peer,
                placement,
                handoff.as_deref(),
            ),
        ) {
            (_, Err(why)) => Err(why),
            (Ok(receipt), Ok(handed)) => {
                // A hand-off: the thief signed the receipt, naming the peer this
                // node talked to as the one it stole the job from.
                let (signer, asked) = match handed {
                    Some(thief) => (
                        thief,
                        BundlePlacement {
                            stolen_from: Some(peer.to_string()),
                            ..placement.clone()
                        },
                    ),
                    None => (peer, placement.clone()),
                };
                match check_receipt(
                    &receipt,
                    signer,
                    manifest,
                    promised.as_deref(),
                    &stdout,
                    &stderr,
                )
                .and_then(|()| check_placement(&receipt, &asked))
                {
                    Ok(()) => {
                        attempts.push(Attempt {
                            peer,
                            rtt: Some(rtt),
                            outcome: if signer == peer {
                                "succeeded".into()
                            } else {
                                format!("succeeded: stolen by {signer}, handed off by {peer}")
                            },
                        });
                        let path = signed_path(&receipt).unwrap_or(path);
                        return Tried::Done(Box::new(RemoteOutput {
                            executor: signer,
                            receipt,
                            stdout,
                            stderr,
                            attempts: Vec::new(),
                            path,
                        }));
                    }
                    Err(why) => Err(why),
                }
            }
            (Err(e), _) => Err(format!("unreadable receipt: {e}")),
        },
        Some(Ok(Ok((JobResponse::Failure { reason, message }, _)))) => {
            if reason == FailureReason::Busy {
                return Tried::Busy(format!("failed (busy): {message}"), false);
            }
            Ok(format!("failed ({reason}): {message}"))
        }
        Some(Ok(Ok((other, _)))) => Ok(format!("answered a bundle with {}", response_kind(&other))),
    };
    tracing::warn!(%peer, ?outcome, "executor failed, trying the next");
    match outcome {
        // A receipt that does not verify or match weighs heavily (decision 0052).
        Err(why) => Tried::Exclude(why, Some(Evidence::Invalid)),
        Ok(why) => Tried::Exclude(why, Some(Evidence::Failure)),
    }
}

/// The peer a hand-off says ran the job (`None`: no hand-off, the executor
/// itself did), once the hand-off verifies: signed by `peer` (the executor this
/// node talked to), for this job, addressed to this node, to another peer. A
/// hand-off this node did not ask for is refused.
fn handed_to(
    me: PeerId,
    manifest: &Manifest,
    peer: PeerId,
    placement: &BundlePlacement,
    handoff: Option<&str>,
) -> Result<Option<PeerId>, String> {
    use crate::receipt::handoff::Handoff;
    let Some(text) = handoff else {
        return Ok(None);
    };
    if !placement.handoff {
        return Err("a hand-off this node did not accept".into());
    }
    let h = Handoff::from_json(text)
        .and_then(|h| h.verify())
        .map_err(|e| format!("hand-off refused: {e}"))?;
    let to: PeerId =
        h.to.parse()
            .map_err(|_| "hand-off refused: `to` is not a peer id".to_owned())?;
    if h.from != peer.to_string() {
        return Err("hand-off refused: not signed by the executor this node talked to".into());
    }
    if h.job_id != manifest.job_id() {
        return Err("hand-off refused: it names another job".into());
    }
    if h.requester != me.to_string() {
        return Err("hand-off refused: it is addressed to another requester".into());
    }
    if to == peer || to == me {
        return Err("hand-off refused: `to` is the executor or this node".into());
    }
    Ok(Some(to))
}

/// The placement a receipt signs is the one the bundle asked for. An executor
/// of a release before placement signs `attempt: null`: accepted for a first
/// attempt (it hides nothing there), refused for a take-over, whose receipt must
/// say whom it took over from.
fn check_placement(receipt: &Receipt, asked: &BundlePlacement) -> Result<(), String> {
    let Some(p) = receipt.as_map().get("placement") else {
        return match asked.stolen_from {
            None => Ok(()),
            Some(_) => Err("receipt placement does not say the job was stolen".into()),
        };
    };
    // Swarm mode: a stolen job's receipt says so, and names this node; a job
    // that was not stolen must not say it was.
    if p.get("stolen_from").and_then(|t| t.as_str()) != asked.stolen_from.as_deref()
        || (p.get("stolen_from").is_some() && asked.stolen_from.is_none())
    {
        return Err("receipt placement.stolen_from is not what this node asked for".into());
    }
    match p.get("attempt").and_then(|a| a.as_u64()) {
        None if asked.attempt == 1 && asked.taken_over_from.is_none() => Ok(()),
        None => Err("receipt placement does not say this job was taken over".into()),
        Some(a)
            if a == u64::from(asked.attempt)
                && p.get("taken_over_from").and_then(|t| t.as_str())
                    == asked.taken_over_from.as_deref() =>
        {
            Ok(())
        }
        Some(_) => Err("receipt placement is not the attempt this node asked for".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::manifest::ManifestBuilder;
    use crate::runtime::pool::WorkerPool;
    use crate::runtime::wasm3::Wasm3Runtime;
    use std::sync::Arc;

    /// A hand-off is accepted only when asked for, signed by the executor this
    /// node talked to, for this job, addressed to this node, to a third peer.
    #[test]
    fn hand_offs_are_checked_against_the_job_the_executor_and_this_node() {
        use crate::receipt::handoff::Handoff;
        let (busy, thief, me) = (
            Identity::from_seed([1; 32]),
            Identity::from_seed([2; 32]),
            Identity::from_seed([3; 32]),
        );
        let m = ManifestBuilder::new()
            .build(b"\0asm\x01\0\0\0", b"")
            .expect("manifest");
        let asked = BundlePlacement {
            attempt: 1,
            taken_over_from: None,
            stolen_from: None,
            handoff: true,
        };
        let sign = |id: &Identity, job: &str, to: PeerId, req: PeerId| {
            Handoff::sign(job, &to.to_string(), &req.to_string(), id)
                .expect("sign")
                .to_json()
        };
        let (b, t, r) = (busy.peer_id(), thief.peer_id(), me.peer_id());
        let good = sign(&busy, m.job_id(), t, r);
        assert_eq!(handed_to(r, &m, b, &asked, None), Ok(None));
        assert_eq!(handed_to(r, &m, b, &asked, Some(&good)), Ok(Some(t)));
        let not_asked = BundlePlacement {
            handoff: false,
            ..asked.clone()
        };
        assert!(handed_to(r, &m, b, &not_asked, Some(&good)).is_err());
        for (why, text, executor) in [
            (
                "signed by the thief itself",
                sign(&thief, m.job_id(), t, r),
                b,
            ),
            ("another job", sign(&busy, &"f".repeat(64), t, r), b),
            ("another requester", sign(&busy, m.job_id(), t, b), b),
            ("to the executor itself", sign(&busy, m.job_id(), b, r), b),
            ("to this node", sign(&busy, m.job_id(), r, r), b),
            ("talked to another peer", good.clone(), t),
            ("garbage", "{}".into(), b),
        ] {
            assert!(
                handed_to(r, &m, executor, &asked, Some(&text)).is_err(),
                "{why}"
            );
        }
    }

    /// A stolen job's receipt must say so, naming the busy node; one not stolen must not.
    #[test]
    fn stolen_from_is_checked_both_ways() {
        let (_, id, out) = signed_run(ManifestBuilder::new());
        let asked = BundlePlacement {
            attempt: 1,
            taken_over_from: None,
            stolen_from: Some("12D3KooWbusy".into()),
            handoff: false,
        };
        // The local receipt has no stolen_from.
        assert!(check_placement(&out.receipt, &asked).is_err());
        let mut r = out.receipt.as_map().clone();
        r.insert(
            "placement".into(),
            serde_json::json!({"path": "direct", "relay": null, "attempt": 1,
                "taken_over_from": null, "stolen_from": "12D3KooWbusy"}),
        );
        let mut stolen =
            Receipt::from_json(&serde_json::Value::Object(r).to_string()).expect("json");
        stolen.resign(&id).expect("sign");
        assert_eq!(check_placement(&stolen, &asked), Ok(()));
        let plain = BundlePlacement {
            stolen_from: None,
            ..asked
        };
        assert!(
            check_placement(&stolen, &plain).is_err(),
            "not asked, yet says stolen"
        );
    }

    /// Writes "out" to stdout and "err" to stderr.
    const BOTH: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "\10\00\00\00\04\00\00\00\18\00\00\00\04\00\00\00")
      (data (i32.const 16) "out\n")
      (data (i32.const 24) "err\n")
      (func (export "_start")
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100)))
        (drop (call $w (i32.const 2) (i32.const 8) (i32.const 1) (i32.const 100)))))"#;

    /// Runs [`BOTH`] under `b`'s manifest on wasm3 and signs its receipt.
    fn signed_run(b: ManifestBuilder) -> (Manifest, Identity, crate::job::JobOutput) {
        let module = wat::parse_str(BOTH).expect("wat");
        let manifest = b.build(&module, b"").expect("manifest");
        let pool = WorkerPool::new(Arc::new(Wasm3Runtime), 1, 1).expect("pool");
        let id = Identity::from_seed([9u8; 32]);
        let out = crate::job::run_blocking(&pool, &id, &manifest, module.into(), vec![])
            .expect("job runs");
        (manifest, id, out)
    }

    #[test]
    fn a_receipt_binds_stdout_and_stderr() {
        let (manifest, id, out) = signed_run(ManifestBuilder::new());
        let (stdout, stderr) = (&out.result.stdout, &out.result.stderr);
        assert_eq!((&stdout[..], &stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
        let peer = id.peer_id();
        let v2 = Some(crate::receipt::RECEIPT_VERSION);
        assert_eq!(
            check_receipt(&out.receipt, peer, &manifest, v2, stdout, stderr),
            Ok(())
        );
        let why = check_receipt(&out.receipt, peer, &manifest, v2, stdout, b"forged\n")
            .expect_err("changed stderr");
        assert!(why.contains("stderr"), "{why}");
        let why = check_receipt(&out.receipt, peer, &manifest, v2, b"forged\n", stderr)
            .expect_err("changed stdout");
        assert!(why.contains("output"), "{why}");
    }

    /// The requester checks everything it can (decision 0048): no version 1 from
    /// an executor that promised version 2, and the receipt's module, input,
    /// engine and fuel limit are the manifest's, each signed correctly.
    #[test]
    fn a_receipt_must_be_for_what_was_asked() {
        let (manifest, id, out) = signed_run(ManifestBuilder::new().runtime("wasm3"));
        let (stdout, stderr) = (&out.result.stdout, &out.result.stderr);
        let peer = id.peer_id();
        let v2 = Some(crate::receipt::RECEIPT_VERSION);
        assert_eq!(
            check_receipt(&out.receipt, peer, &manifest, v2, stdout, stderr),
            Ok(())
        );
        // The same run signed as version 1 (validly): refused when v2 was promised,
        // and when nothing was (the promise is unsigned: a hostile executor could
        // leave it out, and no release of this metering signs version 1).
        let mut v1 = out.receipt.clone();
        v1.as_map_mut()["version"] = crate::receipt::RECEIPT_VERSION_V1.into();
        for v2_only in ["stderr", "placement", "memory_limit_hit"] {
            v1.as_map_mut().remove(v2_only);
        }
        v1.resign(&id).expect("sign");
        assert!(v1.is_v1() && v1.verify().is_ok());
        let why = check_receipt(&v1, peer, &manifest, v2, stdout, stderr).expect_err("v1");
        assert!(why.contains("promised"), "{why}");
        let why = check_receipt(&v1, peer, &manifest, None, stdout, stderr).expect_err("v1");
        assert!(why.contains("executors of this release sign"), "{why}");
        // Validly signed receipts for something else.
        let resigned = |f: &dyn Fn(&mut Receipt)| {
            let mut r = out.receipt.clone();
            f(&mut r);
            r.resign(&id).expect("resign");
            r
        };
        let cases: [(&str, Receipt); 5] = [
            (
                "module",
                resigned(&|r| {
                    r.as_map_mut()["module"] = format!("sha256:{}", "1".repeat(64)).into()
                }),
            ),
            (
                "input",
                resigned(&|r| {
                    r.as_map_mut()["input"] = format!("sha256:{}", "2".repeat(64)).into()
                }),
            ),
            (
                "requires wasm3",
                resigned(&|r| r.as_map_mut()["runtime"]["name"] = "wasmtime".into()),
            ),
            (
                "fuel limit",
                resigned(&|r| r.as_map_mut()["fuel_limit"] = 7.into()),
            ),
            (
                "metering",
                resigned(&|r| r.as_map_mut()["runtime"]["metering"] = "plasm-fuel/3".into()),
            ),
        ];
        for (what, r) in cases {
            assert!(r.verify().is_ok(), "{what}: signed correctly");
            let why = check_receipt(&r, peer, &manifest, v2, stdout, stderr).expect_err(what);
            assert!(why.contains(what), "{what}: {why}");
        }
    }
}
