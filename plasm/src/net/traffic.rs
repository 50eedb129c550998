//! Traffic counters of this process: the bytes the memory transport carries and
//! the protocol messages the event loops receive (issue 25).
//!
//! The simulation (`plasm sim`) runs hundreds of nodes in one process and
//! reports messages and bytes per node per minute, so the counters are
//! process-wide atomics: one relaxed add per read or write, nothing to lock.
//! Bytes are counted below Noise and Yamux (what a wire would carry, framing
//! and encryption included) on the memory transport only; TCP and QUIC, where
//! one node owns the process, leave them at zero. Messages are counted where
//! the event loop sees them arrive: Kademlia requests, job, beat, steal and
//! records requests, identify exchanges and pings.

use futures::io::{AsyncRead, AsyncWrite};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Bytes read from memory-transport connections, all nodes of this process.
pub static BYTES_IN: AtomicU64 = AtomicU64::new(0);
/// Bytes written to memory-transport connections, all nodes of this process.
pub static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
/// Inbound protocol messages, all nodes of this process (see the module text).
pub static MESSAGES: AtomicU64 = AtomicU64::new(0);
/// Kademlia requests among [`MESSAGES`].
pub static KAD_MESSAGES: AtomicU64 = AtomicU64::new(0);
/// Pings among [`MESSAGES`] (each a round trip this node started and saw answered).
pub static PING_MESSAGES: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes written (each byte is read once by its receiver).
    pub bytes: u64,
    /// Inbound protocol messages.
    pub messages: u64,
    /// Kademlia requests among them.
    pub kad_messages: u64,
    /// Pings among them.
    pub ping_messages: u64,
}

/// The counters now.
pub fn snapshot() -> Traffic {
    Traffic {
        bytes: BYTES_OUT.load(Ordering::Relaxed),
        messages: MESSAGES.load(Ordering::Relaxed),
        kad_messages: KAD_MESSAGES.load(Ordering::Relaxed),
        ping_messages: PING_MESSAGES.load(Ordering::Relaxed),
    }
}

/// What a counted message was, for the counters apart from the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A Kademlia request.
    Kad,
    /// A ping answered.
    Ping,
    /// Anything else counted (job, beat, steal, records, identify).
    Other,
}

/// Counts one inbound message of `kind`.
pub(crate) fn message(kind: Kind) {
    MESSAGES.fetch_add(1, Ordering::Relaxed);
    match kind {
        Kind::Kad => KAD_MESSAGES.fetch_add(1, Ordering::Relaxed),
        Kind::Ping => PING_MESSAGES.fetch_add(1, Ordering::Relaxed),
        Kind::Other => 0,
    };
}

/// A connection whose bytes are counted.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
}

impl<S> Counted<S> {
    /// Wraps a raw connection.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            BYTES_IN.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            BYTES_OUT.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::{AsyncReadExt, AsyncWriteExt, Cursor};

    #[test]
    fn bytes_through_a_counted_connection_are_counted() {
        futures::executor::block_on(async {
            let before = (
                BYTES_IN.load(Ordering::Relaxed),
                BYTES_OUT.load(Ordering::Relaxed),
            );
            let mut c = Counted::new(Cursor::new(vec![7u8; 10]));
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).await.expect("read");
            c.write_all(b"abc").await.expect("write");
            assert!(BYTES_IN.load(Ordering::Relaxed) >= before.0 + 4);
            assert!(BYTES_OUT.load(Ordering::Relaxed) >= before.1 + 3);
        });
    }
}
