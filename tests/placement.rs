//! Where a job runs (issue 23), on libp2p's memory transport with executors
//! started the default way (through a bootstrap node, not public): placement
//! by score avoids a busy executor, a requester with 1,000 jobs queues them
//! against its executors' capacity, an executor that dies while holding a job
//! is replaced under the same job id, and a peer that keeps failing trips its
//! breaker and recovers through the half-open trial.
//!
//! Executors started the default way are reached through the bootstrap node's
//! relay; the memory transport cannot punch holes, so jobs here do not wait for
//! a punch ([`fast`]): otherwise every job would wait `punch_wait` (2 s).

mod common;

use common::*;
use plasm::manifest::ManifestBuilder;
use plasm::net::remote::{self, RemoteOptions, RemoteStage};
use plasm::node::{Mode, Node};
use plasm::sched::breaker::BreakerState;
use plasm::sched::{SchedConfig, Scheduler};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Counts down from `n` (a job that holds its worker a while), then prints "done".
fn spin(n: u64) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "done\n")
          (func (export "_start") (local $i i64)
            (local.set $i (i64.const {n}))
            (loop $l
              (local.set $i (i64.sub (local.get $i) (i64.const 1)))
              (br_if $l (i64.ne (local.get $i) (i64.const 0))))
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 5))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    ))
    .expect("wat")
}

/// A bootstrap node and `n` executors started the default way, and a client.
async fn mesh(
    n: usize,
    client: impl FnOnce(&mut plasm::node::NodeConfig),
) -> (Node, Vec<Node>, Node) {
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let addrs = boot.listen_addrs();
    let mut executors = Vec::new();
    for _ in 0..n {
        executors.push(start(memory_config(Mode::Node, &addrs)).await);
    }
    let mut c = memory_config(Mode::Client, &addrs);
    client(&mut c);
    let client = start(c).await;
    // Every executor is found before the test begins.
    let key = remote::capability_key("runtime", "any");
    eventually(Duration::from_secs(30), || {
        let (c, key) = (client.client().clone(), key.clone());
        async move {
            let p = c.get_providers(key, n).await.ok()?;
            (p.len() >= n).then_some(())
        }
    })
    .await
    .expect("every executor found");
    (boot, executors, client)
}

/// Default options, without the wait for a hole punch the memory transport cannot make.
fn fast() -> RemoteOptions {
    RemoteOptions {
        punch_wait: Duration::ZERO,
        ..RemoteOptions::default()
    }
}

async fn stop(boot: Node, executors: Vec<Node>, client: Node) {
    client.shutdown().await;
    for e in executors {
        e.shutdown().await;
    }
    boot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_go_to_the_free_executor_not_the_busy_one() {
    let (boot, executors, client) = mesh(2, |_| {}).await;
    let (busy, free) = (&executors[0], &executors[1]);
    // The busy executor's only worker and its whole queue hold long jobs of
    // another requester.
    let other = start(memory_config(Mode::Client, &boot.listen_addrs())).await;
    let long: Arc<[u8]> = spin(1_000_000_000_000).into();
    // Three loops each keep one long job there (one runs, two wait: its queue
    // of four is not full, so it still accepts offers), for as long as the
    // test places its jobs.
    let mut hogs = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (otherc, long, busy_id) = (other.client().clone(), long.clone(), busy.peer_id());
        hogs.spawn(async move {
            let options = RemoteOptions {
                peers: vec![busy_id],
                ..fast()
            };
            loop {
                let m = ManifestBuilder::new()
                    .fuel(1_000_000_000)
                    .build(&long, b"")
                    .expect("manifest");
                let _ = remote::run_remote(&otherc, &m, long.clone(), vec![], &options).await;
            }
        });
    }
    eventually(Duration::from_secs(20), || async {
        let s = busy.pool().expect("pool").stats();
        (s.running == 1 && s.queued >= 2).then_some(())
    })
    .await
    .expect("the long jobs fill the busy executor");

    let module = hello();
    let place = |n: usize, sched: Arc<Scheduler>, explained: Option<remote::ExplainSink>| {
        let (c, module) = (client.client().clone(), module.clone());
        async move {
            let mut on: HashMap<libp2p::PeerId, usize> = HashMap::new();
            for i in 0..n {
                let m = manifest(&module, ManifestBuilder::new());
                let options = RemoteOptions {
                    sched: Some(sched.clone()),
                    explain: explained.clone().filter(|_| i == 0),
                    ..fast()
                };
                let out = remote::run_remote(&c, &m, module.clone().into(), vec![], &options)
                    .await
                    .expect("remote run");
                *on.entry(out.executor).or_default() += 1;
            }
            on
        }
    };
    let explained: remote::ExplainSink = Arc::default();
    let on = place(100, client.scheduler().clone(), Some(explained.clone())).await;
    let to_free = on.get(&free.peer_id()).copied().unwrap_or(0);
    assert!(
        to_free >= 95,
        "{to_free} of 100 went to the free executor: {on:?}"
    );
    // The control: the same placements at random, blind to load (the busy
    // executor still accepts: its queue has room), spread over both.
    let blind = Scheduler::new(SchedConfig {
        policy: plasm::sched::Policy::Random,
        ..SchedConfig::default()
    });
    let control = place(20, blind, None).await;
    let control_free = control.get(&free.peer_id()).copied().unwrap_or(0);
    eprintln!("to the free executor: {to_free} of 100 by score, {control_free} of 20 blind");
    // All but two of 20 by chance: p < 0.0002.
    assert!(control_free <= 17, "the control must fail: {control:?}");
    // The explanation names both candidates and the choice.
    let rounds = explained.lock().expect("lock").clone();
    let text = rounds.iter().map(ToString::to_string).collect::<String>();
    assert!(text.contains(&busy.peer_id().to_string()), "{text}");
    assert!(text.contains(&format!("-> {}", free.peer_id())), "{text}");
    assert!(text.contains("score"), "{text}");
    hogs.abort_all();
    other.shutdown().await;
    stop(boot, executors, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_jobs_from_one_requester_to_four_executors_all_complete() {
    let (boot, executors, client) = mesh(4, |_| {}).await;
    let sched = client.scheduler().clone();
    let module: Arc<[u8]> = hello().into();
    let peers: Vec<_> = executors.iter().map(Node::peer_id).collect();
    let started = std::time::Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (c, module, sched, peers) = (
            client.client().clone(),
            module.clone(),
            sched.clone(),
            peers.clone(),
        );
        jobs.spawn(async move {
            let m = manifest(&module, ManifestBuilder::new());
            let options = RemoteOptions {
                sched: Some(sched),
                peers,
                ..fast()
            };
            remote::run_remote(&c, &m, module, vec![], &options).await
        });
    }
    let mut by: HashMap<libp2p::PeerId, usize> = HashMap::new();
    let mut failed = Vec::new();
    while let Some(r) = jobs.join_next().await {
        match r.expect("task") {
            Ok(out) => *by.entry(out.executor).or_default() += 1,
            Err(e) => failed.push(e.to_string()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "1,000 jobs in {secs:.1} s ({:.0} jobs/s): {by:?}",
        1000.0 / secs
    );
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(by.values().sum::<usize>(), 1000);
    assert_eq!(by.len(), 4, "every executor took work: {by:?}");
    stop(boot, executors, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_executor_that_dies_holding_a_job_is_replaced_under_the_same_job_id() {
    let (boot, mut executors, client) = mesh(2, |c| {
        c.net.detector.interval = Duration::from_millis(500);
        c.net.detector.probe_timeout = Duration::from_millis(200);
    })
    .await;
    // Runs until its fuel is gone (a second or more): long enough to be
    // killed while it runs, and the same outcome wherever it runs.
    let long = spin(1_000_000_000_000);
    let m = ManifestBuilder::new()
        .fuel(9_000_000_000)
        .build(&long, b"")
        .expect("manifest");
    let (tx, mut rx) = tokio::sync::watch::channel(RemoteStage::Looking);
    let options = RemoteOptions {
        progress: Some(Arc::new(tx)),
        sched: Some(client.scheduler().clone()),
        ..fast()
    };
    let (c, m2, long2) = (client.client().clone(), m.clone(), long.clone());
    let run =
        tokio::spawn(
            async move { remote::run_remote(&c, &m2, long2.into(), vec![], &options).await },
        );
    let first = loop {
        rx.changed().await.expect("stage");
        if let RemoteStage::Running(p) = *rx.borrow() {
            break p;
        }
    };
    let i = executors
        .iter()
        .position(|e| e.peer_id() == first)
        .expect("one of ours");
    // Once its worker runs the job, kill it: its swarm goes away mid-job.
    eventually(Duration::from_secs(20), || async {
        (executors[i].pool().expect("pool").stats().running == 1).then_some(())
    })
    .await
    .expect("the first executor runs the job");
    let dead = executors.remove(i);
    dead.client().shutdown().await;
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the job ends")
        .expect("task")
        .expect("the job completes elsewhere");
    assert_ne!(out.executor, first);
    assert_eq!(out.receipt.str_field("outcome"), Some("out_of_fuel"));
    assert_eq!(out.receipt.verify().expect("verifies").job_id, m.job_id());
    let p = &out.receipt.as_map()["placement"];
    assert_eq!(p["attempt"], 2, "{p}");
    assert_eq!(p["taken_over_from"], first.to_string(), "{p}");
    assert!(
        out.attempts.iter().any(|a| a.peer == first),
        "{:?}",
        out.attempts
    );
    dead.shutdown().await;
    stop(boot, executors, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_peer_trips_its_breaker_and_recovers_through_half_open() {
    let (boot, executors, client) = mesh(0, |_| {}).await;
    // A peer that refuses every offer (its clock window is zero: every manifest is
    // "stale"), then comes back as a good executor at the same address.
    let mut c = memory_config(Mode::Node, &boot.listen_addrs());
    c.policy.max_clock_skew = Duration::ZERO;
    let identity = Arc::new(plasm::identity::Identity::generate().expect("identity"));
    c.identity = plasm::node::IdentitySource::Given(identity.clone());
    let addr = c.listen[0].clone();
    let flaky = start(c).await;
    let id = flaky.peer_id();
    let sched = Scheduler::new(SchedConfig {
        breaker: plasm::sched::breaker::BreakerConfig {
            failures: 3,
            cooldown: Duration::from_secs(2),
        },
        queue_wait: Duration::ZERO,
        ..SchedConfig::default()
    });
    let options = || RemoteOptions {
        sched: Some(sched.clone()),
        peers: vec![id],
        ..fast()
    };
    let state = || {
        sched
            .snapshot()
            .into_iter()
            .find(|p| p.peer == id)
            .map(|p| p.breaker)
    };
    let with_id = |a: &libp2p::Multiaddr| a.clone().with(libp2p::multiaddr::Protocol::P2p(id));
    client.client().dial(with_id(&addr)).await.expect("dial");
    // Three refusals in a row open the breaker.
    for i in 0..3 {
        let r = run_hello(&client, None, &options()).await;
        let e = r.expect_err("refused").to_string();
        assert!(e.contains("declined (policy)"), "{e}");
        let want = if i < 2 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        assert_eq!(state(), Some(want), "after {} refusals", i + 1);
    }
    assert_eq!(sched.trips().get(), 1);
    // While open, the next job is not offered to it at all.
    let e = run_hello(&client, None, &options())
        .await
        .expect_err("vetoed")
        .to_string();
    assert!(!e.contains("declined"), "not offered while open: {e}");
    // It comes back mended (same identity, a new address).
    flaky.shutdown().await;
    let mut c = memory_config(Mode::Node, &boot.listen_addrs());
    c.identity = plasm::node::IdentitySource::Given(identity);
    let back = start(c).await;
    let addr = back.listen_addrs()[0].clone();
    client.client().dial(with_id(&addr)).await.expect("dial");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state(), Some(BreakerState::HalfOpen));
    // The half-open trial succeeds and closes the breaker.
    let out = run_hello(&client, None, &options())
        .await
        .expect("the trial job runs");
    assert_eq!(out.executor, id);
    assert_eq!(state(), Some(BreakerState::Closed));
    back.shutdown().await;
    stop(boot, executors, client).await;
}

/// Swarm mode (decision 0053): a busy node's queue of 20 jobs drains onto three
/// idle peers that opted in, each job stolen with the pool's claim (never one a
/// worker began) and signed `stolen_from` the busy node by its thief, while a
/// fourth peer that did not opt in (the default mesh mode) runs none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swarm_drains_a_busy_queue_onto_idle_peers_that_opted_in() {
    use plasm::sched::Mode as Placing;
    use plasm::service::{Placement, Submission};
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let addrs = boot.listen_addrs();
    let mut thieves = Vec::new();
    for _ in 0..3 {
        let mut c = memory_config(Mode::Node, &addrs);
        c.placement.mode = Placing::Swarm;
        c.workers = 2;
        thieves.push(start(c).await);
    }
    // Started the default way: mesh mode, not opted in.
    let bystander = start(memory_config(Mode::Node, &addrs)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = memory_config(Mode::Node, &addrs);
    c.placement.mode = Placing::Swarm;
    c.workers = 1;
    c.queue = 32;
    c.data_dir = Some(dir.path().to_path_buf());
    c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let busy = start(c).await;
    let key = remote::capability_key("runtime", "any");
    eventually(Duration::from_secs(30), || {
        let (c, key) = (busy.client().clone(), key.clone());
        async move {
            let p = c.get_providers(key, 4).await.ok()?;
            (p.len() >= 4).then_some(())
        }
    })
    .await
    .expect("every executor found");
    let service = busy
        .service()
        .expect("the busy node serves its API")
        .clone();
    // Jobs long enough that the queue outlives several announcement rounds (every
    // 0.5 s once it has waited 1 s): with shorter ones it drained after one or two
    // rounds, and a thief not asked in them took nothing (CI, stop 32).
    let module = spin(500_000_000);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let m = ManifestBuilder::new()
            .fuel(10_000_000_000)
            .build(&module, b"")
            .expect("manifest");
        let id = service
            .submit(Submission {
                manifest: m.as_value().clone(),
                module: Some(module.clone()),
                input: Vec::new(),
                placement: Placement::Any,
                publish: false,
            })
            .await
            .expect("queued on the busy node");
        ids.push(id);
    }
    let me = busy.peer_id().to_string();
    let mut ran: HashMap<String, usize> = HashMap::new();
    let mut fuel_each: Option<u64> = None;
    for id in &ids {
        let row = service
            .wait(id, Duration::from_secs(120))
            .await
            .expect("the job ends");
        let receipt: serde_json::Value =
            serde_json::from_str(row.receipt.as_deref().expect("a receipt")).expect("json");
        assert_eq!(receipt["exit_code"], 0, "{receipt}");
        let executor = receipt["executor"]["peer_id"]
            .as_str()
            .expect("executor")
            .to_owned();
        let stolen = &receipt["placement"]["stolen_from"];
        if executor == me {
            assert!(stolen.is_null(), "a job run here was not stolen: {receipt}");
        } else {
            assert_eq!(
                stolen, &me,
                "a stolen job's receipt names the busy node: {receipt}"
            );
        }
        fuel_each.get_or_insert(receipt["fuel_used"].as_u64().expect("fuel"));
        *ran.entry(executor).or_default() += 1;
    }
    eprintln!("jobs per executor: {ran:?}");
    for t in &thieves {
        assert!(
            ran.get(&t.peer_id().to_string()).copied().unwrap_or(0) >= 1,
            "every idle opted-in peer took some of the queue: {ran:?}"
        );
    }
    assert_eq!(
        ran.get(&bystander.peer_id().to_string()),
        None,
        "the peer that did not opt in ran nothing"
    );
    let gate = bystander.client().steal_gate();
    assert_eq!(
        gate.stats.taken.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(
        gate.stats
            .answered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "it was asked, and said no"
    );
    // Each job ran exactly once: every thief ran exactly the stolen jobs whose
    // receipts it signed, and the busy node counts them as given.
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    for t in &thieves {
        assert_eq!(
            t.client().steal_gate().stats.taken.load(relaxed) as usize,
            ran[&t.peer_id().to_string()],
            "a thief ran what it signed, no more"
        );
    }
    // Nothing stolen also ran here: the busy node's fuel is its own receipts'.
    let fuel_each = fuel_each.expect("a receipt");
    assert_eq!(
        busy.executor_metrics().node_fuel.get(),
        fuel_each * ran.get(&me).copied().unwrap_or(0) as u64,
        "the busy node ran exactly the jobs whose receipts it signed"
    );
    let given = busy.client().steal_gate().stats.given.load(relaxed);
    assert_eq!(
        given as usize,
        20 - ran.get(&me).copied().unwrap_or(0),
        "every job not run here was stolen and run once"
    );
    // Idle answers promise their slots (0063): a busy node asking again while its
    // bundles travel is not told the same slots are free, so it does not send
    // jobs the thieves must refuse. Before, most of the queue went out that way
    // in the second and third rounds, came back, and ran here (6 to 8 of the 20
    // given back in three runs without the promise). One may still come back
    // when a bundle outlasts the 5 s promise on a loaded machine.
    let given_back = busy.client().steal_gate().stats.given_back.load(relaxed);
    eprintln!("given {given}, given back {given_back}");
    assert!(
        given_back <= 2,
        "thieves refused what they had said they would take: {given_back} given back"
    );
    // The bystander refuses a stolen job even when it is sent one directly:
    // its consent is checked on the bytes, not only in its answers.
    let m = ManifestBuilder::new()
        .build(&hello(), b"")
        .expect("manifest");
    let forced = remote::run_remote(
        busy.client(),
        &m,
        hello().into(),
        Vec::new(),
        &RemoteOptions {
            peers: vec![bystander.peer_id()],
            stolen_from: Some(busy.peer_id()),
            ..fast()
        },
    )
    .await;
    let Err(remote::RemoteError::AllFailed(attempts)) = forced else {
        panic!("a peer not in swarm mode ran a stolen job: {forced:?}");
    };
    assert!(
        attempts
            .iter()
            .any(|a| a.outcome.contains("not take stolen work")),
        "{attempts:?}"
    );
    assert_eq!(gate.stats.refused.load(relaxed), 1);
    busy.shutdown().await;
    bystander.shutdown().await;
    for t in thieves {
        t.shutdown().await;
    }
    boot.shutdown().await;
}

/// Swarm mode with another requester's jobs: a requester gives twelve jobs to a
/// busy executor in swarm mode; an idle opted-in peer steals some from its
/// queue, and the requester accepts their receipts, signed by the thief, only
/// through the busy executor's signed hand-off (the receipt names the busy node
/// in `placement.stolen_from`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swarm_hands_another_requesters_job_to_an_idle_peer() {
    use plasm::sched::Mode as Placing;
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let addrs = boot.listen_addrs();
    let mut c = memory_config(Mode::Node, &addrs);
    c.placement.mode = Placing::Swarm;
    c.workers = 2;
    let thief = start(c).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = memory_config(Mode::Node, &addrs);
    c.placement.mode = Placing::Swarm;
    c.workers = 1;
    c.queue = 16;
    c.data_dir = Some(dir.path().to_path_buf());
    c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let busy = start(c).await;
    let requester = start(memory_config(Mode::Client, &addrs)).await;
    let key = remote::capability_key("runtime", "any");
    // (A node's own record is not among the providers it finds.)
    for (n, want) in [(&busy, 1), (&requester, 2)] {
        eventually(Duration::from_secs(30), || {
            let (c, key) = (n.client().clone(), key.clone());
            async move {
                let p = c.get_providers(key, want).await.ok()?;
                (p.len() >= want).then_some(())
            }
        })
        .await
        .expect("both executors found");
    }
    // Twelve jobs: the queue must outlast the 1 s the busy node waits before it
    // asks, and a round or two more. Six were often gone by then (one worker, and
    // a fast machine), and the idle peer was never asked.
    let module: Arc<[u8]> = spin(500_000_000).into();
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (c, module, busy_id) = (requester.client().clone(), module.clone(), busy.peer_id());
        runs.spawn(async move {
            let m = ManifestBuilder::new()
                .fuel(10_000_000_000)
                .build(&module, b"")
                .expect("manifest");
            let options = RemoteOptions {
                peers: vec![busy_id],
                ..fast()
            };
            remote::run_remote(&c, &m, module, Vec::new(), &options).await
        });
    }
    let (me, them) = (busy.peer_id(), thief.peer_id());
    let mut by = HashMap::new();
    while let Some(out) = runs.join_next().await {
        let out = out
            .expect("task")
            .expect("the job ran, here or through a hand-off");
        let placement = &out.receipt.as_map()["placement"];
        if out.executor == them {
            assert_eq!(placement["stolen_from"], me.to_string(), "{placement}");
            assert!(
                out.attempts
                    .iter()
                    .any(|a| a.outcome.contains("handed off by")),
                "{:?}",
                out.attempts
            );
        } else {
            assert_eq!(out.executor, me);
            assert!(placement.get("stolen_from").is_none(), "{placement}");
        }
        *by.entry(out.executor).or_insert(0) += 1;
    }
    eprintln!("jobs per executor: {by:?}");
    assert!(
        by.get(&them).copied().unwrap_or(0) >= 1,
        "the idle peer took some: {by:?}"
    );
    let stats = &busy.client().steal_gate().stats;
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let (given, given_back) = (
        stats.given.load(relaxed) as usize,
        stats.given_back.load(relaxed) as usize,
    );
    eprintln!("given {given}, given back {given_back}");
    // Idle answers promise their slots (0063), but a bundle that outlasts the
    // promise may still be declined; that job comes back and runs here. Either
    // way each stolen job is counted once, as given or as given back.
    assert_eq!(
        given, by[&them],
        "each job the thief ran counted once as given"
    );
    // The thief's side agrees: it admitted exactly the jobs it ran (a declined
    // bundle is counted refused there, never taken).
    let thief_stats = &thief.client().steal_gate().stats;
    let (taken, refused) = (
        thief_stats.taken.load(relaxed) as usize,
        thief_stats.refused.load(relaxed) as usize,
    );
    eprintln!("thief: taken {taken}, refused {refused}");
    assert_eq!(taken, given, "the thief admitted exactly the jobs it ran");
    assert!(
        given_back <= by.get(&me).copied().unwrap_or(0),
        "a job given back ran here: given back {given_back}, {by:?}"
    );
    assert_eq!(
        busy.pool().expect("pool").stats().queued,
        0,
        "no place left held"
    );
    requester.shutdown().await;
    busy.shutdown().await;
    thief.shutdown().await;
    boot.shutdown().await;
}

/// Solo mode: jobs never leave the node. A job asking for a peer is refused
/// (422), and a job that may run anywhere waits for this node's own room (429
/// when it is full) instead of going to the idle peer beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_solo_node_never_sends_a_job_away() {
    use plasm::service::{Placement, ServiceError, Submission};
    let boot = start(memory_config(Mode::Bootstrap, &[])).await;
    let addrs = boot.listen_addrs();
    let idle = start(memory_config(Mode::Node, &addrs)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = memory_config(Mode::Node, &addrs);
    c.placement.mode = plasm::sched::Mode::Solo;
    c.queue = 0;
    c.data_dir = Some(dir.path().to_path_buf());
    c.api = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let solo = start(c).await;
    let service = solo.service().expect("api").clone();
    let long = spin(1_000_000_000_000);
    let submit = |module: &[u8], placement| {
        let m = ManifestBuilder::new()
            .fuel(10_000_000_000)
            .build(module, b"")
            .expect("manifest");
        Submission {
            manifest: m.as_value().clone(),
            module: Some(module.to_vec()),
            input: Vec::new(),
            placement,
            publish: false,
        }
    };
    let away = service.submit(submit(&hello(), Placement::Remote)).await;
    assert!(
        matches!(&away, Err(ServiceError::Unprocessable(m)) if m.contains("solo")),
        "{away:?}"
    );
    let first = service
        .submit(submit(&long, Placement::Any))
        .await
        .expect("the only worker takes it");
    let second = service.submit(submit(&hello(), Placement::Any)).await;
    assert!(matches!(second, Err(ServiceError::Busy)), "{second:?}");
    service.cancel(&first).await.expect("cancel");
    assert_eq!(
        idle.executor_metrics().fuel.get(),
        0,
        "nothing went to the peer"
    );
    solo.shutdown().await;
    idle.shutdown().await;
    boot.shutdown().await;
}
