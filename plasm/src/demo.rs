//! `plasm demo`: a three-node mesh on loopback that runs a job on another peer
//! through the HTTP API, follows its progress, and has a third node verify the
//! receipt. Embedded defaults, temporary data dirs, no configuration.

use crate::apiclient;
use crate::identity::Identity;
use crate::manifest::ManifestBuilder;
use crate::net::remote::capability_key;
use crate::node::{IdentitySource, Mode, Node, NodeConfig};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const REVERSE: &str = include_str!("../../examples/wat/reverse.wat");
const INPUT: &str = "Hello from Phase Open: this text was reversed on another peer.";

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A step failed.
    #[error("demo step failed: {0}")]
    Step(String),
}

fn step(e: impl std::fmt::Display) -> DemoError {
    DemoError::Step(e.to_string())
}

fn config(
    dir: PathBuf,
    mode: Mode,
    bootstrap: &[libp2p::Multiaddr],
) -> Result<NodeConfig, DemoError> {
    let mut c = NodeConfig::new(dir.clone());
    c.identity = IdentitySource::Given(Arc::new(Identity::load_or_create(&dir).map_err(step)?));
    c.mode = mode;
    // Executors start the default way: reachable through the bootstrap's relay
    // until DCUtR connects them directly.
    c.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().map_err(step)?];
    c.bootstrap = bootstrap.to_vec();
    c.api = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    c.workers = 1;
    c.queue = 8;
    c.grace = Duration::from_secs(5);
    Ok(c)
}

async fn call(method: &str, url: &str, body: &[u8]) -> Result<apiclient::HttpResponse, DemoError> {
    apiclient::request(
        method,
        url,
        None,
        Some("application/json"),
        body,
        Duration::from_secs(60),
    )
    .await
    .map_err(step)
}

/// Runs the demo, printing every step.
pub async fn run() -> Result<(), DemoError> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(step)?;
    let root = std::env::temp_dir().join(format!("plasm-demo-{}", hex::encode(nonce)));
    let result = run_in(&root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run_in(root: &std::path::Path) -> Result<(), DemoError> {
    outln!("== starting a mesh on loopback QUIC: a bootstrap node and two executors");
    let boot = Node::start(config(root.join("bootstrap"), Mode::Bootstrap, &[])?)
        .await
        .map_err(step)?;
    let boot_addr = boot.listen_addrs();
    let a = Node::start(config(root.join("node-a"), Mode::Node, &boot_addr)?)
        .await
        .map_err(step)?;
    let b = Node::start(config(root.join("node-b"), Mode::Node, &boot_addr)?)
        .await
        .map_err(step)?;
    let api = |n: &Node| {
        n.api_addr()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default()
    };
    for (name, n) in [("bootstrap", &boot), ("node A   ", &a), ("node B   ", &b)] {
        outln!("   {name} {}  API {}", n.peer_id(), api(n));
    }
    // Wait until node A can see node B's capability record in the DHT.
    let key = capability_key("runtime", "wasm3");
    let mut seen = false;
    for _ in 0..100 {
        if a.client()
            .get_providers(key.clone(), 2)
            .await
            .is_ok_and(|p| p.contains(&b.peer_id()))
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !seen {
        return Err(step("node B never appeared in the DHT"));
    }

    let module = wat::parse_str(REVERSE).map_err(step)?;
    let manifest = ManifestBuilder::new()
        .fuel(10_000_000)
        .build(&module, INPUT.as_bytes())
        .map_err(step)?;
    let body = json!({
        "manifest": manifest.as_value(),
        "module": B64.encode(&module),
        "input": B64.encode(INPUT),
        "placement": "remote",
    });
    outln!("\n== submitting examples/wat/reverse.wat to node A's API with placement \"remote\"");
    outln!("   input: {INPUT}");
    let r = call(
        "POST",
        &format!("{}/v1/jobs", api(&a)),
        body.to_string().as_bytes(),
    )
    .await?;
    let job_id = r
        .json()
        .and_then(|v| v["job_id"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            step(format!(
                "submission refused: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ))
        })?;
    outln!("   HTTP {} job_id {job_id}", r.status);

    outln!("\n== progress (Server-Sent Events from /v1/jobs/{{id}}/events)");
    apiclient::events(
        &format!("{}/v1/jobs/{job_id}/events", api(&a)),
        None,
        |_, data| {
            let v: Value = serde_json::from_str(data).unwrap_or_default();
            let state = v["state"].as_str().unwrap_or("?");
            let p = &v["placement"];
            let who = match (
                p["executor"].as_str(),
                p["path"].as_str(),
                p["relay"].as_str(),
            ) {
                (Some(e), Some(path), Some(relay)) => format!(" on {e}, {path} via {relay}"),
                (Some(e), Some(path), None) => format!(" on {e}, {path}"),
                (Some(e), None, _) => format!(" on {e}"),
                _ => String::new(),
            };
            let detail = v["detail"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            outln!("   {state}{who}{detail}");
            !(state == "succeeded" || state == "failed")
        },
    )
    .await
    .map_err(step)?;
    let job = call("GET", &format!("{}/v1/jobs/{job_id}", api(&a)), b"")
        .await?
        .json()
        .unwrap_or_default();
    if job["state"] != "succeeded" {
        return Err(step(format!("the job did not succeed: {job}")));
    }
    let out = call("GET", &format!("{}/v1/jobs/{job_id}/output", api(&a)), b"").await?;
    outln!("\n== output\n   {}", String::from_utf8_lossy(&out.body));
    let receipt = call("GET", &format!("{}/v1/receipts/{job_id}", api(&a)), b"").await?;
    let pretty: Value = serde_json::from_slice(&receipt.body).map_err(step)?;
    outln!(
        "\n== receipt, signed by the executor (node B)\n{}",
        serde_json::to_string_pretty(&pretty).unwrap_or_default()
    );
    if pretty["executor"]["peer_id"] != json!(b.peer_id().to_string()) {
        return Err(step("the receipt does not name node B"));
    }
    let verdict = call(
        "POST",
        &format!("{}/v1/receipts/verify", api(&boot)),
        &receipt.body,
    )
    .await?;
    outln!(
        "\n== the bootstrap node verifies it: POST /v1/receipts/verify\n   {}",
        String::from_utf8_lossy(&verdict.body)
    );
    let mut forged = pretty.clone();
    forged["fuel_used"] = json!(1);
    let forged_verdict = call(
        "POST",
        &format!("{}/v1/receipts/verify", api(&boot)),
        forged.to_string().as_bytes(),
    )
    .await?;
    outln!(
        "   a forged copy (fuel_used = 1): {}",
        String::from_utf8_lossy(&forged_verdict.body)
    );
    if verdict.json().map(|v| v["valid"] == json!(true)) != Some(true)
        || forged_verdict.json().map(|v| v["valid"] == json!(false)) != Some(true)
    {
        return Err(step("verification gave the wrong verdict"));
    }

    outln!("\n== do the same by hand while a node runs (plasm start), e.g.:");
    outln!("   curl -s http://127.0.0.1:4611/v1/receipts/{job_id} > receipt.json");
    outln!(
        "   curl -s -X POST --data-binary @receipt.json http://127.0.0.1:4611/v1/receipts/verify"
    );
    outln!("   plasm receipt verify receipt.json");
    outln!(
        "   open http://127.0.0.1:4611/ in a browser: the node's dashboard (live jobs, receipts)"
    );

    outln!("\n== shutting the mesh down");
    for n in [a, b, boot] {
        n.shutdown().await;
    }
    outln!(
        "demo: done. A job ran on another peer, its receipt verified on a third, a forgery was caught."
    );
    Ok(())
}
