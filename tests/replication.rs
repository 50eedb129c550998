//! A verifiable network (issue 24), on libp2p's memory transport with nodes
//! started the default way: a job's receipt and its submitter's acceptance are
//! stored on the peers closest to the job id, fetched by job id from a node
//! that never saw the job after the executor is gone (and after a holder
//! restarts), and a tampered replica is refused at ingestion and never served.

mod common;

use common::*;
use plasm::manifest::ManifestBuilder;
use plasm::net::records::{RecordsRequest, RecordsResponse};
use plasm::node::{Mode, Node, NodeConfig};
use plasm::service::{Placement, Submission};
use serde_json::Value;
use std::time::Duration;

/// A reachable executor with its own data dir (its replicas survive a
/// restart). Replicas live on DHT servers, the reachable nodes: a node behind
/// NAT (started the default way on the memory transport, where AutoNAT cannot
/// confirm it) is a DHT client and holds only what it publishes or fetches.
fn holder(addrs: &[libp2p::Multiaddr], dir: &std::path::Path) -> NodeConfig {
    let mut c = memory_config(Mode::Node, addrs);
    c.data_dir = Some(dir.to_path_buf());
    c.public = true;
    c
}

/// Whether `node` holds a receipt of `job_id` in its own replica store.
async fn holds(node: &Node, job_id: &str) -> bool {
    let replicas = node.replicas().expect("replicas").clone();
    replicas
        .local(job_id)
        .await
        .map(|r| !r.is_empty())
        .unwrap_or(false)
}

/// Waits until `node` finds `n` executors through the DHT.
async fn executors_found(node: &Node, n: usize) {
    let key = plasm::net::remote::capability_key("runtime", "any");
    eventually(Duration::from_secs(30), || {
        let (c, key) = (node.client().clone(), key.clone());
        async move {
            let p = c.get_providers(key, n).await.ok()?;
            (p.len() >= n).then_some(())
        }
    })
    .await
    .expect("the executors are found");
}

/// Submits the hello job with `input` on a peer through `node`'s service, the way
/// `plasm job submit --placement remote` does, and waits for it: its job id and
/// receipt text.
async fn run_on_a_peer(node: &Node, input: &[u8], publish: bool) -> (String, String) {
    let service = node.service().expect("api").clone();
    let module = hello();
    let m = ManifestBuilder::new()
        .build(&module, input)
        .expect("manifest");
    let job_id = service
        .submit(Submission {
            manifest: m.as_value().clone(),
            module: Some(module),
            input: input.to_vec(),
            placement: Placement::Remote,
            publish,
        })
        .await
        .expect("submitted");
    let row = service
        .wait(&job_id, Duration::from_secs(60))
        .await
        .expect("ends");
    (job_id, row.receipt.expect("a receipt"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_outlives_its_executor_and_is_fetched_from_any_node() {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let addrs = boot.listen_addrs();
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut configs = Vec::new();
    let mut nodes = Vec::new();
    for d in &dirs[..3] {
        let c = holder(&addrs, d.path());
        configs.push(c.clone());
        nodes.push(start(c).await);
    }
    // The requester submits through its API's service, like `plasm job submit`;
    // it and the executor are started the default way.
    let mut c = memory_config(Mode::Node, &addrs);
    c.data_dir = Some(dirs[3].path().to_path_buf());
    c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let requester = start(c).await;
    let executor = start(memory_config(Mode::Node, &addrs)).await;
    executors_found(&requester, 4).await;
    let (job_id, text) = run_on_a_peer(&requester, b"", false).await;
    let own: Value = serde_json::from_str(&text).expect("json");
    let ran_on = own["executor"]["peer_id"]
        .as_str()
        .expect("executor")
        .to_owned();
    eprintln!("job {job_id} ran on {ran_on}");

    // Replicated: the requester and at least two other nodes hold it.
    let mut everyone: Vec<&Node> = nodes.iter().collect();
    everyone.push(&executor);
    let replicated = eventually(Duration::from_secs(20), || {
        let everyone = everyone.clone();
        let job_id = job_id.clone();
        async move {
            let mut n = 0;
            for node in &everyone {
                n += usize::from(holds(node, &job_id).await);
            }
            (n >= 2).then_some(n)
        }
    })
    .await
    .expect("the receipt is on at least two peers besides its submitter");
    eprintln!("held by {replicated} peers besides the submitter");

    // The executor goes offline (whichever node ran the job).
    let mut gone = Vec::new();
    if executor.peer_id().to_string() == ran_on {
        gone.push(executor);
    } else {
        let i = nodes
            .iter()
            .position(|n| n.peer_id().to_string() == ran_on)
            .expect("one of ours ran it");
        configs.remove(i);
        gone.push(nodes.remove(i));
        nodes.push(executor);
    }
    for g in gone {
        g.shutdown().await;
    }

    // A node that never saw the job fetches the accepted receipt by job id.
    let fresh = start(memory_config(Mode::Node, &addrs)).await;
    let got = eventually(Duration::from_secs(20), || {
        let (r, id) = (fresh.replicas().expect("replicas").clone(), job_id.clone());
        async move { r.fetch(&id).await.ok() }
    })
    .await
    .expect("fetched from the network");
    assert_eq!(got.answer(), Some(&own), "the accepted receipt");
    assert_eq!(got.acceptances.len(), 1);
    assert_eq!(
        got.acceptances[0]["requester"]["peer_id"],
        requester.peer_id().to_string()
    );
    let receipt =
        plasm::receipt::Receipt::from_json(&got.answer().expect("one").to_string()).expect("reads");
    assert_eq!(receipt.verify().expect("verifies").job_id, job_id);

    // A tampered replica is refused at ingestion and never served.
    let target = nodes[0].peer_id();
    let mut forged = own.clone();
    forged["output"] = Value::String(format!("sha256:{}", "0".repeat(64)));
    let answer = fresh
        .client()
        .records_request(
            target,
            RecordsRequest::Put {
                job_id: job_id.clone(),
                records: vec![forged.to_string()],
            },
        )
        .await
        .expect("answered");
    match answer {
        RecordsResponse::Stored { stored, refused } => {
            assert_eq!(stored, 0);
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert!(refused[0].contains("signature"), "{refused:?}");
        }
        other => panic!("unexpected answer {other:?}"),
    }
    let answer = fresh
        .client()
        .records_request(
            target,
            RecordsRequest::Get {
                job_id: job_id.clone(),
            },
        )
        .await
        .expect("answered");
    let RecordsResponse::Records { records } = answer else {
        panic!("records")
    };
    assert!(
        records.iter().all(|r| !r.contains(&"0".repeat(64))),
        "the forged receipt is not served"
    );

    // A forgery that verifies: an attacker signs its own receipt of this job id
    // and its own acceptance of it (anyone can: keys are free) and plants both
    // on a holder. No node then claims either receipt is the accepted one: a
    // fetcher that sees both acceptances answers a conflict, never the forgery.
    let attacker = plasm::identity::Identity::generate().expect("key");
    let mut planted =
        plasm::receipt::Receipt::from_json(&own.to_string()).expect("the receipt reads");
    planted.as_map_mut().insert(
        "output".into(),
        Value::String(format!("sha256:{}", "e".repeat(64))),
    );
    planted.as_map_mut().insert(
        "executor".into(),
        serde_json::json!({"peer_id": attacker.peer_id().to_string(), "public_key": attacker.public_key_b64()}),
    );
    planted.resign(&attacker).expect("sign");
    planted
        .verify()
        .expect("the planted receipt verifies on its own");
    let planted_acceptance = plasm::receipt::signed::accept(&planted, &attacker).expect("accept");
    let answer = fresh
        .client()
        .records_request(
            target,
            RecordsRequest::Put {
                job_id: job_id.clone(),
                records: vec![
                    serde_json::to_string(planted.as_map()).expect("json"),
                    planted_acceptance.to_json(),
                ],
            },
        )
        .await
        .expect("answered");
    assert!(
        matches!(answer, RecordsResponse::Stored { stored: 2, .. }),
        "a self-consistent forgery is stored (it verifies): {answer:?}"
    );
    fresh.shutdown().await;
    let witness = start(memory_config(Mode::Node, &addrs)).await;
    let seen = eventually(Duration::from_secs(20), || {
        let (r, id) = (
            witness.replicas().expect("replicas").clone(),
            job_id.clone(),
        );
        async move {
            let f = r.fetch(&id).await.ok()?;
            (f.acceptances.len() == 2).then_some(f)
        }
    })
    .await
    .expect("both acceptances reach a fetcher");
    assert!(
        seen.conflicting(),
        "two acceptances, no publication: a conflict"
    );
    assert_eq!(
        seen.answer(),
        None,
        "neither receipt is answered as accepted"
    );
    witness.shutdown().await;

    // A holder restarts; with every other holder and the submitter gone, a new
    // node still fetches the receipt from it.
    let i = {
        let mut found = None;
        for (i, n) in nodes.iter().enumerate() {
            if i < configs.len() && holds(n, &job_id).await {
                found = Some(i);
                break;
            }
        }
        found.expect("a holder with a data dir")
    };
    let kept = nodes.remove(i);
    let mut config = configs.remove(i);
    // The same identity and data dir; a fresh memory port (the hub frees the old
    // one only once every connection to it is gone).
    config.listen = vec![memory_addr()];
    kept.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
    requester.shutdown().await;
    let restarted = start(config).await;
    assert!(holds(&restarted, &job_id).await, "kept across the restart");
    let late = start(memory_config(Mode::Node, &addrs)).await;
    let got = eventually(Duration::from_secs(30), || {
        let (r, id) = (late.replicas().expect("replicas").clone(), job_id.clone());
        async move { r.fetch(&id).await.ok() }
    })
    .await
    .expect("fetched from the restarted holder");
    assert!(got.receipts.contains(&own), "the honest receipt survived");
    // The holder that kept the planted forgery answers the conflict; any other,
    // the honest receipt.
    assert!(
        got.answer() == Some(&own) || got.conflicting(),
        "never the forgery: {:?}",
        got.answer()
    );
    late.shutdown().await;
    restarted.shutdown().await;
    boot.shutdown().await;
}

/// The reliability the requester's placement holds for `peer` (`None`: unknown).
fn reliability(node: &Node, peer: libp2p::PeerId) -> Option<f64> {
    node.scheduler()
        .snapshot()
        .into_iter()
        .find(|s| s.peer == peer)
        .map(|s| s.reliability)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_honest_receipt_audits_confirmed_and_a_forged_one_mismatch() {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let addrs = boot.listen_addrs();
    let dirs: Vec<_> = (0..5)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut holders = Vec::new();
    for d in &dirs[..2] {
        holders.push(start(holder(&addrs, d.path())).await);
    }
    let with_api = |d: &std::path::Path| {
        let mut c = memory_config(Mode::Node, &addrs);
        c.data_dir = Some(d.to_path_buf());
        c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        c
    };
    let requester = start(with_api(dirs[2].path())).await;
    let executor = start(memory_config(Mode::Node, &addrs)).await;
    executors_found(&requester, 3).await;
    let service = requester.service().expect("api").clone();
    // An input, so the audit must fetch a published input too.
    let (job_id, text) = run_on_a_peer(&requester, b"private unless published", true).await;
    let receipt = plasm::receipt::Receipt::from_json(&text).expect("reads");
    let executor_id: libp2p::PeerId = receipt
        .verify()
        .expect("valid")
        .peer_id
        .parse()
        .expect("id");

    // An auditor that never saw the job: given only the receipt, it fetches the
    // published manifest, module and input, and confirms.
    let auditor = start(with_api(dirs[3].path())).await;
    let audit = eventually(Duration::from_secs(20), || {
        let (s, r) = (auditor.service().expect("api").clone(), receipt.clone());
        async move {
            let v = s
                .audit(plasm::service::audit::AuditRequest {
                    receipt: r,
                    manifest: None,
                    module: None,
                    input: None,
                })
                .await
                .ok()?;
            (v["verdict"] != "not_auditable").then_some(v)
        }
    })
    .await
    .expect("audited");
    assert_eq!(audit["verdict"], "confirmed", "{audit}");
    assert_eq!(audit["executor"], executor_id.to_string());
    let record =
        plasm::receipt::signed::read_any(&audit.to_string()).expect("a valid audit record");
    assert_eq!(record.signer, auditor.peer_id().to_string());

    // The audit is stored and replicated: visible from another node.
    let seen = eventually(Duration::from_secs(20), || {
        let (s, id) = (service.clone(), job_id.clone());
        async move {
            let a = s.audits(&id).await.ok()?;
            (!a.is_empty()).then_some(a)
        }
    })
    .await
    .expect("the audit is fetched by job id");
    assert_eq!(seen[0]["verdict"], "confirmed");

    // A forged receipt: the executor's real key over a wrong output (built here,
    // by the test; the release binary has no switch that signs one).
    let mut forged = receipt.clone();
    forged.as_map_mut().insert(
        "output".into(),
        Value::String(format!("sha256:{}", "0".repeat(64))),
    );
    let key = std::iter::once(&executor)
        .chain(holders.iter())
        .find(|n| n.peer_id() == executor_id)
        .map(|n| n.identity().clone())
        .expect("one of ours ran the job");
    forged.resign(&key).expect("sign");
    forged
        .verify()
        .expect("the forged receipt carries a valid signature");
    let before = reliability(&requester, executor_id).expect("the requester knows the executor");
    let verdict = service
        .audit(plasm::service::audit::AuditRequest {
            receipt: forged,
            manifest: None,
            module: None,
            input: None,
        })
        .await
        .expect("audited");
    assert_eq!(verdict["verdict"], "mismatch", "{verdict}");
    assert_eq!(verdict["differs"], serde_json::json!(["output"]));
    let after = reliability(&requester, executor_id).expect("still known");
    assert!(after < before, "reputation drops: {before} -> {after}");

    // A receipt whose job was never published (and not given) is not auditable.
    let (_, private) = run_on_a_peer(&requester, b"", false).await;
    let r = plasm::receipt::Receipt::from_json(&private).expect("reads");
    let v = auditor
        .service()
        .expect("api")
        .audit(plasm::service::audit::AuditRequest {
            receipt: r,
            manifest: None,
            module: None,
            input: None,
        })
        .await
        .expect("answered");
    assert_eq!(v["verdict"], "not_auditable", "{v}");

    for n in [auditor, requester, executor, boot] {
        n.shutdown().await;
    }
    for h in holders {
        h.shutdown().await;
    }
}

/// Records outlive every node that first held them: holders republish to the
/// peers now closest to the job (the republish interval is shortened here from
/// its hour), so once the first holders and the submitter are gone, nodes that
/// joined later still serve the receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn republishing_moves_records_to_the_nodes_that_joined_later() {
    let fast = |c: &mut NodeConfig| c.replication.republish_every = Duration::from_secs(1);
    let mut c = memory_config(Mode::Bootstrap, &[]);
    fast(&mut c);
    let boot = start(c).await;
    let addrs = boot.listen_addrs();
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut first = Vec::new();
    for d in &dirs[..2] {
        let mut c = holder(&addrs, d.path());
        fast(&mut c);
        first.push(start(c).await);
    }
    let mut c = memory_config(Mode::Node, &addrs);
    c.data_dir = Some(dirs[2].path().to_path_buf());
    c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    fast(&mut c);
    let requester = start(c).await;
    executors_found(&requester, 2).await;
    let (job_id, text) = run_on_a_peer(&requester, b"", false).await;
    let own: Value = serde_json::from_str(&text).expect("json");
    eventually(Duration::from_secs(20), || {
        let (b, id) = (&boot, job_id.clone());
        async move { holds(b, &id).await.then_some(()) }
    })
    .await
    .expect("the bootstrap node holds it");
    // Four reachable nodes join; republishing reaches at least one of them (the
    // fourth closest of all is a newcomer whenever the three closest are not).
    let mut later = Vec::new();
    for _ in 0..4 {
        let mut c = memory_config(Mode::Node, &addrs);
        c.public = true;
        fast(&mut c);
        later.push(start(c).await);
    }
    let spread = eventually(Duration::from_secs(30), || {
        let (later, id) = (&later, job_id.clone());
        async move {
            let mut n = 0;
            for node in later {
                n += usize::from(holds(node, &id).await);
            }
            (n >= 1).then_some(n)
        }
    })
    .await
    .expect("republished to a node that joined later");
    eprintln!("{spread} of the 4 later nodes hold the receipt");
    // Everything that held it first goes away: the submitter, the first holders
    // and the bootstrap node.
    requester.shutdown().await;
    for n in first {
        n.shutdown().await;
    }
    let late_addrs: Vec<_> = later[0].listen_addrs();
    boot.shutdown().await;
    let fetcher = start(memory_config(Mode::Node, &late_addrs)).await;
    let got = eventually(Duration::from_secs(30), || {
        let (r, id) = (
            fetcher.replicas().expect("replicas").clone(),
            job_id.clone(),
        );
        async move { r.fetch(&id).await.ok() }
    })
    .await
    .expect("fetched from the nodes that joined later");
    assert_eq!(got.answer(), Some(&own));
    fetcher.shutdown().await;
    for n in later {
        n.shutdown().await;
    }
}

/// XOR distance of `a` and `b` (hex SHA-256 of each side's bytes, as Kademlia
/// hashes keys and peer ids), comparable as bytes.
fn distance(key: &[u8], peer: &libp2p::PeerId) -> Vec<u8> {
    let h = |b: &[u8]| {
        let hex = plasm::job::sha256_hex(b);
        (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect::<Vec<u8>>()
    };
    h(key)
        .iter()
        .zip(h(&peer.to_bytes()))
        .map(|(a, b)| a ^ b)
        .collect()
}

/// A valid receipt of `job_id` signed by `key` (records a holder verifies).
fn synthetic_receipt(job_id: &str, key: &plasm::identity::Identity) -> String {
    let r = plasm::receipt::Receipt::sign(
        &plasm::receipt::ReceiptBody {
            job_id: job_id.to_owned(),
            module_sha256: "2".repeat(64),
            input_sha256: "3".repeat(64),
            output_sha256: "4".repeat(64),
            outcome: plasm::runtime::Outcome::Exited,
            exit_code: Some(0),
            detail: None,
            fuel_used: 1,
            fuel_limit: 10,
            runtime: plasm::runtime::RuntimeInfo {
                name: "wasmtime".into(),
                version: "48.0.8".into(),
                metering: "plasm-fuel/4".into(),
                config_sha256: "5".repeat(64),
            },
            started_at: "2026-12-07T12:00:00.000Z".into(),
            finished_at: "2026-12-07T12:00:00.001Z".into(),
            stderr_sha256: "6".repeat(64),
            memory_limit_hit: false,
            queued_at: "2026-12-07T12:00:00.000Z".into(),
            placement: plasm::receipt::ReceiptPlacement::local(),
        },
        key,
    )
    .expect("sign");
    serde_json::to_string(r.as_map()).expect("json")
}

/// Only the peers closest to a job hold its records: a put sent to a node that
/// knows eight or more peers closer to the key is refused, so nobody can plant
/// records on any node they like; the closest node takes the same put.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_to_a_node_far_from_the_key_is_refused() {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let addrs = boot.listen_addrs();
    let mut nodes = vec![boot];
    for _ in 0..13 {
        nodes.push(start(memory_config(Mode::Bootstrap, &addrs)).await);
    }
    // Every node learns the others (two rounds of Kademlia bootstrap).
    for _ in 0..2 {
        for n in &nodes {
            let _ = tokio::time::timeout(Duration::from_secs(10), n.client().bootstrap()).await;
        }
    }
    let job_id = plasm::job::sha256_hex(b"a job nobody ran");
    let key = plasm::net::records::record_key(&job_id);
    let mut by_distance: Vec<&Node> = nodes.iter().collect();
    by_distance.sort_by_key(|n| distance(&key, &n.peer_id()));
    let (closest, farthest) = (by_distance[0], by_distance[by_distance.len() - 1]);
    let sender = by_distance[1];
    let signer = plasm::identity::Identity::generate().expect("key");
    let put = || RecordsRequest::Put {
        job_id: job_id.clone(),
        records: vec![synthetic_receipt(&job_id, &signer)],
    };
    let far = sender
        .client()
        .records_request(farthest.peer_id(), put())
        .await
        .expect("answered");
    match &far {
        RecordsResponse::Refused { reason } => {
            assert!(reason.contains("closest"), "{reason}");
        }
        other => panic!("the farthest node took a put: {other:?}"),
    }
    assert!(!holds(farthest, &job_id).await, "nothing stored far away");
    let near = sender
        .client()
        .records_request(closest.peer_id(), put())
        .await
        .expect("answered");
    assert!(
        matches!(near, RecordsResponse::Stored { stored: 1, .. }),
        "the closest node takes it: {near:?}"
    );
    assert!(holds(closest, &job_id).await);
    for n in nodes {
        n.shutdown().await;
    }
}
