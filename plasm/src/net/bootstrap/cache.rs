//! The peers this node has seen: a persisted, bounded cache it falls back to
//! when neither the configured bootstrap addresses nor a verified bootstrap list
//! reach anyone (decision 0055).
//!
//! `peers.json` in the data dir (mode 0600, written whole or not at all) holds
//! `{version: "plasm.peers/v1", peers: [{peer_id, addrs, last_seen}]}`: at most
//! [`MAX_CACHED_PEERS`] peers, each with at most [`MAX_CACHED_ADDRS`] addresses
//! (newest first) ending in `/p2p/<peer_id>`, and when it was last seen (Unix
//! seconds). A new peer beyond the bound evicts the one seen longest ago. The file
//! is read strictly and bounded; one that does not read is set aside (logged)
//! and the cache starts empty: it is a hint, never a reason not to start.

use crate::jcs;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the cache inside the data dir.
pub const PEERS_FILE: &str = "peers.json";
/// The `version` of the cache file.
pub const CACHE_VERSION: &str = "plasm.peers/v1";
/// Most peers kept.
pub const MAX_CACHED_PEERS: usize = 256;
/// Most addresses kept per peer.
pub const MAX_CACHED_ADDRS: usize = 4;
/// Largest cache file read.
pub const MAX_CACHE_BYTES: usize = 512 * 1024;

/// What is kept of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPeer {
    /// Addresses it was reached at, newest first, each ending in `/p2p/<peer id>`.
    pub addrs: Vec<Multiaddr>,
    /// When it was last seen connected (Unix seconds).
    pub last_seen: u64,
}

/// The cache, and where it is saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCache {
    peers: BTreeMap<PeerId, CachedPeer>,
    dir: Option<PathBuf>,
    dirty: bool,
}

/// `addr` ending in `/p2p/<peer>` exactly once.
fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a.with(Protocol::P2p(peer))
}

impl PeerCache {
    /// An empty cache saved nowhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cache of a data dir: `peers.json` read if present and well formed,
    /// else empty (a file that does not read is logged and replaced at the next save).
    pub fn open(dir: &Path) -> Self {
        let path = dir.join(PEERS_FILE);
        let mut cache = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the peer cache; starting with none");
                Self::new()
            }
            Ok(m) if m.len() > MAX_CACHE_BYTES as u64 => {
                tracing::warn!(path = %path.display(), bytes = m.len(), "the peer cache is too large; starting with none");
                Self::new()
            }
            Ok(_) => match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| Self::from_json(&t))
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the peer cache does not read; starting with none");
                    Self::new()
                }
            },
        };
        cache.dir = Some(dir.to_path_buf());
        cache
    }

    /// Reads a cache file's text strictly: bounded, closed form, every address ending in its peer.
    pub fn from_json(text: &str) -> Result<Self, String> {
        if text.len() > MAX_CACHE_BYTES {
            return Err(format!("{} bytes, over {MAX_CACHE_BYTES}", text.len()));
        }
        let v = jcs::parse_strict(text).map_err(|e| e.to_string())?;
        let m = v
            .as_object()
            .filter(|m| m.len() == 2)
            .ok_or("exactly {version, peers}")?;
        if m.get("version").and_then(Value::as_str) != Some(CACHE_VERSION) {
            return Err(format!("version is {CACHE_VERSION}"));
        }
        let list = m
            .get("peers")
            .and_then(Value::as_array)
            .filter(|l| l.len() <= MAX_CACHED_PEERS)
            .ok_or_else(|| format!("peers is an array of at most {MAX_CACHED_PEERS}"))?;
        let mut peers = BTreeMap::new();
        for (i, p) in list.iter().enumerate() {
            let p = p
                .as_object()
                .filter(|p| p.len() == 3)
                .ok_or_else(|| format!("peers[{i}] is exactly {{peer_id, addrs, last_seen}}"))?;
            let peer: PeerId = p
                .get("peer_id")
                .and_then(Value::as_str)
                .filter(|s| s.len() <= 128)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("peers[{i}].peer_id is a peer id"))?;
            let last_seen = p
                .get("last_seen")
                .and_then(Value::as_u64)
                .filter(|n| *n <= jcs::MAX_SAFE_INTEGER)
                .ok_or_else(|| format!("peers[{i}].last_seen is a whole number"))?;
            let addrs = p
                .get("addrs")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty() && a.len() <= MAX_CACHED_ADDRS)
                .ok_or_else(|| format!("peers[{i}].addrs has 1 to {MAX_CACHED_ADDRS}"))?;
            let mut parsed = Vec::with_capacity(addrs.len());
            for a in addrs {
                let a: Multiaddr = a
                    .as_str()
                    .filter(|s| s.len() <= super::MAX_ADDR_BYTES)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("peers[{i}].addrs holds multiaddrs"))?;
                if !matches!(a.iter().last(), Some(Protocol::P2p(id)) if id == peer)
                    || parsed.contains(&a)
                {
                    return Err(format!(
                        "peers[{i}].addrs are distinct and end in /p2p/{peer}"
                    ));
                }
                parsed.push(a);
            }
            let entry = CachedPeer {
                addrs: parsed,
                last_seen,
            };
            if peers.insert(peer, entry).is_some() {
                return Err(format!("peers[{i}].peer_id is listed twice"));
            }
        }
        Ok(Self {
            peers,
            dir: None,
            dirty: false,
        })
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        let peers: Vec<Value> = self
            .peers
            .iter()
            .map(|(id, p)| {
                json!({
                    "peer_id": id.to_string(),
                    "addrs": p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "last_seen": p.last_seen,
                })
            })
            .collect();
        format!("{:#}\n", json!({"version": CACHE_VERSION, "peers": peers}))
    }

    /// Notes that `peer` was connected at `addr` at `now` (Unix seconds). A new
    /// peer beyond [`MAX_CACHED_PEERS`] evicts the one seen longest ago.
    pub fn record(&mut self, peer: PeerId, addr: &Multiaddr, now: u64) {
        let addr = with_peer(addr, peer);
        if addr.to_string().len() > super::MAX_ADDR_BYTES {
            return;
        }
        let now = now.min(jcs::MAX_SAFE_INTEGER);
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_CACHED_PEERS {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(id, p)| (p.last_seen, **id))
                .map(|(id, _)| *id);
            if let Some(o) = oldest {
                self.peers.remove(&o);
            }
        }
        let e = self.peers.entry(peer).or_insert_with(|| CachedPeer {
            addrs: Vec::new(),
            last_seen: now,
        });
        e.addrs.retain(|a| *a != addr);
        e.addrs.insert(0, addr);
        e.addrs.truncate(MAX_CACHED_ADDRS);
        e.last_seen = e.last_seen.max(now);
        self.dirty = true;
    }

    /// How many peers are kept.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is kept.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// A peer's entry.
    pub fn get(&self, peer: &PeerId) -> Option<&CachedPeer> {
        self.peers.get(peer)
    }

    /// Every kept address, the peers seen most recently first.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        let mut by_age: Vec<(&PeerId, &CachedPeer)> = self.peers.iter().collect();
        by_age.sort_by_key(|(id, p)| (std::cmp::Reverse(p.last_seen), **id));
        by_age
            .into_iter()
            .flat_map(|(_, p)| p.addrs.iter().cloned())
            .collect()
    }

    /// Writes the cache to its data dir (0600, atomically) when it changed since
    /// it was read or last saved; a cache saved nowhere does nothing.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        crate::privfile::write(dir, PEERS_FILE, &[self.to_json().as_bytes()], false)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use std::os::unix::fs::PermissionsExt;

    fn id(n: u32) -> PeerId {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        Identity::from_seed(seed).peer_id()
    }

    fn addr(n: u32) -> Multiaddr {
        format!("/ip4/10.0.{}.{}/tcp/4610", n / 256, n % 256)
            .parse()
            .expect("addr")
    }

    #[test]
    fn bounded_oldest_evicted_first() {
        let mut c = PeerCache::new();
        for n in 0..MAX_CACHED_PEERS as u32 {
            c.record(id(n), &addr(n), 1000 + u64::from(n));
        }
        assert_eq!(c.len(), MAX_CACHED_PEERS);
        // Seeing peer 0 again makes peer 1 the oldest.
        c.record(id(0), &addr(0), 5000);
        c.record(id(1000), &addr(1000), 5001);
        assert_eq!(c.len(), MAX_CACHED_PEERS);
        assert!(c.get(&id(0)).is_some());
        assert!(c.get(&id(1)).is_none(), "the oldest is evicted");
        c.record(id(1001), &addr(1001), 5002);
        assert!(c.get(&id(2)).is_none(), "then the next oldest");
        assert!(c.get(&id(3)).is_some());
        // Newest first, each address ending in its peer.
        let first = c.addrs()[0].clone();
        assert_eq!(first, addr(1001).with(Protocol::P2p(id(1001))));
        // Addresses per peer are bounded too, newest first, no duplicates.
        for n in 0..10 {
            c.record(id(0), &addr(2000 + n), 6000);
        }
        c.record(id(0), &addr(2009), 6001);
        let e = c.get(&id(0)).expect("kept");
        assert_eq!(e.addrs.len(), MAX_CACHED_ADDRS);
        assert_eq!(e.addrs[0], addr(2009).with(Protocol::P2p(id(0))));
        assert_eq!(e.last_seen, 6001);
    }

    #[test]
    fn survives_reopen_private_and_strict() {
        let d = tempfile::tempdir().expect("tmp");
        let mut c = PeerCache::open(d.path());
        assert!(c.is_empty());
        c.record(id(1), &addr(1), 100);
        c.record(id(2), &addr(2).with(Protocol::P2p(id(2))), 200);
        c.save().expect("save");
        let path = d.path().join(PEERS_FILE);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = PeerCache::open(d.path());
        assert_eq!(back.len(), 2);
        assert_eq!(back.peers, c.peers);
        assert_eq!(back.addrs()[0], addr(2).with(Protocol::P2p(id(2))));
        // Round trip of the text; a bad file starts empty, never fails.
        assert_eq!(
            PeerCache::from_json(&c.to_json()).expect("reads").peers,
            c.peers
        );
        std::fs::write(
            &path,
            "{\"version\":\"plasm.peers/v1\",\"peers\":[],\"peers\":[]}",
        )
        .expect("write");
        assert!(PeerCache::open(d.path()).is_empty());
        for bad in [
            "[]".to_owned(),
            c.to_json().replace("plasm.peers/v1", "plasm.peers/v2"),
            c.to_json()
                .replace("\"last_seen\": 100", "\"last_seen\": -1"),
            c.to_json()
                .replace(&format!("/p2p/{}", id(1)), &format!("/p2p/{}", id(3))),
            format!("{}{}", " ".repeat(MAX_CACHE_BYTES), c.to_json()),
        ] {
            assert!(PeerCache::from_json(&bad).is_err(), "{bad:.120}");
        }
        let over: Vec<Value> = (0..=MAX_CACHED_PEERS as u32)
            .map(|n| json!({"peer_id": id(n).to_string(), "addrs": [addr(n).with(Protocol::P2p(id(n))).to_string()], "last_seen": 1}))
            .collect();
        let text = json!({"version": CACHE_VERSION, "peers": over}).to_string();
        assert!(PeerCache::from_json(&text).is_err(), "over the bound");
    }
}
