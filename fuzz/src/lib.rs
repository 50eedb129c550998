//! The bodies of plasm's fuzz targets, one per input surface that takes bytes
//! from strangers: manifests, receipts, the job protocol's wire codec, the
//! records protocol and its signed records, RFC 8785
//! canonicalisation, the fuel/stack instrumentation and the WASI layer.
//!
//! They live in a library, not in the libFuzzer binaries, so that
//! `tests/corpus.rs` replays every corpus file (and every crash turned
//! regression) as an ordinary test on the stable toolchain; the binaries in
//! `fuzz_targets/` only hand libFuzzer's bytes to these functions. Each body
//! panics exactly when it finds a defect: a panic inside plasm, or a property
//! that must hold (canonical form is idempotent, instrumented output validates,
//! a decoded message re-encodes to itself, the sandbox is deterministic).

use arbitrary::Unstructured;
use futures::executor::block_on;
use libp2p::request_response::Codec as _;
use plasm::net::protocol::{JOB_PROTOCOL, JobRequest, JobResponse};
use plasm::runtime::{self, wasi};

pub mod modgen;

/// A target body: panics exactly when it finds a defect.
pub type Target = fn(&[u8]);

/// Every target that never runs a job, by name, for the corpus replay (the CI fuzz
/// smoke's build, without wasmtime, has these only: decision 0044).
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("receipt", receipt),
    ("wire", wire),
    ("beat", beat),
    ("steal", steal),
    ("records", records),
    ("bootstrap", bootstrap),
    ("jcs", jcs),
    ("instrument", instrument),
];

/// The targets that run jobs on both engines and on worker processes.
#[cfg(feature = "wasmtime")]
pub const ENGINE_TARGETS: &[(&str, Target)] = &[
    ("wasi", wasi),
    ("differential", differential),
    ("worker", worker),
];

/// A fixed xorshift byte stream: the same bytes for the same seed on every run
/// (the committed seed corpora and the differential corpus depend on it).
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Manifest parsing and validation: never a panic; a manifest that validates
/// validates again from its own value with the same job id.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = plasm::manifest::Manifest::from_json(text) {
        let again = plasm::manifest::Manifest::from_value(m.as_value().clone())
            .expect("a valid manifest's own value validates");
        assert_eq!(m.job_id(), again.job_id(), "the job id is stable");
    }
}

/// Receipt parsing and verification: never a panic, whatever the bytes, and a
/// text that verifies admits one reading: it names no member twice (a parser
/// that keeps the last copy and one that keeps the first agree), and its
/// signature covers exactly the canonical bytes of what every reader sees.
/// The bytes are also spliced into a signed receipt as a member in front of
/// its own, so the fuzzer builds duplicates of every member, escaped or not.
pub fn receipt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    one_reading(text);
    // Splice: `{<data>,` + the signed receipt's members.
    if !text.is_empty() && text.len() < 4096 {
        let spliced = SIGNED_RECEIPT.replacen('{', &format!("{{{text},"), 1);
        one_reading(&spliced);
    }
}

/// A v2 receipt signed by the vectors' key (schemas/test-vectors "v2 valid").
const SIGNED_RECEIPT: &str = include_str!("../corpus/receipt/signed-v2");

fn one_reading(text: &str) {
    let Ok(r) = plasm::receipt::Receipt::from_json(text) else {
        return;
    };
    let Ok(v) = r.verify() else {
        return;
    };
    let _ = v;
    // The last-copy reading (serde_json) and the first-copy reading agree.
    let last: serde_json::Value = serde_json::from_str(text).expect("it parsed strictly");
    assert_eq!(
        &last,
        &serde_json::Value::Object(r.as_map().clone()),
        "two readings of {text}"
    );
    assert_eq!(
        first_copy(text),
        Some(last.clone()),
        "two readings of {text}"
    );
    // The signature covers what every reader sees, canonically.
    let again = plasm::receipt::Receipt::from_json(&last.to_string()).expect("re-parse");
    assert_eq!(again.signing_bytes().ok(), r.signing_bytes().ok());
    assert!(again.verify().is_ok());
}

/// Parses `text` keeping the first copy of a member named twice (what grep, a
/// person or many JSON libraries see), independently of plasm's parser.
fn first_copy(text: &str) -> Option<serde_json::Value> {
    struct First;
    impl<'de> serde::de::DeserializeSeed<'de> for First {
        type Value = serde_json::Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Visit)
        }
    }
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = serde_json::Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(serde_json::Value::Null)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = a.next_element_seed(First)? {
                out.push(v);
            }
            Ok(out.into())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = a.next_key::<String>()? {
                let v = a.next_value_seed(First)?;
                out.entry(k).or_insert(v);
            }
            Ok(out.into())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde::de::DeserializeSeed::deserialize(First, &mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

type WireCodec = libp2p::request_response::cbor::codec::Codec<JobRequest, JobResponse>;

fn codec() -> WireCodec {
    // The node's own caps (net::behaviour::NetLimits defaults).
    WireCodec::default()
        .set_request_size_maximum(33 * 1024 * 1024)
        .set_response_size_maximum(10 * 1024 * 1024)
}

/// The job protocol's CBOR codec, both directions: never a panic; what decodes
/// re-encodes and decodes to the same message.
pub fn wire(data: &[u8]) {
    let mut c = codec();
    let p = JOB_PROTOCOL;
    if let Ok(req) = block_on(c.read_request(&p, &mut futures::io::Cursor::new(data))) {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(c.write_request(&p, &mut out, req.clone())).expect("a decoded request encodes");
        let back = block_on(c.read_request(&p, &mut futures::io::Cursor::new(out.into_inner())))
            .expect("an encoded request decodes");
        assert_eq!(req, back, "request round trip");
    }
    if let Ok(resp) = block_on(c.read_response(&p, &mut futures::io::Cursor::new(data))) {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(c.write_response(&p, &mut out, resp.clone())).expect("a decoded response encodes");
        let back = block_on(c.read_response(&p, &mut futures::io::Cursor::new(out.into_inner())))
            .expect("an encoded response decodes");
        assert_eq!(resp, back, "response round trip");
    }
}

/// The beat protocol's codec (4 KiB cap, as the node reads beats).
pub fn beat_codec()
-> libp2p::request_response::cbor::codec::Codec<plasm::net::beat::Beat, plasm::net::beat::Beat> {
    libp2p::request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(plasm::net::beat::MAX_BEAT_BYTES)
        .set_response_size_maximum(plasm::net::beat::MAX_BEAT_BYTES)
}

/// Beats from peers (decision 0049): never a panic; nothing over 4 KiB decodes;
/// a decoded beat re-encodes to itself; and a load the node accepts (`is_sane`)
/// always scores to a finite, non-negative number, whatever it claims.
pub fn beat(data: &[u8]) {
    use plasm::net::beat::{BEAT_PROTOCOL, MAX_BEAT_BYTES};
    use plasm::sched::score;
    let mut c = beat_codec();
    let p = BEAT_PROTOCOL;
    let Ok(b) = block_on(c.read_request(&p, &mut futures::io::Cursor::new(data))) else {
        return;
    };
    assert!(
        data.len() as u64 <= MAX_BEAT_BYTES,
        "a beat over the cap decoded"
    );
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(c.write_response(&p, &mut out, b.clone())).expect("a decoded beat encodes");
    let back = block_on(c.read_response(&p, &mut futures::io::Cursor::new(out.into_inner())))
        .expect("an encoded beat decodes");
    assert_eq!(b, back, "beat round trip");
    if let Some(load) = b.load.filter(plasm::sched::Load::is_sane) {
        for (rtt, mine) in [(None, 0), (Some(0.5), 3), (Some(1e9), u32::MAX)] {
            let s = score::score(
                &score::Weights::default(),
                &score::Inputs {
                    rtt_ms: rtt,
                    slots: Some(load.slots),
                    busy: load.busy().max(mine),
                    reliability: 0.5,
                },
            );
            assert!(
                s.total.is_finite() && s.total >= 0.0,
                "a sane load scores {s:?}"
            );
        }
    }
}

/// The codec swarm mode's consent messages are read with (the node's caps).
pub fn steal_codec() -> libp2p::request_response::cbor::codec::Codec<
    plasm::net::steal::Overflow,
    plasm::net::steal::StealAnswer,
> {
    libp2p::request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(plasm::net::steal::MAX_STEAL_BYTES)
        .set_response_size_maximum(plasm::net::steal::MAX_STEAL_BYTES)
}

/// Swarm mode's inputs from peers: an overflow announcement, an idle answer and
/// a hand-off. Nothing over the cap decodes; what decodes round-trips; a sane
/// announcement is answered without a panic, an idle answer always fits what it
/// was asked for by its own policy's rules; a hand-off text never panics its
/// verifier, and one that verifies names a peer of bounded length.
pub fn steal(data: &[u8]) {
    use plasm::net::steal::{MAX_STEAL_BYTES, StealAnswer, StealGate, StealPolicy};
    let mut c = steal_codec();
    let p = plasm::net::steal::STEAL_PROTOCOL;
    if let Ok(o) = block_on(c.read_request(&p, &mut futures::io::Cursor::new(data))) {
        assert!(
            data.len() as u64 <= MAX_STEAL_BYTES,
            "an overflow over the cap decoded"
        );
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(c.write_request(&p, &mut out, o.clone())).expect("encodes");
        let back = block_on(c.read_request(&p, &mut futures::io::Cursor::new(out.into_inner())))
            .expect("decodes");
        assert_eq!(o, back, "overflow round trip");
        if o.is_sane() {
            let gate = StealGate::new(StealPolicy {
                enabled: true,
                ..StealPolicy::default()
            });
            let load = plasm::sched::Load {
                running: 0,
                queued: 0,
                slots: 4,
                queue_cap: 4,
                cores: 2,
                memory_mb: 1024,
                engines: vec!["wasm3".into()],
                labels: vec![],
                profile: "wan".into(),
                accepting: true,
            };
            let (peer, now) = (libp2p::PeerId::random(), std::time::Instant::now());
            if let StealAnswer::Idle { free_slots, .. } = gate.answer_to(peer, &o, Some(&load), now)
            {
                assert!(
                    free_slots >= 1 && free_slots <= o.queued,
                    "idle for {free_slots}"
                );
            }
        }
    }
    if let Ok(a) = block_on(c.read_response(&p, &mut futures::io::Cursor::new(data))) {
        assert!(
            data.len() as u64 <= MAX_STEAL_BYTES,
            "an answer over the cap decoded"
        );
        let _ = a.is_sane();
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(h) = plasm::receipt::handoff::Handoff::from_json(text)
        && let Ok(v) = h.verify()
    {
        assert!(v.to.len() <= 64 && v.requester.len() <= 64, "bounded names");
    }
}

/// The codec replica holders read `/plasm/records/1.0.0` with (the node's caps).
pub fn records_codec() -> libp2p::request_response::cbor::codec::Codec<
    plasm::net::records::RecordsRequest,
    plasm::net::records::RecordsResponse,
> {
    use plasm::net::records::MAX_RECORDS_MESSAGE_BYTES;
    libp2p::request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_RECORDS_MESSAGE_BYTES)
        .set_response_size_maximum(MAX_RECORDS_MESSAGE_BYTES)
}

/// A signed record (acceptance, publication, audit) as a replica holder reads
/// it: never a panic; one that reads writes back (`to_json`) as text that reads
/// again with the same signer and form, within the form's bound and with
/// exactly its members.
fn signed_record(text: &str) {
    use plasm::receipt::signed::{FORMS, read_any};
    sign_what_was_read(text);
    let Ok(r) = read_any(text) else {
        return;
    };
    let form = FORMS
        .iter()
        .find(|f| f.version == r.form)
        .expect("a record reads as one of the forms");
    assert_eq!(
        r.members.len(),
        form.members.len(),
        "exactly the form's members"
    );
    assert!(
        form.members.iter().all(|k| r.members.contains_key(*k)),
        "every member of the form"
    );
    let json = r.to_json();
    assert!(
        json.len() <= form.max_bytes,
        "{} re-serialised to {} bytes, over {}",
        r.form,
        json.len(),
        form.max_bytes
    );
    let again = read_any(&json).expect("a record's own JSON reads again");
    assert_eq!(again.form, r.form, "same form");
    assert_eq!(again.signer, r.signer, "same signer");
    assert_eq!(again.members, r.members, "same members");
}

/// The fuzzer cannot forge a signature, so it never reaches a record that
/// verifies with members out of bounds by mutation alone. Here it chooses the
/// members and a fixed key signs them, as a node signs its own records: what
/// `sign` returns must read back as exactly those members, in its form's bound;
/// what `sign` refuses must be refused for its form (`malformed`), never for a
/// signature, key or peer id it made itself.
fn sign_what_was_read(text: &str) {
    use plasm::receipt::signed::{FORMS, read, sign};
    let Ok(serde_json::Value::Object(mut members)) = serde_json::from_str(text) else {
        return;
    };
    let key = plasm::identity::Identity::from_seed([0x66; 32]);
    for form in FORMS {
        members.remove("version");
        members.remove("signature");
        members.remove(form.signer);
        match sign(&form, members.clone(), &key) {
            Ok(r) => {
                let json = r.to_json();
                assert!(json.len() <= form.max_bytes, "signed over the bound");
                let back = read(&form, &json).expect("what a node signs reads");
                assert_eq!(back.members, r.members, "same members");
                assert_eq!(back.members.len(), form.members.len(), "exactly the form's");
                assert_eq!(back.signer, key.peer_id().to_string());
            }
            Err(e) => assert!(
                matches!(e.check(), "malformed" | "canonical"),
                "a record this node signed was refused for {}",
                e.check()
            ),
        }
    }
}

/// `/plasm/records/1.0.0` (replicated receipts, decision 0056): what decodes
/// round-trips, `is_sane` never panics and a sane request re-encodes and decodes
/// to itself; the bytes as text, and every record a sane put carries, read as a
/// holder reads signed records (see [`signed_record`]).
pub fn records(data: &[u8]) {
    let mut c = records_codec();
    let p = plasm::net::records::RECORDS_PROTOCOL;
    if let Ok(req) = block_on(c.read_request(&p, &mut futures::io::Cursor::new(data))) {
        if req.is_sane() {
            let _ = req.kind();
            let mut out = futures::io::Cursor::new(Vec::new());
            block_on(c.write_request(&p, &mut out, req.clone())).expect("a sane request encodes");
            let back =
                block_on(c.read_request(&p, &mut futures::io::Cursor::new(out.into_inner())))
                    .expect("an encoded request decodes");
            assert_eq!(req, back, "request round trip");
            if let plasm::net::records::RecordsRequest::Put { records, .. } = &req {
                records.iter().for_each(|r| signed_record(r));
            }
        }
        let _ = plasm::net::records::request_bytes(&req);
    }
    if let Ok(resp) = block_on(c.read_response(&p, &mut futures::io::Cursor::new(data))) {
        let sane = resp.is_sane();
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(c.write_response(&p, &mut out, resp.clone())).expect("a decoded answer encodes");
        let back = block_on(c.read_response(&p, &mut futures::io::Cursor::new(out.into_inner())))
            .expect("an encoded answer decodes");
        assert_eq!(resp, back, "answer round trip");
        assert_eq!(back.is_sane(), sane, "sanity survives the round trip");
        let _ = plasm::net::records::response_bytes(&resp);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        signed_record(text);
    }
}

/// The publisher key the bootstrap seeds are signed with (and the target trusts).
pub fn bootstrap_publisher() -> plasm::identity::Identity {
    plasm::identity::Identity::from_seed([0x55; 32])
}

/// When the bootstrap target checks lists (inside the seeds' validity).
pub fn bootstrap_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("time")
}

/// Bootstrap lists and the peer cache file: never a panic; nothing over the byte
/// bound reads; a list that verifies has 1 to 64 peers of 1 to 8 addresses each
/// ending in its peer, and re-serialised (in its RFC 8785 form, and with its
/// peers rebuilt) still verifies to the same peers; a refused list names a known
/// check; the signer's input parser agrees with the verifier on the peers; a
/// cache file that reads is bounded and round-trips through its own text.
pub fn bootstrap(data: &[u8]) {
    use plasm::net::bootstrap::{self as b, cache::PeerCache};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let trusted = [bootstrap_publisher().public_key_b64()];
    match b::verify(text, &trusted, bootstrap_now()) {
        Ok(list) => {
            assert!(
                text.len() <= b::MAX_LIST_BYTES,
                "a list over the cap verified"
            );
            assert!(
                (1..=b::MAX_LIST_PEERS).contains(&list.peers.len()),
                "{} peers",
                list.peers.len()
            );
            for p in &list.peers {
                assert!((1..=b::MAX_PEER_ADDRS).contains(&p.addrs.len()));
                for a in &p.addrs {
                    assert!(
                        matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(id)) if id == p.peer_id),
                        "{a} is not {}'s",
                        p.peer_id
                    );
                }
            }
            let value: serde_json::Value = serde_json::from_str(text).expect("verified JSON");
            let canonical = plasm::jcs::canonicalize(&value).expect("canonical");
            let again = b::verify(
                std::str::from_utf8(&canonical).expect("utf-8"),
                &trusted,
                bootstrap_now(),
            )
            .expect("the canonical form of a verified list verifies");
            assert_eq!(again, list, "canonical form says the same");
            let mut rebuilt = value.clone();
            rebuilt["peers"] = b::peers_json(&list.peers);
            let again = b::verify(&rebuilt.to_string(), &trusted, bootstrap_now())
                .expect("a verified list with its peers re-serialised verifies");
            assert_eq!(again.peers, list.peers);
            assert_eq!(
                b::unsigned_peers(text).expect("the signer reads what verifies"),
                list.peers
            );
        }
        Err(e) => {
            if text.len() > b::MAX_LIST_BYTES {
                assert_eq!(e.check(), "malformed", "an oversized list is malformed");
            }
        }
    }
    if let Ok(peers) = b::unsigned_peers(text) {
        assert!((1..=b::MAX_LIST_PEERS).contains(&peers.len()));
        assert_eq!(
            b::parse_peers(&b::peers_json(&peers)).expect("peers round-trip"),
            peers
        );
        // The fuzzer chooses the peers and the trusted key signs them (it cannot
        // forge a signature): what `sign` makes verifies to the same peers, within
        // the bounds; a list out of bounds is refused when signed, `malformed`.
        let issued = bootstrap_now() - time::Duration::days(1);
        match b::sign(&peers, &bootstrap_publisher(), issued, 30) {
            Ok(list) => {
                assert!(list.len() <= b::MAX_LIST_BYTES, "signed over the bound");
                let got = b::verify(&list, &trusted, bootstrap_now())
                    .expect("a list the publisher signed verifies");
                assert_eq!(got.peers, peers, "the peers it was given");
            }
            Err(e) => assert_eq!(e.check(), "malformed", "{e}"),
        }
    }
    if let Ok(c) = PeerCache::from_json(text) {
        assert!(c.len() <= b::cache::MAX_CACHED_PEERS, "{} cached", c.len());
        let back = PeerCache::from_json(&c.to_json()).expect("the cache reads its own text");
        assert_eq!(back, c, "cache round trip");
    }
}

/// RFC 8785 canonicalisation: never a panic; the canonical form parses back to
/// the same value and is its own canonical form.
pub fn jcs(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(canon) = plasm::jcs::canonicalize(&value) {
        let back: serde_json::Value =
            serde_json::from_slice(&canon).expect("canonical bytes are JSON");
        assert_eq!(back, value, "canonicalisation keeps the value");
        let again = plasm::jcs::canonicalize(&back).expect("canonical form canonicalises");
        assert_eq!(again, canon, "canonicalisation is idempotent");
    }
}

fn smith_config() -> wasm_smith::Config {
    // What plasm accepts: WebAssembly 2.0 without SIMD, one memory, and imports
    // only from WASI (none here; the wasi target covers them).
    wasm_smith::Config {
        max_imports: 0,
        max_memories: 1,
        max_tables: 1,
        simd_enabled: false,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        tail_call_enabled: false,
        memory64_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        extended_const_enabled: false,
        multi_value_enabled: true,
        reference_types_enabled: true,
        bulk_memory_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        canonicalize_nans: false,
        ..wasm_smith::Config::default()
    }
}

/// The fuel/stack instrumentation, on modules from wasm-smith (and, for inputs
/// whose first byte is odd, on the raw bytes): never a panic, and whatever it
/// accepts comes out as a module that validates.
pub fn instrument(data: &[u8]) {
    let wasm = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => rest.to_vec(),
        _ => {
            let mut u = Unstructured::new(data);
            match wasm_smith::Module::new(smith_config(), &mut u) {
                Ok(m) => m.to_bytes(),
                Err(_) => return,
            }
        }
    };
    if let Ok(out) = runtime::instrument::instrument(&wasm, wasi::signature) {
        let features = wasmparser::WasmFeatures::WASM2
            .difference(wasmparser::WasmFeatures::SIMD)
            .difference(wasmparser::WasmFeatures::GC_TYPES);
        if let Err(e) = wasmparser::Validator::new_with_features(features).validate_all(&out.bytes)
        {
            panic!("instrumented output does not validate: {e}");
        }
    }
}

/// The targets that run jobs on both engines (and on worker processes): they need
/// wasmtime, which the CI fuzz smoke's build leaves out.
#[cfg(feature = "wasmtime")]
mod engines {
    use super::*;
    use arbitrary::Arbitrary;
    use plasm::runtime::{ExecRequest, wasm3::Wasm3Runtime, wasmtime::WasmtimeRuntime};
    use wasm_encoder::{
        CodeSection, DataSection, EntityType, ExportKind, ExportSection, Function, FunctionSection,
        ImportSection, Instruction, MemorySection, MemoryType, TypeSection, ValType,
    };

    /// One host call of the wasi target.
    #[derive(Debug, Arbitrary)]
    struct Call {
        func: u8,
        args: [i64; 6],
    }

    /// A guest that calls WASI functions with arbitrary arguments over arbitrary memory.
    #[derive(Debug, Arbitrary)]
    struct Guest {
        calls: Vec<Call>,
        data_at: u16,
        data: Vec<u8>,
        stdin: Vec<u8>,
        args: Vec<String>,
    }

    fn guest_module(g: &Guest) -> Vec<u8> {
        let names: Vec<&str> = wasi::preview1_names().collect();
        let calls: Vec<(&str, wasmparser::FuncType, &[i64; 6])> = g
            .calls
            .iter()
            .take(16)
            .filter_map(|c| {
                let name = names[usize::from(c.func) % names.len()];
                wasi::signature(name).map(|t| (name, t, &c.args))
            })
            .collect();
        let val = |t: &wasmparser::ValType| match t {
            wasmparser::ValType::I64 => ValType::I64,
            _ => ValType::I32,
        };
        let mut types = TypeSection::new();
        let mut imports = ImportSection::new();
        let mut used: Vec<&str> = Vec::new();
        for (name, ty, _) in &calls {
            if used.contains(name) {
                continue;
            }
            types
                .ty()
                .function(ty.params().iter().map(val), ty.results().iter().map(val));
            imports.import(
                "wasi_snapshot_preview1",
                name,
                EntityType::Function(used.len() as u32),
            );
            used.push(name);
        }
        let start_type = used.len() as u32;
        types.ty().function([], []);
        let mut funcs = FunctionSection::new();
        funcs.function(start_type);
        let mut memory = MemorySection::new();
        memory.memory(MemoryType {
            minimum: 1,
            maximum: Some(2),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        exports.export("_start", ExportKind::Func, used.len() as u32);
        let mut body = Function::new([]);
        for (name, ty, args) in &calls {
            for (p, a) in ty.params().iter().zip(args.iter()) {
                match p {
                    wasmparser::ValType::I64 => body.instruction(&Instruction::I64Const(*a)),
                    _ => body.instruction(&Instruction::I32Const(*a as i32)),
                };
            }
            let idx = used.iter().position(|n| n == name).unwrap_or(0) as u32;
            body.instruction(&Instruction::Call(idx));
            for _ in ty.results() {
                body.instruction(&Instruction::Drop);
            }
        }
        body.instruction(&Instruction::End);
        let mut code = CodeSection::new();
        code.function(&body);
        let mut data = DataSection::new();
        let bytes: Vec<u8> = g.data.iter().copied().take(4096).collect();
        data.active(
            0,
            &wasm_encoder::ConstExpr::i32_const(i32::from(g.data_at) % (65536 - 4096)),
            bytes,
        );
        let mut m = wasm_encoder::Module::new();
        m.section(&types)
            .section(&imports)
            .section(&funcs)
            .section(&memory)
            .section(&exports)
            .section(&code)
            .section(&data);
        m.finish()
    }

    /// The WASI layer: a guest calls preview1 functions with arbitrary arguments
    /// over arbitrary memory, stdin and argv. Never a panic, and the sandbox is
    /// deterministic: the same guest gives the same result twice.
    pub fn wasi(data: &[u8]) {
        let Ok(g) = Guest::arbitrary(&mut Unstructured::new(data)) else {
            return;
        };
        let request = ExecRequest {
            module: guest_module(&g).into(),
            entry: "_start".into(),
            args: g.args.iter().take(8).cloned().collect(),
            env: vec![("K".into(), "V".into())],
            stdin: g.stdin.iter().copied().take(4096).collect(),
            limits: plasm::manifest::Limits {
                fuel: 1_000_000,
                memory_bytes: 2 * 65536,
                output_bytes: 4096,
            },
            random_seed: [7; 32],
            engine: None,
            cancel: Default::default(),
        };
        let a = runtime::run(&Wasm3Runtime, &request);
        let b = runtime::run(&Wasm3Runtime, &request);
        assert_eq!(a, b, "the same guest ran twice gives the same result");
        let c = runtime::run(wasmtime_engine(), &request);
        assert_eq!(a, c, "wasm3 and wasmtime give the same result");
    }

    /// The outcome of one differential run, for the corpus test's tally.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Differential {
        /// wasm-smith gave no module, or plasm refused it before any engine ran (the same on both).
        Skipped,
        /// Both engines gave this outcome (and equal output, exit code and fuel).
        Agreed(runtime::Outcome),
    }

    fn wasmtime_engine() -> &'static WasmtimeRuntime {
        static ENGINE: std::sync::OnceLock<WasmtimeRuntime> = std::sync::OnceLock::new();
        ENGINE.get_or_init(|| WasmtimeRuntime::new().expect("wasmtime engine"))
    }

    /// A job for the wasm-smith module `data` makes (exporting `_start`), or `None`
    /// when wasm-smith gives no module or plasm refuses it before any engine runs.
    fn smith_request(data: &[u8]) -> Option<ExecRequest> {
        let mut u = Unstructured::new(data);
        // With reference types on, wasm-smith nearly always uses externref, which plasm
        // refuses on both engines; a quarter of the inputs keep them, the rest run.
        let reference_types = data.first().is_some_and(|b| b % 4 == 0);
        // Every module exports `_start: () -> ()` (wasm-smith builds to a required
        // export list), so every generated module runs.
        let required = {
            let mut m = wasm_encoder::Module::new();
            let mut t = wasm_encoder::TypeSection::new();
            t.ty().function([], []);
            let mut f = wasm_encoder::FunctionSection::new();
            f.function(0);
            let mut e = wasm_encoder::ExportSection::new();
            e.export("_start", wasm_encoder::ExportKind::Func, 0);
            let mut c = wasm_encoder::CodeSection::new();
            let mut body = wasm_encoder::Function::new([]);
            body.instruction(&Instruction::End);
            c.function(&body);
            m.section(&t).section(&f).section(&e).section(&c);
            m.finish()
        };
        let config = wasm_smith::Config {
            exports: Some(required),
            min_funcs: 1,
            reference_types_enabled: reference_types,
            ..smith_config()
        };
        let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
            return None;
        };
        let wasm = module.to_bytes();
        let instrumented = match runtime::instrument::instrument(&wasm, wasi::signature) {
            Ok(i) => i,
            Err(e) => {
                if std::env::var_os("PLASM_DIFF_DEBUG").is_some() {
                    eprintln!("skipped: {e}");
                }
                return None;
            }
        };
        let mut entries: Vec<&String> = instrumented
            .exports
            .iter()
            .filter(|(_, (params, results))| {
                *params == 0 && (results.is_empty() || results == &[wasmparser::ValType::I32])
            })
            .map(|(name, _)| name)
            .collect();
        entries.sort();
        let entry = entries.first()?;
        Some(ExecRequest {
            module: wasm.into(),
            entry: (*entry).clone(),
            args: vec![],
            env: vec![],
            stdin: vec![],
            limits: plasm::manifest::Limits {
                fuel: 200_000,
                memory_bytes: 4 * 1024 * 1024,
                output_bytes: 4096,
            },
            random_seed: [3; 32],
            engine: None,
            cancel: Default::default(),
        })
    }

    /// Runs one wasm-smith module on both engines; panics on any difference in
    /// outcome, exit code, detail, stdout, stderr, fuel or memory flag.
    pub fn differential_run(data: &[u8]) -> Differential {
        let Some(request) = smith_request(data) else {
            return Differential::Skipped;
        };
        let (a, b) = on_both(&request);
        assert_eq!(
            a,
            b,
            "wasm3 and wasmtime differ on {}",
            hex_of(&request.module)
        );
        Differential::Agreed(a.outcome)
    }

    /// Runs `request` on wasm3, then on wasmtime, on a thread with the worker
    /// pool's stack (deep recursion needs it, not a test thread's).
    fn on_both(request: &ExecRequest) -> (runtime::ExecResult, runtime::ExecResult) {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 * 1024 * 1024)
                .spawn_scoped(s, || {
                    (
                        runtime::run(&Wasm3Runtime, request),
                        runtime::run(wasmtime_engine(), request),
                    )
                })
                .expect("thread")
                .join()
                .expect("no panic in the engines")
        })
    }

    /// What one generated job gave on both engines.
    #[derive(Debug, Clone)]
    pub struct GenRun {
        /// The module's kind.
        pub kind: modgen::Kind,
        /// The outcome both gave, or how they differed.
        pub verdict: Result<runtime::Outcome, String>,
    }

    /// A job for a generated module.
    pub fn gen_request(g: &modgen::Generated) -> ExecRequest {
        ExecRequest {
            module: g.wasm.clone().into(),
            entry: "_start".into(),
            args: vec![],
            env: vec![],
            stdin: vec![],
            limits: plasm::manifest::Limits {
                fuel: g.fuel,
                memory_bytes: 4 * 1024 * 1024,
                output_bytes: 1 << 20,
            },
            random_seed: [5; 32],
            engine: None,
            cancel: Default::default(),
        }
    }

    /// Runs the module [`modgen::generate`] makes for `seed` on wasm3 and wasmtime,
    /// on a thread with the worker pool's stack, and compares everything a
    /// receipt covers (outcome, exit code, detail, stdout, stderr, fuel, memory flag).
    pub fn gen_run(seed: u64) -> GenRun {
        let g = modgen::generate(seed);
        let request = gen_request(&g);
        let (a, b) = on_both(&request);
        let verdict = if a == b {
            Ok(a.outcome)
        } else {
            let mut what = Vec::new();
            if a.outcome != b.outcome || a.detail != b.detail {
                what.push(format!(
                    "outcome wasm3 {} ({:?}) / wasmtime {} ({:?})",
                    a.outcome.as_str(),
                    a.detail,
                    b.outcome.as_str(),
                    b.detail
                ));
            }
            if a.stdout != b.stdout {
                let at = a
                    .stdout
                    .iter()
                    .zip(&b.stdout)
                    .position(|(x, y)| x != y)
                    .unwrap_or(a.stdout.len().min(b.stdout.len()));
                let word = |o: &[u8]| {
                    let s = at / 8 * 8;
                    o.get(s..(s + 8).min(o.len()))
                        .map(|w| {
                            w.iter()
                                .rev()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        })
                        .unwrap_or_default()
                };
                what.push(format!(
                    "stdout differs at value {}: wasm3 {} / wasmtime {}",
                    at / 8,
                    word(&a.stdout),
                    word(&b.stdout)
                ));
            }
            if a.fuel_used != b.fuel_used {
                what.push(format!(
                    "fuel wasm3 {} / wasmtime {}",
                    a.fuel_used, b.fuel_used
                ));
            }
            if what.is_empty() {
                what.push(format!("results differ: {a:?} / {b:?}"));
            }
            Err(what.join("; "))
        };
        GenRun {
            kind: g.kind,
            verdict,
        }
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes
            .iter()
            .take(4096)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The worker processes every fuzzed job goes through (the `plasm` binary from
    /// `PLASM_WORKER_EXE`, or next to this executable).
    fn worker_runtime() -> &'static runtime::worker::ProcessRuntime {
        static WORKERS: std::sync::OnceLock<runtime::worker::ProcessRuntime> =
            std::sync::OnceLock::new();
        WORKERS.get_or_init(|| {
            let settings = runtime::worker::Settings {
                memory_bytes: 1 << 30,
                ..runtime::worker::Settings::default()
            };
            runtime::worker::ProcessRuntime::new(
                runtime::engines::EngineChoice::default(),
                settings,
                1,
            )
            .expect("worker processes (set PLASM_WORKER_EXE to the plasm binary)")
        })
    }

    /// Fuzz target: a generated module through a sandboxed worker process under its
    /// limits. The worker must answer (never crash: `worker_crashed` is a defect;
    /// only the compile limit or the deadline may end it without a result) and must
    /// give exactly what the same engine gives in this process.
    pub fn worker(data: &[u8]) {
        let _ = worker_run(data);
    }

    /// [`worker`], saying how the job ended: `None` when no job was generated, else
    /// the outcome both gave, or the machine limit that ended the worker's run.
    pub fn worker_run(data: &[u8]) -> Option<String> {
        use runtime::Runtime as _;
        let mut request = smith_request(data)?;
        request.limits.fuel = 2_000_000;
        let mut remote = worker_runtime().run_job(&request);
        if let Some(abort) = &remote.aborted {
            assert!(
                matches!(
                    abort.kind,
                    runtime::AbortKind::CompileLimit | runtime::AbortKind::Deadline
                ),
                "the worker ended {abort:?} on {}",
                hex_of(&request.module)
            );
            return Some(abort.kind.as_str().to_owned());
        }
        let mut here = std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 * 1024 * 1024)
                .spawn_scoped(s, || runtime::run(wasmtime_engine(), &request))
                .expect("thread")
                .join()
                .expect("no panic in the engine")
        });
        remote.runtime = None;
        here.runtime = None;
        assert_eq!(
            remote,
            here,
            "a worker and this process differ on {}",
            hex_of(&request.module)
        );
        Some(here.outcome.as_str().to_owned())
    }

    /// Fuzz target: [`differential_run`].
    pub fn differential(data: &[u8]) {
        let _ = differential_run(data);
    }
}

#[cfg(feature = "wasmtime")]
pub use engines::*;
