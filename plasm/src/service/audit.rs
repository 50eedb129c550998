//! Audits by re-execution (decision 0057): a node runs a receipt's job again,
//! on the receipt's own engine and fuel model, and signs what it found.
//!
//! A receipt does not carry the manifest, so a job is auditable only when its
//! submitter published the manifest (a signed publication, replicated beside the
//! receipt) and, when the job has an input, the input; or when the auditor is
//! given them. The verdict is `confirmed`, `mismatch` (with the fields that
//! differ) or `not_auditable` (with why: nothing published, an engine or fuel
//! model this build does not have, a receipt format that does not name them).
//! A verdict this node reached counts against the executor's local reputation
//! on a mismatch; audits signed by other nodes are shown, never counted.

use super::{Service, ServiceError};
use crate::manifest::Manifest;
use crate::receipt::Receipt;
use crate::receipt::signed::{self, AUDIT};
use serde_json::{Map, Value};
use std::sync::Arc;

/// What an audit is given; anything missing is fetched by hash from the
/// network when its submitter published it.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    /// The receipt to check.
    pub receipt: Receipt,
    /// The job's manifest.
    pub manifest: Option<Value>,
    /// The module bytes.
    pub module: Option<Vec<u8>>,
    /// The input bytes.
    pub input: Option<Vec<u8>>,
}

/// The receipt members an audit compares: every result of the run that the
/// deterministic profile makes the same on any engine and CPU.
pub const COMPARED: [&str; 6] = [
    "output",
    "stderr",
    "exit_code",
    "outcome",
    "fuel_used",
    "memory_limit_hit",
];

/// Receipt outcomes an audit can reproduce. Endings that depend on the machine
/// (a wall-clock deadline, a cancel, the host running out of resources) are
/// never signed as receipts (decision 0040); an outcome outside this list, from
/// a newer release, is answered `not_auditable`, never `mismatch`.
pub const REPRODUCIBLE: [&str; 7] = [
    "exited",
    "trapped",
    "out_of_fuel",
    "memory_limit",
    "output_limit",
    "invalid_module",
    "stack_overflow",
];

/// The fields of `original` and `rerun` that differ, of [`COMPARED`].
pub fn differing(original: &Map<String, Value>, rerun: &Map<String, Value>) -> Vec<String> {
    COMPARED
        .iter()
        .filter(|k| original.get(**k) != rerun.get(**k))
        .map(|k| (*k).to_owned())
        .collect()
}

enum Verdict {
    Confirmed,
    Mismatch(Vec<String>),
    NotAuditable(String),
}

impl Service {
    /// Audits `req.receipt` by running its job here; signs, stores and
    /// replicates the verdict, and returns the signed audit record.
    pub async fn audit(self: &Arc<Self>, req: AuditRequest) -> Result<Value, ServiceError> {
        let verified = req
            .receipt
            .verify()
            .map_err(|e| ServiceError::Unprocessable(format!("not a valid receipt: {e}")))?;
        let verdict = self.reach_verdict(&req, &verified.job_id).await?;
        let (verdict_name, differs, reason) = match verdict {
            Verdict::Confirmed => ("confirmed", Vec::new(), String::new()),
            Verdict::Mismatch(d) => ("mismatch", d, String::new()),
            Verdict::NotAuditable(why) => ("not_auditable", Vec::new(), why),
        };
        let mut m = Map::new();
        m.insert("job_id".into(), verified.job_id.clone().into());
        m.insert(
            "receipt_sha256".into(),
            signed::receipt_sha256(&req.receipt)
                .map_err(|_| ServiceError::Internal)?
                .into(),
        );
        m.insert("executor".into(), verified.peer_id.clone().into());
        m.insert("verdict".into(), verdict_name.into());
        m.insert(
            "differs".into(),
            Value::Array(differs.iter().cloned().map(Value::from).collect()),
        );
        m.insert(
            "reason".into(),
            reason.chars().take(500).collect::<String>().into(),
        );
        m.insert("at".into(), crate::time::now_rfc3339().into());
        let record = signed::sign(&AUDIT, m, &self.identity).map_err(|_| ServiceError::Internal)?;
        if verdict_name == "mismatch"
            && let Ok(peer) = verified.peer_id.parse::<libp2p::PeerId>()
        {
            // This node's own evidence: the executor signed a result its job does not give.
            self.sched
                .record(peer, crate::sched::reputation::Evidence::Invalid);
            tracing::warn!(job_id = verified.job_id, executor = %peer, ?differs, "audit mismatch");
        }
        self.metrics.audits(verdict_name);
        if let Some(replicas) = self.replicas.clone() {
            let records = vec![
                serde_json::to_string(req.receipt.as_map()).unwrap_or_default(),
                record.to_json(),
            ];
            let id = verified.job_id.clone();
            let this = replicas.clone();
            // Stored here before the answer; replicated in the background.
            let (store_this, sid, texts) = (this.clone(), id.clone(), records.clone());
            let _ = tokio::task::spawn_blocking(move || store_this.ingest(&sid, &texts)).await;
            tokio::spawn(async move {
                this.publish(&id, records, Vec::new()).await;
            });
        }
        Ok(Value::Object(record.members))
    }

    async fn reach_verdict(
        self: &Arc<Self>,
        req: &AuditRequest,
        job_id: &str,
    ) -> Result<Verdict, ServiceError> {
        let receipt = req.receipt.as_map();
        if req.receipt.is_v1() {
            return Ok(Verdict::NotAuditable(
                "a v1 receipt names neither stderr nor the engine configuration".into(),
            ));
        }
        let outcome = req.receipt.str_field("outcome").unwrap_or("");
        if !REPRODUCIBLE.contains(&outcome) {
            return Ok(Verdict::NotAuditable(format!(
                "outcome {outcome} depends on the machine"
            )));
        }
        let runtime = receipt.get("runtime").cloned().unwrap_or(Value::Null);
        let field = |k: &str| runtime.get(k).and_then(Value::as_str).unwrap_or("");
        let (engine, model, config) = (field("name"), field("metering"), field("config"));
        // The manifest: given, else the submitter's publication.
        let manifest = match &req.manifest {
            Some(m) => Manifest::from_value(m.clone())
                .map_err(|e| ServiceError::Unprocessable(format!("the manifest: {e}")))?,
            None => match self.published_manifest(job_id).await {
                Some(m) => m,
                None => {
                    return Ok(Verdict::NotAuditable(
                        "the submitter did not publish the manifest".into(),
                    ));
                }
            },
        };
        // An audit runs a job here like any other: within this node's maxima.
        self.maxima.check(&manifest.limits)?;
        if manifest.job_id() != job_id {
            return Err(ServiceError::Unprocessable(
                "the manifest is not the receipt's job".into(),
            ));
        }
        let Some(module) = self
            .bytes(job_id, &manifest.module.sha256, req.module.clone())
            .await
        else {
            return Ok(Verdict::NotAuditable(format!(
                "module {} is neither given nor published",
                manifest.module.sha256
            )));
        };
        let input = match (&manifest.input, &req.input) {
            (_, Some(i)) => i.clone(),
            (None, None) => Vec::new(),
            (Some(i), None) => match self.bytes(job_id, &i.sha256, None).await {
                Some(b) => b,
                None => {
                    return Ok(Verdict::NotAuditable(
                        "the input is private: neither given nor published".into(),
                    ));
                }
            },
        };
        let Some(pool) = self.pool.clone() else {
            return Err(ServiceError::Unprocessable(
                "this node runs no jobs, so it cannot audit".into(),
            ));
        };
        let mut request = crate::job::exec_request(&manifest, module.into(), input)
            .map_err(|e| ServiceError::Unprocessable(e.to_string()))?;
        request.engine = Some(engine.to_owned());
        let info = pool.runtime().info_for(&request);
        if info.name != engine || !pool.runtime().offers(Some(engine)) {
            return Ok(Verdict::NotAuditable(format!(
                "engine {engine} is not in this build"
            )));
        }
        if info.metering != model {
            return Ok(Verdict::NotAuditable(format!("model {model}")));
        }
        if format!("sha256:{}", info.config_sha256) != config {
            return Ok(Verdict::NotAuditable(format!(
                "engine configuration {config} is not this build's"
            )));
        }
        let submitted = crate::job::Submitted::start(&pool, request).map_err(|e| match e {
            crate::runtime::pool::PoolError::Busy { .. } => ServiceError::Busy,
            e => ServiceError::Unprocessable(e.to_string()),
        })?;
        let out = submitted
            .finish(&pool, &self.identity, &manifest)
            .await
            .map_err(|e| ServiceError::Unprocessable(format!("the re-run: {e}")))?;
        let differs = differing(receipt, out.receipt.as_map());
        Ok(if differs.is_empty() {
            Verdict::Confirmed
        } else {
            Verdict::Mismatch(differs)
        })
    }

    async fn published_manifest(self: &Arc<Self>, job_id: &str) -> Option<Manifest> {
        let replicas = self.replicas.clone()?;
        let records = replicas.fetch(job_id).await.ok()?;
        records.publications.iter().find_map(|p| {
            let m = Manifest::from_value(p.get("manifest")?.clone()).ok()?;
            (m.job_id() == job_id).then_some(m)
        })
    }

    /// Bytes by hash: given, else this node's module store, else published.
    async fn bytes(
        self: &Arc<Self>,
        job_id: &str,
        sha256: &str,
        given: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        if given.is_some() {
            return given;
        }
        let (store, sha) = (self.store.clone(), sha256.to_owned());
        if let Ok(Ok(Some(b))) = tokio::task::spawn_blocking(move || store.module(&sha)).await {
            return Some(b);
        }
        self.replicas.clone()?.fetch_blob(job_id, sha256).await
    }

    /// The audits held here or on the peers holding the job's replicas.
    pub async fn audits(&self, job_id: &str) -> Result<Vec<Value>, ServiceError> {
        let Some(replicas) = self.replicas.clone() else {
            return Ok(Vec::new());
        };
        match replicas.fetch_all(job_id).await {
            Ok(r) => Ok(r.audits),
            Err(crate::service::replica::ReplicaError::NotFound(_)) => Ok(Vec::new()),
            Err(_) => Err(ServiceError::Internal),
        }
    }
}
