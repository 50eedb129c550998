//! The signed records that travel beside receipts (decisions 0056, 0057): a
//! submitter's acceptance of one receipt, a submitter's publication of its
//! manifest (what makes a job auditable), and an auditor's verdict.
//!
//! Each is a closed form like a hand-off: exactly its members, each of its
//! type, read strictly (a duplicate member is refused) and bounded, signed by
//! the peer named in its signer member over a domain prefix and the RFC 8785
//! form of every other member. One reader serves all three so a check added to
//! one is never forgotten in another.

use crate::identity::{Identity, peer_id_matches};
use crate::jcs;
use crate::receipt::Receipt;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Why a signed record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// Not a record of this form: too long, not strict JSON, a member missing,
    /// extra or of the wrong type.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// No canonical form.
    #[error("record is not canonicalisable: {0}")]
    Canonical(#[from] jcs::CanonError),
    /// The signer's public key is not a valid Ed25519 key.
    #[error("the signer's public_key is not a valid Ed25519 public key")]
    PublicKey,
    /// The signer's peer id is not the peer id of its public key.
    #[error("the signer's peer_id does not match its public_key")]
    PeerId,
    /// The signature does not verify.
    #[error("the record's signature does not verify")]
    Signature,
}

impl SignedError {
    /// The check that failed, as the test vectors name it.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Canonical(_) => "canonical",
            Self::PublicKey => "public_key",
            Self::PeerId => "peer_id",
            Self::Signature => "signature",
        }
    }
}

/// One closed form.
#[derive(Debug, Clone, Copy)]
pub struct Form {
    /// The `version` member.
    pub version: &'static str,
    /// Domain separation prefix of the signed bytes.
    pub prefix: &'static [u8],
    /// Every member, `version`, the signer and `signature` included.
    pub members: &'static [&'static str],
    /// The member `{peer_id, public_key}` naming the signer.
    pub signer: &'static str,
    /// Largest text read.
    pub max_bytes: usize,
}

/// A submitter's word that it accepted one receipt of its job.
pub const ACCEPTANCE: Form = Form {
    version: "plasm.acceptance/v1",
    prefix: b"plasm-acceptance-v1\n",
    members: &[
        "version",
        "job_id",
        "receipt_sha256",
        "executor",
        "requester",
        "at",
        "signature",
    ],
    signer: "requester",
    max_bytes: 2048,
};

/// A submitter's publication of its job's manifest: the job may be audited.
pub const PUBLICATION: Form = Form {
    version: "plasm.publication/v1",
    prefix: b"plasm-publication-v1\n",
    members: &[
        "version",
        "job_id",
        "manifest",
        "submitter",
        "at",
        "signature",
    ],
    signer: "submitter",
    max_bytes: 96 * 1024,
};

/// An auditor's verdict on one receipt, reached by running the job again.
pub const AUDIT: Form = Form {
    version: "plasm.audit/v1",
    prefix: b"plasm-audit-v1\n",
    members: &[
        "version",
        "job_id",
        "receipt_sha256",
        "executor",
        "auditor",
        "verdict",
        "differs",
        "reason",
        "at",
        "signature",
    ],
    signer: "auditor",
    max_bytes: 4096,
};

/// The forms a replica holder takes, by `version`.
pub const FORMS: [Form; 3] = [ACCEPTANCE, PUBLICATION, AUDIT];

/// A verified record: its members and its signer.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRecord {
    /// The form it was read as.
    pub form: &'static str,
    /// Every member, `signature` included.
    pub members: Map<String, Value>,
    /// The signer's peer id.
    pub signer: String,
}

impl SignedRecord {
    /// A string member (checked present by the form's reader).
    pub fn str(&self, key: &str) -> &str {
        self.members.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        Value::Object(self.members.clone()).to_string()
    }
}

/// The hex SHA-256 of a receipt's RFC 8785 form, signature included: what an
/// acceptance or an audit names.
pub fn receipt_sha256(receipt: &Receipt) -> Result<String, jcs::CanonError> {
    let bytes = jcs::canonicalize(&Value::Object(receipt.as_map().clone()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Signs `members` (without version, signer or signature) as `identity`.
pub fn sign(
    form: &Form,
    mut members: Map<String, Value>,
    identity: &Identity,
) -> Result<SignedRecord, SignedError> {
    members.insert("version".into(), form.version.into());
    members.insert(
        form.signer.into(),
        json!({"peer_id": identity.peer_id().to_string(), "public_key": identity.public_key_b64()}),
    );
    let mut bytes = form.prefix.to_vec();
    bytes.extend(jcs::canonicalize(&Value::Object(members.clone()))?);
    members.insert("signature".into(), B64.encode(identity.sign(&bytes)).into());
    let record = read(form, &Value::Object(members).to_string())?;
    Ok(record)
}

fn bad(m: impl Into<String>) -> SignedError {
    SignedError::Malformed(m.into())
}

/// Reads `text` as `form`: bounded, strict, closed, typed, signed.
pub fn read(form: &Form, text: &str) -> Result<SignedRecord, SignedError> {
    if text.len() > form.max_bytes {
        return Err(bad(format!(
            "{} bytes, over {} for {}",
            text.len(),
            form.max_bytes,
            form.version
        )));
    }
    let value = jcs::parse_strict(text).map_err(|e| bad(e.to_string()))?;
    let Value::Object(m) = value else {
        return Err(bad("not an object"));
    };
    if m.len() != form.members.len() || !form.members.iter().all(|k| m.contains_key(*k)) {
        return Err(bad(format!("exactly the members {:?}", form.members)));
    }
    if m.get("version").and_then(Value::as_str) != Some(form.version) {
        return Err(bad(format!("version is {}", form.version)));
    }
    check_members(form, &m)?;
    let signer = m
        .get(form.signer)
        .and_then(Value::as_object)
        .filter(|s| s.len() == 2)
        .ok_or_else(|| bad(format!("{} is {{peer_id, public_key}}", form.signer)))?;
    let field = |k: &str| {
        signer
            .get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{}.{k} is a string", form.signer)))
    };
    let (peer_id, public_key) = (field("peer_id")?, field("public_key")?);
    let pk: [u8; 32] = B64
        .decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("{}.public_key is base64 of 32 bytes", form.signer)))?;
    let sig: [u8; 64] = m
        .get("signature")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("signature is base64 of 64 bytes"))?;
    let mut bytes = form.prefix.to_vec();
    bytes.extend(jcs::canonicalize_without(&m, "signature")?);
    let vk = VerifyingKey::from_bytes(&pk).map_err(|_| SignedError::PublicKey)?;
    if !peer_id_matches(peer_id, &pk) {
        return Err(SignedError::PeerId);
    }
    vk.verify_strict(&bytes, &Signature::from_bytes(&sig))
        .map_err(|_| SignedError::Signature)?;
    Ok(SignedRecord {
        form: form.version,
        signer: peer_id.to_owned(),
        members: m,
    })
}

/// Reads `text` as whichever form its `version` names.
pub fn read_any(text: &str) -> Result<SignedRecord, SignedError> {
    let max = FORMS.iter().map(|f| f.max_bytes).max().unwrap_or(0);
    if text.len() > max {
        return Err(bad(format!("{} bytes, over {max}", text.len())));
    }
    let version = jcs::parse_strict(text)
        .ok()
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| bad("no version"))?;
    let form = FORMS
        .iter()
        .find(|f| f.version == version)
        .ok_or_else(|| bad(format!("unknown version {version}")))?;
    read(form, text)
}

fn is_hex64(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn is_text(v: Option<&Value>, max: usize) -> bool {
    v.and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty() && s.len() <= max)
}

/// Each form's member types beyond the common ones.
fn check_members(form: &Form, m: &Map<String, Value>) -> Result<(), SignedError> {
    if !is_hex64(m.get("job_id")) {
        return Err(bad("job_id is 64 lowercase hex digits"));
    }
    if !is_text(m.get("at"), 64)
        || m.get("at")
            .and_then(Value::as_str)
            .and_then(crate::time::parse_rfc3339)
            .is_none()
    {
        return Err(bad("at is an RFC 3339 time"));
    }
    match form.version {
        "plasm.acceptance/v1" => {
            if !is_hex64(m.get("receipt_sha256")) {
                return Err(bad("receipt_sha256 is 64 lowercase hex digits"));
            }
            if !is_text(m.get("executor"), 64) {
                return Err(bad("executor is a peer id"));
            }
        }
        "plasm.publication/v1" => {
            let manifest = m
                .get("manifest")
                .filter(|v| v.is_object())
                .ok_or_else(|| bad("manifest is an object"))?;
            let parsed = crate::manifest::Manifest::from_value(manifest.clone())
                .map_err(|e| bad(format!("manifest: {e}")))?;
            if Some(parsed.job_id()) != m.get("job_id").and_then(Value::as_str) {
                return Err(bad("job_id is not the manifest's job id"));
            }
        }
        "plasm.audit/v1" => {
            if !is_hex64(m.get("receipt_sha256")) {
                return Err(bad("receipt_sha256 is 64 lowercase hex digits"));
            }
            if !is_text(m.get("executor"), 64) {
                return Err(bad("executor is a peer id"));
            }
            let verdict = m.get("verdict").and_then(Value::as_str).unwrap_or("");
            if !matches!(verdict, "confirmed" | "mismatch" | "not_auditable") {
                return Err(bad("verdict is confirmed, mismatch or not_auditable"));
            }
            let differs = m
                .get("differs")
                .and_then(Value::as_array)
                .filter(|d| d.len() <= 16)
                .ok_or_else(|| bad("differs is an array of at most 16 fields"))?;
            if !differs.iter().all(|d| is_text(Some(d), 32)) {
                return Err(bad("differs names fields"));
            }
            if (verdict == "mismatch") == differs.is_empty() {
                return Err(bad(
                    "a mismatch names the fields that differ, and only a mismatch",
                ));
            }
            if m.get("reason")
                .and_then(Value::as_str)
                .is_none_or(|r| r.len() > 512)
            {
                return Err(bad("reason is a string of at most 512 bytes"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Signs an acceptance of `receipt` for its job as `identity` (the submitter).
pub fn accept(receipt: &Receipt, identity: &Identity) -> Result<SignedRecord, SignedError> {
    let executor = receipt
        .as_map()
        .get("executor")
        .and_then(|e| e.get("peer_id"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut m = Map::new();
    m.insert(
        "job_id".into(),
        receipt.str_field("job_id").unwrap_or("").into(),
    );
    m.insert("receipt_sha256".into(), receipt_sha256(receipt)?.into());
    m.insert("executor".into(), executor.into());
    m.insert("at".into(), crate::time::now_rfc3339().into());
    sign(&ACCEPTANCE, m, identity)
}

/// Signs a publication of `manifest` as `identity` (the submitter).
pub fn publish(
    manifest: &crate::manifest::Manifest,
    identity: &Identity,
) -> Result<SignedRecord, SignedError> {
    let mut m = Map::new();
    m.insert("job_id".into(), manifest.job_id().into());
    m.insert("manifest".into(), manifest.as_value().clone());
    m.insert("at".into(), crate::time::now_rfc3339().into());
    sign(&PUBLICATION, m, identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acceptance_verifies_and_any_change_breaks_it() {
        let submitter = Identity::from_seed([3; 32]);
        let executor = Identity::from_seed([4; 32]);
        let receipt = crate::receipt::tests::sample(&executor);
        let a = accept(&receipt, &submitter).expect("sign");
        let back = read_any(&a.to_json()).expect("verifies");
        assert_eq!(back.signer, submitter.peer_id().to_string());
        assert_eq!(back.str("executor"), executor.peer_id().to_string());
        assert_eq!(
            back.str("receipt_sha256"),
            receipt_sha256(&receipt).expect("d")
        );
        for (k, v) in [
            ("job_id", json!("2".repeat(64))),
            ("receipt_sha256", json!("f".repeat(64))),
            ("executor", json!("12D3KooWother")),
            ("at", json!("2027-01-01T00:00:00Z")),
        ] {
            let mut m = a.members.clone();
            m.insert(k.into(), v);
            let e = read_any(&Value::Object(m).to_string()).expect_err(k);
            assert_eq!(e.check(), "signature", "{k}");
        }
        let mut m = a.members.clone();
        m.insert("extra".into(), json!(1));
        assert_eq!(
            read_any(&Value::Object(m).to_string())
                .map(|_| ())
                .map_err(|e| e.check()),
            Err("malformed")
        );
        let dup = a
            .to_json()
            .replacen('{', "{\"at\":\"2026-01-01T00:00:00Z\",", 1);
        assert_eq!(
            read_any(&dup).map_err(|e| e.check()).err(),
            Some("malformed")
        );
        let other = Identity::from_seed([5; 32]);
        let mut m = a.members.clone();
        m.insert(
            "requester".into(),
            json!({"peer_id": other.peer_id().to_string(), "public_key": submitter.public_key_b64()}),
        );
        assert_eq!(
            read_any(&Value::Object(m).to_string())
                .map_err(|e| e.check())
                .err(),
            Some("peer_id")
        );
    }

    #[test]
    fn an_audit_names_fields_only_on_a_mismatch() {
        let auditor = Identity::from_seed([6; 32]);
        let base = |verdict: &str, differs: Value| {
            let mut m = Map::new();
            m.insert("job_id".into(), "1".repeat(64).into());
            m.insert("receipt_sha256".into(), "2".repeat(64).into());
            m.insert("executor".into(), "12D3KooWexec".into());
            m.insert("verdict".into(), verdict.into());
            m.insert("differs".into(), differs);
            m.insert("reason".into(), "".into());
            m.insert("at".into(), "2026-12-07T00:00:00Z".into());
            sign(&AUDIT, m, &auditor)
        };
        assert!(base("confirmed", json!([])).is_ok());
        assert!(base("mismatch", json!(["output_sha256"])).is_ok());
        assert!(base("mismatch", json!([])).is_err());
        assert!(base("confirmed", json!(["output_sha256"])).is_err());
        assert!(base("maybe", json!([])).is_err());
    }

    #[test]
    fn a_publication_is_bound_to_its_manifest() {
        let submitter = Identity::from_seed([3; 32]);
        let manifest = crate::manifest::Manifest::from_value(json!({
            "version": "plasm.job/v1",
            "module": {"sha256": "a".repeat(64), "size": 10},
            "nonce": "0123456789abcdef0123",
            "created_at": "2026-11-20T12:00:00Z"
        }))
        .expect("manifest");
        let p = publish(&manifest, &submitter).expect("sign");
        assert_eq!(
            read_any(&p.to_json()).expect("ok").str("job_id"),
            manifest.job_id()
        );
        let mut m = p.members.clone();
        m.insert("job_id".into(), "1".repeat(64).into());
        assert_eq!(
            read_any(&Value::Object(m).to_string())
                .map_err(|e| e.check())
                .err(),
            Some("malformed")
        );
    }
}
