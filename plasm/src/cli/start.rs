//! `plasm start` and `plasm config`: the flags of a node, layered over the
//! configuration file and the environment by [`crate::config`], and the node
//! run until a signal stops it ([`Node::run_until_stopped`]).

use super::{DataDir, runtime};
use crate::config::{Config, Overrides};
use crate::node::{Node, Signals};
use clap::Args;
use libp2p::Multiaddr;
use std::io::Write;
use std::path::PathBuf;

/// The flags of `plasm start` (and `plasm config`, which prints their effect).
#[derive(Args, Debug, Clone)]
pub struct StartArgs {
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
    /// PEM certificate chain: the API serves HTTPS with it (config api.tls_cert).
    #[arg(long, requires = "api_tls_key")]
    api_tls_cert: Option<PathBuf>,
    /// PEM private key of --api-tls-cert (config api.tls_key).
    #[arg(long, requires = "api_tls_cert")]
    api_tls_key: Option<PathBuf>,
    /// Serve the API as plain HTTP on an address beyond loopback (tokens cross the network in clear).
    #[arg(long)]
    insecure_http: bool,
    /// An address others can reach this node at that it cannot see itself, e.g. a port
    /// forwarded on a router: /ip4/203.0.113.7/udp/4610/quic-v1 (repeatable; config network.external_addresses).
    #[arg(long = "external-address")]
    external_addresses: Vec<Multiaddr>,
    /// Dial out only: never advertised as an executor or relay, never a DHT server (config network.hidden).
    #[arg(long)]
    hidden: bool,
    /// No LAN discovery (config network.mdns = false; default: on when listening beyond loopback).
    #[arg(long)]
    no_mdns: bool,
    /// The link this node sits on: timers, bundle cap, and what it does for others
    /// (config network.profile; default wan).
    #[arg(long, value_parser = ["lan", "wan", "mobile", "hostile"])]
    profile: Option<String>,
    #[command(flatten)]
    data_dir: DataDir,
}

impl StartArgs {
    fn overrides(&self) -> Overrides {
        let strings = |v: &[Multiaddr]| v.iter().map(ToString::to_string).collect();
        Overrides {
            config_file: self.config.clone(),
            data_dir: self.data_dir.data_dir.clone(),
            listen: strings(&self.listen),
            bootstrap: strings(&self.bootstrap),
            mode: self.mode.clone(),
            public: self.public,
            labels: self.labels.clone(),
            workers: self.workers,
            queue: self.queue,
            api: self.api.map(|a| a.to_string()),
            no_api: self.no_api,
            api_token_file: self.api_token_file.clone(),
            api_tls_cert: self.api_tls_cert.clone(),
            api_tls_key: self.api_tls_key.clone(),
            insecure_http: self.insecure_http,
            external_addresses: strings(&self.external_addresses),
            hidden: self.hidden,
            no_mdns: self.no_mdns,
            profile: self.profile.clone(),
        }
    }

    /// The effective configuration, read now (at start and on every SIGHUP).
    fn effective(&self) -> Result<Config, String> {
        Config::layered(&self.overrides(), |k| std::env::var(k).ok()).map_err(|e| e.to_string())
    }
}

/// `plasm config`: the effective configuration as TOML, after checking it builds.
pub fn print_config(a: &StartArgs) -> Result<(), String> {
    let c = a.effective()?;
    c.to_node_config().map_err(|e| e.to_string())?;
    super::write_stdout(c.to_commented_toml().as_bytes())?;
    Ok(())
}

/// `plasm start`.
pub fn start(a: StartArgs) -> Result<(), String> {
    let rt = runtime(true)?;
    // Before anything else, the configuration included: from here on SIGHUP and
    // SIGTERM are handled, not fatal (a script may send SIGHUP right after starting
    // the node; one that arrives before the node runs is answered by a reload then).
    let signals = rt
        .block_on(async { Signals::install() })
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let effective = a.effective()?;
    let config = effective.to_node_config().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let node = Node::start(config).await.map_err(|e| e.to_string())?;
        // A reader of these lines that goes away (`| head -1`) must not stop the
        // node: write errors on stdout are ignored from here on.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "plasm {} {} started", effective.mode, node.peer_id());
        // Let wildcard listeners report their per-interface addresses.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for addr in node.all_listen_addrs().await {
            let _ = writeln!(out, "listening {addr}");
        }
        if let Some(url) = node.api_url() {
            let _ = writeln!(out, "api {url}");
        }
        let _ = out.flush();
        crate::notify::ready("serving");
        node.run_until_stopped(signals, || {
            a.effective()
                .and_then(|c| c.to_node_config().map_err(|e| e.to_string()))
        })
        .await;
        Ok(())
    })
}
