//! Signed bootstrap lists (decision 0055): where a node finds its first peers
//! when the configuration names none it can reach.
//!
//! A list is a closed JSON document, `plasm.bootstrap/v1`:
//! `{version, publisher, issued_at, expires_at, peers: [{peer_id, addrs}], signature}`,
//! signed by a publisher's Ed25519 key over `plasm-bootstrap-v1\n` and the RFC 8785
//! form of every member but `signature`. A node uses a list only when its
//! publisher is one the configuration trusts (`bootstrap_publishers`), its
//! signature verifies and now lies in `[issued_at, expires_at)`. Anything else is
//! refused with an error naming the failed check ([`ListError::check`]).
//!
//! The form is closed (exactly these members, each peer exactly `{peer_id,
//! addrs}`), read strictly (a duplicate member is refused) and bounded: at most
//! [`MAX_LIST_BYTES`] of text, [`MAX_LIST_PEERS`] peers of at most
//! [`MAX_PEER_ADDRS`] addresses, each a multiaddr ending in `/p2p/<that peer id>`.
//!
//! When neither the configured addresses nor the list reach anyone, the node
//! falls back to the peers it has seen before ([`cache`]).

pub mod cache;

use crate::identity::Identity;
use crate::jcs;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `version` of lists this release reads and signs.
pub const LIST_VERSION: &str = "plasm.bootstrap/v1";
/// Domain separation prefix of a list's signed bytes.
pub const LIST_PREFIX: &[u8] = b"plasm-bootstrap-v1\n";
/// Largest list text read.
pub const MAX_LIST_BYTES: usize = 64 * 1024;
/// Most peers in a list.
pub const MAX_LIST_PEERS: usize = 64;
/// Most addresses of one peer.
pub const MAX_PEER_ADDRS: usize = 8;
/// Longest address text.
pub const MAX_ADDR_BYTES: usize = 256;
/// Longest validity a signer gives a list, in days.
pub const MAX_VALID_DAYS: u32 = 3650;

const MEMBERS: [&str; 6] = [
    "version",
    "publisher",
    "issued_at",
    "expires_at",
    "peers",
    "signature",
];

/// Why a list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// Not a list of this form: too long, not strict JSON, a member missing,
    /// extra, of the wrong type or out of bounds.
    #[error("malformed bootstrap list: {0}")]
    Malformed(String),
    /// No `signature` member.
    #[error("the bootstrap list is unsigned")]
    Unsigned,
    /// The publisher key is not one of `bootstrap_publishers`.
    #[error("the bootstrap list's publisher {0} is not a trusted publisher (bootstrap_publishers)")]
    Untrusted(String),
    /// The signature does not verify with the publisher key.
    #[error("the bootstrap list's signature does not verify")]
    Signature,
    /// `issued_at` is in the future.
    #[error("the bootstrap list is not valid before {0}")]
    NotYetValid(String),
    /// `expires_at` is past.
    #[error("the bootstrap list expired at {0}")]
    Expired(String),
    /// No canonical form (cannot happen for the closed form; kept for the signer).
    #[error("the bootstrap list is not canonicalisable: {0}")]
    Canonical(#[from] jcs::CanonError),
}

impl ListError {
    /// The check that failed.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unsigned => "unsigned",
            Self::Untrusted(_) => "untrusted",
            Self::Signature => "signature",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::Expired(_) => "expired",
            Self::Canonical(_) => "canonical",
        }
    }
}

/// A peer of a list: its id and the addresses it is dialed at (each ending in `/p2p/<peer_id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPeer {
    /// The peer.
    pub peer_id: PeerId,
    /// Its addresses.
    pub addrs: Vec<Multiaddr>,
}

/// What a verified list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedList {
    /// The publisher key (base64).
    pub publisher: String,
    /// Valid from.
    pub issued_at: OffsetDateTime,
    /// Valid until (excluded).
    pub expires_at: OffsetDateTime,
    /// The peers.
    pub peers: Vec<ListedPeer>,
}

impl VerifiedList {
    /// Every address of every peer, in list order.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.peers.iter().flat_map(|p| p.addrs.clone()).collect()
    }
}

fn bad(m: impl Into<String>) -> ListError {
    ListError::Malformed(m.into())
}

/// Decodes a base64 Ed25519 public key (32 bytes, a valid curve point).
pub fn parse_publisher_key(b64: &str) -> Option<[u8; 32]> {
    let pk: [u8; 32] = B64.decode(b64).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&pk).ok()?;
    Some(pk)
}

fn parse_time(m: &Map<String, Value>, k: &str) -> Result<OffsetDateTime, ListError> {
    m.get(k)
        .and_then(Value::as_str)
        .filter(|s| s.len() <= 64)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or_else(|| bad(format!("{k} is an RFC 3339 time")))
}

/// Reads the `peers` member: 1 to [`MAX_LIST_PEERS`] distinct peers, each exactly
/// `{peer_id, addrs}` with 1 to [`MAX_PEER_ADDRS`] distinct multiaddrs ending in
/// `/p2p/<peer_id>`.
pub fn parse_peers(v: &Value) -> Result<Vec<ListedPeer>, ListError> {
    let list = v
        .as_array()
        .filter(|l| !l.is_empty() && l.len() <= MAX_LIST_PEERS)
        .ok_or_else(|| bad(format!("peers is an array of 1 to {MAX_LIST_PEERS} peers")))?;
    let mut out: Vec<ListedPeer> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let p = p
            .as_object()
            .filter(|p| p.len() == 2 && p.contains_key("peer_id") && p.contains_key("addrs"))
            .ok_or_else(|| bad(format!("peers[{i}] is exactly {{peer_id, addrs}}")))?;
        let peer_id: PeerId = p["peer_id"]
            .as_str()
            .filter(|s| s.len() <= 128)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("peers[{i}].peer_id is a peer id")))?;
        if out.iter().any(|o| o.peer_id == peer_id) {
            return Err(bad(format!("peers[{i}].peer_id {peer_id} is listed twice")));
        }
        let addrs = p["addrs"]
            .as_array()
            .filter(|a| !a.is_empty() && a.len() <= MAX_PEER_ADDRS)
            .ok_or_else(|| {
                bad(format!(
                    "peers[{i}].addrs is an array of 1 to {MAX_PEER_ADDRS} addresses"
                ))
            })?;
        let mut parsed: Vec<Multiaddr> = Vec::with_capacity(addrs.len());
        for (j, a) in addrs.iter().enumerate() {
            let addr: Multiaddr = a
                .as_str()
                .filter(|s| s.len() <= MAX_ADDR_BYTES)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "peers[{i}].addrs[{j}] is a multiaddr of at most {MAX_ADDR_BYTES} bytes"
                    ))
                })?;
            if !matches!(addr.iter().last(), Some(Protocol::P2p(id)) if id == peer_id) {
                return Err(bad(format!("peers[{i}].addrs[{j}] ends in /p2p/{peer_id}")));
            }
            if parsed.contains(&addr) {
                return Err(bad(format!("peers[{i}].addrs[{j}] is listed twice")));
            }
            parsed.push(addr);
        }
        out.push(ListedPeer {
            peer_id,
            addrs: parsed,
        });
    }
    Ok(out)
}

/// The JSON form of peers (what [`parse_peers`] reads).
pub fn peers_json(peers: &[ListedPeer]) -> Value {
    Value::Array(
        peers
            .iter()
            .map(|p| {
                json!({
                    "peer_id": p.peer_id.to_string(),
                    "addrs": p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn read_strict(text: &str) -> Result<Map<String, Value>, ListError> {
    if text.len() > MAX_LIST_BYTES {
        return Err(bad(format!("{} bytes, over {MAX_LIST_BYTES}", text.len())));
    }
    match jcs::parse_strict(text).map_err(|e| bad(e.to_string()))? {
        Value::Object(m) => Ok(m),
        _ => Err(bad("not an object")),
    }
}

/// Verifies a list's text against the trusted publisher keys (base64) at `now`:
/// its form, its signature, its publisher and its validity, returning its peers
/// or the failed check. Checks run in this order: form (`malformed`), signature
/// present (`unsigned`), publisher trusted (`untrusted`), signature
/// (`signature`), then `not_yet_valid` and `expired`, so that a tampered time
/// is reported as a bad signature.
pub fn verify(
    text: &str,
    trusted: &[String],
    now: OffsetDateTime,
) -> Result<VerifiedList, ListError> {
    let m = read_strict(text)?;
    let signed = m.contains_key("signature");
    let expected = if signed { 6 } else { 5 };
    if m.len() != expected || !MEMBERS[..5].iter().all(|k| m.contains_key(*k)) {
        return Err(bad(format!("exactly the members {MEMBERS:?}")));
    }
    if m["version"].as_str() != Some(LIST_VERSION) {
        return Err(bad(format!("version is {LIST_VERSION}")));
    }
    let publisher = m["publisher"]
        .as_str()
        .filter(|s| s.len() <= 64)
        .ok_or_else(|| bad("publisher is a base64 Ed25519 public key"))?;
    let pk = parse_publisher_key(publisher)
        .ok_or_else(|| bad("publisher is a base64 Ed25519 public key"))?;
    let issued_at = parse_time(&m, "issued_at")?;
    let expires_at = parse_time(&m, "expires_at")?;
    if expires_at <= issued_at {
        return Err(bad("expires_at is after issued_at"));
    }
    let peers = parse_peers(&m["peers"])?;
    if !signed {
        return Err(ListError::Unsigned);
    }
    let sig: [u8; 64] = m["signature"]
        .as_str()
        .filter(|s| s.len() <= 88)
        .and_then(|s| B64.decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("signature is base64 of 64 bytes"))?;
    if !trusted
        .iter()
        .any(|t| parse_publisher_key(t).is_some_and(|t| t == pk))
    {
        return Err(ListError::Untrusted(publisher.to_owned()));
    }
    let mut bytes = LIST_PREFIX.to_vec();
    bytes.extend(jcs::canonicalize_without(&m, "signature")?);
    let vk = VerifyingKey::from_bytes(&pk).map_err(|_| bad("publisher is not a valid key"))?;
    vk.verify_strict(&bytes, &Signature::from_bytes(&sig))
        .map_err(|_| ListError::Signature)?;
    if now < issued_at {
        return Err(ListError::NotYetValid(crate::time::format_rfc3339(
            issued_at,
        )));
    }
    if now >= expires_at {
        return Err(ListError::Expired(crate::time::format_rfc3339(expires_at)));
    }
    Ok(VerifiedList {
        publisher: publisher.to_owned(),
        issued_at,
        expires_at,
        peers,
    })
}

/// Reads a list file, at most [`MAX_LIST_BYTES`] and one byte more (so that
/// [`verify`] refuses a longer one as `malformed`); `None` when it does not exist.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    f.take(MAX_LIST_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    Ok(Some(text))
}

/// The configured list's addresses at start: those of a list that verifies;
/// none when no list is configured, its file is absent (logged, no error) or it is
/// refused (logged as an error naming the failed check).
pub fn configured_addrs(path: Option<&std::path::Path>, trusted: &[String]) -> Vec<Multiaddr> {
    let Some(path) = path else {
        return Vec::new();
    };
    let shown = path.display();
    match read_file(path) {
        Ok(None) => {
            tracing::info!(path = %shown, "no bootstrap list at this path");
            Vec::new()
        }
        Err(e) => {
            tracing::error!(path = %shown, error = %e, "cannot read the bootstrap list; not used");
            Vec::new()
        }
        Ok(Some(text)) => match verify(&text, trusted, OffsetDateTime::now_utc()) {
            Ok(list) => {
                tracing::info!(
                    path = %shown,
                    peers = list.peers.len(),
                    publisher = list.publisher,
                    expires_at = %crate::time::format_rfc3339(list.expires_at),
                    "bootstrap list verified"
                );
                list.addrs()
            }
            Err(e) => {
                tracing::error!(path = %shown, check = e.check(), error = %e, "bootstrap list refused; not used");
                Vec::new()
            }
        },
    }
}

/// Reads the peers of a list to sign: a JSON object with `peers`, and optionally
/// the other members of a list (`version`, `publisher`, `issued_at`,
/// `expires_at`, `signature`: an older list being re-signed), which are replaced.
pub fn unsigned_peers(text: &str) -> Result<Vec<ListedPeer>, ListError> {
    let m = read_strict(text)?;
    if let Some(k) = m.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(bad(format!("unknown member {k:?}")));
    }
    parse_peers(m.get("peers").ok_or_else(|| bad("no peers member"))?)
}

/// Signs a list of `peers` as `publisher`, valid from `issued_at` for `days` days;
/// returns its JSON text.
pub fn sign(
    peers: &[ListedPeer],
    publisher: &Identity,
    issued_at: OffsetDateTime,
    days: u32,
) -> Result<String, ListError> {
    if peers.is_empty() || peers.len() > MAX_LIST_PEERS {
        return Err(bad(format!("1 to {MAX_LIST_PEERS} peers")));
    }
    if !(1..=MAX_VALID_DAYS).contains(&days) {
        return Err(bad(format!("valid for 1 to {MAX_VALID_DAYS} days")));
    }
    let issued_at = issued_at
        .replace_nanosecond(0)
        .map_err(|e| bad(e.to_string()))?;
    let expires_at = issued_at + time::Duration::days(i64::from(days));
    let mut doc = json!({
        "version": LIST_VERSION,
        "publisher": publisher.public_key_b64(),
        "issued_at": crate::time::format_rfc3339(issued_at),
        "expires_at": crate::time::format_rfc3339(expires_at),
        "peers": peers_json(peers),
    });
    let mut bytes = LIST_PREFIX.to_vec();
    bytes.extend(jcs::canonicalize(&doc)?);
    let sig = B64.encode(publisher.sign(&bytes));
    if let Some(m) = doc.as_object_mut() {
        m.insert("signature".into(), sig.into());
    }
    let text = format!("{doc:#}\n");
    if text.len() > MAX_LIST_BYTES {
        return Err(bad(format!(
            "the signed list is {} bytes, over {MAX_LIST_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("time")
    }

    fn peer(seed: u8, n: usize) -> ListedPeer {
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
    }

    const NOW: &str = "2026-06-01T00:00:00Z";

    /// A change made to a signed list.
    type Tamper = Box<dyn Fn(&mut Value)>;

    fn signed(publisher: &Identity) -> String {
        sign(
            &[peer(1, 2), peer(2, 1)],
            publisher,
            t("2026-05-01T00:00:00Z"),
            90,
        )
        .expect("sign")
    }

    fn trusted(id: &Identity) -> Vec<String> {
        vec![id.public_key_b64()]
    }

    fn check_of(text: &str, trust: &[String]) -> &'static str {
        match verify(text, trust, t(NOW)) {
            Ok(_) => "ok",
            Err(e) => e.check(),
        }
    }

    fn with(text: &str, f: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(text).expect("json");
        f(&mut v);
        v.to_string()
    }

    #[test]
    fn a_signed_list_verifies() {
        let p = Identity::from_seed([9; 32]);
        let text = signed(&p);
        let v = verify(&text, &trusted(&p), t(NOW)).expect("verifies");
        assert_eq!(v.peers, vec![peer(1, 2), peer(2, 1)]);
        assert_eq!(v.addrs().len(), 3);
        assert_eq!(v.publisher, p.public_key_b64());
        assert_eq!(v.expires_at, t("2026-07-30T00:00:00Z"));
        // Another trusted key besides does no harm; the list re-signs from its own text.
        let other = Identity::from_seed([10; 32]);
        let both = vec![other.public_key_b64(), p.public_key_b64()];
        assert_eq!(check_of(&text, &both), "ok");
        assert_eq!(unsigned_peers(&text).expect("peers"), v.peers);
    }

    #[test]
    fn each_field_tampered_is_refused() {
        let p = Identity::from_seed([9; 32]);
        // Two trusted publishers: a list of one claiming to be the other's is forged.
        let trust = vec![
            p.public_key_b64(),
            Identity::from_seed([10; 32]).public_key_b64(),
        ];
        let text = signed(&p);
        let other = Identity::from_seed([11; 32]);
        let cases: Vec<(&str, Tamper, &str)> = vec![
            (
                "version",
                Box::new(|v| v["version"] = json!("plasm.bootstrap/v2")),
                "malformed",
            ),
            (
                "publisher (another trusted key)",
                Box::new(|v| {
                    v["publisher"] = json!(Identity::from_seed([10; 32]).public_key_b64())
                }),
                "signature",
            ),
            (
                "issued_at",
                Box::new(|v| v["issued_at"] = json!("2026-04-01T00:00:00.000Z")),
                "signature",
            ),
            (
                "expires_at",
                Box::new(|v| v["expires_at"] = json!("2027-07-30T00:00:00.000Z")),
                "signature",
            ),
            (
                "peers (one dropped)",
                Box::new(|v| {
                    v["peers"].as_array_mut().expect("peers").pop();
                }),
                "signature",
            ),
            (
                "peers (one added)",
                Box::new(|v| {
                    v["peers"]
                        .as_array_mut()
                        .expect("peers")
                        .push(peers_json(&[peer(3, 1)])[0].clone());
                }),
                "signature",
            ),
            (
                "peers[0].peer_id",
                Box::new(|v| {
                    // Another peer's id with its own addresses: well formed, not what was signed.
                    v["peers"][0] = peers_json(&[peer(4, 2)])[0].clone();
                }),
                "signature",
            ),
            (
                "peers[0].peer_id (not matching addrs)",
                Box::new(|v| {
                    v["peers"][0]["peer_id"] =
                        json!(Identity::from_seed([4; 32]).peer_id().to_string());
                }),
                "malformed",
            ),
            (
                "peers[0].addrs",
                Box::new(|v| {
                    let id = Identity::from_seed([1; 32]).peer_id();
                    v["peers"][0]["addrs"][0] =
                        json!(format!("/ip4/203.0.113.66/tcp/4610/p2p/{id}"));
                }),
                "signature",
            ),
            (
                "peers[0].addrs (reordered)",
                Box::new(|v| {
                    v["peers"][0]["addrs"]
                        .as_array_mut()
                        .expect("addrs")
                        .reverse();
                }),
                "signature",
            ),
            (
                "signature",
                Box::new(|v| {
                    let s = v["signature"].as_str().expect("sig");
                    let mut b = B64.decode(s).expect("b64");
                    b[0] ^= 1;
                    v["signature"] = json!(B64.encode(b));
                }),
                "signature",
            ),
            (
                "signature (another key's)",
                Box::new(move |v| {
                    let theirs: Value = serde_json::from_str(&signed(&other)).expect("json");
                    v["signature"] = theirs["signature"].clone();
                }),
                "signature",
            ),
            (
                "signature (not base64)",
                Box::new(|v| v["signature"] = json!("!!")),
                "malformed",
            ),
        ];
        for (what, f, want) in cases {
            let bad = with(&text, f);
            assert_eq!(check_of(&bad, &trust), want, "{what}");
        }
        // The publisher swapped for an untrusted key.
        let bad = with(&text, |v| {
            v["publisher"] = json!(Identity::from_seed([12; 32]).public_key_b64())
        });
        assert_eq!(check_of(&bad, &trust), "untrusted");
    }

    #[test]
    fn wrong_key_expired_not_yet_valid_and_unsigned_are_refused() {
        let p = Identity::from_seed([9; 32]);
        let rogue = Identity::from_seed([13; 32]);
        // Signed by a key that is not trusted.
        let e = verify(&signed(&rogue), &trusted(&p), t(NOW)).expect_err("untrusted");
        assert_eq!(e.check(), "untrusted");
        assert!(e.to_string().contains(&rogue.public_key_b64()), "{e}");
        assert_eq!(check_of(&signed(&p), &[]), "untrusted");
        // Signed by another key while claiming the trusted publisher.
        let forged = with(&signed(&rogue), |v| {
            v["publisher"] = json!(p.public_key_b64())
        });
        assert_eq!(check_of(&forged, &trusted(&p)), "signature");
        let text = signed(&p);
        let at = |s: &str| {
            verify(&text, &trusted(&p), t(s))
                .map(drop)
                .map_err(|e| e.check())
        };
        assert_eq!(at("2026-07-30T00:00:00Z"), Err("expired"));
        assert_eq!(at("2030-01-01T00:00:00Z"), Err("expired"));
        assert_eq!(at("2026-04-30T23:59:59Z"), Err("not_yet_valid"));
        assert_eq!(at("2026-05-01T00:00:00Z"), Ok(()));
        assert_eq!(at("2026-07-29T23:59:59Z"), Ok(()));
        let unsigned = with(&text, |v| {
            v.as_object_mut().map(|m| m.remove("signature"));
        });
        assert_eq!(check_of(&unsigned, &trusted(&p)), "unsigned");
        let e = verify(&unsigned, &trusted(&p), t(NOW)).expect_err("unsigned");
        assert!(e.to_string().contains("unsigned"), "{e}");
    }

    #[test]
    fn the_form_is_closed_strict_and_bounded() {
        let p = Identity::from_seed([9; 32]);
        let trust = trusted(&p);
        let text = signed(&p);
        let malformed = |s: &str| assert_eq!(check_of(s, &trust), "malformed", "{s:.200}");
        // Extra and missing members, at the top and in a peer.
        malformed(&with(&text, |v| v["note"] = json!("x")));
        malformed(&with(&text, |v| {
            v.as_object_mut().map(|m| m.remove("expires_at"));
        }));
        malformed(&with(&text, |v| v["peers"][0]["note"] = json!("x")));
        malformed(&with(&text, |v| {
            v["peers"][0].as_object_mut().map(|m| m.remove("addrs"));
        }));
        // A duplicate member, anywhere.
        malformed(&text.replacen('{', "{\"version\":\"plasm.bootstrap/v1\",", 1));
        let id = Identity::from_seed([1; 32]).peer_id().to_string();
        malformed(&text.replacen(
            &format!("\"peer_id\": \"{id}\""),
            &format!("\"peer_id\": \"{id}\", \"peer_id\": \"{id}\""),
            1,
        ));
        // Oversized text.
        malformed(&format!("{}{text}", " ".repeat(MAX_LIST_BYTES)));
        // Bad values.
        malformed(&with(&text, |v| v["peers"] = json!([])));
        malformed(&with(&text, |v| v["peers"][0]["addrs"] = json!([])));
        malformed(&with(&text, |v| {
            v["peers"][0]["addrs"][0] = json!("/ip4/1.2.3.4/tcp/1")
        }));
        malformed(&with(&text, |v| {
            v["peers"][0]["addrs"][0] = json!("not an addr")
        }));
        malformed(&with(&text, |v| {
            v["peers"][0]["peer_id"] = json!("12D3KooWnope")
        }));
        malformed(&with(&text, |v| v["peers"][1] = v["peers"][0].clone()));
        malformed(&with(&text, |v| v["issued_at"] = json!("yesterday")));
        malformed(&with(&text, |v| v["expires_at"] = v["issued_at"].clone()));
        malformed(&with(&text, |v| v["publisher"] = json!("AAAA")));
        malformed("[]");
        malformed("");
        // Too many peers, too many addresses: the signer refuses, and so does the verifier.
        let many: Vec<ListedPeer> = (0..=MAX_LIST_PEERS as u8)
            .map(|i| peer(i + 20, 1))
            .collect();
        assert_eq!(
            sign(&many, &p, t("2026-05-01T00:00:00Z"), 90).map_err(|e| e.check()),
            Err("malformed")
        );
        malformed(&with(&text, |v| v["peers"] = peers_json(&many)));
        malformed(&with(&text, |v| {
            v["peers"] = peers_json(&[peer(1, MAX_PEER_ADDRS + 1)])
        }));
        // The most a list may hold still signs and verifies within the byte bound.
        let full: Vec<ListedPeer> = (0..MAX_LIST_PEERS as u8)
            .map(|i| peer(i + 20, MAX_PEER_ADDRS))
            .collect();
        let big = sign(&full, &p, t("2026-05-01T00:00:00Z"), 90).expect("a full list signs");
        assert_eq!(
            verify(&big, &trust, t(NOW)).expect("verifies").peers.len(),
            MAX_LIST_PEERS
        );
        // The signer's input: peers, optionally a list's other members, nothing else.
        assert!(unsigned_peers(&format!("{{\"peers\": {}}}", peers_json(&[peer(1, 1)]))).is_ok());
        assert!(unsigned_peers("{\"peers\": [], \"x\": 1}").is_err());
        assert!(unsigned_peers("{}").is_err());
    }
}
