//! The command line: one command tree (recorded in
//! `memory-bank/decisions/0012-command-tree.md`), parsed by clap here in the
//! library so `main.rs` stays a few lines and the man page and completions are
//! generated from the same definitions.
//!
//! Each command's body lives in a submodule by what it talks to: [`run`] (the
//! sandbox, here or on a peer), [`start`] (a node and its configuration), [`api`]
//! (a node's HTTP API: `node`, `job`, `receipt get`, `peers`), [`receipt`]
//! (offline verification). Commands return a process exit status; messages for
//! people go to stderr, results to stdout.

mod api;
mod bootstrap;
mod progress;
mod receipt;
mod run;
mod start;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use start::StartArgs;

/// plasm: the node of Phase Open.
#[derive(Parser, Debug)]
#[command(
    name = "plasm",
    version,
    about = "Node of Phase Open: run WebAssembly jobs and sign verifiable receipts",
    after_help = "Exit status of `plasm run`: see `plasm run --help`. Aliases kept for one release: `plasm submit` = `plasm job submit`, `plasm status` = `plasm job status`."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "PLASM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

/// The command tree.
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a job here (or with --remote on another peer) and write its signed receipt.
    ///
    /// Exit status: the job's exit code (0-117); 118 remote run failed; 120 exit code out of range; 121 invalid input;
    /// 122 internal error; 123 invalid_module; 124 out_of_fuel; 125 memory_limit;
    /// 126 output_limit; 127 trapped; 119 stack_overflow.
    Run(Box<run::RunArgs>),
    /// Run a node until SIGINT or SIGTERM (SIGHUP re-reads the configuration).
    Start(Box<StartArgs>),
    /// A node's state, through its HTTP API.
    Node {
        #[command(subcommand)]
        command: api::NodeCommand,
    },
    /// Jobs on a node, through its HTTP API: submit, status, watch, output, receipt.
    Job {
        #[command(subcommand)]
        command: api::JobCommand,
    },
    /// Receipts: verify offline, or get one from a node.
    Receipt {
        #[command(subcommand)]
        command: receipt::ReceiptCommand,
    },
    /// List the peers a node is connected to.
    Peers(api::ApiArgs),
    /// Signed bootstrap lists: make a publisher key, sign a list, verify one.
    Bootstrap {
        #[command(subcommand)]
        command: bootstrap::BootstrapCommand,
    },
    /// Print the peer id and public key of the data dir's identity (creating it if missing).
    Id {
        #[command(flatten)]
        data_dir: DataDir,
    },
    /// Print the effective configuration (defaults < file < PLASM_* < flags) as TOML.
    Config(Box<StartArgs>),
    /// Start a three-node mesh on loopback, run a job on another peer through the API, verify its receipt.
    Demo,
    /// Print performance figures: process start-to-receipt, metering overhead, verifications/s.
    Bench {
        /// Repetitions of each latency measurement.
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        /// Only these sections (process, metering, verify, network, api, memory); repeatable.
        #[arg(long, value_name = "SECTION")]
        only: Vec<String>,
        /// Concurrent clients of the API throughput figure and the soak.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Seconds of the API throughput window.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Submit N jobs through the API, printing throughput per 100,000 (only this, unless --only).
        #[arg(long, value_name = "N")]
        soak: Option<u64>,
        /// Write every figure, with its method, as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Only this figure: the RSS of a relay holding N reservations.
        #[arg(long, value_name = "N")]
        relay: Option<usize>,
        /// Only the placement figures: score against random and round-robin on
        /// five in-process executors with simulated service times.
        #[arg(long)]
        placement: bool,
        /// Only the replication figures: fetch by job id from a 50-node memory mesh,
        /// storage and traffic per 10,000 replicated receipts, audit time.
        #[arg(long)]
        replication: bool,
        /// Receipts the replication figures publish.
        #[arg(long, default_value_t = 10_000)]
        receipts: usize,
        /// Only this figure: watch these executors (multiaddrs ending in /p2p/<id>)
        /// for --seconds as a requester holding jobs there would, and count the
        /// failure detector's false suspicions (scripts/bench-suspicions.sh).
        #[arg(long, value_name = "ADDR")]
        watch: Vec<libp2p::Multiaddr>,
    },
    /// Run N real nodes in this process on the memory transport, with churn and a
    /// workload of lookups and jobs, and print what the network did.
    Sim(Box<SimArgs>),
    /// Alias of `plasm job submit`, kept for one release.
    Submit(Box<api::SubmitArgs>),
    /// Alias of `plasm job status`, kept for one release.
    Status(api::JobIdArgs),
    /// Write the man page (roff) to stdout, or with --dir one page per command (plasm-job-submit.1...).
    #[command(hide = true)]
    Man {
        /// Directory to write every command's page into.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run jobs for a node on stdin/stdout (started by the node, never by people).
    #[command(hide = true)]
    Worker {
        /// Engines offered, comma-separated.
        #[arg(long, default_value = "wasmtime,wasm3")]
        engines: String,
        /// The engine of jobs that do not ask for one.
        #[arg(long, default_value = "wasmtime")]
        default: String,
        /// RLIMIT_DATA of this process.
        #[arg(long, default_value_t = 2 << 30)]
        memory_bytes: u64,
        /// Enter the sandbox, then try to open a socket (a test: the filter must kill this process).
        #[arg(long)]
        probe_socket: bool,
        /// Enter the sandbox and print which measures are on, as JSON (a test of the environment).
        #[arg(long)]
        probe_sandbox: bool,
    },
    /// Write a shell completion script to stdout.
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn worker(engines: &str, default: &str, memory_bytes: u64) -> u8 {
    use crate::runtime::engines::{EngineChoice, EngineName};
    let offered: Option<Vec<EngineName>> = engines.split(',').map(EngineName::parse).collect();
    let (Some(offered), Some(default)) = (offered, EngineName::parse(default)) else {
        return 2;
    };
    crate::runtime::worker::child::serve(EngineChoice { offered, default }, memory_bytes)
}

/// Runs the parsed command line and returns the process exit status.
pub fn dispatch(cli: Cli) -> ExitCode {
    // A worker enters its sandbox before anything else runs (no logging: its
    // stderr goes nowhere, and it answers on its pipe).
    if let Command::Worker {
        engines,
        default,
        memory_bytes,
        probe_socket,
        probe_sandbox,
    } = &cli.command
    {
        if *probe_sandbox {
            let report = crate::runtime::worker::sandbox::enter(*memory_bytes);
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            return ExitCode::SUCCESS;
        }
        if *probe_socket {
            crate::runtime::worker::sandbox::enter(*memory_bytes);
            // Reached only when the filter is off.
            return ExitCode::from(u8::from(std::net::UdpSocket::bind("127.0.0.1:0").is_err()));
        }
        return ExitCode::from(worker(engines, default, *memory_bytes));
    }
    init_logging(&cli.log_format);
    match cli.command {
        Command::Worker { .. } => ExitCode::from(2),
        Command::Run(args) => run::run(*args),
        Command::Start(args) => report(start::start(*args)),
        Command::Sim(args) => report(sim(*args)),
        Command::Config(args) => report(start::print_config(&args)),
        Command::Node { command } => api::node(command),
        Command::Job { command } => api::job(command),
        Command::Submit(args) => api::job(api::JobCommand::Submit(args)),
        Command::Status(args) => api::job(api::JobCommand::Status(args)),
        Command::Peers(args) => api::peers(args),
        Command::Receipt { command } => receipt::receipt(command),
        Command::Bootstrap { command } => bootstrap::bootstrap(command),
        Command::Id { data_dir } => report(data_dir.identity().map(|id| {
            outln!("peer_id    {}", id.peer_id());
            outln!("public_key {}", id.public_key_b64());
        })),
        Command::Demo => report(
            runtime(true).and_then(|rt| rt.block_on(crate::demo::run()).map_err(|e| e.to_string())),
        ),
        #[cfg(feature = "wasmtime")]
        Command::Bench { watch, seconds, .. } if !watch.is_empty() => report(
            crate::bench::watch::run(&watch, std::time::Duration::from_secs(seconds.max(1)))
                .map_err(|e| format!("bench failed: {e}")),
        ),
        #[cfg(feature = "wasmtime")]
        Command::Bench {
            replication: true,
            receipts,
            ..
        } => report(
            crate::bench::replication::run(50, receipts).map_err(|e| format!("bench failed: {e}")),
        ),
        #[cfg(feature = "wasmtime")]
        Command::Bench {
            placement: true, ..
        } => report(crate::bench::placement::run().map_err(|e| format!("bench failed: {e}"))),
        #[cfg(feature = "wasmtime")]
        Command::Bench { relay: Some(n), .. } => {
            report(crate::bench::relay_rss(n).map_err(|e| format!("bench failed: {e}")))
        }
        #[cfg(feature = "wasmtime")]
        Command::Bench {
            iterations,
            only,
            clients,
            seconds,
            soak,
            json,
            relay: None,
            placement: false,
            watch: _,
            replication: false,
            receipts: _,
        } => report(
            crate::bench::run(&crate::bench::BenchOptions {
                iterations,
                only,
                clients: clients.max(1),
                duration: std::time::Duration::from_secs(seconds.max(1)),
                soak,
                json,
            })
            .map(drop)
            .map_err(|e| format!("bench failed: {e}")),
        ),
        #[cfg(not(feature = "wasmtime"))]
        Command::Bench { .. } => report::<()>(Err(
            "bench: this build has no wasmtime (built without the `wasmtime` feature)".into(),
        )),
        Command::Man { dir: None } => {
            let man = clap_mangen::Man::new(Cli::command());
            report(
                man.render(&mut std::io::stdout())
                    .map_err(|e| e.to_string()),
            )
        }
        Command::Man { dir: Some(dir) } => report(
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
                .map_err(|e| format!("man pages in {}: {e}", dir.display())),
        ),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "plasm", &mut script);
            report(
                std::io::stdout()
                    .write_all(&script)
                    .map_err(|e| e.to_string()),
            )
        }
    }
}

/// Exit 0, or print the error and exit 1.
fn report<T>(r: Result<T, String>) -> ExitCode {
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plasm: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Stdout failed: a reader that has gone ends the command with status 0 (what it
/// wanted has been written); any other error is reported.
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("plasm: cannot write to stdout: {e}");
    std::process::exit(i32::from(crate::job::EXIT_INTERNAL));
}

/// Writes `bytes` to stdout; a reader that has gone (`| head`) ends the command quietly.
fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Arguments of `plasm sim` (see [`crate::sim`]).
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Executors in the simulation (bootstrap nodes come on top).
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Percent of the executors replaced per minute.
    #[arg(long, default_value_t = 10.0)]
    pub churn: f64,
    /// How long the workload runs once the nodes have joined (`90`, `30s`, `5m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: std::time::Duration,
    /// Seed of identities and choices (a failing run is run again with it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Provider lookups per second.
    #[arg(long, default_value_t = 10.0)]
    pub lookups: f64,
    /// Capability lookups per second.
    #[arg(long, default_value_t = 1.0)]
    pub capability_lookups: f64,
    /// Jobs per second.
    #[arg(long, default_value_t = 1.0)]
    pub jobs: f64,
    /// Divides Kademlia's hour-long timers (record TTL, republish).
    #[arg(long, default_value_t = 60)]
    pub time_scale: u32,
    /// Bootstrap nodes (0: one per 250 executors, at least 2).
    #[arg(long, default_value_t = 0)]
    pub bootstraps: usize,
    /// Nodes starting at once.
    #[arg(long, default_value_t = 16)]
    pub join_parallelism: usize,
    /// Negative control: nodes store no provider records from peers (lookups must fail).
    #[arg(long)]
    pub control_no_records: bool,
    /// Nodes join nobody: what a node costs with no connection at all.
    #[arg(long)]
    pub isolated: bool,
    /// Stop starting nodes once the process's RSS passes this many MiB (0: no limit).
    #[arg(long, default_value_t = 20 * 1024)]
    pub max_rss_mib: u64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `30`, `30s`, `5m` or `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("not a duration: {s:?} (use s, m or h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn sim(a: SimArgs) -> Result<(), String> {
    if a.duration.is_zero() || a.time_scale == 0 || a.join_parallelism == 0 {
        return Err("--duration, --time-scale and --join-parallelism must be above zero".into());
    }
    if a.bootstraps > 64 || a.join_parallelism > 1024 || a.time_scale > 3600 {
        return Err(
            "at most 64 bootstrap nodes, 1024 joins at once and a time scale of 3600".into(),
        );
    }
    let config = crate::sim::SimConfig {
        nodes: a.nodes,
        churn: a.churn,
        duration: a.duration,
        seed: a.seed,
        lookup_rate: a.lookups,
        capability_rate: a.capability_lookups,
        job_rate: a.jobs,
        time_scale: a.time_scale,
        bootstraps: a.bootstraps,
        join_parallelism: a.join_parallelism,
        control_no_records: a.control_no_records,
        isolated: a.isolated,
        max_rss_bytes: a.max_rss_mib.saturating_mul(1 << 20),
    };
    let report = runtime(true)?
        .block_on(crate::sim::run(config))
        .map_err(|e| e.to_string())?;
    let out = if a.json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
    } else {
        report.table()
    };
    use std::io::Write;
    std::io::stdout()
        .write_all(out.as_bytes())
        .unwrap_or_else(|e| stdout_failed(e));
    Ok(())
}

/// A tokio runtime for one command (multi-threaded for nodes, one thread for API calls).
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, String> {
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLASM_LOG")
        // libp2p-kad warns "Failed to trigger bootstrap: No known peers" whenever its
        // automatic bootstrap fires on an empty routing table, which every bootstrap
        // node's start does (its throttle cannot be turned off from outside the
        // crate): by default that module says only errors. PLASM_LOG shows all.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libp2p_kad::behaviour=error"));
    // Colour only on a terminal: a log file or the journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `--data-dir`.
#[derive(Args, Clone, Debug)]
pub struct DataDir {
    /// Data directory (identity key, modules). Default: $XDG_DATA_HOME/plasm or ~/.local/share/plasm.
    #[arg(long, env = "PLASM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDir {
    /// The directory: the flag, else `$XDG_DATA_HOME/plasm`, else `~/.local/share/plasm`.
    fn resolve(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.data_dir {
            return Ok(p.clone());
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return Ok(PathBuf::from(x).join("plasm"));
        }
        let home = std::env::var_os("HOME").ok_or(
            "neither --data-dir, PLASM_DATA_DIR, XDG_DATA_HOME nor HOME is set".to_owned(),
        )?;
        Ok(PathBuf::from(home).join(".local/share/plasm"))
    }

    fn identity(&self) -> Result<crate::identity::Identity, String> {
        let dir = self.resolve()?;
        crate::identity::Identity::load_or_create(&dir).map_err(|e| e.to_string())
    }
}

/// A job given on the command line: a module or a manifest, its input and arguments.
#[derive(Args, Debug)]
pub struct JobSource {
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

impl JobSource {
    fn is_manifest(&self) -> bool {
        self.job.extension().is_some_and(|e| e == "json")
    }
}

/// The bytes of `--input`: none, a file, or `-` for this process's stdin.
fn read_input(input: Option<&str>) -> Result<Vec<u8>, String> {
    match input {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok(buf)
        }
        Some(p) => std::fs::read(p).map_err(|e| format!("cannot read input {p}: {e}")),
    }
}

/// A module file: binary as is, `.wat` text compiled.
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = path.extension().is_some_and(|e| e == "wat");
    if text {
        // The error names the file, line and column (not `<anon>`).
        return wat::parse_bytes(&bytes)
            .map(|b| b.into_owned())
            .map_err(|mut e| {
                e.set_path(path);
                format!("{} is not valid WAT: {e}", path.display())
            });
    }
    if !bytes.starts_with(b"\0asm") {
        let looks_like_text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)])
            .trim_start()
            .starts_with("(module");
        return Err(if looks_like_text {
            format!(
                "{} is WebAssembly text, not a binary module: name it .wat (plasm compiles .wat files)",
                path.display()
            )
        } else {
            format!(
                "{} is not a WebAssembly module (a binary starts with \\0asm; text needs the .wat extension)",
                path.display()
            )
        });
    }
    Ok(bytes)
}
