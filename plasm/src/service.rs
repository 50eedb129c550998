//! The node as a service: accepts submissions, places them locally or on a peer,
//! records every step durably, and publishes per-job progress events.
//!
//! The HTTP layer (`api`) is a thin mapping onto [`Service`]; the CLI's API
//! commands and the PHP SDK see only the HTTP layer.

use crate::identity::Identity;
use crate::job;
use crate::manifest::{Manifest, ManifestError};
use crate::net::Client;
use crate::net::remote::{self, RemoteOptions};
use crate::runtime::pool::{PoolError, WorkerPool};
use crate::store::{JobRow, Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Where a job should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On this node.
    Local,
    /// On another peer.
    Remote,
    /// Here when there is capacity, else on a peer.
    Any,
}

impl Placement {
    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(Self::Local),
            "remote" => Some(Self::Remote),
            "any" => Some(Self::Any),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
            Self::Any => "any",
        }
    }
}

/// Why the service refused or failed a request; the HTTP layer maps each to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is not what the API expects (not JSON, bad base64, unknown placement). HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// The manifest breaks the schema. HTTP 422.
    #[error("manifest violates the schema at {path} ({rule}): {message}")]
    InvalidManifest {
        /// JSON pointer.
        path: String,
        /// Schema keyword.
        rule: String,
        /// Explanation.
        message: String,
    },
    /// Valid JSON but unusable: bytes do not match the manifest, module not held, placement impossible. HTTP 422.
    #[error("{0}")]
    Unprocessable(String),
    /// The job id or nonce was already submitted. HTTP 409.
    #[error("a job with this manifest or nonce was already submitted (job {0})")]
    Duplicate(String),
    /// The queue is full. HTTP 429 with Retry-After.
    #[error("the job queue is full; retry later")]
    Busy,
    /// The node is shutting down. HTTP 503.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Nothing with that id. HTTP 404.
    #[error("{0} not found")]
    NotFound(String),
    /// Something failed inside the node; details are logged, not returned. HTTP 500.
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store");
        Self::Internal
    }
}

/// A state change of a job, as streamed to clients.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobEvent {
    /// Job id.
    pub job_id: String,
    /// `queued`, `offered`, `running`, `succeeded`, `failed`.
    pub state: String,
    /// Executor peer id, when known.
    pub executor: Option<String>,
    /// Extra detail.
    pub detail: Option<String>,
    /// RFC 3339 time.
    pub at: String,
}

/// A submission, decoded.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The manifest value.
    pub manifest: Value,
    /// Module bytes, if sent.
    pub module: Option<Vec<u8>>,
    /// Input bytes.
    pub input: Vec<u8>,
    /// Placement.
    pub placement: Placement,
}

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Finished jobs by outcome (receipt outcomes) plus `failed`.
    pub jobs: Mutex<HashMap<String, u64>>,
    /// Fuel consumed by jobs executed here.
    pub fuel: AtomicU64,
}

/// The service.
pub struct Service {
    store: Arc<Store>,
    pool: Option<Arc<WorkerPool>>,
    identity: Arc<Identity>,
    client: Option<Client>,
    events: Mutex<HashMap<String, broadcast::Sender<JobEvent>>>,
    shutting_down: AtomicBool,
    /// Metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("peer_id", &self.identity.peer_id())
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ServiceError::Internal)?
        .map_err(ServiceError::from)
}

impl Service {
    /// Creates the service.
    pub fn new(
        store: Arc<Store>,
        pool: Option<Arc<WorkerPool>>,
        identity: Arc<Identity>,
        client: Option<Client>,
    ) -> Self {
        Self {
            store,
            pool,
            identity,
            client,
            events: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            metrics: Metrics::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
    /// The pool (executing nodes).
    pub fn pool(&self) -> Option<&Arc<WorkerPool>> {
        self.pool.as_ref()
    }
    /// The identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }
    /// The network client.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// Stops accepting submissions.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Marks every job still in flight as failed with `why` (end of a shutdown grace period).
    pub async fn fail_in_flight(&self, why: &str) {
        let ids: Vec<String> = self
            .events
            .lock()
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.fail(&id, why).await;
        }
    }

    /// Jobs still in flight (with an event channel open).
    pub fn in_flight(&self) -> usize {
        self.events.lock().map(|e| e.len()).unwrap_or(0)
    }

    fn emit(&self, job_id: &str, state: &str, executor: Option<String>, detail: Option<String>) {
        let event = JobEvent {
            job_id: job_id.to_owned(),
            state: state.to_owned(),
            executor,
            detail,
            at: crate::time::now_rfc3339(),
        };
        if let Ok(mut map) = self.events.lock() {
            if let Some(tx) = map.get(job_id) {
                let _ = tx.send(event);
            }
            if state == "succeeded" || state == "failed" {
                map.remove(job_id);
            }
        }
    }

    /// Live events of a job still in flight.
    pub fn subscribe(&self, job_id: &str) -> Option<broadcast::Receiver<JobEvent>> {
        self.events
            .lock()
            .ok()?
            .get(job_id)
            .map(|tx| tx.subscribe())
    }

    /// Accepts a submission; returns the job id once the job is durably queued.
    pub async fn submit(self: &Arc<Self>, sub: Submission) -> Result<String, ServiceError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        let manifest = Manifest::from_value(sub.manifest).map_err(|e| match e {
            ManifestError::Schema {
                path,
                rule,
                message,
            } => ServiceError::InvalidManifest {
                path,
                rule,
                message,
            },
            other => ServiceError::Unprocessable(other.to_string()),
        })?;
        let module: Arc<[u8]> = match sub.module {
            Some(bytes) => bytes.into(),
            None => {
                let store = self.store.clone();
                let sha = manifest.module.sha256.clone();
                blocking(move || store.module(&sha)).await?.map(Into::into).ok_or_else(|| {
                    ServiceError::Unprocessable(format!(
                        "module {} is not held by this node: send it in `module` or PUT /v1/modules first",
                        manifest.module.sha256
                    ))
                })?
            }
        };
        let request = job::exec_request(&manifest, module.clone(), sub.input.clone())
            .map_err(|e| ServiceError::Unprocessable(e.to_string()))?;
        let placement = match (sub.placement, &self.pool, &self.client) {
            (Placement::Local | Placement::Any, None, _) if sub.placement == Placement::Local => {
                return Err(ServiceError::Unprocessable(
                    "this node does not execute jobs".into(),
                ));
            }
            (Placement::Remote, _, None) => {
                return Err(ServiceError::Unprocessable(
                    "this node has no network".into(),
                ));
            }
            (p, _, _) => p,
        };
        let job_id = manifest.job_id().to_owned();
        {
            let (store, m, id, nonce, text, p) = (
                self.store.clone(),
                module.clone(),
                job_id.clone(),
                manifest.nonce.clone(),
                manifest.as_value().to_string(),
                placement.as_str(),
            );
            // One trip to the blocking pool: keep the module, record the job.
            let inserted = tokio::task::spawn_blocking(move || {
                store.put_module(&m)?;
                store.insert_job(&id, &nonce, &text, p)
            })
            .await
            .map_err(|_| ServiceError::Internal)?;
            match inserted {
                Err(StoreError::Duplicate) => return Err(ServiceError::Duplicate(job_id)),
                other => other?,
            }
        }
        let (tx, _) = broadcast::channel(16);
        if let Ok(mut map) = self.events.lock() {
            map.insert(job_id.clone(), tx);
        }
        // Local first when allowed and there is room; otherwise a peer.
        let local = match (placement, &self.pool) {
            (Placement::Local | Placement::Any, Some(pool)) => {
                match job::Submitted::start(pool, request) {
                    Ok(submitted) => Some((pool.clone(), submitted)),
                    Err(PoolError::Busy { .. })
                        if placement == Placement::Any && self.client.is_some() =>
                    {
                        None
                    }
                    Err(e) => {
                        // Refused before it ran: forget it, so the same manifest can be retried.
                        let (store, id) = (self.store.clone(), job_id.clone());
                        let _ = blocking(move || store.delete_job(&id)).await;
                        if let Ok(mut map) = self.events.lock() {
                            map.remove(&job_id);
                        }
                        return Err(if matches!(e, PoolError::Busy { .. }) {
                            ServiceError::Busy
                        } else {
                            ServiceError::Internal
                        });
                    }
                }
            }
            _ => None,
        };
        let this = self.clone();
        let id = job_id.clone();
        match local {
            Some((pool, submitted)) => {
                let me = self.identity.peer_id().to_string();
                self.emit(&job_id, "running", Some(me.clone()), None);
                tokio::spawn(async move {
                    // Recorded off the request path; `finish` comes after it in this task.
                    let (store, rid, rme) = (this.store.clone(), id.clone(), me.clone());
                    let _ = blocking(move || store.mark_running(&rid, &rme)).await;
                    match submitted.finish(&pool, &this.identity, &manifest).await {
                        Ok(out) => {
                            this.metrics
                                .fuel
                                .fetch_add(out.result.fuel_used, Ordering::Relaxed);
                            this.finish(&id, &me, out.receipt, out.result.stdout).await;
                        }
                        Err(_) => this.fail(&id, "the worker pool stopped").await,
                    }
                });
            }
            None => {
                self.emit(
                    &job_id,
                    "offered",
                    None,
                    Some("looking for an executor".into()),
                );
                tokio::spawn(async move {
                    let Some(client) = this.client.clone() else {
                        return;
                    };
                    let r = remote::run_remote(
                        &client,
                        &manifest,
                        module,
                        sub.input,
                        &RemoteOptions::default(),
                    )
                    .await;
                    match r {
                        Ok(out) => {
                            let exec = out.executor.to_string();
                            this.emit(
                                &id,
                                "running",
                                Some(exec.clone()),
                                Some(format!("accepted by {exec}")),
                            );
                            this.finish(&id, &exec, out.receipt, out.stdout).await;
                        }
                        Err(e) => this.fail(&id, &e.to_string()).await,
                    }
                });
            }
        }
        Ok(job_id)
    }

    async fn finish(
        &self,
        job_id: &str,
        executor: &str,
        receipt: crate::receipt::Receipt,
        stdout: Vec<u8>,
    ) {
        let outcome = receipt.str_field("outcome").unwrap_or("unknown").to_owned();
        let text = serde_json::to_string(receipt.as_map()).unwrap_or_default();
        let (store, id, exec) = (self.store.clone(), job_id.to_owned(), executor.to_owned());
        // Durable before anyone hears about it.
        if let Err(e) = blocking(move || store.finish(&id, &exec, &text, &stdout)).await {
            tracing::error!(job_id, error = %e, "could not store a receipt");
            self.emit(
                job_id,
                "failed",
                None,
                Some("could not store the receipt".into()),
            );
            return;
        }
        if let Ok(mut m) = self.metrics.jobs.lock() {
            *m.entry(outcome.clone()).or_default() += 1;
        }
        self.emit(
            job_id,
            "succeeded",
            Some(executor.to_owned()),
            Some(outcome),
        );
    }

    async fn fail(&self, job_id: &str, why: &str) {
        let (store, id, w) = (self.store.clone(), job_id.to_owned(), why.to_owned());
        let _ = blocking(move || store.fail(&id, &w)).await;
        if let Ok(mut m) = self.metrics.jobs.lock() {
            *m.entry("failed".into()).or_default() += 1;
        }
        self.emit(job_id, "failed", None, Some(why.to_owned()));
    }

    /// The stored job.
    pub async fn job(&self, job_id: &str) -> Result<JobRow, ServiceError> {
        let (store, id) = (self.store.clone(), job_id.to_owned());
        blocking(move || store.job(&id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("job {job_id}")))
    }

    /// Waits until the job ends or `timeout` passes, then returns its stored state.
    pub async fn wait(&self, job_id: &str, timeout: Duration) -> Result<JobRow, ServiceError> {
        if let Some(mut rx) = self.subscribe(job_id) {
            let _ = tokio::time::timeout(timeout, async {
                while let Ok(e) = rx.recv().await {
                    if e.state == "succeeded" || e.state == "failed" {
                        break;
                    }
                }
            })
            .await;
        }
        self.job(job_id).await
    }
}
