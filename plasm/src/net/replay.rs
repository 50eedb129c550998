//! The executor's replay window on disk (decision 0054): `<data_dir>/replay.db`,
//! its own SQLite file (WAL) so that executors without the API store keep it too.
//!
//! One row per nonce of a job that ran here: its job id, the peer that first
//! submitted it, the attempt that last ran, the manifest's `created_at` and when
//! the row expires (twice the clock skew after it was recorded: by then the
//! manifest is stale anyway). A `floor` row keeps the newest `created_at` the
//! in-memory guard forgot early (eviction): manifests created at or before it
//! are refused, as before the restart.
//!
//! Writes go to one writer thread through a bounded channel and are committed in
//! batches (one transaction, one fsync with `fsync = true`, for everything queued).
//! [`ReplayWriter::remember`] resolves once its row is committed: the executor
//! awaits it on the bundle's own task before the job starts, never on the
//! executor task. Opening reads the unexpired rows (at most `max`, newest kept,
//! the floor raised past the rest) and is blocking: call it off the async threads.

/// Errors of the replay file (its own, so the network layer does not depend on
/// the job store: `net` and `store` sit side by side in the layers).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("replay database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The data dir could not be created or read.
    #[error("replay file: {0}")]
    Io(#[from] std::io::Error),
}
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// The file name under the data dir.
pub const REPLAY_DB: &str = "replay.db";

/// Writes waiting for the writer thread; senders wait (bundle tasks) or drop
/// (floor updates, purges: both are repaired by the writer's own bound).
const WRITE_QUEUE: usize = 1024;
/// Rows committed in one transaction at most.
const BATCH: usize = 256;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the window.
    "CREATE TABLE nonces (
        nonce TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        peer TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        created_ns INTEGER NOT NULL,
        recorded_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE INDEX nonces_expiry ON nonces(expires_ms);
    CREATE INDEX nonces_recorded ON nonces(recorded_ms);
    CREATE TABLE floor (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        created_ns INTEGER NOT NULL
    );",
];

/// One remembered nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEntry {
    /// The manifest's nonce.
    pub nonce: String,
    /// The manifest's job id.
    pub job_id: String,
    /// The peer that first submitted the job here (a peer id).
    pub peer: String,
    /// The largest attempt number that ran here.
    pub attempt: u32,
    /// The manifest's `created_at`.
    pub created: OffsetDateTime,
    /// Milliseconds since the Unix epoch when this entry was recorded.
    pub recorded_ms: i64,
    /// Milliseconds since the Unix epoch after which the entry is forgotten.
    pub expires_ms: i64,
}

/// What was on disk at open: unexpired entries (oldest first) and the floor.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// At most `max` entries, oldest recorded first.
    pub entries: Vec<ReplayEntry>,
    /// Manifests created at or before this are refused.
    pub floor: Option<OffsetDateTime>,
}

enum Op {
    Remember(ReplayEntry, oneshot::Sender<bool>),
    Forget(String),
    Floor(OffsetDateTime),
    Purge,
}

/// The opened store: the window read at open, and the writer.
pub struct ReplayStore {
    window: ReplayWindow,
    writer: ReplayWriter,
}

/// Sends writes to the writer thread (cheap to clone). The thread ends, after
/// committing what is queued, when the last writer is dropped.
#[derive(Clone)]
pub struct ReplayWriter {
    tx: mpsc::Sender<Op>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn from_ns(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn floor(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row("SELECT created_ns FROM floor WHERE id = 0", [], |r| {
            r.get(0)
        })
        .optional()?)
}

fn raise_floor(conn: &Connection, created_ns: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO floor (id, created_ns) VALUES (0, ?1)
         ON CONFLICT(id) DO UPDATE SET created_ns = max(created_ns, excluded.created_ns)",
        params![created_ns],
    )?;
    Ok(())
}

/// Deletes expired rows, and the oldest beyond `max` (raising the floor past them).
fn purge(conn: &Connection, max: usize, now_ms: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM nonces WHERE expires_ms <= ?1", params![now_ms])?;
    let over: Option<i64> = conn.query_row(
        "SELECT max(created_ns) FROM (SELECT created_ns FROM nonces
           ORDER BY recorded_ms DESC, rowid DESC LIMIT -1 OFFSET ?1)",
        params![max as i64],
        |r| r.get(0),
    )?;
    if let Some(c) = over {
        raise_floor(conn, c)?;
        conn.execute(
            "DELETE FROM nonces WHERE rowid IN (SELECT rowid FROM nonces
               ORDER BY recorded_ms DESC, rowid DESC LIMIT -1 OFFSET ?1)",
            params![max as i64],
        )?;
    }
    Ok(())
}

impl ReplayStore {
    /// Opens (creating) `<data_dir>/replay.db`, purges it, reads the window and
    /// starts the writer thread. Blocking. `fsync` as the store's (`FULL` also
    /// survives power loss; `NORMAL` survives a process crash). `max`: entries kept.
    pub fn open(data_dir: &Path, fsync: bool, max: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let mut conn = Connection::open(data_dir.join(REPLAY_DB))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        migrate(&mut conn)?;
        let max = max.max(1);
        purge(&conn, max, now_ms())?;
        let mut stmt = conn.prepare(
            "SELECT nonce, job_id, peer, attempt, created_ns, recorded_ms, expires_ms
             FROM nonces ORDER BY recorded_ms ASC, rowid ASC",
        )?;
        let entries = stmt
            .query_map([], |r| {
                Ok(ReplayEntry {
                    nonce: r.get(0)?,
                    job_id: r.get(1)?,
                    peer: r.get(2)?,
                    attempt: r.get::<_, i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
                    created: from_ns(r.get(4)?),
                    recorded_ms: r.get(5)?,
                    expires_ms: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        let window = ReplayWindow {
            entries,
            floor: floor(&conn)?.map(from_ns),
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("plasm-replay".into())
            .spawn(move || write_loop(conn, rx, max))?;
        Ok(Self {
            window,
            writer: ReplayWriter { tx },
        })
    }

    /// The window read at open.
    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Splits into the window read at open and the writer.
    pub fn into_parts(self) -> (ReplayWindow, ReplayWriter) {
        (self.window, self.writer)
    }
}

fn write_loop(conn: Connection, mut rx: mpsc::Receiver<Op>, max: usize) {
    let mut last_purge = std::time::Instant::now();
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let mut purge_now = last_purge.elapsed() >= Duration::from_secs(60);
        let result = (|| -> Result<(), StoreError> {
            let tx = conn.unchecked_transaction()?;
            for op in ops {
                match op {
                    Op::Remember(e, ack) => {
                        tx.execute(
                            "INSERT INTO nonces (nonce, job_id, peer, attempt, created_ns, recorded_ms, expires_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                             ON CONFLICT(nonce) DO UPDATE SET attempt = max(attempt, excluded.attempt)",
                            params![
                                e.nonce,
                                e.job_id,
                                e.peer,
                                i64::from(e.attempt),
                                ns(e.created),
                                e.recorded_ms,
                                e.expires_ms
                            ],
                        )?;
                        acks.push(ack);
                    }
                    Op::Forget(nonce) => {
                        tx.execute("DELETE FROM nonces WHERE nonce = ?1", params![nonce])?;
                    }
                    Op::Floor(t) => raise_floor(&tx, ns(t))?,
                    Op::Purge => purge_now = true,
                }
            }
            if purge_now {
                purge(&tx, max, now_ms())?;
            }
            tx.commit()?;
            Ok(())
        })();
        if purge_now {
            last_purge = std::time::Instant::now();
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "could not record nonces in the replay window");
        }
        for ack in acks {
            let _ = ack.send(result.is_ok());
        }
    }
}

impl ReplayWriter {
    /// Records `entry` (or raises its attempt if its nonce is recorded); true once
    /// committed, false if the write failed or the writer is gone.
    pub async fn remember(&self, entry: ReplayEntry) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Op::Remember(entry, ack)).await.is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }

    /// Forgets a nonce recorded for a job that did not start after all (best effort).
    pub fn forget(&self, nonce: String) {
        let _ = self.tx.try_send(Op::Forget(nonce));
    }

    /// Raises the floor (best effort: a dropped update leaves the evicted row on
    /// disk until it expires or the writer's own bound raises the floor past it).
    pub fn raise_floor(&self, created: OffsetDateTime) {
        let _ = self.tx.try_send(Op::Floor(created));
    }

    /// Asks for expired rows to be deleted (best effort).
    pub fn purge(&self) {
        let _ = self.tx.try_send(Op::Purge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(nonce: &str, created_s: i64, recorded_ms: i64, expires_ms: i64) -> ReplayEntry {
        ReplayEntry {
            nonce: nonce.into(),
            job_id: format!("job-{nonce}"),
            peer: "peer".into(),
            attempt: 1,
            created: OffsetDateTime::from_unix_timestamp(created_s).expect("t"),
            recorded_ms,
            expires_ms,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt")
    }

    #[test]
    fn the_window_survives_a_reopen_and_expires() {
        let dir = tempfile::tempdir().expect("dir");
        let now = now_ms();
        {
            let (w, writer) = ReplayStore::open(dir.path(), false, 10)
                .expect("open")
                .into_parts();
            assert!(w.entries.is_empty() && w.floor.is_none());
            rt().block_on(async {
                assert!(
                    writer
                        .remember(entry("a", 100, now - 10, now + 60_000))
                        .await
                );
                assert!(
                    writer
                        .remember(entry("b", 101, now - 5, now + 60_000))
                        .await
                );
                // Already expired: deleted at the next open.
                assert!(writer.remember(entry("old", 99, now - 20, now - 1)).await);
                // A re-run raises the attempt; the first submitter stays.
                let mut again = entry("a", 100, now, now + 60_000);
                again.peer = "other".into();
                again.attempt = 3;
                assert!(writer.remember(again).await);
            });
        }
        let store = ReplayStore::open(dir.path(), false, 10).expect("reopen");
        let w = store.window();
        let nonces: Vec<&str> = w.entries.iter().map(|e| e.nonce.as_str()).collect();
        assert_eq!(nonces, ["a", "b"]);
        assert_eq!(
            (w.entries[0].peer.as_str(), w.entries[0].attempt),
            ("peer", 3)
        );
        assert_eq!(w.entries[1], entry("b", 101, now - 5, now + 60_000));
        assert!(w.floor.is_none());
    }

    #[test]
    fn the_window_is_bounded_and_the_floor_persists() {
        let dir = tempfile::tempdir().expect("dir");
        let now = now_ms();
        {
            let (_, writer) = ReplayStore::open(dir.path(), true, 100)
                .expect("open")
                .into_parts();
            rt().block_on(async {
                for i in 0..5i64 {
                    let e = entry(&format!("n{i}"), 1000 + i, now + i, now + 60_000);
                    assert!(writer.remember(e).await);
                }
                writer.raise_floor(OffsetDateTime::from_unix_timestamp(500).expect("t"));
                // The floor rides in the next batch.
                assert!(
                    writer
                        .remember(entry("n5", 1005, now + 5, now + 60_000))
                        .await
                );
            });
        }
        // Reopened with room for 3: the 3 newest stay, the floor passes the rest.
        let store = ReplayStore::open(dir.path(), false, 3).expect("reopen");
        let w = store.window();
        let nonces: Vec<&str> = w.entries.iter().map(|e| e.nonce.as_str()).collect();
        assert_eq!(nonces, ["n3", "n4", "n5"]);
        assert_eq!(
            w.floor,
            Some(OffsetDateTime::from_unix_timestamp(1002).expect("t"))
        );
        drop(store);
        // The floor is never lowered.
        let store = ReplayStore::open(dir.path(), false, 3).expect("again");
        assert_eq!(
            store.window().floor,
            Some(OffsetDateTime::from_unix_timestamp(1002).expect("t"))
        );
    }

    #[test]
    fn a_forgotten_nonce_is_gone_after_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let now = now_ms();
        {
            let (_, writer) = ReplayStore::open(dir.path(), false, 10)
                .expect("open")
                .into_parts();
            rt().block_on(async {
                assert!(writer.remember(entry("a", 1, now, now + 60_000)).await);
                writer.forget("a".into());
                assert!(writer.remember(entry("b", 2, now, now + 60_000)).await);
            });
        }
        let store = ReplayStore::open(dir.path(), false, 10).expect("reopen");
        let nonces: Vec<&str> = store
            .window()
            .entries
            .iter()
            .map(|e| e.nonce.as_str())
            .collect();
        assert_eq!(nonces, ["b"]);
    }
}
