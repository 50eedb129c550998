//! The `plasm` command: parses arguments and calls into the library.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use libp2p::{Multiaddr, PeerId};
use plasm::identity::Identity;
use plasm::job::{self, EXIT_INTERNAL, EXIT_INVALID_INPUT, EXIT_REMOTE};
use plasm::manifest::{Manifest, ManifestBuilder};
use plasm::net::remote::{self, RemoteOptions};
use plasm::node::{IdentitySource, Mode, Node, NodeConfig};
use plasm::receipt::Receipt;
use plasm::runtime::pool::WorkerPool;
use plasm::runtime::wasm3::Wasm3Runtime;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "plasm",
    version,
    about = "Node of Phase Open: run WebAssembly jobs and sign verifiable receipts"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "PLASM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataDir {
    /// Data directory (identity key, modules). Default: $XDG_DATA_HOME/plasm or ~/.local/share/plasm.
    #[arg(long, env = "PLASM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job locally and write its signed receipt.
    ///
    /// Exit status: the job's exit code (0-117); 118 remote run failed; 120 exit code out of range; 121 invalid input;
    /// 122 internal error; 123 invalid_module; 124 out_of_fuel; 125 memory_limit;
    /// 126 output_limit; 127 trapped.
    Run(Box<RunArgs>),
    /// Work with receipts.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Print the peer id and public key of the data dir's identity (creating it if missing).
    Id {
        #[command(flatten)]
        data_dir: DataDir,
    },
    /// Start a three-node mesh on loopback, run a job on another peer through the API, verify its receipt.
    Demo,
    /// Run a node until SIGINT or SIGTERM.
    Start(Box<StartArgs>),
    /// Submit a job to a node's HTTP API.
    Submit(Box<SubmitArgs>),
    /// Print a job's state from a node's HTTP API.
    Status {
        /// Job id.
        job_id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the peers a node is connected to.
    Peers {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write the man page (roff) to stdout.
    #[command(hide = true)]
    Man,
    /// Write a shell completion script to stdout.
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the effective configuration (defaults < file < PLASM_* < flags) as TOML.
    Config(Box<StartArgs>),
    /// Print performance figures: process start-to-receipt, metering overhead, verifications/s.
    Bench {
        /// Repetitions of each measurement.
        #[arg(long, default_value_t = 30)]
        iterations: usize,
    },
}

#[derive(Args)]
struct StartArgs {
    /// TOML config file (default: $PLASM_CONFIG, else embedded defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (repeatable). Default: QUIC and TCP on port 4610 on all interfaces.
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer, a multiaddr ending in /p2p/<peer id> (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// node: execute jobs; bootstrap: serve the DHT only, never execute.
    #[arg(long, value_parser = ["node", "bootstrap"])]
    mode: Option<String>,
    /// The node is publicly reachable: serve the DHT (Kademlia server mode).
    #[arg(long)]
    public: bool,
    /// Label advertised to requesters (repeatable), e.g. gpu or region=eu.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Jobs waiting for a worker (default: four per worker).
    #[arg(long)]
    queue: Option<usize>,
    /// HTTP API address, port 0 allowed (default 127.0.0.1:4611).
    #[arg(long)]
    api: Option<std::net::SocketAddr>,
    /// Run without the HTTP API.
    #[arg(long, conflicts_with = "api")]
    no_api: bool,
    /// API token file (`<token> <scope>[,<scope>]` per line); required beyond loopback.
    #[arg(long)]
    api_token_file: Option<PathBuf>,
    #[command(flatten)]
    data_dir: DataDir,
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt: exit 0 valid, 1 invalid (the failed check on stderr), 2 unreadable or malformed.
    Verify {
        /// Receipt file, or - for stdin.
        file: String,
    },
    /// Print a job's receipt from a node's API.
    Get {
        /// Job id.
        job_id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Args, Clone)]
struct ApiArgs {
    /// Node API base URL.
    #[arg(long, env = "PLASM_API_URL", default_value = "http://127.0.0.1:4611")]
    api: String,
    /// File holding a bearer token for the API.
    #[arg(long, env = "PLASM_API_TOKEN_FILE_CLIENT")]
    token_file: Option<PathBuf>,
}

impl ApiArgs {
    fn token(&self) -> Result<Option<String>> {
        self.token_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.split_whitespace().next().unwrap_or("").to_owned())
                    .with_context(|| format!("cannot read {}", p.display()))
            })
            .transpose()
    }
}

#[derive(Args)]
struct JobSource {
    /// A module (.wasm binary or .wat text) or a manifest (.json).
    job: PathBuf,
    /// Module bytes for a manifest (default for run: the data dir's module store; for submit: the node's).
    #[arg(long)]
    module: Option<PathBuf>,
    /// File whose bytes the job reads on stdin, or - for this process's stdin.
    #[arg(long)]
    input: Option<String>,
    /// Argument passed to the job (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    source: JobSource,
    /// local, remote or any.
    #[arg(long, default_value = "any", value_parser = ["local", "remote", "any"])]
    placement: String,
    /// Wait for the end, showing progress, then print the output.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
struct RunArgs {
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
    /// Where to write the signed receipt (default: not written).
    #[arg(long)]
    receipt: Option<PathBuf>,
    /// Where to write the manifest this run used.
    #[arg(long)]
    manifest_out: Option<PathBuf>,
    /// Run on another peer found through the DHT (or --peer), not here.
    #[arg(long)]
    remote: bool,
    /// Bootstrap peer for --remote (repeatable).
    #[arg(long, requires = "remote")]
    bootstrap: Vec<Multiaddr>,
    /// Executor to use for --remote instead of a DHT lookup (repeatable).
    #[arg(long, requires = "remote")]
    peer: Vec<PeerId>,
    #[command(flatten)]
    data_dir: DataDir,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.command {
        Command::Run(args) => match run(*args) {
            Ok(code) => ExitCode::from(code),
            Err(RunFailure::Input(e)) => {
                eprintln!("plasm: {e:#}");
                ExitCode::from(EXIT_INVALID_INPUT)
            }
            Err(RunFailure::Internal(e)) => {
                eprintln!("plasm: internal error: {e:#}");
                ExitCode::from(EXIT_INTERNAL)
            }
            Err(RunFailure::Remote(e)) => {
                eprintln!("plasm: remote run failed: {e:#}");
                ExitCode::from(EXIT_REMOTE)
            }
        },
        Command::Receipt {
            command: ReceiptCommand::Verify { file },
        } => verify(&file),
        Command::Receipt {
            command: ReceiptCommand::Get { job_id, api },
        } => api_command(async move {
            let r = api_call(&api, "GET", &format!("/v1/receipts/{job_id}"), b"").await?;
            println!("{}", String::from_utf8_lossy(&r.body));
            Ok(())
        }),
        Command::Status { job_id, api } => api_command(async move {
            let r = api_call(&api, "GET", &format!("/v1/jobs/{job_id}"), b"").await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&r.json().unwrap_or_default()).unwrap_or_default()
            );
            Ok(())
        }),
        Command::Peers { api } => api_command(async move {
            let r = api_call(&api, "GET", "/v1/peers", b"").await?;
            for p in r.json().unwrap_or_default()["peers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let rtt = p["rtt_ms"]
                    .as_f64()
                    .map(|r| format!("{r:.2} ms"))
                    .unwrap_or_else(|| "-".into());
                println!("{}  {rtt}", p["peer_id"].as_str().unwrap_or("?"));
            }
            Ok(())
        }),
        Command::Submit(args) => api_command(submit(*args)),
        Command::Id { data_dir } => match identity(&data_dir) {
            Ok(id) => {
                println!("peer_id    {}", id.peer_id());
                println!("public_key {}", id.public_key_b64());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("plasm: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            match man.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("plasm: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "plasm", &mut script);
            let _ = std::io::stdout().write_all(&script);
            ExitCode::SUCCESS
        }
        Command::Demo => {
            let outcome = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(plasm::demo::run()).map_err(anyhow::Error::from));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("plasm: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(args) => match effective_config(&args).and_then(|c| {
            c.to_node_config()?;
            Ok(c)
        }) {
            Ok(c) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("plasm: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Start(args) => match start(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plasm: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Bench { iterations } => match plasm::bench::run(iterations) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plasm: bench failed: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLASM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn data_dir(d: &DataDir) -> Result<PathBuf> {
    if let Some(p) = &d.data_dir {
        return Ok(p.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("plasm"));
    }
    let home = std::env::var_os("HOME")
        .context("neither --data-dir, PLASM_DATA_DIR, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/plasm"))
}

fn identity(d: &DataDir) -> Result<Identity> {
    let dir = data_dir(d)?;
    Ok(Identity::load_or_create(&dir)?)
}

enum RunFailure {
    Input(anyhow::Error),
    Internal(anyhow::Error),
    Remote(anyhow::Error),
}

fn input_err(e: impl Into<anyhow::Error>) -> RunFailure {
    RunFailure::Input(e.into())
}

/// The bytes of `--input`: none, a file, or `-` for this process's stdin.
fn read_input(input: Option<&str>) -> Result<Vec<u8>> {
    match input {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read stdin")?;
            Ok(buf)
        }
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read input {p}")),
    }
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "wat") {
        return wat::parse_bytes(&bytes)
            .map(|b| b.into_owned())
            .with_context(|| format!("{} is not valid WAT", path.display()));
    }
    Ok(bytes)
}

fn run(a: RunArgs) -> Result<u8, RunFailure> {
    let dir = data_dir(&a.data_dir).map_err(input_err)?;
    let src = &a.source;
    let input = read_input(src.input.as_deref()).map_err(input_err)?;
    let is_manifest = src.job.extension().is_some_and(|e| e == "json");
    let (manifest, module) = if is_manifest {
        if !src.args.is_empty()
            || !a.env.is_empty()
            || a.fuel.is_some()
            || a.memory.is_some()
            || a.entry.is_some()
            || a.output_limit.is_some()
        {
            return Err(input_err(anyhow::anyhow!(
                "--arg, --env, --entry, --fuel, --memory and --output-limit cannot change a manifest; edit the manifest instead"
            )));
        }
        let text = std::fs::read_to_string(&src.job)
            .with_context(|| format!("cannot read {}", src.job.display()))
            .map_err(input_err)?;
        let manifest = Manifest::from_json(&text).map_err(input_err)?;
        let module_path = a
            .source
            .module
            .clone()
            .unwrap_or_else(|| module_store(&dir, &manifest.module.sha256));
        let module = std::fs::read(&module_path)
            .with_context(|| {
                format!(
                    "module {} not found at {} (give it with --module)",
                    manifest.module.sha256,
                    module_path.display()
                )
            })
            .map_err(input_err)?;
        (manifest, module)
    } else {
        let module = read_module(&src.job).map_err(input_err)?;
        let mut b = ManifestBuilder::new();
        for arg in &src.args {
            b = b.arg(arg);
        }
        for kv in &a.env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| input_err(anyhow::anyhow!("--env {kv}: expected K=V")))?;
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
        (b.build(&module, &input).map_err(input_err)?, module)
    };
    if let Some(p) = &a.manifest_out {
        let text = serde_json::to_string_pretty(manifest.as_value()).unwrap_or_default();
        std::fs::write(p, text + "\n")
            .with_context(|| format!("cannot write {}", p.display()))
            .map_err(input_err)?;
    }
    let id = Identity::load_or_create(&dir).map_err(|e| RunFailure::Internal(e.into()))?;
    if !is_manifest {
        // Keep the module by hash so the manifest can be run again later.
        let _ = store_module(&dir, &manifest.module.sha256, &module);
    }
    let out = if a.remote {
        run_remote(&a, &manifest, module, input)?
    } else {
        let pool = WorkerPool::new(Arc::new(Wasm3Runtime), 1, 1)
            .map_err(|e| RunFailure::Internal(e.into()))?;
        job::run_blocking(&pool, &id, &manifest, module.into(), input).map_err(|e| match e {
            job::JobError::Pool(_) => RunFailure::Internal(e.into()),
            other => input_err(other),
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
    if let Some(p) = &a.receipt {
        std::fs::write(p, out.receipt.to_json_pretty() + "\n")
            .with_context(|| format!("cannot write receipt {}", p.display()))
            .map_err(RunFailure::Internal)?;
    }
    Ok(job::exit_status(&out.result))
}

/// Runs the job on another peer through a short-lived client-only node.
fn run_remote(
    a: &RunArgs,
    manifest: &Manifest,
    module: Vec<u8>,
    input: Vec<u8>,
) -> Result<job::JobOutput, RunFailure> {
    if a.bootstrap.is_empty() {
        return Err(input_err(anyhow::anyhow!(
            "--remote needs at least one --bootstrap address"
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunFailure::Internal(e.into()))?;
    rt.block_on(async {
        let identity = Identity::generate().map_err(|e| RunFailure::Internal(e.into()))?;
        let mut config = NodeConfig::new(PathBuf::new());
        config.identity = IdentitySource::Given(Arc::new(identity));
        config.mode = Mode::Client;
        config.listen = Vec::new();
        config.api = None;
        config.data_dir = None;
        config.net.transport = plasm::node::transport_for(&a.bootstrap);
        config.bootstrap = a.bootstrap.clone();
        let node = Node::start(config)
            .await
            .map_err(|e| RunFailure::Internal(e.into()))?;
        let options = RemoteOptions {
            peers: a.peer.clone(),
            ..RemoteOptions::default()
        };
        let result =
            remote::run_remote(node.client(), manifest, module.into(), input, &options).await;
        node.shutdown().await;
        let out = result.map_err(|e| RunFailure::Remote(e.into()))?;
        eprintln!("plasm: ran on {}", out.executor);
        let outcome = out
            .receipt
            .str_field("outcome")
            .and_then(plasm::runtime::Outcome::parse);
        let result = plasm::runtime::ExecResult {
            outcome: outcome.unwrap_or(plasm::runtime::Outcome::Trapped),
            exit_code: out
                .receipt
                .as_map()
                .get("exit_code")
                .and_then(serde_json::Value::as_i64),
            detail: out.receipt.str_field("detail").map(str::to_owned),
            stdout: out.stdout,
            stderr: out.stderr,
            fuel_used: out.receipt.u64_field("fuel_used").unwrap_or(0),
        };
        Ok(job::JobOutput {
            result,
            receipt: out.receipt,
        })
    })
}

fn api_command(f: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(f));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plasm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One API call; non-2xx answers become errors carrying the node's error message.
async fn api_call(
    api: &ApiArgs,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<plasm::httpc::HttpResponse> {
    let url = format!("{}{path}", api.api.trim_end_matches('/'));
    let token = api.token()?;
    let r = plasm::httpc::request(
        method,
        &url,
        token.as_deref(),
        Some("application/json"),
        body,
        std::time::Duration::from_secs(90),
    )
    .await
    .with_context(|| format!("{method} {url}"))?;
    if !(200..300).contains(&r.status) {
        let msg = r
            .json()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
        anyhow::bail!(
            "{method} {path}: HTTP {} {}",
            r.status,
            msg.unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned())
        );
    }
    Ok(r)
}

async fn submit(a: SubmitArgs) -> Result<()> {
    use base64::Engine as _;
    use std::io::IsTerminal;
    let b64 = base64::engine::general_purpose::STANDARD;
    let src = &a.source;
    let input = read_input(src.input.as_deref())?;
    let (manifest, module) = if src.job.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(&src.job)?;
        let m = Manifest::from_json(&text)?;
        let module = src.module.as_deref().map(read_module).transpose()?;
        (m, module)
    } else {
        let module = read_module(&src.job)?;
        let mut b = ManifestBuilder::new();
        for arg in &src.args {
            b = b.arg(arg);
        }
        (b.build(&module, &input)?, Some(module))
    };
    let mut body = serde_json::json!({"manifest": manifest.as_value(), "placement": a.placement});
    if let Some(m) = &module {
        body["module"] = b64.encode(m).into();
    }
    if !input.is_empty() {
        body["input"] = b64.encode(&input).into();
    }
    let r = api_call(&a.api, "POST", "/v1/jobs", body.to_string().as_bytes()).await?;
    let job_id = r
        .json()
        .and_then(|v| v["job_id"].as_str().map(str::to_owned))
        .context("no job_id in the answer")?;
    if !a.wait {
        println!("{job_id}");
        return Ok(());
    }
    let tty = std::io::stderr().is_terminal();
    let url = format!(
        "{}/v1/jobs/{job_id}/events",
        a.api.api.trim_end_matches('/')
    );
    let token = a.api.token()?;
    plasm::httpc::events(&url, token.as_deref(), |_, data| {
        let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
        let state = v["state"].as_str().unwrap_or("?").to_owned();
        let line = format!(
            "{job_id:.12} {state}{}",
            v["executor"]
                .as_str()
                .map(|e| format!(" on {e}"))
                .unwrap_or_default()
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        !(state == "succeeded" || state == "failed")
    })
    .await?;
    if tty {
        eprintln!();
    }
    let job = api_call(&a.api, "GET", &format!("/v1/jobs/{job_id}"), b"")
        .await?
        .json()
        .unwrap_or_default();
    if job["state"] != "succeeded" {
        anyhow::bail!("job {job_id} {}: {}", job["state"], job["error"]);
    }
    let out = api_call(&a.api, "GET", &format!("/v1/jobs/{job_id}/output"), b"").await?;
    std::io::stdout().write_all(&out.body)?;
    Ok(())
}

impl StartArgs {
    /// The arguments that shape the configuration, for re-reading it on SIGHUP.
    fn clone_for_reload(&self) -> StartArgs {
        StartArgs {
            config: self.config.clone(),
            listen: self.listen.clone(),
            bootstrap: self.bootstrap.clone(),
            mode: self.mode.clone(),
            public: self.public,
            labels: self.labels.clone(),
            workers: self.workers,
            queue: self.queue,
            api: self.api,
            no_api: self.no_api,
            api_token_file: self.api_token_file.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

/// Defaults < config file < PLASM_* environment < flags.
fn effective_config(a: &StartArgs) -> Result<plasm::config::Config> {
    use plasm::config::Config;
    let file = a
        .config
        .clone()
        .or_else(|| std::env::var_os("PLASM_CONFIG").map(PathBuf::from));
    let mut c = match file {
        Some(path) => Config::from_file(&path)?,
        None => Config::default(),
    };
    c.apply_env(|k| std::env::var(k).ok())?;
    if let Some(d) = &a.data_dir.data_dir {
        c.data_dir = d.display().to_string();
    }
    if !a.listen.is_empty() {
        c.listen = a.listen.iter().map(ToString::to_string).collect();
    }
    if !a.bootstrap.is_empty() {
        c.bootstrap = a.bootstrap.iter().map(ToString::to_string).collect();
    }
    if let Some(m) = &a.mode {
        c.mode = m.clone();
    }
    c.public |= a.public;
    if !a.labels.is_empty() {
        c.labels = a.labels.clone();
    }
    if let Some(w) = a.workers {
        c.capacity.workers = w.max(1);
    }
    if let Some(q) = a.queue {
        c.capacity.queue = q.max(1);
    }
    if let Some(api) = a.api {
        c.api.address = api.to_string();
    }
    if a.no_api {
        c.api.enabled = false;
    }
    if let Some(t) = &a.api_token_file {
        c.api.token_file = t.display().to_string();
    }
    Ok(c)
}

fn start(a: StartArgs) -> Result<()> {
    let effective = effective_config(&a)?;
    let config = effective.to_node_config()?;
    let mode_name = effective.mode.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let node = Node::start(config).await?;
        let mode = mode_name.as_str();
        println!("plasm {mode} {} started", node.peer_id());
        // Let wildcard listeners report their per-interface addresses.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for addr in node.all_listen_addrs().await {
            println!("listening {addr}");
        }
        if let Some(api) = node.api_addr() {
            println!("api http://{api}");
        }
        plasm::notify::notify("READY=1");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        // SIGHUP re-reads the configuration and applies its capacity.
        if let Some(pool) = node.pool().cloned() {
            let reload = a.clone_for_reload();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    match effective_config(&reload).and_then(|c| Ok(c.to_node_config()?)) {
                        Ok(c) => match pool.set_capacity(c.workers, c.queue) {
                            Ok(()) => eprintln!(
                                "plasm: SIGHUP: capacity now {} workers, queue {}",
                                c.workers, c.queue
                            ),
                            Err(e) => eprintln!("plasm: SIGHUP: {e}"),
                        },
                        Err(e) => eprintln!("plasm: SIGHUP: configuration not applied: {e:#}"),
                    }
                }
            });
        }
        wait_for_signal().await?;
        eprintln!("plasm: shutting down");
        plasm::notify::notify("STOPPING=1");
        node.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn module_store(dir: &Path, sha256: &str) -> PathBuf {
    dir.join("modules").join(format!("{sha256}.wasm"))
}

fn store_module(dir: &Path, sha256: &str, bytes: &[u8]) -> Result<()> {
    let path = module_store(dir, sha256);
    if path.exists() {
        return Ok(());
    }
    let parent = path.parent().context("module path has no parent")?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{sha256}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

fn verify(file: &str) -> ExitCode {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("plasm: cannot read receipt {file}: {e}");
            return ExitCode::from(2);
        }
    };
    let receipt = match Receipt::from_json(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("plasm: {e}");
            return ExitCode::from(2);
        }
    };
    match receipt.verify() {
        Ok(v) => {
            println!("valid: job {} executed by {}", v.job_id, v.peer_id);
            ExitCode::SUCCESS
        }
        Err(e @ plasm::receipt::VerifyError::Malformed(_)) => {
            eprintln!("plasm: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("invalid: check {} failed: {e}", e.check());
            ExitCode::from(1)
        }
    }
}
