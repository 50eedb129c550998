//! Signed execution receipts: building, signing, and verification.
//!
//! A receipt is a JSON object. Its signature covers `plasm-receipt-v2\n` (for a
//! version 1 receipt, `plasm-receipt-v1\n`) followed by the RFC 8785 form of every
//! other member, unknown ones included, so a verifier needs only the JSON text:
//! no schema registry, no node. Verification runs its checks in a fixed,
//! documented order and names the first that fails, so the Rust and PHP
//! verifiers agree on the verdict for every test vector.
//!
//! Nodes sign version 2 (`schemas/receipt-v2.schema.json`): it adds the stderr
//! hash, the memory-limit flag, the queued time, the runtime's configuration
//! hash and the placement, designed once for the issues that fill them. Version
//! 1 receipts (`schemas/receipt.schema.json`) verify forever: the `version`
//! member picks the schema and the signing prefix.

pub mod handoff;
pub mod signed;

pub use crate::execution::{Outcome, RuntimeInfo};
use crate::identity::{Identity, peer_id_matches};
use crate::jcs;
use crate::manifest::{compile_schema, first_violation};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// The version 1 receipt schema, as published in `schemas/`.
pub const RECEIPT_SCHEMA_V1: &str = include_str!("../../schemas/receipt.schema.json");
/// The version 2 receipt schema, as published in `schemas/`.
pub const RECEIPT_SCHEMA: &str = include_str!("../../schemas/receipt-v2.schema.json");
/// The `version` of the receipts this release signs.
pub const RECEIPT_VERSION: &str = "plasm.receipt/v2";
/// The `version` of release 0.1's receipts (they still verify).
pub const RECEIPT_VERSION_V1: &str = "plasm.receipt/v1";
/// Domain separation prefix of a version 2 receipt's signed bytes.
pub const SIGNING_PREFIX: &[u8] = b"plasm-receipt-v2\n";
/// Domain separation prefix of a version 1 receipt's signed bytes.
pub const SIGNING_PREFIX_V1: &[u8] = b"plasm-receipt-v1\n";

/// Why a receipt failed verification; the variants are listed in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a JSON object, or its `signature` or `executor.public_key` is not decodable.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The receipt breaks the receipt schema.
    #[error("receipt violates the schema at {path} ({rule}): {message}")]
    Schema {
        /// JSON pointer into the receipt.
        path: String,
        /// The schema keyword that failed.
        rule: String,
        /// Human-readable explanation.
        message: String,
    },
    /// A value has no RFC 8785 form in plasm's subset (a float, a huge integer).
    #[error("receipt is not canonicalisable: {0}")]
    Canonical(#[from] jcs::CanonError),
    /// `executor.public_key` is not a valid Ed25519 point.
    #[error("executor.public_key is not a valid Ed25519 public key")]
    PublicKey,
    /// `executor.peer_id` is not the peer id of `executor.public_key`.
    #[error("executor.peer_id does not belong to executor.public_key")]
    PeerId,
    /// The Ed25519 signature does not verify over the canonical bytes.
    #[error("signature does not verify")]
    Signature,
}

impl VerifyError {
    /// The short name of the failed check, as used in the test vectors and the HTTP API.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Schema { .. } => "schema",
            Self::Canonical(_) => "canonical",
            Self::PublicKey => "public_key",
            Self::PeerId => "peer_id",
            Self::Signature => "signature",
        }
    }
}

/// The facts a receipt attests, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBody {
    /// Job id (hex SHA-256 of the canonical manifest).
    pub job_id: String,
    /// Hex SHA-256 of the module bytes.
    pub module_sha256: String,
    /// Hex SHA-256 of the stdin bytes.
    pub input_sha256: String,
    /// Hex SHA-256 of stdout.
    pub output_sha256: String,
    /// How the job ended.
    pub outcome: Outcome,
    /// Exit code when the job exited (or returned an i32).
    pub exit_code: Option<i64>,
    /// Trap reason or limit detail.
    pub detail: Option<String>,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// Fuel budget.
    pub fuel_limit: u64,
    /// Runtime identification.
    pub runtime: RuntimeInfo,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Hex SHA-256 of stderr (v2).
    pub stderr_sha256: String,
    /// A `memory.grow` was refused by the memory limit (v2).
    pub memory_limit_hit: bool,
    /// RFC 3339 time the executor queued the job (v2).
    pub queued_at: String,
    /// Where the job ran, as the executor saw it (v2).
    pub placement: ReceiptPlacement,
}

/// Where a job ran and which way its bytes came, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPlacement {
    /// `local`, `direct`, `hole-punched` or `relayed`.
    pub path: String,
    /// The relay's peer id, when relayed.
    pub relay: Option<String>,
    /// The requester's attempt number, when it says (placement issue).
    pub attempt: Option<u32>,
    /// The executor the job was taken over from (placement issue).
    pub taken_over_from: Option<String>,
    /// The busy node this job was stolen from (swarm mode, decision 0053): a
    /// member of `placement` present only then, so receipts of jobs that were
    /// not stolen are the bytes they always were.
    pub stolen_from: Option<String>,
}

impl ReceiptPlacement {
    /// A job run by the node it was submitted to.
    pub fn local() -> Self {
        Self {
            path: "local".into(),
            relay: None,
            attempt: None,
            taken_over_from: None,
            stolen_from: None,
        }
    }
}

/// A receipt: the JSON object, signed or not. The value is always an object;
/// it is kept as a `Value` so the schema check needs no copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt(Value);

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The executor's peer id.
    pub peer_id: String,
    /// The executor's public key (base64).
    pub public_key: String,
    /// The job id the receipt is for.
    pub job_id: String,
}

fn validator(v1: bool) -> &'static jsonschema::Validator {
    static V1: OnceLock<jsonschema::Validator> = OnceLock::new();
    static V2: OnceLock<jsonschema::Validator> = OnceLock::new();
    if v1 {
        V1.get_or_init(|| compile_schema(RECEIPT_SCHEMA_V1))
    } else {
        V2.get_or_init(|| compile_schema(RECEIPT_SCHEMA))
    }
}

fn opt_str(v: &Option<String>) -> Value {
    v.clone().map_or(Value::Null, Value::from)
}

fn digest(hex: &str) -> Value {
    Value::String(format!("sha256:{hex}"))
}

impl Receipt {
    /// Signs `body` as `identity`: a version 2 receipt. Fails, rather than sign
    /// anything else, when the members have no canonical form.
    pub fn sign(body: &ReceiptBody, identity: &Identity) -> Result<Self, jcs::CanonError> {
        let mut m = Self::members_v1(body, identity);
        m.insert("version".into(), RECEIPT_VERSION.into());
        m.insert("stderr".into(), digest(&body.stderr_sha256));
        m.insert("memory_limit_hit".into(), body.memory_limit_hit.into());
        m.insert(
            "runtime".into(),
            json!({"name": body.runtime.name, "version": body.runtime.version,
                   "metering": body.runtime.metering, "config": digest(&body.runtime.config_sha256)}),
        );
        let p = &body.placement;
        let mut placement = json!({"path": p.path, "relay": opt_str(&p.relay),
               "attempt": p.attempt.map_or(Value::Null, Value::from),
               "taken_over_from": opt_str(&p.taken_over_from)});
        if let (Some(from), Some(obj)) = (&p.stolen_from, placement.as_object_mut()) {
            obj.insert("stolen_from".into(), from.clone().into());
        }
        m.insert("placement".into(), placement);
        m.insert("queued_at".into(), body.queued_at.clone().into());
        let mut r = Self(Value::Object(m));
        r.resign(identity)?;
        Ok(r)
    }

    /// Signs `body` as a version 1 receipt, as release 0.1 did (the v2 fields are
    /// left out). Kept for the test vectors and the tests that prove old receipts verify.
    pub fn sign_v1(body: &ReceiptBody, identity: &Identity) -> Result<Self, jcs::CanonError> {
        let mut r = Self(Value::Object(Self::members_v1(body, identity)));
        r.resign(identity)?;
        Ok(r)
    }

    /// The members of a version 1 receipt, unsigned (version 2 builds on them).
    fn members_v1(body: &ReceiptBody, identity: &Identity) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("version".into(), RECEIPT_VERSION_V1.into());
        m.insert("job_id".into(), body.job_id.clone().into());
        m.insert("module".into(), digest(&body.module_sha256));
        m.insert("input".into(), digest(&body.input_sha256));
        m.insert("output".into(), digest(&body.output_sha256));
        m.insert("outcome".into(), body.outcome.as_str().into());
        m.insert(
            "exit_code".into(),
            body.exit_code.map_or(Value::Null, Value::from),
        );
        m.insert(
            "detail".into(),
            body.detail.clone().map_or(Value::Null, Value::from),
        );
        m.insert(
            "fuel_used".into(),
            body.fuel_used.min(jcs::MAX_SAFE_INTEGER).into(),
        );
        m.insert(
            "fuel_limit".into(),
            body.fuel_limit.min(jcs::MAX_SAFE_INTEGER).into(),
        );
        m.insert(
            "runtime".into(),
            json!({"name": body.runtime.name, "version": body.runtime.version, "metering": body.runtime.metering}),
        );
        m.insert(
            "executor".into(),
            json!({"peer_id": identity.peer_id().to_string(), "public_key": identity.public_key_b64()}),
        );
        m.insert("started_at".into(), body.started_at.clone().into());
        m.insert("finished_at".into(), body.finished_at.clone().into());
        m
    }

    /// Recomputes the signature over the current members (signing, test vectors).
    /// Members with no canonical form (a non-integral or unsafe number) are an
    /// error: the receipt is left unsigned, never signed over other bytes.
    pub fn resign(&mut self, identity: &Identity) -> Result<(), jcs::CanonError> {
        self.as_map_mut().remove("signature");
        let bytes = self.signing_bytes()?;
        let sig = identity.sign(&bytes);
        self.as_map_mut()
            .insert("signature".into(), B64.encode(sig).into());
        Ok(())
    }

    /// Parses receipt JSON text (no verification).
    pub fn from_json(text: &str) -> Result<Self, VerifyError> {
        // Strict: a receipt with a member named twice admits two readings (decision 0047).
        match jcs::parse_strict(text) {
            Ok(v @ Value::Object(_)) => Ok(Self(v)),
            Ok(_) => Err(VerifyError::Malformed("a receipt is a JSON object".into())),
            Err(e) => Err(VerifyError::Malformed(e.to_string())),
        }
    }

    /// Wraps an already-parsed JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(Value::Object(map))
    }

    /// The JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
        self.0
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// Mutable access to the JSON object (tests, tampering vectors).
    pub fn as_map_mut(&mut self) -> &mut Map<String, Value> {
        if !self.0.is_object() {
            self.0 = Value::Object(Map::new());
        }
        match &mut self.0 {
            Value::Object(m) => m,
            _ => unreachable!("replaced by an object above"),
        }
    }

    /// Pretty JSON text.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }

    /// A string member.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.as_map().get(key).and_then(Value::as_str)
    }

    /// An integer member.
    pub fn u64_field(&self, key: &str) -> Option<u64> {
        self.as_map().get(key).and_then(Value::as_u64)
    }

    /// Whether this is a version 1 receipt (anything else is checked as version 2).
    pub fn is_v1(&self) -> bool {
        self.str_field("version") == Some(RECEIPT_VERSION_V1)
    }

    /// The bytes the signature covers: the version's prefix and the canonical receipt without `signature`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, jcs::CanonError> {
        let mut out = if self.is_v1() {
            SIGNING_PREFIX_V1.to_vec()
        } else {
            SIGNING_PREFIX.to_vec()
        };
        out.extend(jcs::canonicalize_without(self.as_map(), "signature")?);
        Ok(out)
    }

    /// Runs every check: schema, canonical form, public key, peer id, signature.
    pub fn verify(&self) -> Result<Verified, VerifyError> {
        if let Some((path, rule, message)) = first_violation(validator(self.is_v1()), &self.0) {
            return Err(VerifyError::Schema {
                path,
                rule,
                message,
            });
        }
        let bytes = self.signing_bytes()?;
        let executor = self.as_map().get("executor").and_then(Value::as_object);
        let field = |k: &str| {
            executor
                .and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let (peer_id, public_key) = (field("peer_id"), field("public_key"));
        let pk: [u8; 32] = B64
            .decode(public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                VerifyError::Malformed("executor.public_key is not base64 of 32 bytes".into())
            })?;
        let sig: [u8; 64] = B64
            .decode(self.str_field("signature").unwrap_or(""))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| VerifyError::Malformed("signature is not base64 of 64 bytes".into()))?;
        let vk = VerifyingKey::from_bytes(&pk).map_err(|_| VerifyError::PublicKey)?;
        if !peer_id_matches(peer_id, &pk) {
            return Err(VerifyError::PeerId);
        }
        vk.verify_strict(&bytes, &Signature::from_bytes(&sig))
            .map_err(|_| VerifyError::Signature)?;
        Ok(Verified {
            peer_id: peer_id.to_owned(),
            public_key: public_key.to_owned(),
            job_id: self.str_field("job_id").unwrap_or("").to_owned(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(identity: &Identity) -> Receipt {
        Receipt::sign(
            &ReceiptBody {
                job_id: "1".repeat(64),
                module_sha256: "2".repeat(64),
                input_sha256: "3".repeat(64),
                output_sha256: "4".repeat(64),
                outcome: Outcome::Exited,
                exit_code: Some(0),
                detail: None,
                fuel_used: 1234,
                fuel_limit: 1_000_000,
                runtime: RuntimeInfo {
                    name: "wasm3".into(),
                    version: "0.9.0".into(),
                    metering: "plasm-fuel/1".into(),
                    config_sha256: "5".repeat(64),
                },
                started_at: "2026-11-20T12:00:00.000Z".into(),
                finished_at: "2026-11-20T12:00:00.010Z".into(),
                stderr_sha256: "6".repeat(64),
                memory_limit_hit: false,
                queued_at: "2026-11-20T11:59:59.990Z".into(),
                placement: ReceiptPlacement::local(),
            },
            identity,
        )
        .expect("sign")
    }

    #[test]
    fn signed_receipt_verifies() {
        let id = Identity::from_seed([9u8; 32]);
        let v = sample(&id).verify().expect("valid");
        assert_eq!(v.peer_id, id.peer_id().to_string());
    }

    #[test]
    fn every_field_tampered_fails() {
        let id = Identity::from_seed([9u8; 32]);
        let r = sample(&id);
        for key in r.as_map().keys().cloned().collect::<Vec<_>>() {
            let mut t = r.clone();
            let v = t.as_map_mut().get_mut(&key).expect("present");
            *v = match v.clone() {
                Value::String(s) if key == "outcome" => Value::String(if s == "exited" {
                    "trapped".into()
                } else {
                    "exited".into()
                }),
                Value::String(s) if s.starts_with("sha256:") => {
                    Value::String(format!("sha256:{}", "f".repeat(64)))
                }
                Value::String(s) if key == "signature" => {
                    let mut b = B64.decode(&s).expect("b64");
                    b[0] ^= 1;
                    Value::String(B64.encode(b))
                }
                Value::String(s) if key == "job_id" => Value::String("0".repeat(s.len())),
                Value::String(s) if key.ends_with("_at") => {
                    Value::String(s.replacen("2026", "2027", 1))
                }
                Value::String(s) => Value::String(format!("{s}x")),
                Value::Number(n) => Value::from(n.as_u64().unwrap_or(0) + 1),
                Value::Bool(b) => Value::Bool(!b),
                Value::Null => Value::from("x"),
                Value::Object(mut o) => {
                    let k = o.keys().next().cloned().expect("non-empty");
                    let old = o.get(&k).and_then(Value::as_str).unwrap_or("").to_owned();
                    let new = if k == "public_key" {
                        Identity::from_seed([8u8; 32]).public_key_b64()
                    } else if k == "peer_id" {
                        Identity::from_seed([8u8; 32]).peer_id().to_string()
                    } else {
                        format!("{old}x")
                    };
                    o.insert(k, new.into());
                    Value::Object(o)
                }
                other => other,
            };
            assert!(t.verify().is_err(), "tampering {key} went unnoticed");
            let mut removed = r.clone();
            removed.as_map_mut().remove(&key);
            assert!(removed.verify().is_err(), "removing {key} went unnoticed");
        }
        let mut added = r.clone();
        added.as_map_mut().insert("note".into(), "hi".into());
        assert_eq!(added.verify(), Err(VerifyError::Signature));
    }

    #[test]
    fn another_nodes_key_fails() {
        let a = Identity::from_seed([1u8; 32]);
        let b = Identity::from_seed([2u8; 32]);
        let mut r = sample(&a);
        r.as_map_mut().insert(
            "executor".into(),
            json!({"peer_id": b.peer_id().to_string(), "public_key": b.public_key_b64()}),
        );
        assert_eq!(r.verify(), Err(VerifyError::Signature));
        let mut r2 = sample(&a);
        r2.as_map_mut()["executor"]["peer_id"] = b.peer_id().to_string().into();
        assert_eq!(r2.verify(), Err(VerifyError::PeerId));
    }

    #[test]
    fn a_version_1_receipt_still_verifies_and_versions_do_not_mix() {
        let id = Identity::from_seed([4u8; 32]);
        let body_source = sample(&id);
        assert_eq!(body_source.str_field("version"), Some(RECEIPT_VERSION));
        assert!(
            body_source
                .signing_bytes()
                .expect("bytes")
                .starts_with(SIGNING_PREFIX)
        );
        // Rebuild a v1 receipt of the same facts, as release 0.1 signed it.
        let mut v1 = body_source.clone();
        for k in ["stderr", "memory_limit_hit", "placement", "queued_at"] {
            v1.as_map_mut().remove(k);
        }
        v1.as_map_mut()["runtime"]
            .as_object_mut()
            .expect("runtime")
            .remove("config");
        v1.as_map_mut()
            .insert("version".into(), RECEIPT_VERSION_V1.into());
        v1.resign(&id).expect("resign");
        assert!(v1.is_v1());
        assert!(
            v1.signing_bytes()
                .expect("bytes")
                .starts_with(SIGNING_PREFIX_V1)
        );
        assert!(v1.verify().is_ok());
        // The same bytes relabelled as the other version fail: schema or prefix.
        let mut as_v2 = v1.clone();
        as_v2.as_map_mut()["version"] = RECEIPT_VERSION.into();
        assert_eq!(as_v2.verify().map_err(|e| e.check()), Err("schema"));
        let mut as_v1 = body_source.clone();
        as_v1.as_map_mut()["version"] = RECEIPT_VERSION_V1.into();
        assert_eq!(as_v1.verify(), Err(VerifyError::Signature));
    }

    #[test]
    fn unknown_fields_are_covered() {
        let id = Identity::from_seed([3u8; 32]);
        let mut r = sample(&id);
        r.as_map_mut()
            .insert("extension".into(), json!({"b": 1, "a": "é"}));
        r.resign(&id).expect("resign");
        assert!(r.verify().is_ok());
        r.as_map_mut()["extension"]["b"] = 2.into();
        assert_eq!(r.verify(), Err(VerifyError::Signature));
    }

    #[test]
    fn signing_refuses_members_with_no_canonical_form() {
        let id = Identity::from_seed([4u8; 32]);
        for bad in [json!(1.5), json!(1u64 << 53), json!({"deep": [0.25]})] {
            let mut r = sample(&id);
            r.as_map_mut().insert("extension".into(), bad.clone());
            assert!(r.resign(&id).is_err(), "{bad} was signed");
            // Nothing was signed: no signature over other (empty) bytes is left.
            assert!(!r.as_map().contains_key("signature"), "{bad}");
        }
    }
}
