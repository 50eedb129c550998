//! The job protocol `/plasm/job/1.0.0`: consent first, bytes second.
//!
//! Two request-response exchanges on one protocol, CBOR-encoded, each with a size
//! cap enforced while reading (an oversized message fails the stream, it is never
//! buffered whole):
//!
//! 1. `Offer { manifest }` → `Accept { job_id, has_module, receipt? }` | `Decline { reason, message }`
//! 2. `Bundle { job_id, module?, input, placement? }` → `Result { receipt, stdout, stderr, handoff? }` | `Failure { reason, message }`
//!
//! The manifest and the receipt travel as JSON text, so the bytes that were hashed
//! and signed are the bytes that arrive. `memory-bank/wire-protocol.md` is the
//! written specification.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// Protocol id of the job protocol.
pub const JOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/plasm/job/1.0.0");
/// Protocol id of plasm's Kademlia DHT (never the IPFS one).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/plasm/kad/1.0.0");
/// Largest manifest text accepted in an offer.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// Requester → executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobRequest {
    /// Step 1: the manifest, without any module bytes.
    Offer {
        /// Manifest JSON text.
        manifest: String,
    },
    /// Step 3: the bytes of an accepted job.
    Bundle {
        /// The job id the executor accepted.
        job_id: String,
        /// Module bytes, left out when the executor said it holds the module.
        #[serde(with = "serde_bytes")]
        module: Option<Vec<u8>>,
        /// Input bytes (empty when the manifest has no input).
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
        /// Which attempt this is, and whose job it takes over (signed into the
        /// receipt's placement). Absent from requesters before it was added.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placement: Option<BundlePlacement>,
    },
}

/// The placement a requester asks an executor to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundlePlacement {
    /// 1 for the first executor; one more for each take-over.
    pub attempt: u32,
    /// The executor that held the job before and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_over_from: Option<String>,
    /// Swarm mode: this requester is the busy node that stole the job from its
    /// own queue (decision 0053); the executor checks it is the sender, runs the
    /// job under its steal policy and signs it as `placement.stolen_from`.
    /// Absent from requesters before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stolen_from: Option<String>,
    /// This requester accepts a receipt signed by another peer with this
    /// executor's signed hand-off (swarm mode): only then may the executor let
    /// an idle peer steal the job from its queue. Absent (false) from requesters
    /// before it was added, whose jobs are never stolen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handoff: bool,
}

/// Why an executor declines an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// No free worker, queue or offer slot.
    Busy,
    /// The manifest asks for a runtime this node does not run.
    UnsupportedRuntime,
    /// The manifest asks for a label this node does not advertise.
    MissingLabel,
    /// A limit (fuel, memory, output, module or input size) exceeds this node's maximum.
    OverLimit,
    /// Refused by policy: not an executor, stale or future `created_at`, invalid manifest.
    Policy,
    /// This nonce was already offered to this node.
    ReplayedNonce,
}

/// Why an executor could not return a result for a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// No accepted offer with this job id from this peer (never offered, or expired).
    UnknownJob,
    /// The module bytes are missing or do not match the manifest.
    ModuleMismatch,
    /// The input bytes do not match the manifest.
    InputMismatch,
    /// The worker pool was full when the bundle arrived.
    Busy,
    /// The node failed internally (it is shutting down, a worker died).
    Internal,
}

/// Executor → requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobResponse {
    /// The offer is accepted and reserved for a while.
    Accept {
        /// The job id the executor computed.
        job_id: String,
        /// Whether the executor already holds the module (the bundle may leave it out).
        has_module: bool,
        /// The receipt version the executor will sign (decision 0048): a
        /// requester refuses a receipt of any other. Absent from executors
        /// before it was added (they may sign version 1), so optional on the wire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receipt: Option<String>,
    },
    /// The offer is declined.
    Decline {
        /// Typed reason.
        reason: DeclineReason,
        /// Human-readable detail.
        message: String,
    },
    /// The job ran: the signed receipt and what it printed (capped by the manifest).
    Result {
        /// Receipt JSON text, signed by the executor.
        receipt: String,
        /// stdout.
        #[serde(with = "serde_bytes")]
        stdout: Vec<u8>,
        /// stderr.
        #[serde(with = "serde_bytes")]
        stderr: Vec<u8>,
        /// Swarm mode: the job was stolen from this executor's queue and run by
        /// another peer, which signed the receipt; this executor's signed
        /// hand-off (JSON text) names it. Only for requesters that said
        /// `handoff` in their bundle.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handoff: Option<String>,
    },
    /// The bundle could not be run.
    Failure {
        /// Typed reason.
        reason: FailureReason,
        /// Human-readable detail.
        message: String,
    },
}

/// The snake_case wire name of a reason (its serde spelling).
fn wire_name(reason: &impl Serialize) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl std::fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&wire_name(self))
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&wire_name(self))
    }
}
