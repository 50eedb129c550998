//! The requester side: find executors, offer, pick the fastest that accepts,
//! send the bytes, verify the receipt, and fall over to the next on failure.

use super::protocol::{JobRequest, JobResponse};
use super::{Client, NetError, NetEvent, Path, PathKind};
use crate::job::sha256_hex;
use crate::manifest::Manifest;
use crate::receipt::Receipt;
use futures::StreamExt;
use libp2p::{PeerId, kad};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the other candidates may still answer once one executor has accepted.
const ACCEPT_GRACE: Duration = Duration::from_millis(250);

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
    /// Executors offered the job at once.
    pub max_candidates: usize,
    /// How long to wait for the first LAN peer (mDNS) before looking up (zero: do not wait).
    pub lan_wait: Duration,
    /// How long the bytes wait for a relayed connection to be hole-punched before
    /// they go through the relay anyway.
    pub punch_wait: Duration,
    /// Where the run is, for a progress display (a watch channel keeps only the
    /// latest stage: a slow reader never holds the run up).
    pub progress: Option<Arc<tokio::sync::watch::Sender<RemoteStage>>>,
}

/// How far a remote run has got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RemoteStage {
    /// Looking up executors (LAN, DHT).
    #[default]
    Looking,
    /// Offering the job to this many executors.
    Offering(usize),
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

/// Runs `manifest` on another peer.
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
        // executor is reachable only at the relayed addresses of its records).
        let _ = find_executors(client, manifest, options.max_candidates).await;
        options.peers.clone()
    };
    let stage = |s: RemoteStage| {
        if let Some(p) = &options.progress {
            p.send_replace(s);
        }
    };
    stage(RemoteStage::Offering(candidates.len()));
    let mut attempts = Vec::new();
    // Each candidate is connected to, then offered the job, all at once. The run does
    // not wait for every candidate: once one has accepted, the others get
    // `ACCEPT_GRACE` more (a dead executor whose provider record outlives it would
    // otherwise hold every run for the whole connect or offer timeout).
    let text = serde_json::to_string(manifest.as_value()).unwrap_or_default();
    let mut offers: futures::stream::FuturesUnordered<_> = candidates
        .iter()
        .take(options.max_candidates.max(1))
        .map(|&peer| {
            let (client, text) = (client.clone(), text.clone());
            async move {
                // Connect first: a request to an unreachable peer would otherwise wait
                // for its own dial. A failed dial is tried again while the offer's time
                // lasts (on a lossy link one attempt may lose its handshake).
                let until = tokio::time::Instant::now() + options.offer_timeout;
                let mut tries = 0;
                loop {
                    tries += 1;
                    match tokio::time::timeout_at(until, client.connect(peer)).await {
                        Ok(Ok(_)) => break,
                        Ok(Err(_))
                            if tries < CONNECT_TRIES
                                && tokio::time::Instant::now() + CONNECT_PAUSE < until =>
                        {
                            tokio::time::sleep(CONNECT_PAUSE).await;
                        }
                        Ok(Err(e)) => return (peer, None, Err(e.to_string())),
                        Err(_) => {
                            return (peer, None, Err("connection timed out".to_owned()));
                        }
                    }
                }
                let t = Instant::now();
                let r = tokio::time::timeout(
                    options.offer_timeout,
                    client.request(peer, JobRequest::Offer { manifest: text }),
                )
                .await;
                let rtt = t.elapsed();
                let r = match r {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("offer timed out".to_owned()),
                };
                (peer, Some(rtt), r)
            }
        })
        .collect();
    let mut accepted = Vec::new();
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        let next = match grace_until {
            Some(at) => match tokio::time::timeout_at(at, offers.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => offers.next().await,
        };
        let Some((peer, rtt, r)) = next else { break };
        let outcome = match r {
            Ok(JobResponse::Accept {
                job_id,
                has_module,
                receipt,
            }) if job_id == manifest.job_id() => {
                accepted.push((rtt.unwrap_or_default(), peer, has_module, receipt));
                grace_until.get_or_insert(tokio::time::Instant::now() + ACCEPT_GRACE);
                continue;
            }
            Ok(JobResponse::Accept { .. }) => "accepted under another job id".to_owned(),
            Ok(JobResponse::Decline { reason, message }) => {
                format!("declined ({reason}): {message}")
            }
            Ok(other) => format!("answered an offer with {}", response_kind(&other)),
            Err(e) => e,
        };
        attempts.push(Attempt { peer, rtt, outcome });
    }
    // Candidates still connecting or answering are left: an offer they accept later
    // expires on their side unused (its reservation's time to live).
    drop(offers);
    accepted.sort_by_key(|(rtt, _, _, _)| *rtt);
    for (rtt, peer, has_module, promised) in accepted {
        wait_for_direct(client, peer, options.punch_wait).await;
        stage(RemoteStage::Running(peer));
        let bundle = JobRequest::Bundle {
            job_id: manifest.job_id().to_owned(),
            module: (!has_module).then(|| module.to_vec()),
            input: input.clone(),
        };
        let outcome =
            match tokio::time::timeout(options.job_timeout, client.request_traced(peer, bundle))
                .await
            {
                Ok(Ok((
                    JobResponse::Result {
                        receipt,
                        stdout,
                        stderr,
                    },
                    path,
                ))) => match Receipt::from_json(&receipt) {
                    Ok(receipt) => {
                        match check_receipt(
                            &receipt,
                            peer,
                            manifest,
                            promised.as_deref(),
                            &stdout,
                            &stderr,
                        ) {
                            Ok(()) => {
                                attempts.push(Attempt {
                                    peer,
                                    rtt: Some(rtt),
                                    outcome: "succeeded".into(),
                                });
                                let path = signed_path(&receipt).unwrap_or(path);
                                return Ok(RemoteOutput {
                                    executor: peer,
                                    receipt,
                                    stdout,
                                    stderr,
                                    attempts,
                                    path,
                                });
                            }
                            Err(why) => why,
                        }
                    }
                    Err(e) => format!("unreadable receipt: {e}"),
                },
                Ok(Ok((JobResponse::Failure { reason, message }, _))) => {
                    format!("failed ({reason}): {message}")
                }
                Ok(Ok((other, _))) => format!("answered a bundle with {}", response_kind(&other)),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "job timed out".to_owned(),
            };
        tracing::warn!(%peer, %outcome, "executor failed, trying the next");
        attempts.push(Attempt {
            peer,
            rtt: Some(rtt),
            outcome,
        });
    }
    Err(RemoteError::AllFailed(attempts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::manifest::ManifestBuilder;
    use crate::runtime::pool::WorkerPool;
    use crate::runtime::wasm3::Wasm3Runtime;
    use std::sync::Arc;

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
