//! The job path shared by every front end: check the bytes against the manifest,
//! run the job on the pool, and sign the receipt.

use crate::identity::Identity;
use crate::jcs;
use crate::manifest::Manifest;
use crate::receipt::{Receipt, ReceiptBody, ReceiptPlacement};
use crate::runtime::pool::{PoolError, WorkerPool};
use crate::runtime::{ExecRequest, ExecResult};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Why a job could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The module bytes do not match `manifest.module`.
    #[error(
        "module bytes do not match the manifest: expected sha256 {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes)"
    )]
    ModuleMismatch {
        /// Hash in the manifest.
        expected: String,
        /// Size in the manifest.
        expected_size: u64,
        /// Hash of the bytes given.
        actual: String,
        /// Size of the bytes given.
        actual_size: u64,
    },
    /// The input bytes do not match `manifest.input`.
    #[error("input bytes do not match the manifest: expected sha256 {expected}, got {actual}")]
    InputMismatch {
        /// Hash in the manifest (of empty input when absent).
        expected: String,
        /// Hash of the bytes given.
        actual: String,
    },
    /// The worker pool refused the job.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The job ended for a reason of this machine (worker crash, compile limit,
    /// wall deadline, cancel): no receipt is signed (decision 0033).
    #[error("{}: {}", .0.kind.as_str(), .0.detail)]
    Aborted(crate::runtime::Abort),
    /// The receipt's members have no canonical form, so nothing was signed.
    #[error("the receipt could not be signed: {0}")]
    Unsignable(#[from] crate::jcs::CanonError),
}

/// A finished job: what it printed and the signed receipt.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The runtime's report (stdout, stderr, outcome...).
    pub result: ExecResult,
    /// The signed receipt.
    pub receipt: Receipt,
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Seed of the job's `random_get` stream: a hash of the execution inputs only
/// (module, input, args, env), so that every executor derives the same bytes and
/// no executor or client can steer them through the nonce or the clock.
pub fn random_seed(manifest: &Manifest) -> [u8; 32] {
    let inputs = json!({
        "module": manifest.module.sha256,
        "input": manifest.input_sha256(),
        "args": manifest.args,
        "env": manifest.env,
    });
    let mut h = Sha256::new();
    h.update(b"plasm-random-v1\n");
    h.update(jcs::canonicalize(&inputs).unwrap_or_default());
    h.finalize().into()
}

/// Checks the bytes against the manifest and builds the runtime request.
pub fn exec_request(
    manifest: &Manifest,
    module: Arc<[u8]>,
    input: Vec<u8>,
) -> Result<ExecRequest, JobError> {
    let module_hash = sha256_hex(&module);
    if module_hash != manifest.module.sha256 || module.len() as u64 != manifest.module.size {
        return Err(JobError::ModuleMismatch {
            expected: manifest.module.sha256.clone(),
            expected_size: manifest.module.size,
            actual: module_hash,
            actual_size: module.len() as u64,
        });
    }
    let input_hash = sha256_hex(&input);
    let size_ok = manifest
        .input
        .as_ref()
        .map_or(input.is_empty(), |i| i.size == input.len() as u64);
    if input_hash != manifest.input_sha256() || !size_ok {
        return Err(JobError::InputMismatch {
            expected: manifest.input_sha256(),
            actual: input_hash,
        });
    }
    Ok(ExecRequest {
        module,
        entry: manifest.entry.clone(),
        args: manifest.args.clone(),
        env: manifest
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stdin: input,
        limits: manifest.limits,
        random_seed: random_seed(manifest),
        engine: manifest.requirements.runtime.clone(),
        cancel: Default::default(),
    })
}

/// Signs the receipt of a finished job.
pub fn sign_receipt(
    manifest: &Manifest,
    result: &ExecResult,
    pool: &WorkerPool,
    identity: &Identity,
    queued_at: String,
    placement: ReceiptPlacement,
    finished_at: String,
) -> Result<Receipt, JobError> {
    // A result that never reached a worker (refused, pool closed) started when it was queued.
    let started_at = if result.started_at.is_empty() {
        queued_at.clone()
    } else {
        result.started_at.clone()
    };
    Receipt::sign(
        &ReceiptBody {
            job_id: manifest.job_id().to_owned(),
            module_sha256: manifest.module.sha256.clone(),
            input_sha256: manifest.input_sha256(),
            output_sha256: sha256_hex(&result.stdout),
            outcome: result.outcome,
            exit_code: result.exit_code,
            detail: result.detail.clone(),
            fuel_used: result.fuel_used,
            fuel_limit: manifest.limits.fuel,
            runtime: result
                .runtime
                .clone()
                .unwrap_or_else(|| pool.runtime().info()),
            started_at,
            finished_at,
            stderr_sha256: sha256_hex(&result.stderr),
            memory_limit_hit: result.memory_limit_hit,
            queued_at,
            placement,
        },
        identity,
    )
    .map_err(JobError::from)
}

/// A job handed to the pool, waiting for its result. The CLI, the API service and
/// the network executor all run jobs through it, so receipts are signed one way.
pub struct Submitted {
    result: tokio::sync::oneshot::Receiver<ExecResult>,
    /// Hears when a worker begins the job (taken by [`Self::started`]).
    started: Option<tokio::sync::oneshot::Receiver<String>>,
    queued_at: String,
    placement: ReceiptPlacement,
}

impl Submitted {
    /// Queues `request` on `pool`; fails at once when the pool is full.
    pub fn start(pool: &WorkerPool, request: ExecRequest) -> Result<Self, PoolError> {
        let queued_at = crate::time::now_rfc3339();
        let (tx, started) = tokio::sync::oneshot::channel();
        Ok(Self {
            result: pool.submit_observed(request, Some(tx))?,
            started: Some(started),
            queued_at,
            placement: ReceiptPlacement::local(),
        })
    }

    /// Queues `request` again in the place a steal kept for it (swarm mode).
    pub fn start_reserved(
        pool: &WorkerPool,
        request: ExecRequest,
        place: crate::runtime::pool::Reserved,
    ) -> Result<Self, PoolError> {
        let queued_at = crate::time::now_rfc3339();
        let (tx, started) = tokio::sync::oneshot::channel();
        Ok(Self {
            result: pool.submit_reserved(request, Some(tx), place)?,
            started: Some(started),
            queued_at,
            placement: ReceiptPlacement::local(),
        })
    }

    /// Waits until a worker begins the job; its start time, or `None` when the
    /// job will never start (the pool closed) or this was asked before.
    pub async fn started(&mut self) -> Option<String> {
        self.started.take()?.await.ok()
    }

    /// Records where the job came from (the receipt's `placement`); local by default.
    pub fn placed(mut self, placement: ReceiptPlacement) -> Self {
        self.placement = placement;
        self
    }

    /// Waits for the result (async) and signs the receipt.
    pub async fn finish(
        self,
        pool: &WorkerPool,
        identity: &Identity,
        manifest: &Manifest,
    ) -> Result<JobOutput, JobError> {
        let Self {
            result,
            queued_at,
            placement,
            ..
        } = self;
        let result = result.await.map_err(|_| PoolError::Closed)?;
        sign(pool, identity, manifest, result, queued_at, placement)
    }

    /// Waits for the result on a non-async thread and signs the receipt.
    pub fn finish_blocking(
        self,
        pool: &WorkerPool,
        identity: &Identity,
        manifest: &Manifest,
    ) -> Result<JobOutput, JobError> {
        let Self {
            result,
            queued_at,
            placement,
            ..
        } = self;
        let result = result.blocking_recv().map_err(|_| PoolError::Closed)?;
        sign(pool, identity, manifest, result, queued_at, placement)
    }
}

fn sign(
    pool: &WorkerPool,
    identity: &Identity,
    manifest: &Manifest,
    result: ExecResult,
    queued_at: String,
    placement: ReceiptPlacement,
) -> Result<JobOutput, JobError> {
    if let Some(abort) = result.aborted {
        return Err(JobError::Aborted(abort));
    }
    let finished_at = crate::time::now_rfc3339();
    let receipt = sign_receipt(
        manifest,
        &result,
        pool,
        identity,
        queued_at,
        placement,
        finished_at,
    )?;
    Ok(JobOutput { result, receipt })
}

/// Runs a job on `pool` from a non-async thread and signs its receipt.
pub fn run_blocking(
    pool: &WorkerPool,
    identity: &Identity,
    manifest: &Manifest,
    module: Arc<[u8]>,
    input: Vec<u8>,
) -> Result<JobOutput, JobError> {
    let request = exec_request(manifest, module, input)?;
    Submitted::start(pool, request)?.finish_blocking(pool, identity, manifest)
}

/// Process exit status of `plasm run` for a finished job.
///
/// | status | meaning |
/// |---|---|
/// | 0–117 | the job exited with this code |
/// | 120 | the job exited with a code outside 0–117 (the receipt has it) |
/// | 118 | `--remote`: no executor found or none completed the job |
/// | 121 | invalid input: unreadable file, bad manifest, bytes that do not match it |
/// | 122 | internal error (pool, identity, I/O) |
/// | 123 | `invalid_module` |
/// | 124 | `out_of_fuel` |
/// | 125 | `memory_limit` |
/// | 126 | `output_limit` |
/// | 127 | `trapped` |
/// | 119 | `stack_overflow` |
pub fn exit_status(result: &ExecResult) -> u8 {
    outcome_exit_status(result.outcome, result.exit_code)
}

/// [`exit_status`] of a finished job from its receipt's `outcome` and `exit_code`
/// (`None` when the receipt names no outcome this build knows). The CLI's API
/// commands, the API's job status, the dashboard and the PHP SDK all use this table.
pub fn receipt_exit_status(receipt: &serde_json::Map<String, serde_json::Value>) -> Option<u8> {
    let outcome = crate::runtime::Outcome::parse(receipt.get("outcome")?.as_str()?)?;
    Some(outcome_exit_status(
        outcome,
        receipt.get("exit_code").and_then(serde_json::Value::as_i64),
    ))
}

/// [`exit_status`] from an outcome and an exit code.
pub fn outcome_exit_status(outcome: crate::runtime::Outcome, exit_code: Option<i64>) -> u8 {
    use crate::runtime::Outcome;
    match outcome {
        Outcome::Exited => match exit_code {
            Some(c @ 0..=117) => c as u8,
            _ => 120,
        },
        Outcome::InvalidModule => 123,
        Outcome::OutOfFuel => 124,
        Outcome::MemoryLimit => 125,
        Outcome::OutputLimit => 126,
        Outcome::Trapped => 127,
        Outcome::StackOverflow => 119,
    }
}

/// Exit status of `plasm run` for invalid input.
pub const EXIT_INVALID_INPUT: u8 = 121;
/// Exit status of `plasm run --remote` when no executor completed the job.
pub const EXIT_REMOTE: u8 = 118;
/// Exit status of `plasm run` for an internal error.
pub const EXIT_INTERNAL: u8 = 122;

/// A job this node ran for a peer: who asked, how it ended, what it cost, when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServedJob {
    /// The job id.
    pub job_id: String,
    /// The requester.
    pub requester: String,
    /// The receipt's outcome (`None`: no receipt, see `error`).
    pub outcome: Option<String>,
    /// `plasm run`'s exit status for it (`None`: no receipt).
    pub exit_status: Option<u8>,
    /// Fuel used (`None`: no receipt).
    pub fuel_used: Option<u64>,
    /// Which way the bytes came (`direct`, `hole-punched`, `relayed`).
    pub path: String,
    /// When its bundle was accepted (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// Why it ended without a receipt.
    pub error: Option<String>,
    /// The signed receipt, when there is one.
    pub receipt: Option<String>,
}
