//! `plasm run`: a job in this process's sandbox, or with `--remote` on a peer
//! found through the DHT, with the documented exit statuses (0-127).

use super::progress::Status;
use super::{DataDir, JobSource, read_input, read_module, runtime};
use crate::identity::Identity;
use crate::job::{self, EXIT_INTERNAL, EXIT_INVALID_INPUT, EXIT_REMOTE};
use crate::manifest::{Manifest, ManifestBuilder};
use crate::net::remote::{self, RemoteOptions, RemoteStage};
use crate::node::{IdentitySource, Mode, Node, NodeConfig};
use crate::runtime::engines::{ANY, EngineChoice, Engines};
use crate::runtime::pool::WorkerPool;
use crate::runtime::{ExecResult, Outcome};
use crate::store::{DEFAULT_MAX_MODULE_BYTES, ModuleStore};
use clap::Args;
use libp2p::{Multiaddr, PeerId};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `plasm run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    source: JobSource,
    /// Environment variable K=V passed to the job (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// Entry function (default _start).
    #[arg(long)]
    entry: Option<String>,
    /// Fuel budget.
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory cap in bytes.
    #[arg(long)]
    memory: Option<u64>,
    /// Cap on each of stdout and stderr, in bytes.
    #[arg(long)]
    output_limit: Option<u64>,
    /// Engine: wasmtime (the default), wasm3, or any. Recorded in the manifest as
    /// requirements.runtime (except any), so --remote places the job only where it is offered.
    #[arg(long, value_parser = ["wasmtime", "wasm3", "any"])]
    runtime: Option<String>,
    /// Where to write the signed receipt (default: not written).
    #[arg(long)]
    receipt: Option<PathBuf>,
    /// Where to write the manifest this run used.
    #[arg(long)]
    manifest_out: Option<PathBuf>,
    /// Run on another peer found through the DHT (or --peer), not here.
    #[arg(long)]
    remote: bool,
    /// Bootstrap peer for --remote (repeatable; none: executors on the LAN, found by mDNS).
    #[arg(long, requires = "remote")]
    bootstrap: Vec<Multiaddr>,
    /// Executor to use for --remote instead of a DHT lookup (repeatable).
    #[arg(long, requires = "remote")]
    peer: Vec<PeerId>,
    /// Print every candidate executor, its score (or why it was ruled out) and
    /// the choice, on stderr.
    #[arg(long, requires = "remote")]
    explain: bool,
    #[command(flatten)]
    data_dir: DataDir,
}

/// Why a run ended without a job result; each has its exit status.
enum Failure {
    Input(String),
    Internal(String),
    Remote(String),
}

fn input(e: impl std::fmt::Display) -> Failure {
    Failure::Input(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::Internal(e.to_string())
}

/// Runs the command; the exit status is the job's (see `plasm run --help`).
pub fn run(a: RunArgs) -> ExitCode {
    match run_job(a) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Input(e)) => {
            eprintln!("plasm: {e}");
            ExitCode::from(EXIT_INVALID_INPUT)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("plasm: internal error: {e}");
            ExitCode::from(EXIT_INTERNAL)
        }
        Err(Failure::Remote(e)) => {
            eprintln!("plasm: remote run failed: {e}");
            ExitCode::from(EXIT_REMOTE)
        }
    }
}

/// The manifest and module a run uses: a manifest file as it is (flags cannot
/// alter it), or one built from a module and the flags.
fn job_of(
    a: &RunArgs,
    modules: &ModuleStore,
    stdin: &[u8],
) -> Result<(Manifest, Vec<u8>), Failure> {
    let src = &a.source;
    if src.is_manifest() {
        if !src.args.is_empty()
            || !a.env.is_empty()
            || a.fuel.is_some()
            || a.memory.is_some()
            || a.entry.is_some()
            || a.output_limit.is_some()
        {
            return Err(input(
                "--arg, --env, --entry, --fuel, --memory and --output-limit cannot change a manifest; edit the manifest instead",
            ));
        }
        let text = std::fs::read_to_string(&src.job)
            .map_err(|e| input(format!("cannot read {}: {e}", src.job.display())))?;
        let manifest = Manifest::from_json(&text).map_err(input)?;
        if let (Some(asked), Some(wanted)) = (&a.runtime, &manifest.requirements.runtime)
            && asked != wanted
            && asked != ANY
            && wanted != ANY
        {
            return Err(input(format!(
                "the manifest requires runtime {wanted}; --runtime {asked} cannot change it"
            )));
        }
        let sha = &manifest.module.sha256;
        let module = match &src.module {
            Some(path) => std::fs::read(path)
                .map_err(|e| input(format!("cannot read module {}: {e}", path.display())))?,
            None => modules.get(sha).map_err(internal)?.ok_or_else(|| {
                input(format!(
                    "module {sha} not found at {} (give it with --module)",
                    modules.path(sha).display()
                ))
            })?,
        };
        return Ok((manifest, module));
    }
    let module = read_module(&src.job).map_err(Failure::Input)?;
    let mut b = ManifestBuilder::new();
    for arg in &src.args {
        b = b.arg(arg);
    }
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| input(format!("--env {kv}: expected K=V")))?;
        b = b.env(k, v);
    }
    if let Some(e) = &a.entry {
        b = b.entry(e);
    }
    if let Some(f) = a.fuel {
        b = b.fuel(f);
    }
    if let Some(m) = a.memory {
        b = b.memory_bytes(m);
    }
    if let Some(o) = a.output_limit {
        b = b.output_bytes(o);
    }
    if let Some(r) = a.runtime.as_deref().filter(|r| *r != ANY) {
        b = b.runtime(r);
    }
    Ok((b.build(&module, stdin).map_err(input)?, module))
}

/// A `--receipt` path that cannot be written is said before the job runs, not after.
fn check_receipt_path(p: &std::path::Path) -> Result<(), Failure> {
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !parent.is_dir() {
        let why = if parent.exists() {
            "is not a directory"
        } else {
            "does not exist (create it first)"
        };
        return Err(input(format!(
            "cannot write the receipt to {}: {} {why}; nothing was run",
            p.display(),
            parent.display()
        )));
    }
    if p.is_dir() {
        return Err(input(format!(
            "cannot write the receipt to {}: it is a directory (give a file name)",
            p.display()
        )));
    }
    Ok(())
}

fn run_job(a: RunArgs) -> Result<u8, Failure> {
    if let Some(p) = &a.receipt {
        check_receipt_path(p)?;
    }
    if let Some(b) = a
        .bootstrap
        .iter()
        .find(|b| !matches!(b.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))))
    {
        return Err(input(format!(
            "--bootstrap {b} has no /p2p/<peer id>: append the bootstrap node's peer id (it prints `listening …/p2p/12D3KooW…` at start)"
        )));
    }
    let dir = a.data_dir.resolve().map_err(Failure::Input)?;
    let stdin = read_input(a.source.input.as_deref()).map_err(Failure::Input)?;
    let modules = ModuleStore::open(&dir.join("modules"), DEFAULT_MAX_MODULE_BYTES)
        .map_err(|e| internal(format!("module store in {}: {e}", dir.display())))?;
    let (manifest, module) = job_of(&a, &modules, &stdin)?;
    if let Some(p) = &a.manifest_out {
        let text = serde_json::to_string_pretty(manifest.as_value()).unwrap_or_default();
        std::fs::write(p, text + "\n")
            .map_err(|e| input(format!("cannot write {}: {e}", p.display())))?;
    }
    let id = Identity::load_or_create(&dir).map_err(internal)?;
    if !a.source.is_manifest() {
        // Keep the module by hash so the manifest can be run again later.
        if let Err(e) = modules.put(&module) {
            tracing::warn!(error = %e, "could not keep the module in the data dir");
        }
    }
    let out = if a.remote {
        run_remote(&a, &manifest, module, stdin)?
    } else {
        // Only the engine this job runs on is set up: a tiny job should not pay for both.
        let asked = manifest
            .requirements
            .runtime
            .as_deref()
            .or(a.runtime.as_deref());
        let engine = EngineChoice::default()
            .resolve(asked)
            .ok_or_else(|| input(format!("unknown runtime {}", asked.unwrap_or(ANY))))?;
        crate::runtime::cache::configure(&dir.join("cache"));
        let engines = Engines::new(EngineChoice::only(engine)).map_err(internal)?;
        let pool = WorkerPool::new(engines, 1, 1).map_err(internal)?;
        job::run_blocking(&pool, &id, &manifest, module.into(), stdin).map_err(|e| match e {
            job::JobError::Pool(_) => internal(e),
            other => input(other),
        })?
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&out.result.stdout);
    let _ = stdout.flush();
    let _ = std::io::stderr().write_all(&out.result.stderr);
    if let Some(detail) = &out.result.detail {
        eprintln!(
            "plasm: job {} {}: {detail}",
            manifest.job_id(),
            out.result.outcome.as_str()
        );
    }
    if let Some(p) = &a.receipt
        && let Err(e) = std::fs::write(p, out.receipt.to_json_pretty() + "\n")
    {
        // The job has run: its receipt is not lost, it goes to stderr instead.
        eprintln!("{}", out.receipt.to_json_pretty());
        return Err(internal(format!(
            "cannot write receipt {}: {e} (the receipt is printed above)",
            p.display()
        )));
    }
    Ok(job::exit_status(&out.result))
}

/// Runs the job on another peer through a short-lived client-only node.
fn run_remote(
    a: &RunArgs,
    manifest: &Manifest,
    module: Vec<u8>,
    stdin: Vec<u8>,
) -> Result<job::JobOutput, Failure> {
    // No bootstrap: the LAN (mDNS). Bootstraps on loopback: stay on loopback, no
    // multicast. Otherwise listen on every interface so hole punching can reuse the port.
    let lan = a.bootstrap.is_empty();
    let local = !lan && a.bootstrap.iter().all(crate::net::reach::is_local);
    let rt = runtime(true).map_err(Failure::Internal)?;
    rt.block_on(async {
        let identity = Identity::generate().map_err(internal)?;
        let mut config = NodeConfig::new(PathBuf::new());
        config.identity = IdentitySource::Given(Arc::new(identity));
        config.mode = Mode::Client;
        config.net.transport = crate::node::transport_for(&a.bootstrap);
        let host = if local { "127.0.0.1" } else { "0.0.0.0" };
        config.listen = if config.net.transport == crate::net::TransportKind::Memory {
            Vec::new()
        } else {
            [
                format!("/ip4/{host}/udp/0/quic-v1"),
                format!("/ip4/{host}/tcp/0"),
            ]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
        };
        config.net.reach.mdns = !local;
        config.api = None;
        config.data_dir = None;
        config.bootstrap = a.bootstrap.clone();
        let node = Node::start(config).await.map_err(internal)?;
        let (stage_tx, mut stage_rx) = tokio::sync::watch::channel(RemoteStage::Looking);
        let short: String = manifest.job_id().chars().take(12).collect();
        let mut progress = super::progress::Progress::new(&short);
        let shown = tokio::spawn(async move {
            loop {
                let status = match &*stage_rx.borrow_and_update() {
                    RemoteStage::Looking => Status {
                        state: "looking".into(),
                        detail: Some("for executors".into()),
                        ..Status::default()
                    },
                    RemoteStage::Offering(n) => Status {
                        state: "offering".into(),
                        detail: Some(format!("to {n} executor{}", if *n == 1 { "" } else { "s" })),
                        ..Status::default()
                    },
                    RemoteStage::Queued => Status {
                        state: "queued".into(),
                        detail: Some("every executor is full".into()),
                        ..Status::default()
                    },
                    RemoteStage::Running(peer) => Status {
                        state: "running".into(),
                        place: Some(peer.to_string()),
                        ..Status::default()
                    },
                };
                progress.update(status);
                if stage_rx.changed().await.is_err() {
                    return progress;
                }
            }
        });
        let rounds: remote::ExplainSink = Arc::default();
        let options = RemoteOptions {
            progress: Some(Arc::new(stage_tx)),
            explain: a.explain.then(|| rounds.clone()),
            peers: a.peer.clone(),
            lan_wait: if lan {
                std::time::Duration::from_secs(3)
            } else {
                std::time::Duration::ZERO
            },
            ..RemoteOptions::default()
        };
        let result =
            remote::run_remote(node.client(), manifest, module.into(), stdin, &options).await;
        // The options hold the only sender: dropping them ends the display task.
        drop(options);
        let progress = shown.await.ok();
        node.shutdown().await;
        if a.explain
            && let Ok(rounds) = rounds.lock()
        {
            for round in rounds.iter() {
                eprint!("{round}");
            }
        }
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                if let Some(p) = progress {
                    p.abandon();
                }
                return Err(Failure::Remote(e.to_string()));
            }
        };
        if let Some(p) = progress {
            p.finish(Status {
                state: out
                    .receipt
                    .str_field("outcome")
                    .unwrap_or("finished")
                    .to_owned(),
                place: Some(format!("{} ({})", out.executor, out.path)),
                fuel: out.receipt.u64_field("fuel_used"),
                detail: None,
            });
        }
        eprintln!("plasm: ran on {} ({})", out.executor, out.path);
        let receipt = &out.receipt;
        let result = ExecResult {
            outcome: receipt
                .str_field("outcome")
                .and_then(Outcome::parse)
                .unwrap_or(Outcome::Trapped),
            exit_code: receipt
                .as_map()
                .get("exit_code")
                .and_then(serde_json::Value::as_i64),
            detail: receipt.str_field("detail").map(str::to_owned),
            stdout: out.stdout,
            stderr: out.stderr,
            fuel_used: receipt.u64_field("fuel_used").unwrap_or(0),
            memory_limit_hit: receipt
                .as_map()
                .get("memory_limit_hit")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            started_at: receipt.str_field("started_at").unwrap_or("").to_owned(),
            aborted: None,
            runtime: None,
        };
        Ok(job::JobOutput {
            result,
            receipt: out.receipt,
        })
    })
}
