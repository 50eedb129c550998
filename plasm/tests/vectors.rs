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
use plasm::receipt::{Receipt, ReceiptBody, ReceiptPlacement, RuntimeInfo};
use plasm::runtime::Outcome;
use serde_json::{Value, json};

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

fn manifest_cases() -> Vec<Value> {
    let module = b"\0asm\x01\0\0\0";
    let base = json!({
        "version": "plasm.job/v1",
        "module": {"sha256": plasm::job::sha256_hex(module), "size": module.len()},
        "nonce": "6f1c2a9e0b7d4c3f8a5e2d1b0c9f8e7d",
        "created_at": "2026-11-20T12:00:00Z"
    });
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

fn receipt_cases() -> Vec<Value> {
    let id = Identity::from_seed(SEED);
    let other = Identity::from_seed(OTHER_SEED);
    let body = ReceiptBody {
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
    };
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
        "description": "plasm cross-language vectors. canonical: RFC 8785 text of `json`, or the check that refuses it. manifests: canonical form and job_id (hex SHA-256 of the canonical bytes), or the schema path and rule that refuse it. receipts: the bytes the signature covers (`plasm-receipt-v2\\n`, or for version 1 `plasm-receipt-v1\\n`, + canonical receipt without `signature`) and the verdict; checks run in the order malformed, schema, canonical, public_key, peer_id, signature and the first failure is named (a member named twice, at any depth, is malformed). duplicates: texts that name a member twice (`member`, unescaped), which every reader of a signed document refuses. handoffs: a busy node's signed hand-off of a stolen job (`plasm-handoff-v1\\n` + canonical form without `signature`; exactly the members version, job_id, from {peer_id, public_key}, to, requester, at, signature) and the verdict, checks in the order malformed, canonical, public_key, peer_id, signature.",
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
    assert!(
        handoffs_refused >= 5,
        "the hand-off vectors must exercise tampering"
    );
    assert!(invalid >= 10, "the vectors must exercise tampering");
    assert!(count > 25);
}
