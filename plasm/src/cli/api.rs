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

/// `plasm receipt get`: a job id, whether every record is wanted, and the node asked.
#[derive(Args, Clone, Debug)]
pub struct ReceiptGetArgs {
    /// Job id.
    job_id: String,
    /// Print every receipt, acceptance, publication and audit of the job held by the
    /// node or the peers it asks, with the digest of the accepted receipt (`?all=true`).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Prints a job's receipt: the node's own, else the one its submitter accepted,
/// fetched by the node from the peers holding the job's replicas.
pub fn receipt_get(a: ReceiptGetArgs) -> ExitCode {
    call(async move {
        let c = a.api.client()?;
        let query = if a.all { "?all=true" } else { "" };
        let r = c
            .call("GET", &format!("/v1/receipts/{}{query}", a.job_id), b"")
            .await
            .map_err(|e| e.to_string())?;
        outln!("{}", String::from_utf8_lossy(&r.body));
        Ok(())
    })
}

/// A job id and the node that holds it.
#[derive(Args, Clone, Debug)]
pub struct JobIdArgs {
    /// Job id.
    job_id: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// `plasm receipt audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The receipt file, or - for stdin.
    receipt: String,
    /// The job's manifest (JSON); else the submitter's publication.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The module (.wasm); else the node's module store or the published one.
    #[arg(long)]
    module: Option<PathBuf>,
    /// The job's input; else the published one.
    #[arg(long)]
    input: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Asks a node to audit a receipt; the exit status is the verdict.
pub fn audit(a: AuditArgs) -> ExitCode {
    call_status(async move {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("HTTP 400 (not sent): {}: {e}", p.display()))
        };
        let receipt = if a.receipt == "-" {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("HTTP 400 (not sent): stdin: {e}"))?;
            s
        } else {
            read(std::path::Path::new(&a.receipt))?
        };
        let receipt: Value = serde_json::from_slice(&receipt)
            .map_err(|e| format!("HTTP 400 (not sent): the receipt is not JSON: {e}"))?;
        let mut body = serde_json::json!({ "receipt": receipt });
        if let Some(p) = &a.manifest {
            let m: Value = serde_json::from_slice(&read(p)?)
                .map_err(|e| format!("HTTP 400 (not sent): the manifest is not JSON: {e}"))?;
            body["manifest"] = m;
        }
        if let Some(p) = &a.module {
            body["module"] = b64.encode(read(p)?).into();
        }
        if let Some(p) = &a.input {
            body["input"] = b64.encode(read(p)?).into();
        }
        let c = a
            .api
            .client()?
            .with_timeout(std::time::Duration::from_secs(3600));
        let r = c
            .call("POST", "/v1/receipts/audit", body.to_string().as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let record = r.json().unwrap_or(Value::Null);
        outln!("{record}");
        let verdict = record["verdict"].as_str().unwrap_or("");
        match verdict {
            "confirmed" => {
                eprintln!("confirmed: the job gives what the receipt says");
                Ok(0)
            }
            "mismatch" => {
                eprintln!("mismatch: {} differ", record["differs"]);
                Ok(1)
            }
            _ => {
                eprintln!("not auditable: {}", record["reason"].as_str().unwrap_or(""));
                Ok(2)
            }
        }
    })
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
    /// With --wait: print every candidate executor of a remote job, its score
    /// (or why it was ruled out) and the choice, on stderr.
    #[arg(long, requires = "wait")]
    explain: bool,
    /// Fuel budget of a module's job (default: the manifest schema's default).
    #[arg(long, conflicts_with = "module")]
    fuel: Option<u64>,
    /// Engine a module's job asks for (wasmtime, wasm3; default: any).
    #[arg(long, value_parser = ["wasmtime", "wasm3", "any"], conflicts_with = "module")]
    runtime: Option<String>,
    /// Publish the signed manifest, the module and the input beside the receipt,
    /// so anyone can audit the job with only its receipt (inputs are private otherwise).
    #[arg(long)]
    publish: bool,
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

/// Runs an API call that ends with a job's exit status (`plasm run`'s table). Its own
/// failures never exit 1, which a job may exit with: a request the node refused as
/// wrong (HTTP 4xx: an unknown job id, an invalid manifest) is invalid input, 121;
/// a node that cannot be reached or failed is 122.
fn call_status(f: impl std::future::Future<Output = Result<u8, String>>) -> ExitCode {
    match runtime(false).and_then(|rt| rt.block_on(f)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("plasm: {e}");
            // The messages of `json` and `ApiClient::call` carry the status as `HTTP nnn`.
            let refused = e.contains("HTTP 4");
            ExitCode::from(if refused {
                crate::job::EXIT_INVALID_INPUT
            } else {
                crate::job::EXIT_INTERNAL
            })
        }
    }
}

/// The exit status of an ended job, as `plasm run` gives it, and a line on stderr
/// when it is not 0: the receipt's outcome (trapped 127, out_of_fuel 124, exit code 3
/// gives 3, …), or 118 for a job that ended without a receipt (no executor completed
/// it, it was cancelled, or the node failed).
fn ended(job_id: &str, job: &Value) -> u8 {
    match job["exit_status"]
        .as_u64()
        .and_then(|c| u8::try_from(c).ok())
    {
        Some(0) => 0,
        Some(code) => {
            let exit = match job["receipt"]["exit_code"].as_i64() {
                Some(c) => format!(", exit code {c}"),
                None => String::new(),
            };
            eprintln!(
                "plasm: job {job_id} failed: {}{exit} (exit status {code})",
                job["outcome"].as_str().unwrap_or("unknown outcome")
            );
            code
        }
        // A receipt whose outcome this build does not know (a newer executor's).
        None if job["receipt"].is_object() => {
            eprintln!(
                "plasm: job {job_id} ended with outcome {} unknown to this plasm (exit status {})",
                job["receipt"]["outcome"],
                crate::job::EXIT_INTERNAL
            );
            crate::job::EXIT_INTERNAL
        }
        None => {
            eprintln!(
                "plasm: job {job_id} {}: {} (exit status {})",
                job["state"].as_str().unwrap_or("ended"),
                job["error"].as_str().unwrap_or("no receipt"),
                crate::job::EXIT_REMOTE
            );
            crate::job::EXIT_REMOTE
        }
    }
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
        outln!("peer_id       {}", s(&n["peer_id"]));
        outln!("public_key    {}", s(&n["public_key"]));
        outln!("version       {}", s(&n["version"]));
        let caps = &n["capabilities"];
        outln!(
            "role          {}",
            if caps["executes"] == true {
                let engines = list(&caps["runtimes"]);
                format!(
                    "executes jobs (engines {}; default {}; arch {})",
                    if engines.is_empty() {
                        s(&caps["runtime"])
                    } else {
                        engines.join(", ")
                    },
                    s(&caps["runtime"]),
                    s(&caps["arch"])
                )
            } else {
                "does not execute jobs".to_owned()
            }
        );
        let labels = list(&caps["labels"]);
        if !labels.is_empty() {
            outln!("labels        {}", labels.join(", "));
        }
        let r = &n["reachability"];
        let external = list(&r["external_addrs"]);
        outln!(
            "reachability  {} (DHT {} mode, profile {}{})",
            s(&r["status"]),
            s(&r["dht_mode"]),
            s(&r["profile"]),
            if r["hidden"] == true { ", hidden" } else { "" }
        );
        for a in &external {
            outln!("reachable at  {a}");
        }
        for relay in list(&r["relays"]) {
            outln!("relay         {relay}");
        }
        let lan = list(&r["lan_peers"]);
        if !lan.is_empty() {
            outln!("lan peers     {}", lan.join(", "));
        }
        outln!(
            "hole punches  {} of {} succeeded",
            r["hole_punches"]["successes"],
            r["hole_punches"]["attempts"]
        );
        for a in list(&n["listen_addrs"]) {
            outln!("listening     {a}");
        }
        if let Some(summary) = n["sandbox"]["summary"].as_str() {
            outln!("sandbox       {summary}");
            for note in list(&n["sandbox"]["notes"]) {
                outln!("sandbox note  {note}");
            }
        }
        let cap = &n["capacity"];
        outln!(
            "capacity      {} workers, queue {} ({} queued, {} running)",
            cap["workers"],
            cap["queue"],
            cap["queued"],
            cap["running"]
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
        outln!("peers         {count} connected{rtt}");
        Ok(())
    })
}

/// `plasm peers`.
pub fn peers(api: ApiArgs) -> ExitCode {
    call(async move {
        let v = json(&api.client()?, "/v1/peers").await?;
        let list = v["peers"].as_array().cloned().unwrap_or_default();
        if !list.is_empty() {
            outln!(
                "{:<52}  {:>9}  {:>7}  {:<9}  {:>11}  {:>8}",
                "peer",
                "rtt",
                "score",
                "breaker",
                "reliability",
                "jobs out"
            );
        }
        for p in list {
            let num = |v: &Value, f: &dyn Fn(f64) -> String| v.as_f64().map_or("-".into(), f);
            outln!(
                "{:<52}  {:>9}  {:>7}  {:<9}  {:>11}  {:>8}",
                p["peer_id"].as_str().unwrap_or("?"),
                num(&p["rtt_ms"], &|r| format!("{r:.2} ms")),
                num(&p["score"], &|s| format!("{s:.1}")),
                p["breaker"].as_str().unwrap_or("-"),
                num(&p["reliability"], &|r| format!("{r:.2}")),
                p["jobs_out"].as_u64().unwrap_or(0),
            );
        }
        Ok(())
    })
}

/// `plasm job …`.
pub fn job(command: JobCommand) -> ExitCode {
    match command {
        JobCommand::Submit(a) => match prepare(&a) {
            Ok(job) => call_status(submit(*a, job)),
            // Nothing was sent: the files or flags are wrong.
            Err(e) => {
                eprintln!("plasm: {e}");
                ExitCode::from(crate::job::EXIT_INVALID_INPUT)
            }
        },
        JobCommand::Cancel(a) => call(async move {
            let c = a.api.client()?;
            c.call("DELETE", &format!("/v1/jobs/{}", a.job_id), b"")
                .await
                .map_err(|e| format!("cancel {}: {e}", a.job_id))?;
            outln!("job {} cancelling", a.job_id);
            Ok(())
        }),
        JobCommand::Status(a) => call(async move {
            let v = json(&a.api.client()?, &format!("/v1/jobs/{}", a.job_id)).await?;
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }),
        JobCommand::Watch(a) => call_status(async move {
            let c = a.api.client()?;
            let (job, _) = watch(&c, &a.job_id).await?;
            Ok(ended(&a.job_id, &job))
        }),
        JobCommand::Output(a) => call(async move {
            let c = a.api.client()?;
            let out = c
                .call("GET", &format!("/v1/jobs/{}/output", a.job_id), b"")
                .await
                .map_err(|e| e.to_string())?;
            super::write_stdout(&out.body)
        }),
        JobCommand::Receipt(a) => call(async move {
            let c = a.api.client()?;
            let r = c
                .call("GET", &format!("/v1/receipts/{}", a.job_id), b"")
                .await
                .map_err(|e| e.to_string())?;
            outln!("{}", String::from_utf8_lossy(&r.body));
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

/// A job read from the command line: manifest, module bytes (when given), input.
type Prepared = (Manifest, Option<Vec<u8>>, Vec<u8>);

/// Reads and checks what `job submit` sends, before anything is sent.
fn prepare(a: &SubmitArgs) -> Result<Prepared, String> {
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
    Ok((manifest, module, input))
}

async fn submit(a: SubmitArgs, (manifest, module, input): Prepared) -> Result<u8, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = serde_json::json!({"manifest": manifest.as_value(), "placement": a.placement});
    if a.publish {
        body["publish"] = true.into();
    }
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
        outln!("{job_id}");
        return Ok(0);
    }
    let (job, rounds) = watch(&c, &job_id).await?;
    if a.explain {
        if rounds.is_empty() {
            eprintln!("plasm: the job was not placed on a peer (it ran here)");
        }
        for r in rounds {
            eprint!("{r}");
        }
    }
    // A job that ended with a receipt has output whatever its outcome (a trapped
    // job's stdout up to the trap), as with `plasm run`.
    if job["receipt"].is_object() {
        let out = c
            .call("GET", &format!("/v1/jobs/{job_id}/output"), b"")
            .await
            .map_err(|e| e.to_string())?;
        super::write_stdout(&out.body)?;
    }
    Ok(ended(&job_id, &job))
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
/// a line per change when piped), then returns the stored job and its
/// placement rounds (the `placing` events, as `--explain` prints them).
async fn watch(c: &ApiClient, job_id: &str) -> Result<(Value, Vec<String>), String> {
    let short: String = job_id.chars().take(12).collect();
    let mut progress = Some(super::progress::Progress::new(&short));
    let mut last = Status::default();
    let mut rounds = Vec::new();
    let status = c
        .events(&format!("/v1/jobs/{job_id}/events"), |_, data| {
            let v: Value = serde_json::from_str(data).unwrap_or_default();
            let state = v["state"].as_str().unwrap_or("?").to_owned();
            if state == "placing" {
                if let Some(d) = v["detail"].as_str() {
                    rounds.push(d.to_owned());
                }
                return true;
            }
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
                detail: match (j["outcome"].as_str(), j["exit_status"].as_u64()) {
                    (Some(o), Some(code)) => Some(format!("{o}, exit status {code}")),
                    _ => j["error"].as_str().map(str::to_owned),
                },
            }),
            _ => p.abandon(),
        }
    }
    // The stored job: its final state, or why there is none (404 for an unknown id).
    job.map(|j| (j, rounds))
}
