//! Helpers shared by the end-to-end tests: in-process nodes on libp2p's memory
//! transport, and manifests for small jobs.
#![allow(dead_code)]

use libp2p::Multiaddr;
use plasm::identity::Identity;
use plasm::manifest::{Manifest, ManifestBuilder};
use plasm::net::TransportKind;
use plasm::node::{IdentitySource, Mode, Node, NodeConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    c.public = mode != Mode::Client;
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
