//! Hand-offs: a busy node's signed word that a job a requester gave it was run
//! by another peer (swarm mode, decision 0053).
//!
//! A requester accepts a receipt only from the executor it talked to. When that
//! executor is busy and an idle peer steals the job from its queue, the receipt
//! is signed by the thief; the busy node sends it back with a hand-off naming the
//! job, itself (`from`, with its public key), the thief (`to`), the requester and
//! the time, signed by the busy node over `plasm-handoff-v1\n` and the RFC 8785
//! form of every other member. The requester checks that `from` is the peer it
//! talked to, that the hand-off names its job and itself, and that `to` signed
//! the receipt (whose `placement.stolen_from` names the busy node).
//!
//! The form is closed: exactly the members below, each of its type, so no
//! member is ever read one way by one verifier and another way by another.
//! The text is read strictly (a duplicate member is refused) and bounded.

use crate::identity::{Identity, peer_id_matches};
use crate::jcs;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

/// The `version` of hand-offs this release signs.
pub const HANDOFF_VERSION: &str = "plasm.handoff/v1";
/// Domain separation prefix of a hand-off's signed bytes.
pub const HANDOFF_PREFIX: &[u8] = b"plasm-handoff-v1\n";
/// Largest hand-off text read.
pub const MAX_HANDOFF_BYTES: usize = 2048;

/// Why a hand-off was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// Not a hand-off of this form: too long, not strict JSON, a member missing,
    /// extra or of the wrong type.
    #[error("malformed hand-off: {0}")]
    Malformed(String),
    /// No canonical form (cannot happen for the closed form; kept for the signer).
    #[error("hand-off is not canonicalisable: {0}")]
    Canonical(#[from] jcs::CanonError),
    /// `from.public_key` is not a valid Ed25519 key.
    #[error("from.public_key is not a valid Ed25519 public key")]
    PublicKey,
    /// `from.peer_id` is not the peer id of `from.public_key`.
    #[error("from.peer_id does not match from.public_key")]
    PeerId,
    /// The signature does not verify.
    #[error("the hand-off's signature does not verify")]
    Signature,
}

/// What a verified hand-off says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOff {
    /// The job.
    pub job_id: String,
    /// The busy node that signed it.
    pub from: String,
    /// The peer that ran the job (signed its receipt).
    pub to: String,
    /// The requester it is addressed to.
    pub requester: String,
    /// When it was signed (RFC 3339).
    pub at: String,
}

/// A hand-off document, signed or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff(Value);

const MEMBERS: [&str; 7] = [
    "version",
    "job_id",
    "from",
    "to",
    "requester",
    "at",
    "signature",
];

impl HandoffError {
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

impl Handoff {
    /// Signs a hand-off of `job_id` to `to` for `requester`, as `identity`.
    pub fn sign(
        job_id: &str,
        to: &str,
        requester: &str,
        identity: &Identity,
    ) -> Result<Self, HandoffError> {
        Self::sign_at(job_id, to, requester, &crate::time::now_rfc3339(), identity)
    }

    /// [`Self::sign`] at a given time (test vectors are deterministic).
    pub fn sign_at(
        job_id: &str,
        to: &str,
        requester: &str,
        at: &str,
        identity: &Identity,
    ) -> Result<Self, HandoffError> {
        let mut doc = json!({
            "version": HANDOFF_VERSION,
            "job_id": job_id,
            "from": {
                "peer_id": identity.peer_id().to_string(),
                "public_key": identity.public_key_b64(),
            },
            "to": to,
            "requester": requester,
            "at": at,
        });
        let mut bytes = HANDOFF_PREFIX.to_vec();
        bytes.extend(jcs::canonicalize(&doc)?);
        let sig = B64.encode(identity.sign(&bytes));
        if let Some(m) = doc.as_object_mut() {
            m.insert("signature".into(), sig.into());
        }
        Ok(Self(doc))
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        self.0.to_string()
    }

    /// The JSON value.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The bytes the signature covers: the prefix and the canonical form without `signature`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, HandoffError> {
        let m = self
            .0
            .as_object()
            .ok_or_else(|| HandoffError::Malformed("not an object".into()))?;
        let mut bytes = HANDOFF_PREFIX.to_vec();
        bytes.extend(jcs::canonicalize_without(m, "signature")?);
        Ok(bytes)
    }

    /// Reads a hand-off strictly (bounded, no duplicate members); not verified yet.
    pub fn from_json(text: &str) -> Result<Self, HandoffError> {
        if text.len() > MAX_HANDOFF_BYTES {
            return Err(HandoffError::Malformed(format!(
                "{} bytes, over {MAX_HANDOFF_BYTES}",
                text.len()
            )));
        }
        jcs::parse_strict(text)
            .map(Self)
            .map_err(|e| HandoffError::Malformed(e.to_string()))
    }

    /// Checks the closed form, the key, the peer id and the signature, in that order.
    pub fn verify(&self) -> Result<HandedOff, HandoffError> {
        let bad = |m: &str| HandoffError::Malformed(m.to_owned());
        let m = self.0.as_object().ok_or_else(|| bad("not an object"))?;
        if m.len() != MEMBERS.len() || !MEMBERS.iter().all(|k| m.contains_key(*k)) {
            return Err(bad(&format!("exactly the members {MEMBERS:?}")));
        }
        let text = |k: &str, max: usize| -> Result<String, HandoffError> {
            m.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= max)
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("{k} is a string of 1 to {max} bytes")))
        };
        if text("version", 32)? != HANDOFF_VERSION {
            return Err(bad(&format!("version is {HANDOFF_VERSION}")));
        }
        let from = m
            .get("from")
            .and_then(Value::as_object)
            .filter(|f| f.len() == 2)
            .ok_or_else(|| bad("from is {peer_id, public_key}"))?;
        let field = |k: &str| {
            from.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("from.{k} is a string")))
        };
        let (peer_id, public_key) = (field("peer_id")?, field("public_key")?);
        let handed = HandedOff {
            job_id: text("job_id", 64)?,
            from: peer_id.to_owned(),
            to: text("to", 64)?,
            requester: text("requester", 64)?,
            at: text("at", 64)?,
        };
        let pk: [u8; 32] = B64
            .decode(public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("from.public_key is base64 of 32 bytes"))?;
        let sig: [u8; 64] = B64
            .decode(text("signature", 88)?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("signature is base64 of 64 bytes"))?;
        let mut bytes = HANDOFF_PREFIX.to_vec();
        bytes.extend(jcs::canonicalize_without(m, "signature")?);
        let vk = VerifyingKey::from_bytes(&pk).map_err(|_| HandoffError::PublicKey)?;
        if !peer_id_matches(peer_id, &pk) {
            return Err(HandoffError::PeerId);
        }
        vk.verify_strict(&bytes, &Signature::from_bytes(&sig))
            .map_err(|_| HandoffError::Signature)?;
        Ok(handed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_hand_off_verifies_and_any_change_breaks_it() {
        let busy = Identity::from_seed([7; 32]);
        let h =
            Handoff::sign(&"a".repeat(64), "12D3KooWthief", "12D3KooWreq", &busy).expect("sign");
        let back = Handoff::from_json(&h.to_json()).expect("reads");
        let v = back.verify().expect("verifies");
        assert_eq!(v.from, busy.peer_id().to_string());
        assert_eq!(
            (v.to.as_str(), v.requester.as_str()),
            ("12D3KooWthief", "12D3KooWreq")
        );
        for (k, val) in [
            ("job_id", json!("b".repeat(64))),
            ("to", json!("12D3KooWother")),
            ("requester", json!("12D3KooWother")),
            ("at", json!("2026-01-01T00:00:00Z")),
        ] {
            let mut t = h.0.clone();
            t[k] = val;
            assert_eq!(Handoff(t).verify(), Err(HandoffError::Signature), "{k}");
        }
        // Another key signing in the busy node's name.
        let other = Identity::from_seed([8; 32]);
        let mut t = h.0.clone();
        t["from"]["public_key"] = json!(other.public_key_b64());
        assert_eq!(Handoff(t).verify(), Err(HandoffError::PeerId));
        // An extra member, a missing one, a duplicate, an oversized text.
        let mut t = h.0.clone();
        t["note"] = json!("x");
        assert!(matches!(
            Handoff(t).verify(),
            Err(HandoffError::Malformed(_))
        ));
        let mut t = h.0.clone();
        t.as_object_mut().map(|m| m.remove("at"));
        assert!(matches!(
            Handoff(t).verify(),
            Err(HandoffError::Malformed(_))
        ));
        let dup = h.to_json().replacen('{', "{\"to\":\"12D3KooWx\",", 1);
        assert!(matches!(
            Handoff::from_json(&dup),
            Err(HandoffError::Malformed(_))
        ));
        let long = format!("{}{}", " ".repeat(MAX_HANDOFF_BYTES), h.to_json());
        assert!(matches!(
            Handoff::from_json(&long),
            Err(HandoffError::Malformed(_))
        ));
        let mut t = h.0.clone();
        t["from"]["extra"] = json!(1);
        assert!(matches!(
            Handoff(t).verify(),
            Err(HandoffError::Malformed(_))
        ));
    }
}
