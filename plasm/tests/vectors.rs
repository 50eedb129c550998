//! Cross-language test vectors in `schemas/test-vectors/vectors.json`.
//!
//! The generator below is deterministic (fixed seed, fixed times, Ed25519 is
//! deterministic), so the committed file must equal what it produces; set
//! `PLASM_WRITE_VECTORS=1` to rewrite it after a deliberate change. A second test
//! reads the file as any other implementation would (the PHP SDK reads the same
//! file) and checks every vector against the library.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use plasm::identity::Identity;
use plasm::jcs;
use plasm::manifest::{Manifest, ManifestError};
use plasm::receipt::signed::{self, ACCEPTANCE, AUDIT, Form, PUBLICATION};
use plasm::receipt::{Receipt, ReceiptBody, ReceiptPlacement, RuntimeInfo};
use plasm::runtime::Outcome;
use serde_json::{Map, Value, json};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schemas/test-vectors/vectors.json"
);
const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const OTHER_SEED: [u8; 32] = [0x42; 32];

fn canon_str(v: &Value) -> String {
    String::from_utf8(jcs::canonicalize(v).expect("canonical")).expect("utf8")
}

fn canonical_cases() -> Vec<Value> {
    let ok = [
        (
            "key order by UTF-16 code units",
            r#"{"€":1,"\r":2,"ö":3,"1":4,"😀":5,"\ufb33":6,"a":{"b":[],"a":{}}}"#,
        ),
        (
            "string escapes",
            r#"["\"\\\/\b\f\n\r\t\u0000\u001f\u007f\u2028\u2029é😀"]"#,
        ),
        (
            "integers and literals",
            r#"[0,1,-1,9007199254740991,-9007199254740991,true,false,null]"#,
        ),
        (
            "whitespace and nesting",
            "{ \"z\" : [ 1 , { \"y\" : \"x\" } ] ,\n \"a\" : null }",
        ),
    ];
    let bad = [
        ("float with zero fraction", r#"{"fuel":1.0}"#, "canonical"),
        ("exponent", r#"[1e3]"#, "canonical"),
        ("integer 2^53", r#"[9007199254740992]"#, "canonical"),
    ];
    let mut out: Vec<Value> = ok
        .iter()
        .map(|(name, text)| {
            let v: Value = serde_json::from_str(text).expect("json");
            json!({"name": name, "json": text, "canonical": canon_str(&v)})
        })
        .collect();
    out.extend(
        bad.iter()
            .map(|(name, text, err)| json!({"name": name, "json": text, "error": err})),
    );
    out
}

/// The minimal manifest of the manifest vectors (and of the publications).
fn base_manifest() -> Value {
    let module = b"\0asm\x01\0\0\0";
    json!({
        "version": "plasm.job/v1",
        "module": {"sha256": plasm::job::sha256_hex(module), "size": module.len()},
        "nonce": "6f1c2a9e0b7d4c3f8a5e2d1b0c9f8e7d",
        "created_at": "2026-11-20T12:00:00Z"
    })
}

fn manifest_cases() -> Vec<Value> {
    let base = base_manifest();
    let mut full = base.clone();
    full["entry"] = json!("main");
    full["args"] = json!(["--n", "10", "ünïcödé"]);
    full["env"] = json!({"LANG": "C", "A": "1"});
    full["input"] = json!({"sha256": plasm::job::sha256_hex(b"hello"), "size": 5});
    full["limits"] = json!({"fuel": 5000000, "memory_bytes": 1048576, "output_bytes": 4096});
    full["requirements"] = json!({"runtime": "wasm3", "labels": ["arch=x86_64", "gpu"]});
    let mut out = Vec::new();
    for (name, v) in [("minimal", &base), ("every field", &full)] {
        let text = serde_json::to_string_pretty(v).expect("json");
        let m = Manifest::from_json(&text).expect("valid manifest");
        out.push(json!({"name": name, "json": text, "valid": true, "canonical": canon_str(v), "job_id": m.job_id()}));
    }
    type Mutation = Box<dyn Fn(&mut Value)>;
    let invalid: Vec<(&str, Mutation)> = vec![
        ("unknown field", Box::new(|v| v["priority"] = json!(1))),
        ("short nonce", Box::new(|v| v["nonce"] = json!("abc"))),
        (
            "uppercase module hash",
            Box::new(|v| v["module"]["sha256"] = json!("A".repeat(64))),
        ),
        (
            "wrong version",
            Box::new(|v| v["version"] = json!("plasm.job/v2")),
        ),
        ("zero fuel", Box::new(|v| v["limits"] = json!({"fuel": 0}))),
        (
            "missing created_at",
            Box::new(|v| {
                v.as_object_mut().map(|o| o.remove("created_at"));
            }),
        ),
    ];
    for (name, mutate) in invalid {
        let mut v = base.clone();
        mutate(&mut v);
        let text = serde_json::to_string(&v).expect("json");
        match Manifest::from_json(&text) {
            Err(ManifestError::Schema { path, rule, .. }) => out.push(
                json!({"name": name, "json": text, "valid": false, "path": path, "rule": rule}),
            ),
            other => panic!("{name}: expected a schema error, got {other:?}"),
        }
    }
    out
}

/// The receipt body the receipt vectors sign (and the signed records name).
fn receipt_body() -> ReceiptBody {
    ReceiptBody {
        job_id: "5b7a1c0e9d8f6a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b".into(),
        module_sha256: plasm::job::sha256_hex(b"module"),
        input_sha256: plasm::job::sha256_hex(b"hello"),
        output_sha256: plasm::job::sha256_hex(b"olleh"),
        outcome: Outcome::Exited,
        exit_code: Some(0),
        detail: None,
        fuel_used: 48213,
        fuel_limit: 1_000_000_000,
        runtime: RuntimeInfo {
            name: "wasm3".into(),
            version: "0.9.0".into(),
            metering: "plasm-fuel/1".into(),
            config_sha256: plasm::job::sha256_hex(b"engine=wasm3 0.9.0"),
        },
        started_at: "2026-11-20T12:00:00.000Z".into(),
        finished_at: "2026-11-20T12:00:00.004Z".into(),
        stderr_sha256: plasm::job::sha256_hex(b""),
        memory_limit_hit: false,
        queued_at: "2026-11-20T11:59:59.998Z".into(),
        placement: ReceiptPlacement::local(),
    }
}

fn receipt_cases() -> Vec<Value> {
    let id = Identity::from_seed(SEED);
    let other = Identity::from_seed(OTHER_SEED);
    let body = receipt_body();
    // Version 1, exactly as release 0.1 signed it: these vectors must verify forever.
    let valid = Receipt::sign_v1(&body, &id).expect("sign");
    let trapped = Receipt::sign_v1(
        &ReceiptBody {
            outcome: Outcome::Trapped,
            exit_code: None,
            detail: Some("[trap] unreachable executed — «ü»".into()),
            ..body.clone()
        },
        &id,
    )
    .expect("sign");
    let mut extended = valid.clone();
    extended.as_map_mut().insert(
        "x-extension".into(),
        json!({"z": [1, "\u{2028}"], "a": true}),
    );
    extended.resign(&id).expect("resign");

    let text = |r: &Receipt| serde_json::to_string_pretty(r.as_map()).expect("json");
    let mut cases: Vec<(&str, String)> = vec![
        ("valid", text(&valid)),
        ("valid trapped", text(&trapped)),
        ("valid with unknown field", text(&extended)),
    ];
    let tamper = |f: &dyn Fn(&mut Receipt)| {
        let mut r = valid.clone();
        f(&mut r);
        text(&r)
    };
    cases.push((
        "output changed",
        tamper(&|r| r.as_map_mut()["output"] = json!(format!("sha256:{}", "0".repeat(64)))),
    ));
    cases.push((
        "fuel_used changed",
        tamper(&|r| r.as_map_mut()["fuel_used"] = json!(48212)),
    ));
    cases.push((
        "outcome changed",
        tamper(&|r| r.as_map_mut()["outcome"] = json!("trapped")),
    ));
    cases.push((
        "signature bit flipped",
        tamper(&|r| {
            let mut sig = B64
                .decode(r.str_field("signature").unwrap_or(""))
                .expect("b64");
            sig[10] ^= 0x01;
            r.as_map_mut()["signature"] = json!(B64.encode(sig));
        }),
    ));
    cases.push(("another node's key", tamper(&|r| {
        r.as_map_mut()["executor"] = json!({"peer_id": other.peer_id().to_string(), "public_key": other.public_key_b64()});
    })));
    cases.push((
        "peer id of another node",
        tamper(&|r| r.as_map_mut()["executor"]["peer_id"] = json!(other.peer_id().to_string())),
    ));
    cases.push((
        "field added",
        tamper(&|r| {
            r.as_map_mut().insert("note".into(), json!("hi"));
        }),
    ));
    cases.push((
        "job_id removed",
        tamper(&|r| {
            r.as_map_mut().remove("job_id");
        }),
    ));
    cases.push((
        "signature removed",
        tamper(&|r| {
            r.as_map_mut().remove("signature");
        }),
    ));
    // 48213.0 is an integer to JSON Schema but has no canonical form: re-encoders that turn ints into floats fail here.
    cases.push((
        "fuel_used as float",
        text(&valid).replace("\"fuel_used\": 48213", "\"fuel_used\": 48213.0"),
    ));
    cases.push(("unknown field not signed", {
        let mut r = valid.clone();
        r.as_map_mut().insert("x-extension".into(), json!({"a": 1}));
        text(&r)
    }));
    // Version 2, what nodes sign now.
    let v2 = Receipt::sign(&body, &id).expect("sign");
    let v2_relayed = Receipt::sign(
        &ReceiptBody {
            outcome: Outcome::Exited,
            exit_code: Some(3),
            memory_limit_hit: true,
            stderr_sha256: plasm::job::sha256_hex(b"out of memory\n"),
            placement: ReceiptPlacement {
                path: "relayed".into(),
                relay: Some(other.peer_id().to_string()),
                attempt: Some(2),
                taken_over_from: None,
                stolen_from: None,
            },
            ..body.clone()
        },
        &id,
    )
    .expect("sign");
    // Swarm mode (decision 0053): a stolen job's placement names the busy node.
    let v2_stolen = Receipt::sign(
        &ReceiptBody {
            placement: ReceiptPlacement {
                path: "direct".into(),
                relay: None,
                attempt: Some(1),
                taken_over_from: None,
                stolen_from: Some(other.peer_id().to_string()),
            },
            ..body.clone()
        },
        &id,
    )
    .expect("sign");
    let tamper2 = |f: &dyn Fn(&mut Receipt)| {
        let mut r = v2.clone();
        f(&mut r);
        text(&r)
    };
    cases.push(("v2 valid", text(&v2)));
    cases.push((
        "v2 valid, memory limit hit, relayed, second attempt",
        text(&v2_relayed),
    ));
    cases.push(("v2 valid, stolen from a busy node", text(&v2_stolen)));
    let tamper_stolen = |f: &dyn Fn(&mut Receipt)| {
        let mut r = v2_stolen.clone();
        f(&mut r);
        text(&r)
    };
    cases.push((
        "v2 stolen_from removed",
        tamper_stolen(&|r| {
            r.as_map_mut()["placement"]
                .as_object_mut()
                .map(|p| p.remove("stolen_from"));
        }),
    ));
    cases.push((
        "v2 stolen_from null, re-signed",
        tamper_stolen(&|r| {
            r.as_map_mut()["placement"]["stolen_from"] = json!(null);
            r.resign(&id).expect("resign");
        }),
    ));
    cases.push((
        "v2 memory_limit_hit flipped",
        tamper2(&|r| r.as_map_mut()["memory_limit_hit"] = json!(true)),
    ));
    cases.push((
        "v2 placement path changed",
        tamper2(&|r| r.as_map_mut()["placement"]["path"] = json!("direct")),
    ));
    cases.push((
        "v2 placement path unknown",
        tamper2(&|r| r.as_map_mut()["placement"]["path"] = json!("carrier-pigeon")),
    ));
    cases.push((
        "v2 stderr removed",
        tamper2(&|r| {
            r.as_map_mut().remove("stderr");
        }),
    ));
    cases.push((
        "v2 relabelled as v1 (other prefix)",
        tamper2(&|r| r.as_map_mut()["version"] = json!("plasm.receipt/v1")),
    ));
    cases.push((
        "v1 relabelled as v2 (missing members)",
        tamper(&|r| r.as_map_mut()["version"] = json!("plasm.receipt/v2")),
    ));
    cases.push((
        "unknown version",
        tamper2(&|r| r.as_map_mut()["version"] = json!("plasm.receipt/v3")),
    ));
    // One reading only (decision 0047): a member named twice is refused as
    // malformed, whichever copy a reader would take.
    let v2_text = text(&v2);
    let front = |extra: &str| v2_text.replacen('{', &format!("{{{extra},"), 1);
    cases.push((
        "duplicate outcome before the signed members",
        front(&format!(
            "\"outcome\":\"trapped\",\"output\":\"sha256:{}\"",
            "0".repeat(64)
        )),
    ));
    cases.push((
        "duplicate signature (escaped name)",
        front("\"\\u0073ignature\":\"AAAA\""),
    ));
    cases.push((
        "duplicate nested in runtime",
        v2_text.replacen("\"runtime\": {", "\"runtime\": {\"name\": \"wasmtime\",", 1),
    ));
    cases
        .into_iter()
        .map(|(name, json_text)| {
            let verdict = Receipt::from_json(&json_text).and_then(|r| r.verify());
            let signing = Receipt::from_json(&json_text)
                .ok()
                .and_then(|r| r.signing_bytes().ok())
                .map(|b| B64.encode(b));
            let mut v = json!({"name": name, "json": json_text, "valid": verdict.is_ok()});
            if let Err(e) = verdict {
                v["failed_check"] = json!(e.check());
            }
            if let Some(s) = signing {
                v["signing_bytes_b64"] = json!(s);
            }
            v
        })
        .collect()
}

/// Hand-offs (decision 0053): the signed bytes and the verdict of each.
fn handoff_cases() -> Vec<Value> {
    use plasm::receipt::handoff::Handoff;
    let busy = Identity::from_seed(SEED);
    let other = Identity::from_seed(OTHER_SEED);
    let job = "5b7a1c0e9d8f6a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";
    let (to, requester) = (
        other.peer_id().to_string(),
        Identity::from_seed([7; 32]).peer_id().to_string(),
    );
    let valid =
        Handoff::sign_at(job, &to, &requester, "2026-12-07T12:00:00.000Z", &busy).expect("sign");
    let text = |v: &Value| serde_json::to_string_pretty(v).expect("json");
    let tamper = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.as_value().clone();
        f(&mut v);
        text(&v)
    };
    let cases = vec![
        ("valid", text(valid.as_value())),
        (
            "to changed",
            tamper(&|v| v["to"] = json!(requester.clone())),
        ),
        (
            "job_id changed",
            tamper(&|v| v["job_id"] = json!("0".repeat(64))),
        ),
        (
            "another node's key",
            tamper(&|v| v["from"]["public_key"] = json!(other.public_key_b64())),
        ),
        ("member added", tamper(&|v| v["note"] = json!("hi"))),
        (
            "at removed",
            tamper(&|v| {
                v.as_object_mut().map(|m| m.remove("at"));
            }),
        ),
        (
            "duplicate to",
            text(valid.as_value()).replacen('{', &format!("{{\"to\":\"{requester}\","), 1),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, json_text)| {
            let h = Handoff::from_json(&json_text);
            let verdict = h.clone().and_then(|h| h.verify());
            let mut v = json!({"name": name, "json": json_text, "valid": verdict.is_ok()});
            if let Err(e) = verdict {
                v["failed_check"] = json!(e.check());
            }
            if let Some(b) = h.ok().and_then(|h| h.signing_bytes().ok()) {
                v["signing_bytes_b64"] = json!(B64.encode(b));
            }
            v
        })
        .collect()
}

/// When the signed records of the vectors were signed.
const AT: &str = "2026-12-07T12:00:00.000Z";
/// The submitter of the job the signed records are about.
const SUBMITTER_SEED: [u8; 32] = [7; 32];
/// The node that audits its receipt.
const AUDITOR_SEED: [u8; 32] = [9; 32];

/// Signs `members` as `form` without reading the result back, so that a case
/// can break a rule of the form under a signature that verifies.
fn sign_unread(form: &Form, mut m: Map<String, Value>, id: &Identity) -> Value {
    m.insert("version".into(), json!(form.version));
    m.insert(
        form.signer.into(),
        json!({"peer_id": id.peer_id().to_string(), "public_key": id.public_key_b64()}),
    );
    let mut bytes = form.prefix.to_vec();
    bytes.extend(jcs::canonicalize(&Value::Object(m.clone())).expect("canonical"));
    m.insert("signature".into(), json!(B64.encode(id.sign(&bytes))));
    Value::Object(m)
}

/// Signs `members` as `form` with the library, and checks `sign_unread` agrees.
fn sign_record(form: &Form, m: &Map<String, Value>, id: &Identity) -> Value {
    let record = signed::sign(form, m.clone(), id).expect("sign");
    let value = Value::Object(record.members);
    assert_eq!(value, sign_unread(form, m.clone(), id), "{}", form.version);
    value
}

/// A case of a signed record: its name, its text, the verdict it must get
/// (`valid`, or the check that refuses it).
type SignedCase = (String, String, &'static str);

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json")
}

/// A 32-byte string that is not an Ed25519 public key (no curve point has it).
fn not_a_point() -> [u8; 32] {
    (0..=255u8)
        .map(|i| [i; 32])
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .expect("some byte string is not a point")
}

/// The cases every form has, from one valid record: each signed member changed
/// (`changes`: the member, another value of its type, the verdict), the
/// signature and the signer tampered with, members added, removed and named
/// twice, the form relabelled, the size bound.
fn form_cases(
    form: &Form,
    valid: &Value,
    changes: Vec<(&str, Value, &'static str)>,
) -> Vec<SignedCase> {
    let other = Identity::from_seed(OTHER_SEED);
    let signer = form.signer;
    let tamper = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut m = valid.as_object().expect("object").clone();
        f(&mut m);
        pretty(&Value::Object(m))
    };
    let mut out: Vec<SignedCase> = Vec::new();
    for (k, v, verdict) in changes {
        let text = tamper(&|m| {
            m.insert(k.into(), v.clone());
        });
        out.push((format!("{k} changed"), text, verdict));
    }
    out.push((
        "signature bit flipped".into(),
        tamper(&|m| {
            let mut sig = B64
                .decode(m["signature"].as_str().expect("signature"))
                .expect("b64");
            sig[10] ^= 0x01;
            m.insert("signature".into(), json!(B64.encode(sig)));
        }),
        "signature",
    ));
    out.push((
        format!("{signer} replaced by another node"),
        tamper(&|m| {
            m.insert(
                signer.into(),
                json!({"peer_id": other.peer_id().to_string(), "public_key": other.public_key_b64()}),
            );
        }),
        "signature",
    ));
    out.push((
        format!("another node's key claiming the {signer}"),
        tamper(&|m| m[signer]["public_key"] = json!(other.public_key_b64())),
        "peer_id",
    ));
    let bad_key = not_a_point();
    out.push((
        format!("{signer} public_key not a curve point"),
        tamper(&|m| {
            m[signer]["public_key"] = json!(B64.encode(bad_key));
            m[signer]["peer_id"] = json!(
                libp2p_identity::PeerId::from_bytes(&plasm::identity::peer_id_bytes(&bad_key))
                    .expect("peer id")
                    .to_string()
            );
        }),
        "public_key",
    ));
    out.push((
        format!("{signer} public_key of 31 bytes"),
        tamper(&|m| m[signer]["public_key"] = json!(B64.encode([1u8; 31]))),
        "malformed",
    ));
    out.push((
        "signature of 63 bytes".into(),
        tamper(&|m| {
            m.insert("signature".into(), json!(B64.encode([1u8; 63])));
        }),
        "malformed",
    ));
    out.push((
        format!("{signer} with a third member"),
        tamper(&|m| m[signer]["note"] = json!("hi")),
        "malformed",
    ));
    out.push((
        "member added".into(),
        tamper(&|m| {
            m.insert("note".into(), json!("hi"));
        }),
        "malformed",
    ));
    for k in form.members {
        let text = tamper(&|m| {
            m.remove(*k);
        });
        out.push((format!("{k} removed"), text, "malformed"));
    }
    let text = pretty(valid);
    out.push((
        "duplicate at".into(),
        text.replacen('{', "{\"at\":\"2026-12-07T12:00:01.000Z\",", 1),
        "malformed",
    ));
    out.push((
        format!("duplicate nested in {signer}"),
        text.replacen(
            &format!("\"{signer}\": {{"),
            &format!("\"{signer}\": {{\"peer_id\": \"{}\",", other.peer_id()),
            1,
        ),
        "malformed",
    ));
    out.push((
        "unknown version".into(),
        tamper(&|m| {
            m.insert("version".into(), json!(form.version.replace("/v1", "/v2")));
        }),
        "malformed",
    ));
    for f in signed::FORMS.iter().filter(|f| f.version != form.version) {
        let text = tamper(&|m| {
            m.insert("version".into(), json!(f.version));
        });
        out.push((format!("relabelled as {}", f.version), text, "malformed"));
    }
    if form.max_bytes <= 4096 {
        // Trailing white space: only the size bound refuses it.
        let at_bound = format!("{text}{}", " ".repeat(form.max_bytes - text.len()));
        out.push(("padded to the size bound".into(), at_bound.clone(), "valid"));
        out.push((
            "one byte over the size bound".into(),
            at_bound + " ",
            "malformed",
        ));
    }
    out
}

/// The bytes a record's signature covers: its prefix and the RFC 8785 form of
/// every member but `signature`.
fn record_signing_bytes(text: &str) -> Vec<u8> {
    let Value::Object(m) = jcs::parse_strict(text).expect("strict") else {
        panic!("not an object")
    };
    let form = signed::FORMS
        .iter()
        .find(|f| m.get("version") == Some(&json!(f.version)))
        .expect("a form");
    let mut bytes = form.prefix.to_vec();
    bytes.extend(jcs::canonicalize_without(&m, "signature").expect("canonical"));
    bytes
}

/// The vectors of `cases`, each checked to get the verdict it was written for.
fn signed_vectors(cases: Vec<SignedCase>) -> Vec<Value> {
    cases
        .into_iter()
        .map(|(name, text, expected)| {
            let verdict = signed::read_any(&text);
            let got = verdict.as_ref().map_or_else(|e| e.check(), |_| "valid");
            assert_eq!(got, expected, "{name}: {verdict:?}");
            let mut v = json!({"name": name, "json": text, "valid": verdict.is_ok()});
            if let Err(e) = &verdict {
                v["failed_check"] = json!(e.check());
            }
            // Well formed: the signed bytes are defined.
            if matches!(expected, "valid" | "signature") {
                v["signing_bytes_b64"] = json!(B64.encode(record_signing_bytes(&text)));
            }
            v
        })
        .collect()
}

/// Acceptances (decision 0056): a submitter's word that it took one receipt.
fn acceptance_cases() -> Vec<Value> {
    let executor = Identity::from_seed(SEED);
    let submitter = Identity::from_seed(SUBMITTER_SEED);
    let other = Identity::from_seed(OTHER_SEED);
    let receipt = Receipt::sign(&receipt_body(), &executor).expect("sign");
    let mut m = Map::new();
    m.insert(
        "job_id".into(),
        json!(receipt.str_field("job_id").expect("job_id")),
    );
    m.insert(
        "receipt_sha256".into(),
        json!(signed::receipt_sha256(&receipt).expect("digest")),
    );
    m.insert("executor".into(), json!(executor.peer_id().to_string()));
    m.insert("at".into(), json!(AT));
    let valid = sign_record(&ACCEPTANCE, &m, &submitter);
    let resigned = |k: &str, v: Value| {
        let mut m = m.clone();
        m.insert(k.into(), v);
        pretty(&sign_unread(&ACCEPTANCE, m, &submitter))
    };
    let mut cases: Vec<SignedCase> = vec![
        ("valid".into(), pretty(&valid), "valid"),
        (
            "valid, at with an offset".into(),
            resigned("at", json!("2026-12-07T13:00:00+01:00")),
            "valid",
        ),
    ];
    cases.extend(form_cases(
        &ACCEPTANCE,
        &valid,
        vec![
            ("job_id", json!("0".repeat(64)), "signature"),
            ("receipt_sha256", json!("f".repeat(64)), "signature"),
            ("executor", json!(other.peer_id().to_string()), "signature"),
            ("at", json!("2026-12-07T12:00:01.000Z"), "signature"),
        ],
    ));
    let upper = receipt.str_field("job_id").expect("job_id").to_uppercase();
    cases.extend([
        (
            "job_id in capitals, re-signed".into(),
            resigned("job_id", json!(upper)),
            "malformed",
        ),
        (
            "receipt_sha256 short, re-signed".into(),
            resigned("receipt_sha256", json!("f".repeat(63))),
            "malformed",
        ),
        (
            "executor empty, re-signed".into(),
            resigned("executor", json!("")),
            "malformed",
        ),
        (
            "executor not a string, re-signed".into(),
            resigned("executor", json!(7)),
            "malformed",
        ),
        (
            "at not a time, re-signed".into(),
            resigned("at", json!("yesterday")),
            "malformed",
        ),
        (
            "at on 30 February, re-signed".into(),
            resigned("at", json!("2026-02-30T12:00:00Z")),
            "malformed",
        ),
    ]);
    signed_vectors(cases)
}

/// Publications (decision 0056): a submitter's signed manifest, bound to its job id.
fn publication_cases() -> Vec<Value> {
    let submitter = Identity::from_seed(SUBMITTER_SEED);
    let manifest = Manifest::from_value(base_manifest()).expect("manifest");
    let mut full = base_manifest();
    full["args"] = json!(["--n", "10", "ünïcödé"]);
    full["env"] = json!({"LANG": "C", "A": "1"});
    full["limits"] = json!({"fuel": 5000000});
    let full = Manifest::from_value(full).expect("manifest");
    let of = |manifest: &Manifest| {
        let mut m = Map::new();
        m.insert("job_id".into(), json!(manifest.job_id()));
        m.insert("manifest".into(), manifest.as_value().clone());
        m.insert("at".into(), json!(AT));
        m
    };
    let m = of(&manifest);
    let valid = sign_record(&PUBLICATION, &m, &submitter);
    let resigned = |k: &str, v: Value| {
        let mut m = m.clone();
        m.insert(k.into(), v);
        pretty(&sign_unread(&PUBLICATION, m, &submitter))
    };
    let mut other_nonce = base_manifest();
    other_nonce["nonce"] = json!("00000000000000000000000000000000");
    let other_nonce = Manifest::from_value(other_nonce).expect("manifest");
    let mut cases: Vec<SignedCase> = vec![
        ("valid".into(), pretty(&valid), "valid"),
        (
            "valid, every manifest field".into(),
            pretty(&sign_record(&PUBLICATION, &of(&full), &submitter)),
            "valid",
        ),
    ];
    cases.extend(form_cases(
        &PUBLICATION,
        &valid,
        vec![
            ("at", json!("2026-12-07T12:00:01.000Z"), "signature"),
            // Either alone breaks the binding before the signature is checked.
            ("job_id", json!(other_nonce.job_id()), "malformed"),
            ("manifest", other_nonce.as_value().clone(), "malformed"),
        ],
    ));
    let mut swapped = valid.clone();
    swapped["job_id"] = json!(other_nonce.job_id());
    swapped["manifest"] = other_nonce.as_value().clone();
    let mut unknown = base_manifest();
    unknown["priority"] = json!(1);
    let unknown_id = plasm::job::sha256_hex(&jcs::canonicalize(&unknown).expect("canonical"));
    cases.extend([
        (
            "manifest and job_id changed together".into(),
            pretty(&swapped),
            "signature",
        ),
        (
            "job_id not the manifest's, re-signed".into(),
            resigned("job_id", json!(other_nonce.job_id())),
            "malformed",
        ),
        (
            "manifest not an object, re-signed".into(),
            resigned("manifest", json!("plasm.job/v1")),
            "malformed",
        ),
        (
            "manifest refused by the schema, job_id its digest, re-signed".into(),
            {
                let mut m = m.clone();
                m.insert("job_id".into(), json!(unknown_id));
                m.insert("manifest".into(), unknown);
                pretty(&sign_unread(&PUBLICATION, m, &submitter))
            },
            "malformed",
        ),
    ]);
    signed_vectors(cases)
}

/// Audits (decision 0057): an auditor's verdict on one receipt.
fn audit_cases() -> Vec<Value> {
    let executor = Identity::from_seed(SEED);
    let auditor = Identity::from_seed(AUDITOR_SEED);
    let other = Identity::from_seed(OTHER_SEED);
    let receipt = Receipt::sign(&receipt_body(), &executor).expect("sign");
    let of = |verdict: &str, differs: Value, reason: &str| {
        let mut m = Map::new();
        m.insert(
            "job_id".into(),
            json!(receipt.str_field("job_id").expect("job_id")),
        );
        m.insert(
            "receipt_sha256".into(),
            json!(signed::receipt_sha256(&receipt).expect("digest")),
        );
        m.insert("executor".into(), json!(executor.peer_id().to_string()));
        m.insert("verdict".into(), json!(verdict));
        m.insert("differs".into(), differs);
        m.insert("reason".into(), json!(reason));
        m.insert("at".into(), json!(AT));
        m
    };
    let mismatch = of(
        "mismatch",
        json!(["output_sha256", "fuel_used"]),
        "the output and the fuel differ",
    );
    let valid = sign_record(&AUDIT, &mismatch, &auditor);
    let confirmed = sign_record(&AUDIT, &of("confirmed", json!([]), ""), &auditor);
    let not_auditable = sign_record(
        &AUDIT,
        &of("not_auditable", json!([]), "the job was not published"),
        &auditor,
    );
    let resigned = |verdict: &str, differs: Value, reason: Value| {
        let mut m = of(verdict, differs, "");
        m.insert("reason".into(), reason);
        pretty(&sign_unread(&AUDIT, m, &auditor))
    };
    let mut cases: Vec<SignedCase> = vec![
        ("valid mismatch".into(), pretty(&valid), "valid"),
        ("valid confirmed".into(), pretty(&confirmed), "valid"),
        (
            "valid not_auditable".into(),
            pretty(&not_auditable),
            "valid",
        ),
        (
            "valid, 16 fields of 32 bytes and a reason of 512".into(),
            resigned(
                "mismatch",
                json!(vec!["f".repeat(32); 16]),
                json!("r".repeat(512)),
            ),
            "valid",
        ),
    ];
    cases.extend(form_cases(
        &AUDIT,
        &valid,
        vec![
            ("job_id", json!("0".repeat(64)), "signature"),
            ("receipt_sha256", json!("f".repeat(64)), "signature"),
            ("executor", json!(other.peer_id().to_string()), "signature"),
            ("differs", json!(["output_sha256"]), "signature"),
            ("reason", json!(""), "signature"),
            ("at", json!("2026-12-07T12:00:01.000Z"), "signature"),
        ],
    ));
    let mut flipped = not_auditable.clone();
    flipped["verdict"] = json!("confirmed");
    let mut to_confirmed = valid.clone();
    to_confirmed["verdict"] = json!("confirmed");
    cases.extend([
        (
            "not_auditable changed to confirmed".into(),
            pretty(&flipped),
            "signature",
        ),
        (
            "mismatch changed to confirmed (differs left)".into(),
            pretty(&to_confirmed),
            "malformed",
        ),
        (
            "mismatch with empty differs, re-signed".into(),
            resigned("mismatch", json!([]), json!("")),
            "malformed",
        ),
        (
            "confirmed with differs, re-signed".into(),
            resigned("confirmed", json!(["output_sha256"]), json!("")),
            "malformed",
        ),
        (
            "not_auditable with differs, re-signed".into(),
            resigned("not_auditable", json!(["output_sha256"]), json!("")),
            "malformed",
        ),
        (
            "unknown verdict, re-signed".into(),
            resigned("maybe", json!([]), json!("")),
            "malformed",
        ),
        (
            "differs naming an empty field, re-signed".into(),
            resigned("mismatch", json!([""]), json!("")),
            "malformed",
        ),
        (
            "differs naming a field of 33 bytes, re-signed".into(),
            resigned("mismatch", json!(["f".repeat(33)]), json!("")),
            "malformed",
        ),
        (
            "17 fields differ, re-signed".into(),
            resigned("mismatch", json!(vec!["f"; 17]), json!("")),
            "malformed",
        ),
        (
            "differs not an array, re-signed".into(),
            resigned("mismatch", json!("output_sha256"), json!("")),
            "malformed",
        ),
        (
            "reason of 513 bytes, re-signed".into(),
            resigned("confirmed", json!([]), json!("r".repeat(513))),
            "malformed",
        ),
        (
            "reason not a string, re-signed".into(),
            resigned("confirmed", json!([]), json!(null)),
            "malformed",
        ),
    ]);
    signed_vectors(cases)
}

/// Texts every implementation must refuse when it reads a signed document:
/// each names a member twice (`member`: the name, unescaped).
fn duplicate_cases() -> Vec<Value> {
    [
        ("top level", r#"{"a":1,"b":2,"a":1}"#, "a"),
        (
            "escaped name",
            r#"{"version":"x","\u0076ersion":"y"}"#,
            "version",
        ),
        ("non-ASCII escaped", r#"{"é":1,"\u00e9":2}"#, "é"),
        ("astral escaped", r#"{"😀":1,"\ud83d\ude00":2}"#, "😀"),
        (
            "nested object",
            r#"{"runtime":{"name":"wasm3","name":"wasmtime"}}"#,
            "name",
        ),
        ("inside an array", r#"{"a":[{"x":1},{"y":1,"y":2}]}"#, "y"),
        ("empty name", r#"{"":1,"":2}"#, ""),
        (
            "manifest limits",
            r#"{"version":"plasm.job/v1","limits":{"fuel":1,"fuel":2}}"#,
            "fuel",
        ),
    ]
    .iter()
    .map(|(name, text, member)| json!({"name": name, "json": text, "member": member}))
    .collect()
}

fn generate() -> Value {
    let id = Identity::from_seed(SEED);
    json!({
        "description": "plasm cross-language vectors. canonical: RFC 8785 text of `json`, or the check that refuses it. manifests: canonical form and job_id (hex SHA-256 of the canonical bytes), or the schema path and rule that refuse it. receipts: the bytes the signature covers (`plasm-receipt-v2\\n`, or for version 1 `plasm-receipt-v1\\n`, + canonical receipt without `signature`) and the verdict; checks run in the order malformed, schema, canonical, public_key, peer_id, signature and the first failure is named (a member named twice, at any depth, is malformed). duplicates: texts that name a member twice (`member`, unescaped), which every reader of a signed document refuses. handoffs: a busy node's signed hand-off of a stolen job (`plasm-handoff-v1\\n` + canonical form without `signature`; exactly the members version, job_id, from {peer_id, public_key}, to, requester, at, signature) and the verdict, checks in the order malformed, canonical, public_key, peer_id, signature. acceptances, publications, audits (decisions 0056, 0057): signed records of closed form, each signed by the peer its signer member names ({peer_id, public_key}: `requester`, `submitter`, `auditor`) over its prefix (`plasm-acceptance-v1\\n`, `plasm-publication-v1\\n`, `plasm-audit-v1\\n`) + the canonical form of every member but `signature` (`signing_bytes_b64`, given for the well-formed cases); the verdict is the first failed check in the order: size (at most 2048, 98304, 4096 bytes) and strict JSON (malformed), exactly the form's members (malformed), version (malformed), member types (malformed: job_id and receipt_sha256 64 lowercase hex, executor 1-64 bytes, at RFC 3339, an audit's verdict confirmed, mismatch or not_auditable with differs 0-16 field names of 1-32 bytes non-empty exactly on a mismatch and reason a string of at most 512 bytes, a publication's manifest a valid manifest whose job id is job_id; the PHP SDK checks the manifest with Job::validate and the job id binding), the signer {peer_id, public_key} with a base64 32-byte key and a base64 64-byte signature (malformed), canonical, public_key (a curve point), peer_id, signature.",
        "key": {
            "seed_hex": hex::encode(SEED),
            "public_key": id.public_key_b64(),
            "peer_id": id.peer_id().to_string(),
            "sign_test": {"message": "plasm", "signature": B64.encode(id.sign(b"plasm"))}
        },
        "canonical": canonical_cases(),
        "manifests": manifest_cases(),
        "receipts": receipt_cases(),
        "duplicates": duplicate_cases(),
        "handoffs": handoff_cases(),
        "acceptances": acceptance_cases(),
        "publications": publication_cases(),
        "audits": audit_cases(),
    })
}

#[test]
fn committed_vectors_match_the_generator() {
    let generated = serde_json::to_string_pretty(&generate()).expect("json") + "\n";
    if std::env::var_os("PLASM_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, &generated).expect("write vectors");
    }
    let committed =
        std::fs::read_to_string(PATH).expect("schemas/test-vectors/vectors.json exists");
    assert!(
        committed == generated,
        "vectors.json is stale: rerun with PLASM_WRITE_VECTORS=1 and review the diff"
    );
}

#[test]
fn every_vector_holds() {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(PATH).expect("vectors")).expect("json");
    let seed: [u8; 32] = hex::decode(v["key"]["seed_hex"].as_str().expect("seed"))
        .expect("hex")
        .try_into()
        .expect("32");
    let id = Identity::from_seed(seed);
    assert_eq!(v["key"]["peer_id"], json!(id.peer_id().to_string()));
    assert_eq!(v["key"]["public_key"], json!(id.public_key_b64()));
    let mut count = 0;
    for c in v["canonical"].as_array().expect("canonical") {
        let input: Value = serde_json::from_str(c["json"].as_str().expect("json")).expect("parse");
        match (jcs::canonicalize(&input), c.get("canonical")) {
            (Ok(bytes), Some(expected)) => {
                assert_eq!(json!(String::from_utf8(bytes).expect("utf8")), *expected)
            }
            (Err(_), None) => assert_eq!(c["error"], json!("canonical")),
            (got, _) => panic!("{}: unexpected {got:?}", c["name"]),
        }
        count += 1;
    }
    for m in v["manifests"].as_array().expect("manifests") {
        let parsed = Manifest::from_json(m["json"].as_str().expect("json"));
        if m["valid"] == json!(true) {
            let parsed = parsed.expect("valid manifest");
            assert_eq!(json!(parsed.job_id()), m["job_id"]);
            assert_eq!(json!(canon_str(parsed.as_value())), m["canonical"]);
        } else {
            match parsed {
                Err(ManifestError::Schema { path, rule, .. }) => {
                    assert_eq!(
                        (json!(path), json!(rule)),
                        (m["path"].clone(), m["rule"].clone()),
                        "{}",
                        m["name"]
                    )
                }
                other => panic!("{}: expected refusal, got {other:?}", m["name"]),
            }
        }
        count += 1;
    }
    let mut invalid = 0;
    for r in v["receipts"].as_array().expect("receipts") {
        let verdict =
            Receipt::from_json(r["json"].as_str().expect("json")).and_then(|x| x.verify());
        match verdict {
            Ok(_) => assert_eq!(r["valid"], json!(true), "{}", r["name"]),
            Err(e) => {
                invalid += 1;
                assert_eq!(r["valid"], json!(false), "{}", r["name"]);
                assert_eq!(json!(e.check()), r["failed_check"], "{}", r["name"]);
            }
        }
        count += 1;
    }
    for d in v["duplicates"].as_array().expect("duplicates") {
        let text = d["json"].as_str().expect("json");
        let member = d["member"].as_str().expect("member");
        assert_eq!(
            jcs::parse_strict(text),
            Err(jcs::StrictError::Duplicate(member.to_owned())),
            "{}",
            d["name"]
        );
        // Refused where it matters: as a receipt and as a manifest.
        assert_eq!(
            Receipt::from_json(text).err().map(|e| e.check()),
            Some("malformed")
        );
        assert!(matches!(
            Manifest::from_json(text),
            Err(ManifestError::Json(_))
        ));
        count += 1;
    }
    let mut handoffs_refused = 0;
    for h in v["handoffs"].as_array().expect("handoffs") {
        use plasm::receipt::handoff::Handoff;
        let verdict =
            Handoff::from_json(h["json"].as_str().expect("json")).and_then(|x| x.verify());
        match verdict {
            Ok(_) => assert_eq!(h["valid"], json!(true), "{}", h["name"]),
            Err(e) => {
                handoffs_refused += 1;
                assert_eq!(h["valid"], json!(false), "{}", h["name"]);
                assert_eq!(json!(e.check()), h["failed_check"], "{}", h["name"]);
            }
        }
        count += 1;
    }
    for (list, form) in [
        ("acceptances", "plasm.acceptance/v1"),
        ("publications", "plasm.publication/v1"),
        ("audits", "plasm.audit/v1"),
    ] {
        let mut refused = 0;
        for c in v[list].as_array().expect(list) {
            let text = c["json"].as_str().expect("json");
            let name = format!("{list}: {}", c["name"]);
            match signed::read_any(text) {
                Ok(r) => {
                    assert_eq!(c["valid"], json!(true), "{name}");
                    assert_eq!(r.form, form, "{name}");
                }
                Err(e) => {
                    refused += 1;
                    assert_eq!(c["valid"], json!(false), "{name}");
                    assert_eq!(json!(e.check()), c["failed_check"], "{name}");
                }
            }
            if let Some(b) = c.get("signing_bytes_b64") {
                assert_eq!(*b, json!(B64.encode(record_signing_bytes(text))), "{name}");
            }
            count += 1;
        }
        assert!(refused >= 15, "the {list} vectors must exercise tampering");
    }
    assert!(
        handoffs_refused >= 5,
        "the hand-off vectors must exercise tampering"
    );
    assert!(invalid >= 10, "the vectors must exercise tampering");
    assert!(count > 25);
}
