//! `/plasm/records/1.0.0`: receipts and the records beside them, replicated on
//! the peers closest to a job id and fetched from any of them (decision 0056).
//!
//! A request-response protocol of its own rather than Kademlia's records: one
//! job has several records (receipts of re-placed attempts, an acceptance,
//! audits), each must be verified before it is stored, and the store must be
//! persistent and bounded, none of which libp2p's record store does. Kademlia
//! still decides where records live: the `k` peers closest to the record key
//! (`plasm-records:` + job id). Messages are CBOR, bounded by the codec; the
//! event loop only forwards them (rate-limited per peer) to the replica
//! service, which verifies and stores off the async threads.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The protocol id.
pub const RECORDS_PROTOCOL: StreamProtocol = StreamProtocol::new("/plasm/records/1.0.0");
/// Largest record text (the largest form: a publication with its manifest).
pub const MAX_RECORD_BYTES: usize = 96 * 1024;
/// Records in one put or one answer: every record one job may have.
pub const MAX_RECORDS_PER_MESSAGE: usize = 32;
/// Largest message either way: a blob (module or input) of up to 32 MiB, or a
/// full set of records, with room for CBOR framing.
pub const MAX_RECORDS_MESSAGE_BYTES: u64 = 33 * 1024 * 1024;
/// Time a records request may take.
pub const RECORDS_TIMEOUT: Duration = Duration::from_secs(30);
/// Inbound records requests waiting for the replica service.
pub const RECORDS_INBOUND_QUEUE: usize = 64;

/// A request for a replica holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordsRequest {
    /// Store these records of one job (JSON texts: receipts, acceptances,
    /// publications, audits).
    Put {
        /// The job.
        job_id: String,
        /// The records.
        records: Vec<String>,
    },
    /// Every record held for a job.
    Get {
        /// The job.
        job_id: String,
    },
    /// Store a published module or input (its hash is checked).
    PutBlob {
        /// The job whose publication names the blob.
        job_id: String,
        /// Hex SHA-256 of the bytes.
        sha256: String,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// A published module or input by hash.
    GetBlob {
        /// Hex SHA-256.
        sha256: String,
    },
}

/// A replica holder's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordsResponse {
    /// How many records were new here, and why any were refused.
    Stored {
        /// New records stored.
        stored: u32,
        /// One reason per refused record.
        refused: Vec<String>,
    },
    /// The records held for a job (possibly none).
    Records {
        /// JSON texts.
        records: Vec<String>,
    },
    /// A blob, or none.
    Blob {
        /// The bytes when held.
        #[serde(with = "serde_bytes")]
        bytes: Option<Vec<u8>>,
    },
    /// Not served: rate-limited, busy, malformed or not a replica holder.
    Refused {
        /// Why.
        reason: String,
    },
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RecordsRequest {
    /// Within every bound a holder checks before looking further.
    pub fn is_sane(&self) -> bool {
        match self {
            Self::Put { job_id, records } => {
                is_hex64(job_id)
                    && !records.is_empty()
                    && records.len() <= MAX_RECORDS_PER_MESSAGE
                    && records.iter().all(|r| r.len() <= MAX_RECORD_BYTES)
            }
            Self::Get { job_id } => is_hex64(job_id),
            Self::PutBlob { job_id, sha256, .. } => is_hex64(job_id) && is_hex64(sha256),
            Self::GetBlob { sha256 } => is_hex64(sha256),
        }
    }

    /// The record key a put is for (`None` for gets). A blob is put under the
    /// job key of the publication that names it, which the holder checks.
    pub fn put_key(&self) -> Option<Vec<u8>> {
        match self {
            Self::Put { job_id, .. } => Some(record_key(job_id)),
            Self::PutBlob { job_id, .. } => Some(record_key(job_id)),
            _ => None,
        }
    }

    /// The kind of request, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Put { .. } => "put",
            Self::Get { .. } => "get",
            Self::PutBlob { .. } => "put_blob",
            Self::GetBlob { .. } => "get_blob",
        }
    }
}

impl RecordsResponse {
    /// Within the bounds a fetcher checks before verifying anything.
    pub fn is_sane(&self) -> bool {
        match self {
            Self::Records { records } => {
                records.len() <= MAX_RECORDS_PER_MESSAGE
                    && records.iter().all(|r| r.len() <= MAX_RECORD_BYTES)
            }
            Self::Stored { refused, .. } => {
                refused.len() <= MAX_RECORDS_PER_MESSAGE && refused.iter().all(|r| r.len() <= 512)
            }
            Self::Blob { .. } => true,
            Self::Refused { reason } => reason.len() <= 512,
        }
    }
}

/// A node takes puts for a key only when fewer than this many peers in its
/// routing table are closer to it: twice the fetch fan-out of the default `k`,
/// so holders still take records while routing tables differ a little.
pub const CLOSE_ENOUGH: usize = 8;

/// Tokens an inbound request costs (see [`RecordBuckets`]).
pub fn cost(request: &RecordsRequest) -> f64 {
    match request {
        RecordsRequest::Get { .. } => 1.0,
        RecordsRequest::Put { .. } => 2.0,
        // An answer may be a 32 MiB blob.
        RecordsRequest::GetBlob { .. } => 16.0,
        RecordsRequest::PutBlob { bytes, .. } => 2.0 + bytes.len() as f64 / 262_144.0,
    }
}

/// The Kademlia key under which a job's records live.
pub fn record_key(job_id: &str) -> Vec<u8> {
    format!("plasm-records:{job_id}").into_bytes()
}

/// Per-peer token buckets for inbound records requests: puts and blobs cost
/// more than gets. Bounded in peers (the oldest bucket goes first).
#[derive(Debug)]
pub struct RecordBuckets {
    buckets: HashMap<libp2p::PeerId, (f64, Instant)>,
    rate: f64,
    burst: f64,
}

/// Peers with a bucket at once.
const MAX_BUCKETS: usize = 4096;

impl RecordBuckets {
    /// `rate` tokens a second, at most `burst` saved.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            buckets: HashMap::new(),
            rate,
            burst,
        }
    }

    /// Takes `cost` tokens from the peer's bucket; false when it has too few.
    pub fn admit(&mut self, peer: libp2p::PeerId, cost: f64, now: Instant) -> bool {
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&peer) {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.buckets.remove(&p);
            }
        }
        let (tokens, at) = self.buckets.entry(peer).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= cost {
            *tokens -= cost;
            true
        } else {
            false
        }
    }
}

impl Default for RecordBuckets {
    /// 20 requests a second, bursts of 100: a submitter publishing a batch of
    /// jobs fits; a peer flooding a holder is refused and counted.
    fn default() -> Self {
        Self::new(20.0, 100.0)
    }
}

/// An inbound records request, for the replica service.
#[derive(Debug)]
pub struct InboundRecords {
    /// The asking peer.
    pub peer: libp2p::PeerId,
    /// The request (checked sane).
    pub request: RecordsRequest,
    /// Where the answer goes (with [`super::Client::respond_records`]).
    pub channel: libp2p::request_response::ResponseChannel<RecordsResponse>,
}

/// Counters of the records protocol (the `plasm_records_*` metrics).
#[derive(Debug, Default)]
pub struct RecordStats {
    /// Inbound requests handed to the replica service.
    pub served: std::sync::atomic::AtomicU64,
    /// Inbound requests refused by the per-peer rate limit.
    pub rate_limited: std::sync::atomic::AtomicU64,
    /// Inbound requests or answers out of bounds or undecodable.
    pub malformed: std::sync::atomic::AtomicU64,
    /// Inbound puts refused because this node is not among the closest to the key.
    pub not_close: std::sync::atomic::AtomicU64,
    /// Inbound requests refused because the replica service was full or absent.
    pub busy: std::sync::atomic::AtomicU64,
    /// Requests sent.
    pub sent: std::sync::atomic::AtomicU64,
    /// Bytes of records and blobs received in requests and answers (CBOR payload sizes).
    pub bytes_in: std::sync::atomic::AtomicU64,
    /// Bytes of records and blobs sent in requests and answers.
    pub bytes_out: std::sync::atomic::AtomicU64,
}

/// Payload bytes of a request (records and blobs), for the traffic counters.
pub fn request_bytes(r: &RecordsRequest) -> u64 {
    match r {
        RecordsRequest::Put { records, .. } => records.iter().map(|r| r.len() as u64).sum(),
        RecordsRequest::PutBlob { bytes, .. } => bytes.len() as u64,
        _ => 64,
    }
}

/// Payload bytes of an answer, for the traffic counters.
pub fn response_bytes(r: &RecordsResponse) -> u64 {
    match r {
        RecordsResponse::Records { records } => records.iter().map(|r| r.len() as u64).sum(),
        RecordsResponse::Blob { bytes } => bytes.as_ref().map_or(0, |b| b.len() as u64),
        _ => 16,
    }
}

/// A reply to a records request sent by this node.
pub type RecordsReply = tokio::sync::oneshot::Sender<Result<RecordsResponse, String>>;

/// Records requests sent and waiting, at most this many.
pub const MAX_RECORDS_PENDING: usize = 1024;

/// The event loop's records state.
#[derive(Debug)]
pub struct RecordsDesk {
    /// Where inbound requests go; `None` until a replica service serves them.
    pub inbound: Option<tokio::sync::mpsc::Sender<InboundRecords>>,
    /// Inbound requests per peer.
    pub buckets: RecordBuckets,
    /// Requests sent, waiting for their answer.
    pub pending: HashMap<libp2p::request_response::OutboundRequestId, RecordsReply>,
    /// Closest-peer lookups running.
    pub closest: HashMap<libp2p::kad::QueryId, tokio::sync::oneshot::Sender<Vec<libp2p::PeerId>>>,
    /// Counters.
    pub stats: std::sync::Arc<RecordStats>,
}

impl RecordsDesk {
    /// A desk counting into `stats`.
    pub fn new(stats: std::sync::Arc<RecordStats>) -> Self {
        Self {
            inbound: None,
            buckets: RecordBuckets::default(),
            pending: HashMap::new(),
            closest: HashMap::new(),
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_out_of_bounds_are_not_sane() {
        let job = "a".repeat(64);
        assert!(
            RecordsRequest::Get {
                job_id: job.clone()
            }
            .is_sane()
        );
        assert!(!RecordsRequest::Get { job_id: "x".into() }.is_sane());
        let put = |n: usize, len: usize| RecordsRequest::Put {
            job_id: job.clone(),
            records: vec!["r".repeat(len); n],
        };
        assert!(put(1, 10).is_sane());
        // The peer that stays just inside every bound is served.
        assert!(put(MAX_RECORDS_PER_MESSAGE, MAX_RECORD_BYTES).is_sane());
        assert!(!put(0, 10).is_sane());
        assert!(!put(MAX_RECORDS_PER_MESSAGE + 1, 10).is_sane());
        assert!(!put(1, MAX_RECORD_BYTES + 1).is_sane());
    }

    #[test]
    fn buckets_refuse_a_flood_and_refill() {
        let mut b = RecordBuckets::new(1.0, 3.0);
        let p = libp2p::PeerId::random();
        let t = Instant::now();
        assert!((0..3).all(|_| b.admit(p, 1.0, t)));
        assert!(!b.admit(p, 1.0, t));
        assert!(b.admit(p, 1.0, t + Duration::from_secs(1)));
        assert!(
            b.admit(libp2p::PeerId::random(), 1.0, t),
            "others unaffected"
        );
    }
}
