//! In-process meshes on libp2p's memory transport: 20+ nodes find each other
//! through one bootstrap node, find providers, and run jobs remotely.

mod common;

use common::*;
use plasm::manifest::ManifestBuilder;
use plasm::net::remote::{self, RemoteOptions, capability_key};
use plasm::node::Mode;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_nodes_join_through_one_bootstrap_and_run_jobs_remotely() {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let boot_addr = boot.listen_addrs();
    let mut executors = Vec::new();
    for _ in 0..20 {
        executors.push(start(memory_config(Mode::Node, &boot_addr)).await);
    }
    let ids: HashSet<_> = executors.iter().map(|n| n.peer_id()).collect();
    let client = start(memory_config(Mode::Client, &boot_addr)).await;

    // Every executor's capability record is found through the DHT.
    let key = capability_key("runtime", "wasm3");
    let found = eventually(Duration::from_secs(30), || {
        let (c, key) = (client.client().clone(), key.clone());
        async move {
            let p = c.get_providers(key, 20).await.ok()?;
            (p.len() >= 20).then_some(p)
        }
    })
    .await
    .expect("all 20 executors found as providers");
    assert_eq!(
        found, ids,
        "exactly the 20 executors provide; the bootstrap node and the client do not"
    );

    // Default executors are not reachable on their own: each asks the DHT as a
    // client, holds a reservation on the bootstrap node's relay, and is announced
    // only at its relayed address.
    for n in &executors {
        let info = n.client().info().await.expect("info");
        assert!(!info.dht_server, "an unreachable node never serves the DHT");
        assert_eq!(info.reachability, "private");
        assert_eq!(info.relays, vec![boot.peer_id()]);
        assert!(
            !info.external_addrs.is_empty()
                && info
                    .external_addrs
                    .iter()
                    .all(plasm::net::reach::is_relayed),
            "{:?}",
            info.external_addrs
        );
    }
    let boot_info = boot.client().info().await.expect("info");
    assert!(boot_info.dht_server && boot_info.reachability == "public");

    // Jobs run on other peers, and each receipt names the executor the client talked to.
    let module = hello();
    let mut ran_on = HashSet::new();
    for _ in 0..5 {
        let m = manifest(&module, ManifestBuilder::new());
        let out = remote::run_remote(
            client.client(),
            &m,
            module.clone().into(),
            vec![],
            &RemoteOptions::default(),
        )
        .await
        .expect("remote run");
        assert_eq!(out.stdout, b"hello from plasm\n");
        let v = out.receipt.verify().expect("receipt verifies");
        assert_eq!(v.peer_id, out.executor.to_string());
        assert!(ids.contains(&out.executor));
        assert_ne!(out.executor, client.peer_id());
        ran_on.insert(out.executor);
    }
    assert!(!ran_on.is_empty());

    client.shutdown().await;
    for n in executors {
        n.shutdown().await;
    }
    boot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_nodes_serve_the_dht_and_discover_each_other() {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let boot_addr = boot.listen_addrs();
    let mut nodes = Vec::new();
    for _ in 0..6 {
        let mut c = memory_config(Mode::Node, &boot_addr);
        c.public = true;
        nodes.push(start(c).await);
    }
    let tables = eventually(Duration::from_secs(20), || {
        let nodes = &nodes;
        async move {
            let mut tables = Vec::new();
            for n in nodes {
                let info = n.client().info().await.ok()?;
                assert!(info.dht_server, "a declared-reachable node serves the DHT");
                assert!(info.relays.is_empty(), "a reachable node needs no relay");
                tables.push(info.routing_table_size);
            }
            tables.iter().all(|&s| s > 1).then_some(tables)
        }
    })
    .await;
    assert!(
        tables.is_some(),
        "public nodes learn of each other, not only of the bootstrap node"
    );
    for n in nodes {
        n.shutdown().await;
    }
    boot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_route_jobs_and_bootstrap_nodes_never_execute() {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let boot_addr = boot.listen_addrs();
    let plain = start(memory_config(Mode::Node, &boot_addr)).await;
    let mut gpu_config = memory_config(Mode::Node, &boot_addr);
    gpu_config.policy.labels = vec!["gpu".into()];
    let gpu = start(gpu_config).await;
    let client = start(memory_config(Mode::Client, &boot_addr)).await;

    let key = capability_key("label", "gpu");
    eventually(Duration::from_secs(20), || {
        let (c, key) = (client.client().clone(), key.clone());
        async move { c.get_providers(key, 1).await.ok().filter(|p| !p.is_empty()) }
    })
    .await
    .expect("gpu provider found");
    let module = hello();
    let m = manifest(&module, ManifestBuilder::new().label("gpu"));
    let out = remote::run_remote(
        client.client(),
        &m,
        module.clone().into(),
        vec![],
        &RemoteOptions::default(),
    )
    .await
    .expect("remote run");
    assert_eq!(out.executor, gpu.peer_id());

    // Offering straight to the bootstrap node is refused: it never executes.
    let m = manifest(&module, ManifestBuilder::new());
    let options = RemoteOptions {
        peers: vec![boot.peer_id()],
        ..RemoteOptions::default()
    };
    client
        .client()
        .dial(boot_addr[0].clone())
        .await
        .expect("dial");
    let err = remote::run_remote(client.client(), &m, module.into(), vec![], &options)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("does not execute"), "{err}");

    for n in [client, gpu, plain, boot] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_every_connection_redials_its_bootstrap_peer() {
    // Real TCP on loopback, so the bootstrap node can come back on the very same port.
    let tcp = |mut c: plasm::node::NodeConfig, listen: &str| {
        c.net.transport = plasm::net::TransportKind::Network;
        c.listen = if listen.is_empty() {
            vec![]
        } else {
            vec![listen.parse().expect("addr")]
        };
        c
    };
    let boot_config = tcp(memory_config(Mode::Bootstrap, &[]), "/ip4/127.0.0.1/tcp/0");
    let boot = start(boot_config.clone()).await;
    let boot_addr = boot.listen_addrs();
    let boot_id = boot.peer_id();
    let exec_config = tcp(
        memory_config(Mode::Node, &boot_addr),
        "/ip4/127.0.0.1/tcp/0",
    );
    let exec = start(exec_config).await;
    let connected_to_boot = |exec: &plasm::node::Node| {
        let c = exec.client().clone();
        async move {
            c.info()
                .await
                .ok()
                .filter(|i| i.connected.contains(&boot_id))
                .map(|_| ())
        }
    };
    eventually(Duration::from_secs(5), || connected_to_boot(&exec))
        .await
        .expect("connected at start");

    boot.shutdown().await;
    eventually(Duration::from_secs(10), || {
        let c = exec.client().clone();
        async move {
            c.info()
                .await
                .ok()
                .filter(|i| i.connected.is_empty())
                .map(|_| ())
        }
    })
    .await
    .expect("the connection is gone");

    // The same bootstrap node comes back on the same address.
    let port_addr = boot_addr[0].to_string();
    let listen = port_addr.split("/p2p/").next().expect("addr").to_owned();
    let boot = eventually(Duration::from_secs(10), || {
        let c = tcp(boot_config.clone(), &listen);
        async move { plasm::node::Node::start(c).await.ok() }
    })
    .await
    .expect("bootstrap node restarts on its port");
    eventually(Duration::from_secs(20), || connected_to_boot(&exec))
        .await
        .expect("redialed with backoff");
    exec.shutdown().await;
    boot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_mobile_and_hostile_nodes_keep_their_profiles_promises() {
    use plasm::net::profile::Profile;
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let boot_addr = boot.listen_addrs();
    let plain = start(memory_config(Mode::Node, &boot_addr)).await;
    let mut hidden = memory_config(Mode::Node, &boot_addr);
    hidden.net.reach.hidden = true;
    let hidden = start(hidden).await;
    let mut mobile = memory_config(Mode::Node, &boot_addr);
    mobile.net.reach.profile = Profile::Mobile;
    mobile.net.reach.settings = Profile::Mobile.settings();
    let mobile = start(mobile).await;
    let mut hostile = memory_config(Mode::Node, &boot_addr);
    hostile.net.reach.profile = Profile::Hostile;
    hostile.net.reach.settings = Profile::Hostile.settings();
    hostile.net.reach.settings.max_bundle_bytes = 64;
    let hostile = start(hostile).await;
    let client = start(memory_config(Mode::Client, &boot_addr)).await;

    // Only the plain and the hostile executor are advertised.
    let key = capability_key("runtime", "wasm3");
    let want: HashSet<_> = [plain.peer_id(), hostile.peer_id()].into();
    let found = eventually(Duration::from_secs(20), || {
        let (c, key, want) = (client.client().clone(), key.clone(), want.clone());
        async move {
            let p = c.get_providers(key, 10).await.ok()?;
            (p == want).then_some(p)
        }
    })
    .await;
    assert!(found.is_some(), "providers: exactly plain and hostile");
    // A hidden node asks the DHT as a client, holds no relay slot, and is no provider.
    let info = hidden.client().info().await.expect("info");
    assert!(info.hidden && !info.dht_server && info.relays.is_empty());
    assert_eq!(info.reachability, "unknown");

    // A hidden executor still takes work it is offered directly.
    let out = run_hello(&client, Some(&hidden), &only(&hidden))
        .await
        .expect("the hidden executor runs a job offered to it");
    assert_eq!(out.executor, hidden.peer_id());
    // A mobile node executes nothing for others: its beat says so, and it is
    // not even offered the job.
    let err = run_hello(&client, Some(&mobile), &only(&mobile))
        .await
        .expect_err("mobile declines");
    assert!(
        err.to_string().contains("takes no jobs from others"),
        "{err}"
    );
    // A hostile node takes only bundles under its cap.
    let err = run_hello(&client, None, &only(&hostile))
        .await
        .expect_err("hostile declines a bundle over its cap");
    assert!(err.to_string().contains("bundle size"), "{err}");

    for n in [client, hostile, mobile, hidden, plain, boot] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_limits_refuse_abuse_and_the_relay_keeps_serving() {
    use plasm::net::reach::RelayLimits;
    let mut boot = memory_config(Mode::Bootstrap, &[]);
    boot.net.reach.relay_server = Some(RelayLimits {
        max_reservations: 2,
        max_circuit_bytes: 64 * 1024,
        ..RelayLimits::default()
    });
    let boot = start(boot).await;
    let boot_addr = boot.listen_addrs();
    let mut executors = Vec::new();
    for _ in 0..3 {
        executors.push(start(memory_config(Mode::Node, &boot_addr)).await);
    }
    // Two reservations fit; the third is refused and counted.
    let denied = eventually(Duration::from_secs(20), || {
        let c = boot.client().clone();
        async move {
            let s = c.info().await.ok()?.stats;
            (s.relay_reservations_denied >= 1).then_some(s)
        }
    })
    .await
    .expect("a reservation over the limit is refused");
    assert!(denied.relay_reservations_denied >= 1);
    let mut held = 0;
    for e in &executors {
        held += e.client().info().await.expect("info").relays.len();
    }
    assert_eq!(held, 2, "exactly max_reservations are held");

    let module = hello();
    // A bundle larger than a circuit may carry is cut by the relay, with an error.
    // Loopback and memory nodes share their listen addresses, so a client can
    // now and then reach an executor around the relay (a direct dial or a hole
    // punch wins the race); such a run says nothing about the relay, and a
    // fresh client tries again. A bundle the relay carried whole fails the test.
    let big = vec![b'x'; 256 * 1024];
    let m = ManifestBuilder::new()
        .build(&module, &big)
        .expect("manifest");
    let mut cut = None;
    for _ in 0..4 {
        let client = start(memory_config(Mode::Client, &boot_addr)).await;
        let res = remote::run_remote(
            client.client(),
            &m,
            module.clone().into(),
            big.clone(),
            &RemoteOptions::default(),
        )
        .await;
        client.shutdown().await;
        match res {
            Err(err) => {
                cut = Some(err);
                break;
            }
            Ok(out) => assert_ne!(
                out.path.kind,
                plasm::net::PathKind::Relayed,
                "the relay carried a bundle over its circuit limit"
            ),
        }
    }
    let err = cut.expect("the relay refuses to carry more than its circuit limit");
    // Executors were found and accepted the offer; the bytes never arrived.
    assert!(
        matches!(&err, remote::RemoteError::AllFailed(a) if !a.is_empty()),
        "{err}"
    );
    // ...and the relay keeps serving everyone else: a new client reaches an
    // executor through it (its only announced address is the relayed one).
    let before = boot.client().info().await.expect("info").stats;
    let fresh = start(memory_config(Mode::Client, &boot_addr)).await;
    let out = run_hello(&fresh, None, &RemoteOptions::default())
        .await
        .expect("a small job still runs");
    assert_eq!(out.stdout, b"hello from plasm\n");
    let after = boot.client().info().await.expect("info").stats;
    assert!(
        after.relay_circuits_accepted > before.relay_circuits_accepted,
        "the relay carried the new client's circuit: {before:?} -> {after:?}"
    );
    fresh.shutdown().await;
    for e in executors {
        e.shutdown().await;
    }
    boot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaving_does_not_close_a_pool_it_shares() {
    // `plasm sim` gives every node one pool (NodeConfig::pool): the first node
    // to leave once closed it for all of them, and every later job failed.
    let engines = plasm::runtime::engines::Engines::new(Default::default()).expect("engines");
    let pool =
        std::sync::Arc::new(plasm::runtime::pool::WorkerPool::new(engines, 1, 8).expect("pool"));
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let mut a = memory_config(Mode::Node, &boot.listen_addrs());
    a.pool = Some(pool.clone());
    let mut b = memory_config(Mode::Node, &boot.listen_addrs());
    b.pool = Some(pool.clone());
    let (a, b) = (start(a).await, start(b).await);
    a.shutdown().await;
    assert!(!pool.is_closed(), "the pool outlives a node that shares it");
    let client = start(memory_config(Mode::Client, &boot.listen_addrs())).await;
    let out = run_hello(&client, None, &only(&b))
        .await
        .expect("the node left behind still runs jobs on the shared pool");
    assert_eq!(out.stdout, b"hello from plasm\n");
    for n in [client, b, boot] {
        n.shutdown().await;
    }
    assert!(!pool.is_closed(), "nobody closed a pool none of them owns");
}
