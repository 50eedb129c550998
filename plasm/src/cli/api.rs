//! The commands that talk to a node's HTTP API (the local node by default, any
//! node with `--api URL`, over TLS with `--cacert` for a private CA):
//! `plasm node status`, `plasm job submit|status|watch|output|receipt`,
//! `plasm receipt get` and `plasm peers`.

use super::progress::Status;
use super::{JobSource, read_input, read_module, runtime};
use crate::apiclient::ApiClient;
use crate::manifest::{Manifest, ManifestBuilder};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Which node to talk to, and how.
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Node API base URL: http://… (loopback) or https://….
    #[arg(long, env = "PLASM_API_URL", default_value = "http://127.0.0.1:4611")]
    api: String,
    /// PEM file of CA certificates to trust for an https:// API (a private CA, or the node's self-signed certificate).
    #[arg(long, env = "PLASM_API_CACERT")]
    cacert: Option<PathBuf>,
    /// File holding a bearer token for the API.
    #[arg(long, env = "PLASM_API_TOKEN_FILE_CLIENT")]
    token_file: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> Result<ApiClient, String> {
        let token = self
            .token_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.split_whitespace().next().unwrap_or("").to_owned())
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))
            })
            .transpose()?;
        ApiClient::new(&self.api, token, self.cacert.as_deref()).map_err(|e| e.to_string())
    }
}

/// A job id and the node that holds it.
#[derive(Args, Clone, Debug)]
pub struct JobIdArgs {
    /// Job id.
    job_id: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// `plasm job submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    source: JobSource,
    /// local, remote or any.
    #[arg(long, default_value = "any", value_parser = ["local", "remote", "any"])]
    placement: String,
    /// Wait for the end, showing progress, then print the output.
    #[arg(long)]
    wait: bool,
    /// Fuel budget of a module's job (default: the manifest schema's default).
    #[arg(long, conflicts_with = "module")]
    fuel: Option<u64>,
    /// Engine a module's job asks for (wasmtime, wasm3; default: any).
    #[arg(long, value_parser = ["wasmtime", "wasm3", "any"], conflicts_with = "module")]
    runtime: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// `plasm node …`.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Identity, reachability, capacity and a peers summary of a node.
    Status(ApiArgs),
}

/// `plasm job …`.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Submit a job (a module, or a manifest with --module) to a node.
    Submit(Box<SubmitArgs>),
    /// Print a job's state.
    Status(JobIdArgs),
    /// Follow a job's events until it ends (exit 0 succeeded, 1 failed).
    Watch(JobIdArgs),
    /// Write a finished job's output (its stdout) to stdout.
    Output(JobIdArgs),
    /// Print a finished job's signed receipt.
    Receipt(JobIdArgs),
    /// Cancel a queued or running job (it ends failed, without a receipt).
    Cancel(JobIdArgs),
}

/// Runs an API call to completion on a one-thread runtime.
fn call(f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    super::report(runtime(false).and_then(|rt| rt.block_on(f)))
}

/// `plasm node status`.
pub fn node(command: NodeCommand) -> ExitCode {
    let NodeCommand::Status(api) = command;
    call(async move {
        let c = api.client()?;
        let n = json(&c, "/v1/node").await?;
        let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        let list = |v: &Value| {
            v.as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        println!("peer_id       {}", s(&n["peer_id"]));
        println!("public_key    {}", s(&n["public_key"]));
        println!("version       {}", s(&n["version"]));
        let caps = &n["capabilities"];
        println!(
            "role          {}",
            if caps["executes"] == true {
                format!(
                    "executes jobs (runtime {}, arch {})",
                    s(&caps["runtime"]),
                    s(&caps["arch"])
                )
            } else {
                "does not execute jobs".to_owned()
            }
        );
        let r = &n["reachability"];
        let external = list(&r["external_addrs"]);
        println!(
            "reachability  {} (DHT {} mode, profile {}{})",
            s(&r["status"]),
            s(&r["dht_mode"]),
            s(&r["profile"]),
            if r["hidden"] == true { ", hidden" } else { "" }
        );
        for a in &external {
            println!("reachable at  {a}");
        }
        for relay in list(&r["relays"]) {
            println!("relay         {relay}");
        }
        let lan = list(&r["lan_peers"]);
        if !lan.is_empty() {
            println!("lan peers     {}", lan.join(", "));
        }
        println!(
            "hole punches  {} of {} succeeded",
            r["hole_punches"]["successes"], r["hole_punches"]["attempts"]
        );
        for a in list(&n["listen_addrs"]) {
            println!("listening     {a}");
        }
        if let Some(summary) = n["sandbox"]["summary"].as_str() {
            println!("sandbox       {summary}");
            for note in list(&n["sandbox"]["notes"]) {
                println!("sandbox note  {note}");
            }
        }
        let cap = &n["capacity"];
        println!(
            "capacity      {} workers, queue {} ({} queued, {} running)",
            cap["workers"], cap["queue"], cap["queued"], cap["running"]
        );
        let peers = json(&c, "/v1/peers").await?;
        let rtts: Vec<f64> = peers["peers"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["rtt_ms"].as_f64()).collect())
            .unwrap_or_default();
        let count = peers["peers"].as_array().map_or(0, Vec::len);
        let rtt = if rtts.is_empty() {
            String::new()
        } else {
            let mut sorted = rtts.clone();
            sorted.sort_by(f64::total_cmp);
            format!(", median rtt {:.2} ms", sorted[sorted.len() / 2])
        };
        println!("peers         {count} connected{rtt}");
        Ok(())
    })
}

/// `plasm peers`.
pub fn peers(api: ApiArgs) -> ExitCode {
    call(async move {
        let v = json(&api.client()?, "/v1/peers").await?;
        for p in v["peers"].as_array().cloned().unwrap_or_default() {
            let rtt = p["rtt_ms"]
                .as_f64()
                .map(|r| format!("{r:.2} ms"))
                .unwrap_or_else(|| "-".into());
            println!("{}  {rtt}", p["peer_id"].as_str().unwrap_or("?"));
        }
        Ok(())
    })
}

/// `plasm job …`.
pub fn job(command: JobCommand) -> ExitCode {
    match command {
        JobCommand::Submit(a) => call(submit(*a)),
        JobCommand::Cancel(a) => call(async move {
            let c = a.api.client()?;
            c.call("DELETE", &format!("/v1/jobs/{}", a.job_id), b"")
                .await
                .map_err(|e| format!("cancel {}: {e}", a.job_id))?;
            println!("job {} cancelling", a.job_id);
            Ok(())
        }),
        JobCommand::Status(a) => call(async move {
            let v = json(&a.api.client()?, &format!("/v1/jobs/{}", a.job_id)).await?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }),
        JobCommand::Watch(a) => call(async move {
            let c = a.api.client()?;
            let job = watch(&c, &a.job_id).await?;
            match job["state"].as_str() {
                Some("succeeded") => Ok(()),
                _ => Err(format!(
                    "job {} {}: {}",
                    a.job_id, job["state"], job["error"]
                )),
            }
        }),
        JobCommand::Output(a) => call(async move {
            let c = a.api.client()?;
            let out = c
                .call("GET", &format!("/v1/jobs/{}/output", a.job_id), b"")
                .await
                .map_err(|e| e.to_string())?;
            std::io::stdout()
                .write_all(&out.body)
                .map_err(|e| e.to_string())
        }),
        JobCommand::Receipt(a) => call(async move {
            let c = a.api.client()?;
            let r = c
                .call("GET", &format!("/v1/receipts/{}", a.job_id), b"")
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", String::from_utf8_lossy(&r.body));
            Ok(())
        }),
    }
}

/// GET `path` as JSON; an error status is an error naming the node's message.
async fn json(c: &ApiClient, path: &str) -> Result<Value, String> {
    let r = c
        .call("GET", path, b"")
        .await
        .map_err(|e| format!("GET {}{path}: {e}", c.base()))?;
    r.json()
        .ok_or_else(|| format!("GET {}{path}: the answer is not JSON", c.base()))
}

async fn submit(a: SubmitArgs) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let src = &a.source;
    let input = read_input(src.input.as_deref())?;
    if src.is_manifest() && (a.fuel.is_some() || a.runtime.is_some()) {
        return Err("--fuel and --runtime shape a module's job; a manifest carries its own".into());
    }
    let (manifest, module) = if src.is_manifest() {
        let text = std::fs::read_to_string(&src.job)
            .map_err(|e| format!("cannot read {}: {e}", src.job.display()))?;
        let m = Manifest::from_json(&text).map_err(|e| e.to_string())?;
        let module = src.module.as_deref().map(read_module).transpose()?;
        (m, module)
    } else {
        let module = read_module(&src.job)?;
        let mut b = ManifestBuilder::new();
        for arg in &src.args {
            b = b.arg(arg);
        }
        if let Some(f) = a.fuel {
            b = b.fuel(f);
        }
        if let Some(r) = a.runtime.as_deref().filter(|r| *r != "any") {
            b = b.runtime(r);
        }
        (
            b.build(&module, &input).map_err(|e| e.to_string())?,
            Some(module),
        )
    };
    let mut body = serde_json::json!({"manifest": manifest.as_value(), "placement": a.placement});
    if let Some(m) = &module {
        body["module"] = b64.encode(m).into();
    }
    if !input.is_empty() {
        body["input"] = b64.encode(&input).into();
    }
    let c = a.api.client()?;
    let r = c
        .call("POST", "/v1/jobs", body.to_string().as_bytes())
        .await
        .map_err(|e| format!("POST {}/v1/jobs: {e}", c.base()))?;
    let job_id = r
        .json()
        .and_then(|v| v["job_id"].as_str().map(str::to_owned))
        .ok_or("no job_id in the answer")?;
    if !a.wait {
        println!("{job_id}");
        return Ok(());
    }
    let job = watch(&c, &job_id).await?;
    if job["state"] != "succeeded" {
        return Err(format!("job {job_id} {}: {}", job["state"], job["error"]));
    }
    let out = c
        .call("GET", &format!("/v1/jobs/{job_id}/output"), b"")
        .await
        .map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(&out.body)
        .map_err(|e| e.to_string())
}

/// Where an event or a job says it runs, in words.
fn place(v: &Value) -> Option<String> {
    let p = &v["placement"];
    match (
        p["path"].as_str(),
        p["executor"].as_str().or(v["executor"].as_str()),
    ) {
        (Some("local"), _) => Some("here (local pool)".into()),
        (Some(path), Some(peer)) => Some(match p["relay"].as_str() {
            Some(relay) => format!("{peer} ({path} via {relay})"),
            None => format!("{peer} ({path})"),
        }),
        (None, Some(peer)) => Some(peer.to_owned()),
        _ => None,
    }
}

/// Shows a job's progress on stderr until it ends (a live line on a terminal,
/// a line per change when piped), then returns the stored job.
async fn watch(c: &ApiClient, job_id: &str) -> Result<Value, String> {
    let short: String = job_id.chars().take(12).collect();
    let mut progress = Some(super::progress::Progress::new(&short));
    let mut last = Status::default();
    let status = c
        .events(&format!("/v1/jobs/{job_id}/events"), |_, data| {
            let v: Value = serde_json::from_str(data).unwrap_or_default();
            let state = v["state"].as_str().unwrap_or("?").to_owned();
            let done = state == "succeeded" || state == "failed";
            last = Status {
                state,
                place: place(&v).or(last.place.take()),
                fuel: v["fuel_used"]
                    .as_u64()
                    .or_else(|| v["receipt"]["fuel_used"].as_u64()),
                detail: v["detail"].as_str().map(str::to_owned),
            };
            if let Some(p) = progress.as_mut() {
                p.update(last.clone());
            }
            !done
        })
        .await;
    let job = match status {
        Ok(_) => json(c, &format!("/v1/jobs/{job_id}")).await,
        Err(e) => Err(format!("events of job {job_id}: {e}")),
    };
    if let Some(p) = progress.take() {
        match &job {
            Ok(j) if j["state"] == "succeeded" || j["state"] == "failed" => p.finish(Status {
                state: j["state"].as_str().unwrap_or("?").to_owned(),
                place: place(j).or(last.place),
                fuel: j["receipt"]["fuel_used"].as_u64().or(last.fuel),
                detail: j["receipt"]["outcome"]
                    .as_str()
                    .or(j["error"].as_str())
                    .map(str::to_owned),
            }),
            _ => p.abandon(),
        }
    }
    // The stored job: its final state, or why there is none (404 for an unknown id).
    job
}
