//! The replica service (decision 0056): receipts and the records beside them
//! live on the `k` peers closest to their job id, are verified before they are
//! stored, are republished so they outlive their executor and submitter, and are
//! fetched from any node.
//!
//! Every node that takes part in the DHT (executors, requesters and bootstrap
//! nodes, not short-lived clients) runs one. It answers `/plasm/records/1.0.0`
//! requests from the event loop one at a time, doing the verification and the
//! SQLite work on the blocking threads, so a flood of puts costs a holder one
//! queue of [`crate::net::records::RECORDS_INBOUND_QUEUE`] and its rate limits,
//! never the event loop.

use crate::net::Client;
use crate::net::records::{
    InboundRecords, MAX_RECORDS_PER_MESSAGE, RECORDS_INBOUND_QUEUE, RecordsRequest,
    RecordsResponse, record_key,
};
use crate::receipt::Receipt;
use crate::receipt::signed::{self, SignedRecord};
use crate::store::StoreError;
use crate::store::replicas::{Kind, PutError, ReplicaLimits, ReplicaStore, StoredRecord};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a fetch waits for the other holders once one answered.
pub const FETCH_GRACE: Duration = Duration::from_millis(300);

/// Largest receipt text taken from a peer (the API's verify route takes the same).
pub const MAX_RECEIPT_TEXT: usize = 16 * 1024;

/// How records are replicated.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaConfig {
    /// Peers each job's records are stored on (besides the publisher).
    pub k: usize,
    /// How often a holder republishes what it holds to the closest peers.
    pub republish_every: Duration,
    /// Time a fetch from the network may take.
    pub fetch_timeout: Duration,
    /// Bounds of the store.
    pub limits: ReplicaLimits,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            k: 3,
            // Kademlia's own record republish interval.
            republish_every: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(10),
            limits: ReplicaLimits::default(),
        }
    }
}

/// Counters of the replica service.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Records stored here (new).
    pub stored: AtomicU64,
    /// Records refused at ingestion (malformed, bad signature, wrong job, unknown receipt).
    pub refused: AtomicU64,
    /// Jobs published or republished to their closest peers.
    pub published: AtomicU64,
    /// Fetches answered from the network.
    pub fetched: AtomicU64,
}

/// Why a fetch found nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// No node asked holds a record of the job.
    #[error("no receipt for job {0} on this node or on the peers closest to it")]
    NotFound(String),
    /// The store failed.
    #[error("replica store: {0}")]
    Store(#[from] StoreError),
}

/// A job's records, verified, as a node holds them.
#[derive(Debug, Clone, Default)]
pub struct JobRecords {
    /// Receipts, oldest first.
    pub receipts: Vec<Value>,
    /// Acceptances, oldest first.
    pub acceptances: Vec<Value>,
    /// Publications.
    pub publications: Vec<Value>,
    /// Audits, oldest first.
    pub audits: Vec<Value>,
    /// The digest of every receipt, in the same order.
    digests: Vec<String>,
}

impl JobRecords {
    fn from_stored(stored: Vec<StoredRecord>) -> Self {
        let mut out = Self::default();
        for r in stored {
            let Ok(v) = serde_json::from_str::<Value>(&r.body) else {
                continue;
            };
            match r.kind {
                Kind::Receipt => {
                    out.receipts.push(v);
                    out.digests.push(r.digest);
                }
                Kind::Acceptance => out.acceptances.push(v),
                Kind::Publication => out.publications.push(v),
                Kind::Audit => out.audits.push(v),
            }
        }
        out
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.receipts.is_empty()
    }

    /// The receipt the submitter accepted: named by the acceptance of the
    /// submitter who published the manifest when there is one, else by the first
    /// acceptance stored. `None` when no acceptance names a held receipt.
    pub fn accepted(&self) -> Option<&Value> {
        let submitter = self
            .publications
            .first()
            .and_then(|p| p.get("submitter"))
            .and_then(|s| s.get("peer_id"))
            .and_then(Value::as_str);
        let by = |a: &&Value| {
            a.get("requester")
                .and_then(|r| r.get("peer_id"))
                .and_then(Value::as_str)
                == submitter
        };
        let named = |a: &&Value| {
            a.get("receipt_sha256")
                .and_then(Value::as_str)
                .is_some_and(|d| self.digests.iter().any(|h| h == d))
        };
        // A publication proves its signer knows the manifest (its hash is the job
        // id): that submitter's acceptance decides. Without one, acceptances that
        // name different receipts are a conflict nobody here can settle (anyone
        // can sign an acceptance), so none is the accepted one.
        let acceptance = match self.acceptances.iter().filter(named).find(by) {
            Some(a) if submitter.is_some() => a,
            _ => {
                let mut named_digests = self
                    .acceptances
                    .iter()
                    .filter(named)
                    .filter_map(|a| a.get("receipt_sha256").and_then(Value::as_str));
                let first = named_digests.next()?;
                if named_digests.any(|d| d != first) {
                    return None;
                }
                self.acceptances
                    .iter()
                    .find(|a| a.get("receipt_sha256").and_then(Value::as_str) == Some(first))?
            }
        };
        let digest = acceptance.get("receipt_sha256").and_then(Value::as_str)?;
        self.digests
            .iter()
            .position(|d| d == digest)
            .and_then(|i| self.receipts.get(i))
    }

    /// Whether acceptances name different receipts and no publication settles it.
    pub fn conflicting(&self) -> bool {
        self.accepted().is_none() && self.acceptances.len() > 1
    }

    /// The receipt to answer with: the accepted one, else (no acceptance at all)
    /// the first held; `None` on a conflict.
    pub fn answer(&self) -> Option<&Value> {
        if self.conflicting() {
            return None;
        }
        self.accepted().or_else(|| self.receipts.first())
    }

    /// The SHA-256 digest of the accepted receipt, if any.
    pub fn accepted_digest(&self) -> Option<String> {
        let accepted = self.accepted()?;
        let i = self.receipts.iter().position(|r| r == accepted)?;
        self.digests.get(i).cloned()
    }
}

/// The replica service.
#[derive(Debug)]
pub struct Replicas {
    store: Arc<ReplicaStore>,
    client: Client,
    config: ReplicaConfig,
    /// Counters (`plasm_replicas_*`).
    pub stats: ReplicaStats,
}

fn digest_of(value: &Value) -> String {
    let bytes = crate::jcs::canonicalize(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

impl Replicas {
    /// A service holding `store`, talking through `client`.
    pub fn new(store: Arc<ReplicaStore>, client: Client, config: ReplicaConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            client,
            config,
            stats: ReplicaStats::default(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<ReplicaStore> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> ReplicaConfig {
        self.config
    }

    /// Starts serving inbound requests and republishing; returns the tasks.
    pub async fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let (tx, rx) = tokio::sync::mpsc::channel(RECORDS_INBOUND_QUEUE);
        self.client.serve_records(tx).await;
        vec![
            tokio::spawn(self.clone().serve(rx)),
            tokio::spawn(self.clone().republish()),
        ]
    }

    async fn serve(self: Arc<Self>, mut rx: tokio::sync::mpsc::Receiver<InboundRecords>) {
        while let Some(InboundRecords {
            peer,
            request,
            channel,
        }) = rx.recv().await
        {
            let this = self.clone();
            let response = blocking(move || this.answer(request))
                .await
                .unwrap_or_else(|| RecordsResponse::Refused {
                    reason: "internal".into(),
                });
            if let RecordsResponse::Stored { refused, .. } = &response
                && !refused.is_empty()
            {
                tracing::debug!(%peer, ?refused, "records refused at ingestion");
            }
            self.client.respond_records(channel, response).await;
        }
    }

    /// Answers one request (blocking: verification and SQLite).
    fn answer(&self, request: RecordsRequest) -> RecordsResponse {
        let failed = |e: StoreError| RecordsResponse::Refused {
            reason: match e.classify() {
                StoreError::DiskFull => "disk full".into(),
                _ => "store unavailable".into(),
            },
        };
        match request {
            RecordsRequest::Put { job_id, records } => {
                let (stored, refused) = self.ingest(&job_id, &records);
                RecordsResponse::Stored {
                    stored: stored as u32,
                    refused,
                }
            }
            RecordsRequest::Get { job_id } => match self.store.records(&job_id) {
                Ok(records) => RecordsResponse::Records {
                    records: records
                        .into_iter()
                        .take(MAX_RECORDS_PER_MESSAGE)
                        .map(|r| r.body)
                        .collect(),
                },
                Err(e) => failed(e),
            },
            RecordsRequest::PutBlob {
                job_id,
                sha256,
                bytes,
            } => match self.ingest_blob(&job_id, &sha256, &bytes) {
                Ok(new) => RecordsResponse::Stored {
                    stored: u32::from(new),
                    refused: Vec::new(),
                },
                Err(why) => RecordsResponse::Stored {
                    stored: 0,
                    refused: vec![why],
                },
            },
            RecordsRequest::GetBlob { sha256 } => match self.store.blob(&sha256) {
                Ok(bytes) => RecordsResponse::Blob { bytes },
                Err(e) => failed(e),
            },
        }
    }

    /// Verifies and stores the records of one job: receipts first (the others
    /// name one). Returns how many were new and why any were refused.
    pub fn ingest(&self, job_id: &str, texts: &[String]) -> (usize, Vec<String>) {
        // Receipts first (a stable sort keeps the rest in order).
        let mut ordered: Vec<&String> = texts.iter().collect();
        ordered.sort_by_key(|t| !version_of(t).starts_with("plasm.receipt/"));
        let (mut stored, mut refused) = (0, Vec::new());
        for text in ordered.into_iter().take(MAX_RECORDS_PER_MESSAGE) {
            match self.ingest_one(job_id, text) {
                Ok(true) => stored += 1,
                Ok(false) => {}
                Err(why) => refused.push(why),
            }
        }
        self.stats
            .stored
            .fetch_add(stored as u64, Ordering::Relaxed);
        self.stats
            .refused
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        (stored, refused)
    }

    fn ingest_one(&self, job_id: &str, text: &str) -> Result<bool, String> {
        let put = |kind: Kind, signer: &str, digest: &str, body: &str| {
            self.store
                .put(job_id, kind, signer, digest, body)
                .map_err(|e| match e {
                    PutError::Store(_) => "store unavailable".to_owned(),
                    e => e.to_string(),
                })
        };
        if version_of(text).starts_with("plasm.receipt/") {
            if text.len() > MAX_RECEIPT_TEXT {
                return Err("a receipt over the size limit".into());
            }
            let receipt = Receipt::from_json(text).map_err(|e| format!("receipt: {e}"))?;
            let verified = receipt.verify().map_err(|e| format!("receipt: {e}"))?;
            if verified.job_id != job_id {
                return Err("a receipt of another job".into());
            }
            let value = Value::Object(receipt.as_map().clone());
            return put(
                Kind::Receipt,
                &verified.peer_id,
                &digest_of(&value),
                &value.to_string(),
            );
        }
        let record: SignedRecord = signed::read_any(text).map_err(|e| e.to_string())?;
        if record.str("job_id") != job_id {
            return Err("a record of another job".into());
        }
        let kind = match record.form {
            "plasm.acceptance/v1" => Kind::Acceptance,
            "plasm.publication/v1" => Kind::Publication,
            _ => Kind::Audit,
        };
        if matches!(kind, Kind::Acceptance | Kind::Audit) {
            // An acceptance or audit of a receipt nobody holds here cannot be checked
            // against it: refused (the publisher sends the receipt first).
            let digest = record.str("receipt_sha256");
            let held = self
                .store
                .records(job_id)
                .map_err(|_| "store unavailable".to_owned())?;
            let receipt = held
                .iter()
                .find(|r| r.kind == Kind::Receipt && r.digest == digest)
                .ok_or("names a receipt not held here")?;
            if receipt.signer != record.str("executor") {
                return Err("names an executor that did not sign the receipt".into());
            }
        }
        let value = Value::Object(record.members.clone());
        let new = put(kind, &record.signer, &digest_of(&value), &value.to_string())?;
        if kind == Kind::Publication {
            self.store
                .put_blob_refs(job_id, &blob_names(&value))
                .map_err(|_| "store unavailable".to_owned())?;
        }
        Ok(new)
    }

    /// Stores a published module or input: its hash must match and a publication
    /// held here must name it, so blobs nobody published never enter the store.
    fn ingest_blob(&self, job_id: &str, sha256: &str, bytes: &[u8]) -> Result<bool, String> {
        if hex::encode(Sha256::digest(bytes)) != sha256 {
            return Err("the bytes do not hash to the name".into());
        }
        let named = self
            .store
            .publication_names(job_id, sha256)
            .map_err(|_| "store unavailable".to_owned())?;
        if !named {
            return Err("no publication held here names this blob".into());
        }
        self.store
            .put_blob(sha256, bytes)
            .map_err(|e| e.to_string())
    }

    /// This job's records held here.
    pub async fn local(&self, job_id: &str) -> Result<JobRecords, ReplicaError> {
        let (store, id) = (self.store.clone(), job_id.to_owned());
        let held = blocking(move || store.records(&id))
            .await
            .ok_or_else(|| StoreError::Io(std::io::Error::other("blocking task failed")))??;
        Ok(JobRecords::from_stored(held))
    }

    /// Stores `records` here and on the `k` peers closest to the job; returns how
    /// many peers stored them. `blobs` (published module and input) follow.
    pub async fn publish(
        self: &Arc<Self>,
        job_id: &str,
        records: Vec<String>,
        blobs: Vec<(String, Vec<u8>)>,
    ) -> usize {
        let this = self.clone();
        let (id, texts) = (job_id.to_owned(), records.clone());
        let _ = blocking(move || this.ingest(&id, &texts)).await;
        for (sha, bytes) in &blobs {
            let (this, id, sha, bytes) =
                (self.clone(), job_id.to_owned(), sha.clone(), bytes.clone());
            let _ = blocking(move || this.ingest_blob(&id, &sha, &bytes)).await;
        }
        self.push(job_id, records, blobs).await
    }

    async fn push(
        self: &Arc<Self>,
        job_id: &str,
        records: Vec<String>,
        blobs: Vec<(String, Vec<u8>)>,
    ) -> usize {
        let peers = match tokio::time::timeout(
            self.config.fetch_timeout,
            self.client.closest_peers(record_key(job_id), self.config.k),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => return 0,
        };
        let mut puts = tokio::task::JoinSet::new();
        for peer in peers.into_iter().take(self.config.k) {
            let (client, job_id, records, blobs) = (
                self.client.clone(),
                job_id.to_owned(),
                records.clone(),
                blobs.clone(),
            );
            puts.spawn(async move {
                let job_id_for_blobs = job_id.clone();
                let put = RecordsRequest::Put { job_id, records };
                let ok = matches!(
                    client.records_request(peer, put).await,
                    Ok(RecordsResponse::Stored { .. })
                );
                for (sha256, bytes) in blobs {
                    let put = RecordsRequest::PutBlob {
                        job_id: job_id_for_blobs.clone(),
                        sha256,
                        bytes,
                    };
                    let _ = client.records_request(peer, put).await;
                }
                ok
            });
        }
        let mut reached = 0;
        while let Some(ok) = puts.join_next().await {
            reached += usize::from(ok.unwrap_or(false));
        }
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        reached
    }

    /// This job's records: those held here, else those of the peers closest to
    /// it (verified and kept here, like any replica).
    pub async fn fetch(self: &Arc<Self>, job_id: &str) -> Result<JobRecords, ReplicaError> {
        let held = self.local(job_id).await?;
        if !held.is_empty() {
            return Ok(held);
        }
        self.from_network(job_id, false).await
    }

    /// This job's records here and on the peers closest to it, merged (every
    /// receipt, acceptance and audit anyone asked holds), verified and kept here.
    pub async fn fetch_all(self: &Arc<Self>, job_id: &str) -> Result<JobRecords, ReplicaError> {
        self.from_network(job_id, true).await
    }

    async fn from_network(
        self: &Arc<Self>,
        job_id: &str,
        everything: bool,
    ) -> Result<JobRecords, ReplicaError> {
        let asked = tokio::time::timeout(
            self.config.fetch_timeout,
            self.ask_network(job_id, !everything),
        )
        .await;
        if asked.is_ok() {
            self.stats.fetched.fetch_add(1, Ordering::Relaxed);
        }
        let held = self.local(job_id).await?;
        if held.is_empty() {
            return Err(ReplicaError::NotFound(job_id.to_owned()));
        }
        Ok(held)
    }

    /// Asks the `2k` peers closest to the job; with `first`, stops at the first
    /// answer that leaves an accepted receipt here.
    async fn ask_network(self: &Arc<Self>, job_id: &str, first: bool) {
        let Ok(peers) = self
            .client
            .closest_peers(record_key(job_id), self.config.k * 2)
            .await
        else {
            return;
        };
        let mut gets = tokio::task::JoinSet::new();
        // Twice k: some of the closest may have joined after the records were published.
        for peer in peers.into_iter().take(self.config.k * 2) {
            let (client, job_id) = (self.client.clone(), job_id.to_owned());
            gets.spawn(async move {
                client
                    .records_request(peer, RecordsRequest::Get { job_id })
                    .await
            });
        }
        // With `first`, once one answer leaves an accepted receipt here the others
        // get a short grace (a fast holder must not decide alone: a conflicting
        // acceptance from an honest holder still arrives), then are dropped.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, gets.join_next()).await {
                    Ok(n) => n,
                    Err(_) => return,
                },
                None => gets.join_next().await,
            };
            let Some(answer) = next else { return };
            if let Ok(Ok(RecordsResponse::Records { records })) = answer
                && !records.is_empty()
            {
                let (this, id) = (self.clone(), job_id.to_owned());
                let _ = blocking(move || this.ingest(&id, &records)).await;
                if first
                    && deadline.is_none()
                    && let Ok(held) = self.local(job_id).await
                    && held.accepted().is_some()
                {
                    deadline = Some(tokio::time::Instant::now() + FETCH_GRACE);
                }
            }
        }
    }

    /// A published module or input: held here, else fetched from the peers
    /// closest to `job_id` (its hash checked).
    pub async fn fetch_blob(self: &Arc<Self>, job_id: &str, sha256: &str) -> Option<Vec<u8>> {
        let (store, sha) = (self.store.clone(), sha256.to_owned());
        if let Some(Ok(Some(b))) = blocking(move || store.blob(&sha)).await {
            return Some(b);
        }
        let peers = self
            .client
            .closest_peers(record_key(job_id), self.config.k * 2)
            .await
            .ok()?;
        for peer in peers.into_iter().take(self.config.k * 2) {
            let get = RecordsRequest::GetBlob {
                sha256: sha256.to_owned(),
            };
            if let Ok(RecordsResponse::Blob { bytes: Some(b) }) =
                self.client.records_request(peer, get).await
                && hex::encode(Sha256::digest(&b)) == sha256
            {
                return Some(b);
            }
        }
        None
    }

    /// Republishes what this node holds, a batch at a time, and expires old records.
    async fn republish(self: Arc<Self>) {
        let every = self.config.republish_every;
        let mut tick = tokio::time::interval((every / 8).max(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = self.store.clone();
            let Some(Ok(due)) = blocking(move || {
                let _ = store.expire();
                store.due(every, 64)
            })
            .await
            else {
                continue;
            };
            // A blob named by several publications goes out once a round.
            let mut sent_blobs = std::collections::HashSet::new();
            for job_id in due {
                let Ok(held) = self.local(&job_id).await else {
                    continue;
                };
                let (store, id) = (self.store.clone(), job_id.clone());
                let bodies: Vec<String> = blocking(move || store.records(&id))
                    .await
                    .and_then(Result::ok)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.body)
                    .collect();
                let mut blobs = Vec::new();
                for p in &held.publications {
                    for sha in blob_names(p) {
                        if !sent_blobs.insert(sha.clone()) {
                            continue;
                        }
                        let (store, s) = (self.store.clone(), sha.clone());
                        if let Some(Ok(Some(b))) = blocking(move || store.blob(&s)).await {
                            blobs.push((sha, b));
                        }
                    }
                }
                self.push(&job_id, bodies, blobs).await;
            }
        }
    }
}

/// The top-level `version` of a record's text (empty when there is none); the
/// strict readers check the rest.
fn version_of(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The module and input hashes a publication names.
pub fn blob_names(publication: &Value) -> Vec<String> {
    let m = publication.get("manifest");
    ["module", "input"]
        .iter()
        .filter_map(|k| {
            m.and_then(|m| m.get(k))
                .and_then(|b| b.get("sha256"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}
