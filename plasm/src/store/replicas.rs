//! Replicas: the receipts, acceptances, publications and audits this node holds
//! for the network (decision 0056), and the published modules and inputs they
//! name, in `<data_dir>/replicas.db`.
//!
//! Its own file, not the job store: a node without an API (a bootstrap node)
//! holds replicas too, and a flood of replicas must never touch the jobs an
//! operator submitted. Everything is bounded: records per job, records in all,
//! blob bytes in all (oldest evicted first) and their age (retention). Only
//! records the replica service verified are put here; this module trusts its
//! caller and checks bounds, not signatures.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The replica file's schema version (`PRAGMA user_version`).
pub const REPLICA_SCHEMA_VERSION: u32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    signer TEXT NOT NULL,
    digest TEXT NOT NULL,
    body TEXT NOT NULL,
    stored_at INTEGER NOT NULL,
    republished_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, kind, signer, digest)
);
CREATE INDEX IF NOT EXISTS records_age ON records(stored_at);
CREATE INDEX IF NOT EXISTS records_republish ON records(republished_at);
CREATE INDEX IF NOT EXISTS records_kind ON records(kind);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,
    bytes BLOB NOT NULL,
    stored_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_age ON blobs(stored_at);
CREATE TABLE IF NOT EXISTS blob_refs (
    sha256 TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (sha256, job_id)
);
";

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An executor's receipt.
    Receipt,
    /// A submitter's acceptance of one receipt.
    Acceptance,
    /// A submitter's publication of the manifest.
    Publication,
    /// An auditor's verdict.
    Audit,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Acceptance => "acceptance",
            Self::Publication => "publication",
            Self::Audit => "audit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "receipt" => Self::Receipt,
            "acceptance" => Self::Acceptance,
            "publication" => Self::Publication,
            "audit" => Self::Audit,
            _ => return None,
        })
    }

    /// How many of this kind one job may have: receipts of re-placed attempts,
    /// one acceptance and one publication (a second submitter of the same
    /// manifest is allowed one more), audits from several auditors.
    pub fn per_job(self) -> u64 {
        match self {
            Self::Receipt => 8,
            Self::Acceptance | Self::Publication => 2,
            Self::Audit => 16,
        }
    }
}

/// Bounds of the replica store.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaLimits {
    /// Records in all; the oldest go first.
    pub max_records: u64,
    /// Bytes of record text in all; the oldest go first (a publication may be
    /// 96 KiB, so the count alone does not bound the disk).
    pub max_record_bytes: u64,
    /// Bytes of published modules and inputs in all; the oldest go first.
    pub max_blob_bytes: u64,
    /// Largest single blob.
    pub max_blob: u64,
    /// How long a record is kept after it was first stored here.
    pub retention: Duration,
}

impl Default for ReplicaLimits {
    fn default() -> Self {
        Self {
            // A receipt and its acceptance are about 1.7 KiB each.
            max_records: 100_000,
            max_record_bytes: 256 * 1024 * 1024,
            max_blob_bytes: 256 * 1024 * 1024,
            max_blob: 32 * 1024 * 1024,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// What it is.
    pub kind: Kind,
    /// Its signer's peer id.
    pub signer: String,
    /// Hex SHA-256 of its canonical form.
    pub digest: String,
    /// The JSON text.
    pub body: String,
}

/// Why a record was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The job already has as many records of this kind as it may.
    #[error("the job already has {0} {1} records")]
    JobFull(u64, &'static str),
    /// A blob over the size limit.
    #[error("a blob of {0} bytes is over the limit of {1}")]
    TooLarge(u64, u64),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for PutError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sql(e).classify())
    }
}

/// The replica store.
#[derive(Debug)]
pub struct ReplicaStore {
    conn: Mutex<Connection>,
    limits: ReplicaLimits,
    /// Bytes of record text stored, kept under the connection's lock.
    bytes: std::sync::atomic::AtomicI64,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl ReplicaStore {
    /// Opens (creating) `<data_dir>/replicas.db`.
    pub fn open(data_dir: &Path, limits: ReplicaLimits) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let conn = Connection::open(data_dir.join("replicas.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A replica lost to a power cut is republished by its other holders.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn, limits)
    }

    /// A store in memory (a node without a data dir).
    pub fn in_memory(limits: ReplicaLimits) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, limits)
    }

    fn init(conn: Connection, limits: ReplicaLimits) -> Result<Self, StoreError> {
        conn.pragma_update(None, "busy_timeout", 5000)?;
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > REPLICA_SCHEMA_VERSION {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "replicas.db has schema {version}, newer than this release's {REPLICA_SCHEMA_VERSION}"
            ))));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", REPLICA_SCHEMA_VERSION)?;
        let bytes: i64 = conn.query_row(
            "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM records",
            [],
            |r| r.get(0),
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            limits,
            bytes: std::sync::atomic::AtomicI64::new(bytes),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store's bounds.
    pub fn limits(&self) -> ReplicaLimits {
        self.limits
    }

    /// Stores a verified record; `Ok(false)` when it was already here.
    pub fn put(
        &self,
        job_id: &str,
        kind: Kind,
        signer: &str,
        digest: &str,
        body: &str,
    ) -> Result<bool, PutError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM records WHERE job_id=?1 AND kind=?2 AND signer=?3 AND digest=?4",
                params![job_id, kind.as_str(), signer, digest],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if exists {
            return Ok(false);
        }
        let of_kind: i64 = tx.query_row(
            "SELECT COUNT(*) FROM records WHERE job_id=?1 AND kind=?2",
            params![job_id, kind.as_str()],
            |r| r.get(0),
        )?;
        if of_kind as u64 >= kind.per_job() {
            return Err(PutError::JobFull(kind.per_job(), kind.as_str()));
        }
        let total: i64 = tx.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))?;
        let total = total as u64;
        let mut freed = 0i64;
        let evict = |tx: &rusqlite::Transaction<'_>, n: u64| -> rusqlite::Result<i64> {
            let gone: i64 = tx.query_row(
                "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM
                 (SELECT body FROM records ORDER BY stored_at, rowid LIMIT ?1)",
                params![n as i64],
                |r| r.get(0),
            )?;
            tx.execute(
                "DELETE FROM records WHERE rowid IN
                 (SELECT rowid FROM records ORDER BY stored_at, rowid LIMIT ?1)",
                params![n as i64],
            )?;
            Ok(gone)
        };
        if total >= self.limits.max_records {
            freed += evict(&tx, total + 1 - self.limits.max_records)?;
        }
        let used = self.bytes.load(std::sync::atomic::Ordering::Relaxed) - freed;
        let mut over = used + body.len() as i64 - self.limits.max_record_bytes as i64;
        while over > 0 {
            let gone = evict(&tx, 1)?;
            if gone == 0 {
                break;
            }
            freed += gone;
            over -= gone;
        }
        let t = now();
        tx.execute(
            "INSERT INTO records (job_id, kind, signer, digest, body, stored_at, republished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![job_id, kind.as_str(), signer, digest, body, t],
        )?;
        tx.commit()?;
        self.bytes.fetch_add(
            body.len() as i64 - freed,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(true)
    }

    /// Every record of a job, oldest first.
    pub fn records(&self, job_id: &str) -> Result<Vec<StoredRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT kind, signer, digest, body FROM records WHERE job_id=?1 ORDER BY stored_at, rowid",
        )?;
        let rows = stmt.query_map(params![job_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, signer, digest, body) = row?;
            if let Some(kind) = Kind::parse(&kind) {
                out.push(StoredRecord {
                    kind,
                    signer,
                    digest,
                    body,
                });
            }
        }
        Ok(out)
    }

    /// Whether a receipt with this digest is stored for the job.
    pub fn has_receipt(&self, job_id: &str, digest: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM records WHERE job_id=?1 AND kind='receipt' AND digest=?2",
                params![job_id, digest],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Records that the publication of `job_id` held here names these blobs.
    pub fn put_blob_refs(&self, job_id: &str, shas: &[String]) -> Result<(), StoreError> {
        let conn = self.conn();
        for sha in shas {
            conn.execute(
                "INSERT OR IGNORE INTO blob_refs (sha256, job_id) VALUES (?1, ?2)",
                params![sha, job_id],
            )?;
        }
        Ok(())
    }

    /// Whether the publication of `job_id` held here names `sha256` as its
    /// module or input.
    pub fn publication_names(&self, job_id: &str, sha256: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM blob_refs WHERE sha256=?1 AND job_id=?2",
                params![sha256, job_id],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Stores a published module or input under its hash (checked by the caller).
    pub fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<bool, PutError> {
        let len = bytes.len() as u64;
        if len > self.limits.max_blob || len > self.limits.max_blob_bytes {
            return Err(PutError::TooLarge(len, self.limits.max_blob));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM blobs WHERE sha256=?1",
                params![sha256],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Ok(false);
        }
        // Evict the oldest until the new blob fits.
        loop {
            let used: i64 = tx.query_row(
                "SELECT COALESCE(SUM(LENGTH(bytes)), 0) FROM blobs",
                [],
                |r| r.get(0),
            )?;
            if used as u64 + len <= self.limits.max_blob_bytes {
                break;
            }
            let gone = tx.execute(
                "DELETE FROM blobs WHERE rowid = (SELECT rowid FROM blobs ORDER BY stored_at LIMIT 1)",
                [],
            )?;
            if gone == 0 {
                break;
            }
        }
        tx.execute(
            "INSERT INTO blobs (sha256, bytes, stored_at) VALUES (?1, ?2, ?3)",
            params![sha256, bytes, now()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// A published module or input by hash.
    pub fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT bytes FROM blobs WHERE sha256=?1",
                params![sha256],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Jobs with a record not republished for `every`, at most `limit`; they are
    /// marked republished now (whether or not the republishing reaches anyone).
    pub fn due(&self, every: Duration, limit: usize) -> Result<Vec<String>, StoreError> {
        let t = now();
        let before = t - every.as_secs() as i64;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let jobs: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT job_id FROM records WHERE republished_at <= ?1 LIMIT ?2",
            )?;
            stmt.query_map(params![before, limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for job in &jobs {
            tx.execute(
                "UPDATE records SET republished_at=?1 WHERE job_id=?2",
                params![t, job],
            )?;
        }
        tx.commit()?;
        Ok(jobs)
    }

    /// Deletes records and blobs older than the retention; returns how many went.
    pub fn expire(&self) -> Result<usize, StoreError> {
        let before = now() - self.limits.retention.as_secs() as i64;
        let conn = self.conn();
        let gone: i64 = conn.query_row(
            "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM records WHERE stored_at < ?1",
            params![before],
            |r| r.get(0),
        )?;
        let n = conn.execute("DELETE FROM records WHERE stored_at < ?1", params![before])?;
        self.bytes
            .fetch_sub(gone, std::sync::atomic::Ordering::Relaxed);
        let b = conn.execute("DELETE FROM blobs WHERE stored_at < ?1", params![before])?;
        conn.execute(
            "DELETE FROM blob_refs WHERE job_id NOT IN (SELECT job_id FROM records)",
            [],
        )?;
        Ok(n + b)
    }

    /// (records, bytes of record bodies, blobs, blob bytes).
    pub fn usage(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        let conn = self.conn();
        let (n, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (b, bb): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(bytes)), 0) FROM blobs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n as u64, bytes as u64, b as u64, bb as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ReplicaLimits {
        ReplicaLimits {
            max_records: 5,
            max_record_bytes: 1 << 20,
            max_blob_bytes: 100,
            max_blob: 60,
            retention: Duration::from_secs(3600),
        }
    }

    #[test]
    fn records_are_bounded_per_job_and_in_all() {
        let s = ReplicaStore::in_memory(small()).expect("open");
        assert!(s.put("j", Kind::Acceptance, "a", "d1", "{}").expect("put"));
        assert!(
            !s.put("j", Kind::Acceptance, "a", "d1", "{}")
                .expect("again")
        );
        assert!(s.put("j", Kind::Acceptance, "b", "d2", "{}").expect("put"));
        assert!(matches!(
            s.put("j", Kind::Acceptance, "c", "d3", "{}"),
            Err(PutError::JobFull(2, "acceptance"))
        ));
        for i in 0..6 {
            s.put(&format!("k{i}"), Kind::Receipt, "e", "d", "{}")
                .expect("put");
        }
        assert_eq!(s.usage().expect("usage").0, 5, "bounded in all");
        assert!(
            s.records("j").expect("records").is_empty(),
            "oldest evicted"
        );
        assert_eq!(s.records("k5").expect("records").len(), 1);
    }

    #[test]
    fn record_bytes_are_bounded_too() {
        let s = ReplicaStore::in_memory(ReplicaLimits {
            max_records: 1000,
            max_record_bytes: 1000,
            ..small()
        })
        .expect("open");
        let body = "x".repeat(300);
        for i in 0..10 {
            s.put(&format!("j{i}"), Kind::Publication, "p", "d", &body)
                .expect("put");
        }
        let (n, bytes, _, _) = s.usage().expect("usage");
        assert!(bytes <= 1000, "{bytes} bytes kept");
        assert_eq!(n, 3, "the oldest went");
        assert!(s.records("j9").expect("records").len() == 1);
    }

    #[test]
    fn blobs_are_bounded_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let s = ReplicaStore::open(dir.path(), small()).expect("open");
            assert!(matches!(
                s.put_blob("big", &[0; 61]),
                Err(PutError::TooLarge(61, 60))
            ));
            s.put_blob("a", &[1; 50]).expect("a");
            s.put_blob("b", &[2; 50]).expect("b");
            s.put_blob("c", &[3; 50]).expect("c");
            assert_eq!(s.blob("a").expect("read"), None, "oldest evicted");
            s.put("j", Kind::Receipt, "e", "d", "{\"x\":1}")
                .expect("put");
        }
        let s = ReplicaStore::open(dir.path(), small()).expect("reopen");
        assert_eq!(s.blob("c").expect("read"), Some(vec![3; 50]));
        assert_eq!(s.records("j").expect("records")[0].body, "{\"x\":1}");
        assert!(s.has_receipt("j", "d").expect("has"));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let c = Connection::open(dir.path().join("replicas.db")).expect("db");
            c.pragma_update(None, "user_version", 99).expect("v");
        }
        assert!(ReplicaStore::open(dir.path(), small()).is_err());
    }
}
