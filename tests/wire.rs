//! Bad input on the wire: oversized messages, garbage bytes, invalid manifests,
//! replayed nonces, bundles without an offer. Each is refused with a typed reason
//! (or the stream is dropped when it cannot even be read) while the node keeps
//! serving others.

mod common;

use common::*;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, Codec, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol, Swarm, SwarmBuilder, noise, yamux};
use plasm::manifest::ManifestBuilder;
use plasm::net::protocol::{DeclineReason, FailureReason, JOB_PROTOCOL, JobRequest, JobResponse};
use plasm::net::remote::{self, RemoteOptions};
use plasm::node::{Mode, Node};
use plasm::runtime::engines::{EngineChoice, EngineName};
use std::time::Duration;

async fn offer(client: &Node, exec: &Node, manifest: String) -> JobResponse {
    client
        .client()
        .request(exec.peer_id(), JobRequest::Offer { manifest })
        .await
        .expect("answer")
}

async fn hello_runs(client: &Node, exec: &Node) {
    let module = hello();
    let m = manifest(&module, ManifestBuilder::new());
    let options = RemoteOptions {
        peers: vec![exec.peer_id()],
        ..RemoteOptions::default()
    };
    let out = remote::run_remote(client.client(), &m, module.into(), vec![], &options)
        .await
        .expect("still serving");
    assert_eq!(out.stdout, b"hello from plasm\n");
}

/// A client node connected to `exec`.
async fn client_of(exec: &Node) -> Node {
    let client = start(memory_config(Mode::Client, &[])).await;
    client
        .client()
        .dial(exec.listen_addrs()[0].clone())
        .await
        .expect("dial");
    client
}

async fn pair(max_request_bytes: u64) -> (Node, Node) {
    let mut c = memory_config(Mode::Node, &[]);
    c.net.limits.max_request_bytes = max_request_bytes;
    // A host that forbids W+X memory: wasm3 only, so a wasmtime job is declined.
    c.policy.engines = EngineChoice::only(EngineName::Wasm3);
    let exec = start(c).await;
    let client = client_of(&exec).await;
    (exec, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_refused_with_typed_reasons() {
    let (exec, client) = pair(4 * 1024 * 1024).await;
    let module = hello();

    let r = offer(&client, &exec, "{not json".into()).await;
    assert!(
        matches!(
            r,
            JobResponse::Decline {
                reason: DeclineReason::Policy,
                ..
            }
        ),
        "{r:?}"
    );
    let r = offer(&client, &exec, r#"{"version":"plasm.job/v1"}"#.into()).await;
    match r {
        JobResponse::Decline {
            reason: DeclineReason::Policy,
            message,
        } => assert!(message.contains("required"), "{message}"),
        other => panic!("{other:?}"),
    }

    let over = manifest(&module, ManifestBuilder::new().fuel(1_000_000_000_000));
    let r = offer(&client, &exec, over.as_value().to_string()).await;
    assert!(
        matches!(
            r,
            JobResponse::Decline {
                reason: DeclineReason::OverLimit,
                ..
            }
        ),
        "{r:?}"
    );
    let labelled = manifest(&module, ManifestBuilder::new().label("gpu"));
    let r = offer(&client, &exec, labelled.as_value().to_string()).await;
    assert!(
        matches!(
            r,
            JobResponse::Decline {
                reason: DeclineReason::MissingLabel,
                ..
            }
        ),
        "{r:?}"
    );
    let other_rt = manifest(&module, ManifestBuilder::new().runtime("wasmtime"));
    let r = offer(&client, &exec, other_rt.as_value().to_string()).await;
    assert!(
        matches!(
            r,
            JobResponse::Decline {
                reason: DeclineReason::UnsupportedRuntime,
                ..
            }
        ),
        "{r:?}"
    );
    let stale = ManifestBuilder::new()
        .build_with(&module, b"", "0123456789abcdef0123", "2020-01-01T00:00:00Z")
        .expect("m");
    let r = offer(&client, &exec, stale.as_value().to_string()).await;
    assert!(
        matches!(
            r,
            JobResponse::Decline {
                reason: DeclineReason::Policy,
                ..
            }
        ),
        "{r:?}"
    );

    let good = manifest(&module, ManifestBuilder::new());
    let r = offer(&client, &exec, good.as_value().to_string()).await;
    assert!(
        matches!(
            r,
            JobResponse::Accept {
                has_module: false,
                ..
            }
        ),
        "{r:?}"
    );
    let r = offer(&client, &exec, good.as_value().to_string()).await;
    assert!(
        matches!(
            r,
            JobResponse::Decline {
                reason: DeclineReason::ReplayedNonce,
                ..
            }
        ),
        "{r:?}"
    );

    // A bundle must follow an accepted offer from the same peer, with matching bytes.
    let r = client
        .client()
        .request(
            exec.peer_id(),
            JobRequest::Bundle {
                job_id: "0".repeat(64),
                module: Some(module.clone()),
                input: vec![],
                placement: None,
            },
        )
        .await
        .expect("answer");
    assert!(
        matches!(
            r,
            JobResponse::Failure {
                reason: FailureReason::UnknownJob,
                ..
            }
        ),
        "{r:?}"
    );
    let r = client
        .client()
        .request(
            exec.peer_id(),
            JobRequest::Bundle {
                job_id: good.job_id().into(),
                module: Some(b"\0asm\x01\0\0\0".to_vec()),
                input: vec![],
                placement: None,
            },
        )
        .await
        .expect("answer");
    assert!(
        matches!(
            r,
            JobResponse::Failure {
                reason: FailureReason::ModuleMismatch,
                ..
            }
        ),
        "{r:?}"
    );

    hello_runs(&client, &exec).await;
    // The executor now holds the module: the next accept says so and the bundle may omit it.
    let again = manifest(&module, ManifestBuilder::new());
    let r = offer(&client, &exec, again.as_value().to_string()).await;
    assert!(
        matches!(
            r,
            JobResponse::Accept {
                has_module: true,
                ..
            }
        ),
        "{r:?}"
    );
    let r = client
        .client()
        .request(
            exec.peer_id(),
            JobRequest::Bundle {
                job_id: again.job_id().into(),
                module: None,
                input: vec![],
                placement: None,
            },
        )
        .await
        .expect("answer");
    assert!(matches!(r, JobResponse::Result { .. }), "{r:?}");
    client.shutdown().await;
    exec.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bundles_are_dropped_and_the_node_keeps_serving() {
    let (exec, client) = pair(256 * 1024).await;
    let big = vec![0u8; 1024 * 1024];
    let m = ManifestBuilder::new().build(&big, b"").expect("m");
    let r = offer(&client, &exec, m.as_value().to_string()).await;
    assert!(matches!(r, JobResponse::Accept { .. }), "{r:?}");
    let err = client
        .client()
        .request(
            exec.peer_id(),
            JobRequest::Bundle {
                job_id: m.job_id().into(),
                module: Some(big),
                input: vec![],
                placement: None,
            },
        )
        .await
        .expect_err("an oversized request is never read whole");
    assert!(err.to_string().contains("request to"), "{err}");
    hello_runs(&client, &exec).await;
    client.shutdown().await;
    exec.shutdown().await;
}

/// A codec that writes raw bytes on the job protocol, to play a broken or hostile peer.
#[derive(Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.take(1 << 20).read_to_end(&mut v).await?;
        Ok(v)
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        self.read_request(p, io).await
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        self.write_request(p, io, res).await
    }
}

fn raw_swarm() -> Swarm<request_response::Behaviour<Raw>> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            use libp2p::Transport;
            use libp2p::core::{transport::MemoryTransport, upgrade::Version};
            Ok(MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default())
                .boxed())
        })
        .expect("transport")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                Raw,
                [(JOB_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            )
        })
        .expect("behaviour")
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_dropped_and_the_node_keeps_serving() {
    let (exec, client) = pair(4 * 1024 * 1024).await;
    let mut raw = raw_swarm();
    let addr: Multiaddr = exec.listen_addrs()[0].clone();
    raw.dial(addr).expect("dial");
    let mut answered = 0;
    for garbage in [
        b"\xff\xfe\xfd garbage".to_vec(),
        vec![0xa1; 1000],
        Vec::new(),
    ] {
        raw.behaviour_mut().send_request(&exec.peer_id(), garbage);
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match raw.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    }) if !response.is_empty() => return "answered",
                    SwarmEvent::Behaviour(request_response::Event::Message { .. }) => {
                        return "dropped";
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                        return "dropped";
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("the executor reacts");
        if outcome == "answered" {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 0,
        "undecodable requests get no answer, only a dropped stream"
    );
    hello_runs(&client, &exec).await;
    client.shutdown().await;
    exec.shutdown().await;
}

async fn bundle(
    client: &Node,
    exec: &Node,
    job_id: &str,
    module: &[u8],
    attempt: Option<u32>,
) -> JobResponse {
    let placement = attempt.map(|attempt| plasm::net::protocol::BundlePlacement {
        attempt,
        taken_over_from: Some(libp2p::PeerId::random().to_string()),
        stolen_from: None,
        handoff: false,
    });
    send_bundle(
        client.client().clone(),
        exec.peer_id(),
        job_id.into(),
        module.to_vec(),
        placement,
    )
    .await
}

/// Sends one bundle (owned arguments, so it can be spawned) and returns the answer.
async fn send_bundle(
    client: plasm::net::Client,
    exec: libp2p::PeerId,
    job_id: String,
    module: Vec<u8>,
    placement: Option<plasm::net::protocol::BundlePlacement>,
) -> JobResponse {
    client
        .request(
            exec,
            JobRequest::Bundle {
                job_id,
                module: Some(module),
                input: vec![],
                placement,
            },
        )
        .await
        .expect("answer")
}

fn refused(exec: &Node, reason: &str) -> u64 {
    exec.executor_metrics()
        .refusals
        .get_or_create(&plasm::net::executor::RefusalLabel {
            reason: reason.into(),
        })
        .get()
}

/// Decision 0054: the replay window is kept in the data dir, so an executor that
/// ran a job refuses its replay after a restart; only the job's first submitter
/// may place it again, under a higher attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_executor_refuses_a_replayed_job() {
    let dir = tempfile::tempdir().expect("data dir");
    let identity = std::sync::Arc::new(plasm::identity::Identity::generate().expect("identity"));
    let config = || {
        let mut c = memory_config(Mode::Node, &[]);
        c.identity = plasm::node::IdentitySource::Given(identity.clone());
        c.data_dir = Some(dir.path().to_path_buf());
        c
    };
    let exec = start(config()).await;
    let client = client_of(&exec).await;
    let module = hello();
    let m = manifest(&module, ManifestBuilder::new());
    let out = remote::run_remote(
        client.client(),
        &m,
        module.clone().into(),
        vec![],
        &only(&exec),
    )
    .await
    .expect("the job runs");
    assert_eq!(out.stdout, b"hello from plasm\n");
    exec.shutdown().await;

    // The same node (identity, data dir) starts again.
    let exec = start(config()).await;
    assert!(dir.path().join("replay.db").exists());
    client
        .client()
        .dial(exec.listen_addrs()[0].clone())
        .await
        .expect("dial the restarted node");
    let text = m.as_value().to_string();

    // Another peer replays the signed manifest: declined at the offer.
    let other = client_of(&exec).await;
    match offer(&other, &exec, text.clone()).await {
        JobResponse::Decline {
            reason: DeclineReason::ReplayedNonce,
            message,
        } => assert!(message.contains("replayed job"), "{message}"),
        r => panic!("{r:?}"),
    }
    assert_eq!(refused(&exec, "replayed_job"), 1);

    // The original requester replays it as the same attempt: its offer may be a
    // re-placement, but the bundle of the attempt that ran is refused.
    assert!(
        matches!(
            offer(&client, &exec, text.clone()).await,
            JobResponse::Accept { .. }
        ),
        "the first submitter may re-place its job"
    );
    match bundle(&client, &exec, m.job_id(), &module, None).await {
        JobResponse::Failure {
            reason: FailureReason::UnknownJob,
            message,
        } => assert!(message.contains("replayed job"), "{message}"),
        r => panic!("{r:?}"),
    }
    assert_eq!(refused(&exec, "replayed_job"), 2);

    // A re-placement (attempt 2, decision 0050) by the same requester runs.
    assert!(matches!(
        offer(&client, &exec, text.clone()).await,
        JobResponse::Accept { .. }
    ));
    match bundle(&client, &exec, m.job_id(), &module, Some(2)).await {
        JobResponse::Result { stdout, .. } => assert_eq!(stdout, b"hello from plasm\n"),
        r => panic!("{r:?}"),
    }
    // ...once: attempt 2 is now the one that ran.
    assert!(matches!(
        offer(&client, &exec, text).await,
        JobResponse::Accept { .. }
    ));
    assert!(matches!(
        bundle(&client, &exec, m.job_id(), &module, Some(2)).await,
        JobResponse::Failure {
            reason: FailureReason::UnknownJob,
            ..
        }
    ));
}

/// A bundle refused `busy` because too many are being checked at once lets go of
/// its reservation and nonce: a requester retries a busy answer with a new offer
/// (as it does a busy decline), and that offer is accepted and runs. It was once
/// declined as a replayed nonce, so a burst of jobs to one executor failed some of
/// them outright (CI, stop 32: twelve jobs to one swarm-mode executor). The checks
/// are held at a closed gate, so the ninth bundle meets eight being checked on
/// any machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_refused_busy_is_accepted_when_offered_again() {
    let gate = plasm::net::executor::CheckGate::closed(0);
    // Opened however the test ends: a panic with bundles still held would
    // otherwise leave the runtime waiting on their blocking threads for ever.
    struct OpenOnDrop(plasm::net::executor::CheckGate);
    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open();
        }
    }
    let _opened = OpenOnDrop(gate.clone());
    // A data dir, as the package runs it (the replay window on disk).
    let dir = tempfile::tempdir().expect("data dir");
    let mut c = memory_config(Mode::Node, &[]);
    c.data_dir = Some(dir.path().to_path_buf());
    c.queue = 32;
    c.policy.check_gate = gate.clone();
    let exec = start(c).await;
    let client = client_of(&exec).await;
    let module = hello();
    let ms: Vec<_> = (0..9)
        .map(|_| manifest(&module, ManifestBuilder::new()))
        .collect();
    for m in &ms {
        match offer(&client, &exec, m.as_value().to_string()).await {
            JobResponse::Accept { .. } => {}
            r => panic!("{r:?}"),
        }
    }
    let send = |m: &plasm::manifest::Manifest| {
        let (c, peer) = (client.client().clone(), exec.peer_id());
        send_bundle(c, peer, m.job_id().to_owned(), module.clone(), None)
    };
    // Eight bundles are held in their checks (the executor checks 8 at once).
    let held: Vec<_> = ms[..8].iter().map(|m| tokio::spawn(send(m))).collect();
    eventually(Duration::from_secs(30), || {
        let arrived = gate.arrived();
        async move { (arrived >= 8).then_some(()) }
    })
    .await
    .expect("eight bundles held at the check");
    // The ninth is refused busy...
    match send(&ms[8]).await {
        JobResponse::Failure {
            reason: FailureReason::Busy,
            message,
        } => assert!(message.contains("being checked"), "{message}"),
        r => panic!("{r:?}"),
    }
    // ...and its retry, a new offer of the same signed manifest, is accepted.
    match offer(&client, &exec, ms[8].as_value().to_string()).await {
        JobResponse::Accept { .. } => {}
        r => panic!("a bundle refused busy may be offered again: {r:?}"),
    }
    gate.open();
    for h in held {
        match h.await.expect("task") {
            JobResponse::Result { stdout, .. } => assert_eq!(stdout, b"hello from plasm\n"),
            r => panic!("{r:?}"),
        }
    }
    match send(&ms[8]).await {
        JobResponse::Result { stdout, .. } => assert_eq!(stdout, b"hello from plasm\n"),
        r => panic!("{r:?}"),
    }
    client.shutdown().await;
    exec.shutdown().await;
}
