//! Fairness between peers on one executor, over the memory transport: a peer
//! that floods offers it never completes (and offers followed by bad bundles)
//! cannot keep another peer's jobs from running, and a large bundle's check runs
//! off the executor's task, so a small job from someone else completes while a
//! 32 MiB bundle is held at a gate.

mod common;

use common::*;
use plasm::manifest::ManifestBuilder;
use plasm::net::executor::CheckGate;
use plasm::net::protocol::{JobRequest, JobResponse};
use plasm::node::{Mode, Node};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A bootstrap and one executor; returns them with a client dialled straight to the executor.
async fn executor_and(
    configure: impl FnOnce(&mut plasm::node::NodeConfig),
) -> (Node, Node, Vec<libp2p::Multiaddr>) {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let boot_addr = boot.listen_addrs();
    let mut e = memory_config(Mode::Node, &boot_addr);
    configure(&mut e);
    let executor = start(e).await;
    (boot, executor, boot_addr)
}

async fn dialled_client(boot_addr: &[libp2p::Multiaddr], executor: &Node) -> Node {
    let c = start(memory_config(Mode::Client, boot_addr)).await;
    c.client()
        .dial(executor.listen_addrs()[0].clone())
        .await
        .expect("dial the executor");
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_peer_cannot_deny_service_to_another() {
    // A small replay guard, so that the flood would fill it within the test.
    let (boot, executor, boot_addr) = executor_and(|c| c.policy.max_nonces = 64).await;
    let target = executor.peer_id();
    let victim = dialled_client(&boot_addr, &executor).await;
    let flooder = dialled_client(&boot_addr, &executor).await;

    // The victim's latency alone first.
    let mut alone = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        run_hello(&victim, None, &only(&executor))
            .await
            .expect("job");
        alone.push(t.elapsed());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut floods = Vec::new();
    for kind in 0..4 {
        let (client, stop, sent) = (flooder.client().clone(), stop.clone(), sent.clone());
        floods.push(tokio::spawn(async move {
            let module = hello();
            while !stop.load(Ordering::Relaxed) {
                // Fresh nonce every time: offers that hold a reservation and never send bytes,
                // or (half the loops) offers followed by a bundle whose input does not match.
                let m = ManifestBuilder::new()
                    .build(&module, b"")
                    .expect("manifest");
                let offer = JobRequest::Offer {
                    manifest: m.as_value().to_string(),
                };
                sent.fetch_add(1, Ordering::Relaxed);
                let accepted = matches!(
                    client.request(target, offer).await,
                    Ok(JobResponse::Accept { .. })
                );
                if accepted && kind % 2 == 1 {
                    let bad = JobRequest::Bundle {
                        job_id: m.job_id().to_owned(),
                        module: Some(module.clone()),
                        input: b"not the input".to_vec(),
                        placement: None,
                    };
                    let _ = client.request(target, bad).await;
                }
            }
        }));
    }
    // Let the flood fill whatever it can before the victim asks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut flooded = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let out = run_hello(&victim, None, &only(&executor))
            .await
            .unwrap_or_else(|e| panic!("victim job {i} during the flood: {e}"));
        assert_eq!(out.stdout, b"hello from plasm\n");
        flooded.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        let _ = f.await;
    }
    alone.sort();
    flooded.sort();
    let m = executor.executor_metrics();
    let refusals = |reason: &str| {
        m.refusals
            .get_or_create(&plasm::net::executor::RefusalLabel {
                reason: reason.into(),
            })
            .get()
    };
    eprintln!(
        "victim p50 alone {:?}, during the flood {:?} (p90 {:?}); flooder sent {} offers; refused: rate {}, peer_reservations {}, reservations_full {}",
        percentile(&alone, 0.5),
        percentile(&flooded, 0.5),
        percentile(&flooded, 0.9),
        sent.load(Ordering::Relaxed),
        refusals("rate"),
        refusals("peer_reservations"),
        refusals("reservations_full"),
    );
    assert!(
        refusals("rate") + refusals("peer_reservations") > 0,
        "the flood was never refused: the test did not flood"
    );
    for n in [victim, flooder, executor, boot] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_32_mib_bundle_does_not_stop_another_peers_job() {
    let gate = CheckGate::closed(8 * 1024 * 1024);
    let g = gate.clone();
    let (boot, executor, boot_addr) = executor_and(move |c| {
        c.policy.check_gate = g;
    })
    .await;
    let big_client = dialled_client(&boot_addr, &executor).await;
    let small_client = dialled_client(&boot_addr, &executor).await;

    // 16 MiB module (a custom section) + 16 MiB input: a 32 MiB bundle.
    let mut module = hello();
    let payload = 16 * 1024 * 1024 - module.len() - 16;
    module.push(0); // custom section id
    let mut len = payload + 2; // name length byte + name "x"
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            module.push(b);
            break;
        }
        module.push(b | 0x80);
    }
    module.extend([1, b'x']);
    module.extend(std::iter::repeat_n(0u8, payload));
    let input = vec![b'i'; 16 * 1024 * 1024];
    assert!(module.len() <= 16 * 1024 * 1024, "{}", module.len());
    let m = ManifestBuilder::new()
        .build(&module, &input)
        .expect("manifest");
    let options = only(&executor);
    let big = {
        let c = big_client.client().clone();
        let options = options.clone();
        tokio::spawn(async move {
            plasm::net::remote::run_remote(&c, &m, module.into(), input, &options).await
        })
    };
    let arrived = eventually(Duration::from_secs(60), || {
        let g = gate.clone();
        async move { (g.arrived() == 1).then_some(()) }
    })
    .await;
    assert!(arrived.is_some(), "the big bundle never reached the gate");
    // The big bundle is held in its check; another peer's job goes through meanwhile.
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        run_hello(&small_client, None, &options),
    )
    .await
    .expect("the small job is not held up by the big bundle's check")
    .expect("the small job runs");
    assert_eq!(out.stdout, b"hello from plasm\n");
    assert!(!big.is_finished(), "the big job is still held");
    gate.open();
    let big = big
        .await
        .expect("task")
        .expect("the big job runs once let through");
    assert_eq!(big.stdout, b"hello from plasm\n");
    for n in [small_client, big_client, executor, boot] {
        n.shutdown().await;
    }
}
