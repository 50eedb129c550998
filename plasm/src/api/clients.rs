//! What one client may hold of the API's shared resources.
//!
//! The submission decode budget and the event-stream slots are node-wide; without
//! a share per client, two connections declaring large bodies and trickling a byte
//! every few seconds held the whole decode budget, and one client could hold every
//! event stream forever. A client is its bearer token, or its connection on a node
//! without tokens (decision 0037). Each [`Lease`] gives its share back when
//! dropped. Bodies must also arrive at a minimum rate ([`MIN_BODY_RATE`]) and
//! streams end after [`STREAM_IDLE`] without a job event (clients resume with
//! `Last-Event-ID`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Event streams one client may hold at once.
pub const MAX_STREAMS_PER_CLIENT: usize = 16;
/// Share of the submission decode budget one client may hold, in KiB: one
/// submission of the largest size, never two.
pub const MAX_KIB_PER_CLIENT: u32 =
    (super::MAX_BODY_BYTES * super::DECODE_FACTOR).div_ceil(1024) as u32;
/// Bytes per second a request body must keep up after [`BODY_GRACE`]: holding
/// the largest share then takes sending 48 MiB every 50 s, real load rather than
/// a trickle (a client just above 300 KiB/s held its share for 160 s).
pub const MIN_BODY_RATE: u64 = 1024 * 1024;
/// Time a body may take before [`MIN_BODY_RATE`] applies.
pub const BODY_GRACE: Duration = Duration::from_secs(5);
/// An event stream with no job event for this long ends.
pub const STREAM_IDLE: Duration = Duration::from_secs(300);

/// Who a request counts against, set on every request by the API's guard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(pub String);

impl ClientKey {
    /// A bearer token's client (hashed: tokens never sit in memory twice), or a connection's.
    pub fn new(token: Option<&str>, peer: Option<std::net::SocketAddr>) -> Self {
        use sha2::{Digest, Sha256};
        match (token, peer) {
            (Some(t), _) => Self(format!(
                "token:{}",
                hex::encode(&Sha256::digest(t.as_bytes())[..8])
            )),
            (None, Some(addr)) => Self(format!("conn:{addr}")),
            (None, None) => Self("unknown".into()),
        }
    }
}

#[derive(Debug, Default)]
struct Usage {
    streams: usize,
    kib: u32,
}

/// Per-client usage of the shared API resources.
#[derive(Debug, Default)]
pub struct Clients {
    usage: Mutex<HashMap<ClientKey, Usage>>,
}

/// A client's share of a resource, returned on drop.
#[derive(Debug)]
pub struct Lease {
    clients: Arc<Clients>,
    key: ClientKey,
    streams: usize,
    kib: u32,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut usage = self.clients.usage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = usage.get_mut(&self.key) {
            u.streams -= self.streams;
            u.kib -= self.kib;
            if u.streams == 0 && u.kib == 0 {
                usage.remove(&self.key);
            }
        }
    }
}

impl Clients {
    /// One more event stream for `key`, or `None` at [`MAX_STREAMS_PER_CLIENT`].
    pub fn stream(self: &Arc<Self>, key: &ClientKey) -> Option<Lease> {
        self.take(key, 1, 0)
    }

    /// `kib` of the decode budget for `key`, or `None` past [`MAX_KIB_PER_CLIENT`].
    pub fn budget(self: &Arc<Self>, key: &ClientKey, kib: u32) -> Option<Lease> {
        self.take(key, 0, kib)
    }

    fn take(self: &Arc<Self>, key: &ClientKey, streams: usize, kib: u32) -> Option<Lease> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = usage.entry(key.clone()).or_default();
        if u.streams + streams > MAX_STREAMS_PER_CLIENT
            || u.kib.saturating_add(kib) > MAX_KIB_PER_CLIENT
        {
            if u.streams == 0 && u.kib == 0 {
                usage.remove(key);
            }
            return None;
        }
        u.streams += streams;
        u.kib += kib;
        Some(Lease {
            clients: self.clone(),
            key: key.clone(),
            streams,
            kib,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_bounded_per_client_and_given_back() {
        let c = Arc::new(Clients::default());
        let a = ClientKey::new(Some("token-a"), None);
        let b = ClientKey::new(None, Some(([127, 0, 0, 1], 5000).into()));
        let held: Vec<Lease> = (0..MAX_STREAMS_PER_CLIENT)
            .map(|_| c.stream(&a).expect("within the share"))
            .collect();
        assert!(c.stream(&a).is_none(), "one more than the share");
        assert!(c.stream(&b).is_some(), "another client is not affected");
        drop(held);
        assert!(c.stream(&a).is_some(), "given back on drop");
        let big = c.budget(&a, MAX_KIB_PER_CLIENT).expect("the whole share");
        assert!(c.budget(&a, 1).is_none());
        drop(big);
        assert!(c.budget(&a, 1).is_some());
        // Every lease above is dropped: nothing is left behind.
        assert!(c.usage.lock().expect("lock").is_empty());
    }
}
