//! The pipe protocol between a node and its worker processes.
//!
//! Frames are a little-endian `u32` length and that many bytes; the first byte
//! of a frame says what it is. The worker speaks first ([`HELLO`]: protocol
//! version and sandbox state); then, per job, the node sends [`JOB`] (a JSON
//! header) and two [`BYTES`] frames (module, stdin); the worker answers with
//! [`PHASE`] frames and ends with [`RESULT`] (a JSON header) and two [`BYTES`]
//! frames (stdout, stderr). Every frame is bounded by the reader, so a broken
//! worker cannot make its node allocate without limit.

use crate::execution::{Outcome, RuntimeInfo};
use crate::manifest::Limits;
use crate::runtime::{ExecRequest, ExecResult};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Version of this protocol; a worker of another build is refused.
pub const VERSION: u32 = 1;
/// Worker → node, once: [`Hello`].
pub const HELLO: u8 = b'H';
/// Node → worker: a [`JobHeader`].
pub const JOB: u8 = b'J';
/// Raw bytes (module and stdin; stdout and stderr).
pub const BYTES: u8 = b'B';
/// Worker → node: the job entered a phase (`C` compile, `R` run).
pub const PHASE: u8 = b'P';
/// Worker → node: a [`ResultHeader`].
pub const RESULT: u8 = b'R';
/// Largest JSON header either side reads.
pub const MAX_HEADER: usize = 1 << 20;

/// What a worker says first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// [`VERSION`].
    pub protocol: u32,
    /// The plasm version of the worker's binary.
    pub plasm: String,
    /// Which sandbox measures are on.
    pub sandbox: super::SandboxReport,
}

/// A job, without its module and stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobHeader {
    /// Exported function to call.
    pub entry: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Fuel.
    pub fuel: u64,
    /// Memory cap.
    pub memory_bytes: u64,
    /// Output cap.
    pub output_bytes: u64,
    /// `random_get` seed, hex.
    pub random_seed: String,
    /// Requested engine.
    pub engine: Option<String>,
}

/// A result, without stdout and stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultHeader {
    /// Receipt spelling of the outcome.
    pub outcome: String,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Detail.
    pub detail: Option<String>,
    /// Fuel used.
    pub fuel_used: u64,
    /// Memory limit hit.
    pub memory_limit_hit: bool,
    /// Engine name, version, metering, config hash.
    pub runtime: Option<[String; 4]>,
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, tag: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame above 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&[tag])?;
    w.write_all(body)
}

/// Reads one frame of at most `max` body bytes: (tag, body).
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len - 1 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes (at most {} expected)", max + 1),
        ));
    }
    let mut tag = [0u8; 1];
    r.read_exact(&mut tag)?;
    let mut body = vec![0u8; len - 1];
    r.read_exact(&mut body)?;
    Ok((tag[0], body))
}

/// Reads a frame that must carry `tag`.
pub fn expect(r: &mut impl Read, tag: u8, max: usize) -> io::Result<Vec<u8>> {
    let (got, body) = read_frame(r, max)?;
    if got != tag {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected frame {:?}, got {:?}", tag as char, got as char),
        ));
    }
    Ok(body)
}

fn json_err(e: serde_json::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Sends a job.
pub fn write_job(w: &mut impl Write, req: &ExecRequest) -> io::Result<()> {
    let head = JobHeader {
        entry: req.entry.clone(),
        args: req.args.clone(),
        env: req.env.clone(),
        fuel: req.limits.fuel,
        memory_bytes: req.limits.memory_bytes,
        output_bytes: req.limits.output_bytes,
        random_seed: hex::encode(req.random_seed),
        engine: req.engine.clone(),
    };
    write_frame(w, JOB, &serde_json::to_vec(&head).map_err(json_err)?)?;
    write_frame(w, BYTES, &req.module)?;
    write_frame(w, BYTES, &req.stdin)?;
    w.flush()
}

/// Reads a job (worker side); `Ok(None)` at end of input.
pub fn read_job(r: &mut impl Read, max_bytes: usize) -> io::Result<Option<ExecRequest>> {
    let head = match expect(r, JOB, MAX_HEADER) {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let head: JobHeader = serde_json::from_slice(&head).map_err(json_err)?;
    let module = expect(r, BYTES, max_bytes)?;
    let stdin = expect(r, BYTES, max_bytes)?;
    let mut random_seed = [0u8; 32];
    hex::decode_to_slice(&head.random_seed, &mut random_seed)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some(ExecRequest {
        module: Arc::from(module),
        entry: head.entry,
        args: head.args,
        env: head.env,
        stdin,
        limits: Limits {
            fuel: head.fuel,
            memory_bytes: head.memory_bytes,
            output_bytes: head.output_bytes,
        },
        random_seed,
        engine: head.engine,
        cancel: Default::default(),
    }))
}

/// Sends a result (worker side).
pub fn write_result(w: &mut impl Write, res: &ExecResult) -> io::Result<()> {
    let head = ResultHeader {
        outcome: res.outcome.as_str().into(),
        exit_code: res.exit_code,
        detail: res.detail.clone(),
        fuel_used: res.fuel_used,
        memory_limit_hit: res.memory_limit_hit,
        runtime: res.runtime.as_ref().map(|r| {
            [
                r.name.clone(),
                r.version.clone(),
                r.metering.clone(),
                r.config_sha256.clone(),
            ]
        }),
    };
    write_frame(w, RESULT, &serde_json::to_vec(&head).map_err(json_err)?)?;
    write_frame(w, BYTES, &res.stdout)?;
    write_frame(w, BYTES, &res.stderr)?;
    w.flush()
}

/// Reads the rest of a result after its [`RESULT`] frame (node side); stdout and
/// stderr are bounded by the job's output cap.
pub fn read_result(r: &mut impl Read, head: &[u8], output_cap: usize) -> io::Result<ExecResult> {
    let head: ResultHeader = serde_json::from_slice(head).map_err(json_err)?;
    let stdout = expect(r, BYTES, output_cap)?;
    let stderr = expect(r, BYTES, output_cap)?;
    let outcome = Outcome::parse(&head.outcome)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown outcome from worker"))?;
    Ok(ExecResult {
        outcome,
        exit_code: head.exit_code,
        detail: head.detail,
        stdout,
        stderr,
        fuel_used: head.fuel_used,
        memory_limit_hit: head.memory_limit_hit,
        started_at: String::new(),
        runtime: head
            .runtime
            .map(|[name, version, metering, config_sha256]| RuntimeInfo {
                name,
                version,
                metering,
                config_sha256,
            }),
        aborted: None,
    })
}
