//! Writes the seed corpora (run once, by hand; the files are committed):
//! `cargo test -p plasm-fuzz --test seeds -- --ignored`.
//!
//! Seeds come from the cross-language test vectors (manifests, receipts,
//! canonical JSON), from real wire messages encoded by the node's codec, from
//! the example modules, and from fixed pseudo-random bytes for the targets that
//! build their input with `arbitrary` (wasm-smith modules, WASI guests).

use futures::executor::block_on;
use libp2p::request_response::Codec as _;
use plasm::net::protocol::{DeclineReason, JOB_PROTOCOL, JobRequest, JobResponse};
use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn put(name: &str, file: &str, bytes: &[u8]) {
    std::fs::write(dir(name).join(file), bytes).expect("write seed");
}

#[test]
#[ignore = "writes the committed seed corpora"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let vectors: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("schemas/test-vectors/vectors.json")).expect("vectors"),
    )
    .expect("json");
    for (i, m) in vectors["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .enumerate()
    {
        put(
            "manifest",
            &format!("vector-{i:02}"),
            m["json"].as_str().expect("json").as_bytes(),
        );
    }
    for (i, r) in vectors["receipts"]
        .as_array()
        .expect("receipts")
        .iter()
        .enumerate()
    {
        put(
            "receipt",
            &format!("vector-{i:02}"),
            r["json"].as_str().expect("json").as_bytes(),
        );
    }
    for (i, c) in vectors["canonical"]
        .as_array()
        .expect("canonical")
        .iter()
        .enumerate()
    {
        put(
            "jcs",
            &format!("vector-{i:02}"),
            c["json"].as_str().expect("json").as_bytes(),
        );
    }
    let mut codec =
        libp2p::request_response::cbor::codec::Codec::<JobRequest, JobResponse>::default();
    let manifest = vectors["manifests"][0]["json"]
        .as_str()
        .expect("json")
        .to_owned();
    let requests = [
        JobRequest::Offer { manifest },
        JobRequest::Bundle {
            job_id: "a".repeat(64),
            module: Some(b"\0asm\x01\0\0\0".to_vec()),
            input: b"in".to_vec(),
            placement: None,
        },
        JobRequest::Bundle {
            job_id: "b".repeat(64),
            module: None,
            input: vec![],
            placement: None,
        },
    ];
    for (i, r) in requests.into_iter().enumerate() {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_request(&JOB_PROTOCOL, &mut out, r)).expect("encode");
        put("wire", &format!("request-{i}"), &out.into_inner());
    }
    let receipt = vectors["receipts"][0]["json"]
        .as_str()
        .expect("json")
        .to_owned();
    let responses = [
        JobResponse::Accept {
            job_id: "a".repeat(64),
            has_module: true,
            receipt: Some("plasm.receipt/v2".into()),
        },
        JobResponse::Decline {
            reason: DeclineReason::Busy,
            message: "busy".into(),
        },
        JobResponse::Result {
            receipt,
            stdout: b"hello".to_vec(),
            stderr: vec![],
            handoff: None,
        },
    ];
    for (i, r) in responses.into_iter().enumerate() {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_response(&JOB_PROTOCOL, &mut out, r)).expect("encode");
        put("wire", &format!("response-{i}"), &out.into_inner());
    }
    for wat_file in ["hello", "fib", "reverse", "sum_loop"] {
        let text = std::fs::read_to_string(root.join(format!("examples/wat/{wat_file}.wat")))
            .expect("wat");
        let mut raw = vec![1u8]; // odd first byte: the instrument target takes the rest as is
        raw.extend(wat::parse_str(&text).expect("parse"));
        put("instrument", &format!("raw-{wat_file}"), &raw);
    }
    for i in 0..8u64 {
        let mut smith = vec![0u8]; // even first byte: wasm-smith builds a module from the rest
        smith.extend(plasm_fuzz::noise(i, 512 + 256 * i as usize));
        put("instrument", &format!("smith-{i}"), &smith);
        put(
            "wasi",
            &format!("guest-{i}"),
            &plasm_fuzz::noise(100 + i, 256 + 128 * i as usize),
        );
    }
}

#[test]
#[ignore = "writes the committed seed corpora"]
fn write_beat_seeds() {
    use plasm::net::beat::{BEAT_PROTOCOL, Beat};
    use plasm::sched::Load;
    let mut codec = plasm_fuzz::beat_codec();
    let load = Load {
        running: 1,
        queued: 2,
        slots: 4,
        queue_cap: 16,
        cores: 2,
        memory_mb: 24_000,
        engines: vec!["wasmtime".into(), "wasm3".into()],
        labels: vec!["region=eu".into()],
        profile: "wan".into(),
        accepting: true,
    };
    let liar = Load {
        running: u32::MAX,
        queued: u32::MAX,
        slots: 1_000_000,
        queue_cap: 1_000_000,
        ..load.clone()
    };
    for (i, b) in [
        Beat { load: None },
        Beat { load: Some(load) },
        Beat { load: Some(liar) },
    ]
    .into_iter()
    .enumerate()
    {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_request(&BEAT_PROTOCOL, &mut out, b)).expect("encode");
        put("beat", &format!("beat-{i}"), &out.into_inner());
    }
    let mut codec = plasm_fuzz_codec();
    let bundle = JobRequest::Bundle {
        job_id: "c".repeat(64),
        module: None,
        input: vec![],
        placement: Some(plasm::net::protocol::BundlePlacement {
            attempt: 2,
            taken_over_from: Some("12D3KooWBeatSeedPeer".into()),
            stolen_from: None,
            handoff: false,
        }),
    };
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(codec.write_request(&JOB_PROTOCOL, &mut out, bundle)).expect("encode");
    put("wire", "request-placement", &out.into_inner());
}

fn plasm_fuzz_codec() -> libp2p::request_response::cbor::codec::Codec<JobRequest, JobResponse> {
    libp2p::request_response::cbor::codec::Codec::default()
}

#[test]
#[ignore = "writes the committed seed corpora"]
fn write_steal_seeds() {
    use plasm::net::steal::{Need, Overflow, STEAL_PROTOCOL, StealAnswer};
    let mut codec = plasm_fuzz::steal_codec();
    let overflow = Overflow {
        queued: 20,
        needs: vec![
            Need::default(),
            Need {
                runtime: Some("wasmtime".into()),
                labels: vec!["gpu".into()],
                memory_bytes: 64 << 20,
                bundle_bytes: 4096,
            },
        ],
    };
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(codec.write_request(&STEAL_PROTOCOL, &mut out, overflow)).expect("encode");
    put("steal", "overflow", &out.into_inner());
    for (i, a) in [
        StealAnswer::Idle {
            free_slots: 2,
            engines: vec!["wasm3".into(), "wasmtime".into()],
            labels: vec!["gpu".into()],
            require_labels: vec![],
            memory_mb: 24_000,
            max_bundle_bytes: 33 << 20,
        },
        StealAnswer::NotStealing {
            reason: "not in swarm mode".into(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_response(&STEAL_PROTOCOL, &mut out, a)).expect("encode");
        put("steal", &format!("answer-{i}"), &out.into_inner());
    }
    let busy = plasm::identity::Identity::from_seed([5; 32]);
    let h = plasm::receipt::handoff::Handoff::sign(
        &"a".repeat(64),
        &plasm::identity::Identity::from_seed([6; 32])
            .peer_id()
            .to_string(),
        &plasm::identity::Identity::from_seed([7; 32])
            .peer_id()
            .to_string(),
        &busy,
    )
    .expect("sign");
    put("steal", "handoff", h.to_json().as_bytes());
}

#[test]
#[ignore = "writes the committed seed corpora"]
fn write_records_seeds() {
    use plasm::identity::Identity;
    use plasm::net::records::{RECORDS_PROTOCOL, RecordsRequest, RecordsResponse};
    use plasm::receipt::signed::{ACCEPTANCE, AUDIT, PUBLICATION, receipt_sha256, sign};
    use serde_json::{Map, Value, json};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let vectors: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("schemas/test-vectors/vectors.json")).expect("vectors"),
    )
    .expect("json");
    let receipt_text = vectors["receipts"][0]["json"].as_str().expect("json");
    let receipt = plasm::receipt::Receipt::from_json(receipt_text).expect("receipt");
    let job_id = receipt.str_field("job_id").expect("job_id").to_owned();
    let executor = receipt.as_map()["executor"]["peer_id"]
        .as_str()
        .expect("executor")
        .to_owned();
    let digest = receipt_sha256(&receipt).expect("digest");
    let submitter = Identity::from_seed([11; 32]);
    let auditor = Identity::from_seed([12; 32]);
    let at = "2026-12-07T00:00:00Z";
    let members = |pairs: Vec<(&str, Value)>| -> Map<String, Value> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    };
    let acceptance = sign(
        &ACCEPTANCE,
        members(vec![
            ("job_id", json!(job_id)),
            ("receipt_sha256", json!(digest)),
            ("executor", json!(executor)),
            ("at", json!(at)),
        ]),
        &submitter,
    )
    .expect("acceptance")
    .to_json();
    let manifest = plasm::manifest::Manifest::from_json(
        vectors["manifests"][0]["json"].as_str().expect("json"),
    )
    .expect("manifest");
    let publication = sign(
        &PUBLICATION,
        members(vec![
            ("job_id", json!(manifest.job_id())),
            ("manifest", manifest.as_value().clone()),
            ("at", json!(at)),
        ]),
        &submitter,
    )
    .expect("publication")
    .to_json();
    let audit = sign(
        &AUDIT,
        members(vec![
            ("job_id", json!(job_id)),
            ("receipt_sha256", json!(digest)),
            ("executor", json!(executor)),
            ("verdict", json!("mismatch")),
            ("differs", json!(["output_sha256"])),
            ("reason", json!("the output differs")),
            ("at", json!(at)),
        ]),
        &auditor,
    )
    .expect("audit")
    .to_json();
    put("records", "acceptance", acceptance.as_bytes());
    put("records", "publication", publication.as_bytes());
    put("records", "audit", audit.as_bytes());
    let mut codec = plasm_fuzz::records_codec();
    let requests = [
        RecordsRequest::Put {
            job_id: job_id.clone(),
            records: vec![receipt_text.to_owned(), acceptance.clone(), audit],
        },
        RecordsRequest::Get {
            job_id: job_id.clone(),
        },
        RecordsRequest::PutBlob {
            job_id: job_id.clone(),
            sha256: manifest.as_value()["module"]["sha256"]
                .as_str()
                .expect("sha")
                .to_owned(),
            bytes: b"\0asm\x01\0\0\0".to_vec(),
        },
        RecordsRequest::GetBlob {
            sha256: "a".repeat(64),
        },
    ];
    for (r, name) in requests
        .into_iter()
        .zip(["put", "get", "put-blob", "get-blob"])
    {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_request(&RECORDS_PROTOCOL, &mut out, r)).expect("encode");
        put("records", &format!("request-{name}"), &out.into_inner());
    }
    let responses = [
        RecordsResponse::Stored {
            stored: 2,
            refused: vec!["the record's signature does not verify".into()],
        },
        RecordsResponse::Records {
            records: vec![receipt_text.to_owned(), acceptance, publication],
        },
        RecordsResponse::Blob {
            bytes: Some(b"\0asm\x01\0\0\0".to_vec()),
        },
        RecordsResponse::Refused {
            reason: "rate-limited".into(),
        },
    ];
    for (r, name) in responses
        .into_iter()
        .zip(["stored", "records", "blob", "refused"])
    {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_response(&RECORDS_PROTOCOL, &mut out, r)).expect("encode");
        put("records", &format!("response-{name}"), &out.into_inner());
    }
}

#[test]
#[ignore = "writes the committed seed corpora"]
fn write_bootstrap_seeds() {
    use plasm::identity::Identity;
    use plasm::net::bootstrap::{self, ListedPeer, cache::PeerCache};
    let peer = |seed: u8, n: u16| {
        let id = Identity::from_seed([seed; 32]).peer_id();
        ListedPeer {
            peer_id: id,
            addrs: (0..n)
                .map(|i| {
                    format!("/ip4/192.0.2.{seed}/udp/{}/quic-v1/p2p/{id}", 4610 + i)
                        .parse()
                        .expect("addr")
                })
                .collect(),
        }
    };
    let publisher = plasm_fuzz::bootstrap_publisher();
    // Issued 30 days before the target's "now", valid 90 days.
    let issued = plasm_fuzz::bootstrap_now() - time::Duration::days(30);
    let list = bootstrap::sign(&[peer(1, 2), peer(2, 1)], &publisher, issued, 90).expect("sign");
    bootstrap::verify(
        &list,
        &[publisher.public_key_b64()],
        plasm_fuzz::bootstrap_now(),
    )
    .expect("the seed verifies");
    put("bootstrap", "list", list.as_bytes());
    let full: Vec<ListedPeer> = (0..bootstrap::MAX_LIST_PEERS as u8)
        .map(|i| peer(i + 20, 8))
        .collect();
    let big = bootstrap::sign(&full, &publisher, issued, 90).expect("sign");
    put("bootstrap", "list-full", big.as_bytes());
    let rogue = Identity::from_seed([0x66; 32]);
    put(
        "bootstrap",
        "list-untrusted",
        bootstrap::sign(&[peer(3, 1)], &rogue, issued, 90)
            .expect("sign")
            .as_bytes(),
    );
    let expired = bootstrap::sign(&[peer(4, 1)], &publisher, issued, 1).expect("sign");
    put("bootstrap", "list-expired", expired.as_bytes());
    let unsigned = format!("{{\"peers\": {}}}", bootstrap::peers_json(&[peer(5, 3)]));
    put("bootstrap", "unsigned-peers", unsigned.as_bytes());
    let mut cache = PeerCache::new();
    for i in 0..4u8 {
        let p = peer(i + 40, 1);
        cache.record(p.peer_id, &p.addrs[0], 1_780_000_000 + u64::from(i));
    }
    put("bootstrap", "peer-cache", cache.to_json().as_bytes());
}
