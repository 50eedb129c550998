//! Helpers shared by the end-to-end tests: in-process nodes on libp2p's memory
//! transport, and manifests for small jobs.
#![allow(dead_code)]

use libp2p::Multiaddr;
use plasm::identity::Identity;
use plasm::manifest::{Manifest, ManifestBuilder};
use plasm::net::TransportKind;
use plasm::node::{IdentitySource, Mode, Node, NodeConfig};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// A `/memory/<n>` address no other node in this process uses.
pub fn memory_addr() -> Multiaddr {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = u64::from(std::process::id()) << 20;
    format!(
        "/memory/{}",
        base + NEXT.fetch_add(1, Ordering::Relaxed) + 1
    )
    .parse()
    .expect("memory multiaddr")
}

/// Config of an in-memory node with a fresh identity.
pub fn memory_config(mode: Mode, bootstrap: &[Multiaddr]) -> NodeConfig {
    let mut c = NodeConfig::new(std::path::PathBuf::new());
    c.identity = IdentitySource::Given(Arc::new(Identity::generate().expect("identity")));
    c.mode = mode;
    // Executors start the default way (not public): found through relayed addresses.
    c.listen = if mode == Mode::Client {
        vec![]
    } else {
        vec![memory_addr()]
    };
    c.bootstrap = bootstrap.to_vec();
    c.net.transport = TransportKind::Memory;
    c.workers = 1;
    c.queue = 4;
    c.api = None;
    c.data_dir = None;
    c
}

/// Starts an in-memory node.
pub async fn start(config: NodeConfig) -> Node {
    Node::start(config).await.expect("node starts")
}

/// A trivial job: prints "hello from plasm".
pub fn hello() -> Vec<u8> {
    wat::parse_str(include_str!("../../examples/wat/hello.wat")).expect("wat")
}

/// A manifest for `module` with no input.
pub fn manifest(module: &[u8], b: ManifestBuilder) -> Manifest {
    b.build(module, b"").expect("manifest")
}

/// Runs the hello job (fresh nonce) from `client` on the executors `options` allow;
/// with `dial`, connects to that executor's listen address first.
pub async fn run_hello(
    client: &Node,
    dial: Option<&Node>,
    options: &plasm::net::remote::RemoteOptions,
) -> Result<plasm::net::remote::RemoteOutput, plasm::net::remote::RemoteError> {
    if let Some(target) = dial {
        client
            .client()
            .dial(target.listen_addrs()[0].clone())
            .await
            .expect("dial the executor");
    }
    let module = hello();
    let m = manifest(&module, ManifestBuilder::new());
    plasm::net::remote::run_remote(client.client(), &m, module.into(), vec![], options).await
}

/// Options that offer a job to `peer` only.
pub fn only(peer: &Node) -> plasm::net::remote::RemoteOptions {
    plasm::net::remote::RemoteOptions {
        peers: vec![peer.peer_id()],
        ..plasm::net::remote::RemoteOptions::default()
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `plasm` binary Cargo built next to this test (target/<profile>/plasm).
pub fn plasm_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|d| d.join("plasm"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin plasm` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A running `plasm start`, killed on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// The `listening` lines it printed.
    pub addrs: Vec<String>,
    /// Its stderr, in a file.
    pub log: PathBuf,
    /// The API base URL it printed.
    pub api: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn addr(&self, transport: &str) -> String {
        self.addrs
            .iter()
            .find(|a| a.contains(transport))
            .cloned()
            .expect("address of that transport")
    }
    pub fn peer_id(&self) -> String {
        self.addrs[0]
            .rsplit('/')
            .next()
            .expect("peer id")
            .to_owned()
    }
}

/// Starts `plasm start --api 127.0.0.1:0 --data-dir <dir>/<name> <args>` and waits
/// for its `listening` lines (one per `--listen`) and its `api` line.
pub fn spawn_node(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let mut child = Command::new(plasm_bin())
        .args(["start", "--api", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join(name))
        .args(args)
        .env("PLASM_LOG", "plasm=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn plasm start");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening ") {
                let _ = tx.send(addr.to_owned());
            } else if let Some(api) = line.strip_prefix("api ") {
                let _ = tx.send(format!("api {api}"));
            }
        }
    });
    let want = args.iter().filter(|a| **a == "--listen").count();
    let (mut addrs, mut api) = (Vec::new(), String::new());
    while addrs.len() < want || api.is_empty() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node prints its addresses");
        match line.strip_prefix("api ") {
            Some(a) => api = a.to_owned(),
            None => addrs.push(line),
        }
    }
    Proc {
        child,
        addrs,
        log,
        api,
    }
}
