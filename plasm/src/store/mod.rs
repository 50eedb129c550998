//! The durable store: SQLite (WAL) for jobs and receipts, files for modules.
//!
//! A job's receipt and output are committed in one transaction before anyone is
//! told the job finished, so `kill -9` at any moment loses nothing a client heard
//! about. WAL with `synchronous=NORMAL` survives process crashes; `FULL` (config
//! `store.fsync = true`) also survives power loss at a cost in throughput. All calls
//! are blocking: async callers go through `spawn_blocking`.

use rusqlite::{Connection, OptionalExtension, params};
mod modules;
pub mod replicas;
mod retention;
mod served;
pub use retention::PRUNE_BATCH;
pub use served::MAX_SERVED;

use std::path::Path;
use std::sync::Mutex;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A module file could not be read or written.
    #[error("module file: {0}")]
    Io(#[from] std::io::Error),
    /// The job id or nonce is already stored.
    #[error("a job with this id or nonce already exists")]
    Duplicate,
    /// The disk under the data dir is full. The failed write was rolled back
    /// (SQLite) or removed (module files): nothing stored is damaged.
    #[error("the disk under the data dir is full")]
    DiskFull,
}

impl StoreError {
    /// Recognises a full disk in SQLite's and the file system's errors, so callers
    /// can say so instead of reporting an internal error.
    pub fn classify(self) -> Self {
        let full = match &self {
            Self::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            Self::Io(e) => e.raw_os_error() == Some(28), // ENOSPC
            _ => false,
        };
        if full { Self::DiskFull } else { self }
    }
}

/// Job states as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Accepted, waiting for a worker or an executor.
    Queued,
    /// Running here or on a peer.
    Running,
    /// Finished with a verified receipt (whatever the job's outcome).
    Succeeded,
    /// No receipt: the node failed, restarted, or no executor completed it.
    Failed,
}

impl JobState {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            _ => Self::Failed,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Job id.
    pub job_id: String,
    /// Manifest JSON text.
    pub manifest: String,
    /// State.
    pub state: JobState,
    /// `local`, `remote` or `any`.
    pub placement: String,
    /// Executor peer id, once known.
    pub executor: Option<String>,
    /// RFC 3339 times.
    pub submitted_at: String,
    /// When it started running.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Signed receipt JSON.
    pub receipt: Option<String>,
    /// Where the bytes went: `local`, `direct`, `hole-punched` or `relayed`.
    pub path: Option<String>,
    /// The relay's peer id, when relayed.
    pub relay: Option<String>,
    /// Every executor a remote job was tried on, as a JSON array (issue 23).
    pub attempts: Option<String>,
}

/// The store.
pub struct Store {
    conn: Mutex<Connection>,
    modules: ModuleStore,
    /// Outputs kept (the newest); older outputs are dropped, receipts are kept.
    max_outputs: u64,
    /// Every output at or below this `seq` is already cleared (see `retention`).
    pruned_upto: std::sync::atomic::AtomicI64,
    /// How long whole jobs (manifest, receipt) are kept (see `retention`).
    job_retention: JobRetention,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("modules", &self.modules)
            .finish_non_exhaustive()
    }
}

pub use modules::{DEFAULT_MAX_MODULE_BYTES, ModuleStore};
pub use retention::JobRetention;

/// The columns [`job_row`] reads, in its order.
const JOB_COLUMNS: &str = "job_id, manifest, state, placement, executor, submitted_at, \
    started_at, finished_at, error, receipt, path, relay, attempts";

/// A [`JobRow`] from a row selected with [`JOB_COLUMNS`].
fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        job_id: r.get(0)?,
        manifest: r.get(1)?,
        state: JobState::parse(&r.get::<_, String>(2)?),
        placement: r.get(3)?,
        executor: r.get(4)?,
        submitted_at: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        error: r.get(8)?,
        receipt: r.get(9)?,
        path: r.get(10)?,
        relay: r.get(11)?,
        attempts: r.get(12)?,
    })
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    nonce TEXT NOT NULL UNIQUE,
    manifest TEXT NOT NULL,
    state TEXT NOT NULL,
    placement TEXT NOT NULL,
    executor TEXT,
    submitted_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    receipt TEXT,
    stdout BLOB,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs(seq);
";

/// Schema migrations, in order: entry `i` takes `PRAGMA user_version` from `i` to
/// `i + 1`. A database written by an older release is brought forward on open;
/// nothing is ever dropped.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: where a job's bytes went (`local`, `direct`, `hole-punched`,
    // `relayed`) and through which relay.
    "ALTER TABLE jobs ADD COLUMN path TEXT; ALTER TABLE jobs ADD COLUMN relay TEXT;",
    // 1 -> 2: jobs this node ran for peers (store/served.rs).
    "CREATE TABLE served (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        requester TEXT NOT NULL,
        outcome TEXT,
        exit_status INTEGER,
        fuel_used INTEGER,
        path TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        error TEXT,
        receipt TEXT
    );",
    // 2 -> 3: every executor a remote job was tried on, and this node's own
    // evidence about each peer (decision 0052).
    "ALTER TABLE jobs ADD COLUMN attempts TEXT;
     CREATE TABLE reputation (
        peer TEXT PRIMARY KEY,
        good REAL NOT NULL,
        bad REAL NOT NULL,
        at INTEGER NOT NULL
    );",
];

/// Peers whose reputation is kept.
pub const MAX_REPUTATION: usize = 10_000;

/// The schema version this release writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

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

impl Store {
    /// Opens (creating) `<data_dir>/plasm.db` and `<data_dir>/modules/`.
    pub fn open(data_dir: &Path, fsync: bool, max_outputs: u64) -> Result<Self, StoreError> {
        Self::open_with(data_dir, fsync, max_outputs, DEFAULT_MAX_MODULE_BYTES)
    }

    /// Opens with an explicit bound on stored module bytes.
    pub fn open_with(
        data_dir: &Path,
        fsync: bool,
        max_outputs: u64,
        max_module_bytes: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let modules = ModuleStore::open_with(&data_dir.join("modules"), max_module_bytes, fsync)?;
        let conn = Connection::open(data_dir.join("plasm.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(SCHEMA)?;
        let mut conn = conn;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            modules,
            max_outputs,
            pruned_upto: std::sync::atomic::AtomicI64::new(0),
            job_retention: JobRetention::default(),
        })
    }

    /// Sets how long whole jobs are kept (default: [`JobRetention::default`]).
    pub fn with_job_retention(mut self, retention: JobRetention) -> Self {
        self.job_retention = retention;
        self
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks jobs left queued or running by a previous process as failed; returns how many.
    pub fn recover(&self) -> Result<usize, StoreError> {
        let now = crate::time::now_rfc3339();
        Ok(self.conn().execute(
            "UPDATE jobs SET state = 'failed', finished_at = ?1,
               error = 'the node stopped before the job finished; submit it again with a new nonce'
             WHERE state IN ('queued', 'running')",
            params![now],
        )?)
    }

    /// Inserts a new queued job. Fails with `Duplicate` for a known job id or nonce.
    pub fn insert_job(
        &self,
        job_id: &str,
        nonce: &str,
        manifest: &str,
        placement: &str,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs", [], |r| {
            r.get(0)
        })?;
        let r = conn.execute(
            "INSERT INTO jobs (job_id, nonce, manifest, state, placement, submitted_at, seq)
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6)",
            params![
                job_id,
                nonce,
                manifest,
                placement,
                crate::time::now_rfc3339(),
                seq
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Duplicate)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records that a job started, and where.
    pub fn mark_running(&self, job_id: &str, executor: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET state = 'running', executor = ?2, started_at = ?3 WHERE job_id = ?1 AND state = 'queued'",
            params![job_id, executor, crate::time::now_rfc3339()],
        )?;
        Ok(())
    }

    /// Commits a finished job's receipt and output in one transaction.
    pub fn finish(
        &self,
        job_id: &str,
        executor: &str,
        route: (&str, Option<&str>),
        receipt: &str,
        stdout: &[u8],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE jobs SET state = 'succeeded', executor = ?2, receipt = ?3, stdout = ?4, finished_at = ?5,
               path = ?6, relay = ?7
             WHERE job_id = ?1",
            params![
                job_id,
                executor,
                receipt,
                stdout,
                crate::time::now_rfc3339(),
                route.0,
                route.1
            ],
        )?;
        // Older outputs are cleared by the retention pass (`retention.rs`), not here.
        tx.commit()?;
        Ok(())
    }

    /// SQLite's `PRAGMA integrity_check`: `ok`, or the first problem it found.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// Forgets a job that was refused before it ran (so the client may retry it).
    pub fn delete_job(&self, job_id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM jobs WHERE job_id = ?1 AND receipt IS NULL",
            params![job_id],
        )?;
        Ok(())
    }

    /// Records every executor a remote job was tried on (a JSON array).
    pub fn set_attempts(&self, job_id: &str, attempts: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET attempts = ?2 WHERE job_id = ?1",
            params![job_id, attempts],
        )?;
        Ok(())
    }

    /// Stores peers' reputation records, keeping at most [`MAX_REPUTATION`]
    /// (those with the least evidence go first).
    pub fn save_reputation(
        &self,
        records: &[(String, crate::sched::reputation::Record)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (peer, r) in records {
            tx.execute(
                "INSERT INTO reputation (peer, good, bad, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(peer) DO UPDATE SET good = ?2, bad = ?3, at = ?4",
                params![peer, r.good, r.bad, r.at],
            )?;
        }
        tx.execute(
            "DELETE FROM reputation WHERE peer NOT IN
               (SELECT peer FROM reputation ORDER BY good + bad DESC, at DESC LIMIT ?1)",
            params![MAX_REPUTATION as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every peer's stored reputation record.
    pub fn reputation(
        &self,
    ) -> Result<Vec<(String, crate::sched::reputation::Record)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT peer, good, bad, at FROM reputation")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                crate::sched::reputation::Record {
                    good: r.get(1)?,
                    bad: r.get(2)?,
                    at: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a failure (no receipt).
    pub fn fail(&self, job_id: &str, error: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET state = 'failed', error = ?2, finished_at = ?3 WHERE job_id = ?1",
            params![job_id, error, crate::time::now_rfc3339()],
        )?;
        Ok(())
    }

    /// A job by id.
    pub fn job(&self, job_id: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"),
                params![job_id],
                job_row,
            )
            .optional()?)
    }

    /// The newest `limit` jobs, newest first (the dashboard's list). `seq` is
    /// indexed, so this reads `limit` rows whatever the table holds.
    pub fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], job_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// A job's stdout, when kept.
    pub fn output(&self, job_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT stdout FROM jobs WHERE job_id = ?1",
                params![job_id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Every stored receipt (for audits and the durability test).
    pub fn receipts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT job_id, receipt FROM jobs WHERE receipt IS NOT NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores module bytes under their hash (idempotent); returns the hash.
    pub fn put_module(&self, bytes: &[u8]) -> Result<String, StoreError> {
        Ok(self.modules.put(bytes)?)
    }

    /// Module bytes by hash (`None` for anything that is not a lowercase hex SHA-256).
    pub fn module(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.modules.get(sha256)?)
    }

    /// The module files.
    pub fn modules(&self) -> &ModuleStore {
        &self.modules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_duplicates_and_recovery() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path(), false, 1).expect("open");
        s.insert_job("a", "n1", "{}", "local").expect("insert");
        assert!(matches!(
            s.insert_job("a", "n2", "{}", "local"),
            Err(StoreError::Duplicate)
        ));
        assert!(matches!(
            s.insert_job("b", "n1", "{}", "local"),
            Err(StoreError::Duplicate)
        ));
        s.mark_running("a", "me").expect("running");
        s.finish("a", "me", ("local", None), "{\"r\":1}", b"out")
            .expect("finish");
        assert_eq!(s.output("a").expect("out"), Some(b"out".to_vec()));
        s.insert_job("b", "n2", "{}", "local").expect("insert");
        s.finish("b", "me", ("relayed", Some("R")), "{}", b"two")
            .expect("finish");
        // Retention (the background pass) keeps one output: the newest.
        assert_eq!(s.prune_outputs(PRUNE_BATCH).expect("prune"), 1);
        assert_eq!(s.output("a").expect("out"), None);
        assert_eq!(
            s.job("a").expect("job").map(|j| j.state),
            Some(JobState::Succeeded)
        );
        s.insert_job("c", "n3", "{}", "local").expect("insert");
        drop(s);
        let s = Store::open(dir.path(), false, 1).expect("reopen");
        assert_eq!(s.recover().expect("recover"), 1);
        let c = s.job("c").expect("job").expect("c");
        assert_eq!(c.state, JobState::Failed);
        assert!(c.error.is_some());
        assert_eq!(s.receipts().expect("receipts").len(), 2);
        let b = s.job("b").expect("job").expect("b");
        assert_eq!(
            (b.path.as_deref(), b.relay.as_deref()),
            (Some("relayed"), Some("R"))
        );
    }

    #[test]
    fn a_database_of_the_previous_release_opens_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            // What release 0.1.0 wrote: the schema without migrations, user_version 0.
            let conn = Connection::open(dir.path().join("plasm.db")).expect("db");
            conn.execute_batch(SCHEMA).expect("old schema");
            conn.execute(
                "INSERT INTO jobs (job_id, nonce, manifest, state, placement, executor, submitted_at, receipt, seq)
                 VALUES ('old', 'n', '{}', 'succeeded', 'remote', 'E', '2026-11-01T00:00:00Z', '{}', 1)",
                [],
            )
            .expect("old row");
        }
        let s = Store::open(dir.path(), false, 10).expect("opens and migrates");
        let old = s.job("old").expect("job").expect("kept");
        assert_eq!(
            (old.state, old.executor.as_deref()),
            (JobState::Succeeded, Some("E"))
        );
        assert_eq!(old.path, None, "unknown for jobs from before the migration");
        let version: u32 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        drop(s);
        // Opening again is a no-op.
        Store::open(dir.path(), false, 10).expect("reopens");
    }

    /// What the previous release (schema 2) wrote opens, gains the attempts
    /// column and the reputation table, and keeps its rows.
    #[test]
    fn a_schema_2_database_opens_and_keeps_reputation_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let mut conn = Connection::open(dir.path().join("plasm.db")).expect("db");
            conn.execute_batch(SCHEMA).expect("schema");
            let tx = conn.transaction().expect("tx");
            for sql in &MIGRATIONS[..2] {
                tx.execute_batch(sql).expect("old migrations");
            }
            tx.pragma_update(None, "user_version", 2).expect("version");
            tx.commit().expect("commit");
            conn.execute(
                "INSERT INTO jobs (job_id, nonce, manifest, state, placement, executor, submitted_at, receipt, seq, path)
                 VALUES ('old', 'n', '{}', 'succeeded', 'remote', 'E', '2026-12-01T00:00:00Z', '{}', 1, 'direct')",
                [],
            )
            .expect("old row");
        }
        let s = Store::open(dir.path(), false, 10).expect("opens and migrates");
        let old = s.job("old").expect("job").expect("kept");
        assert_eq!((old.path.as_deref(), old.attempts), (Some("direct"), None));
        s.set_attempts("old", "[]").expect("attempts");
        assert_eq!(
            s.job("old")
                .expect("job")
                .expect("kept")
                .attempts
                .as_deref(),
            Some("[]")
        );
        use crate::sched::reputation::Record;
        let rec = |g: f64| Record {
            good: g,
            bad: 1.0,
            at: 7,
        };
        s.save_reputation(&[("a".into(), rec(1.0)), ("b".into(), rec(2.0))])
            .expect("save");
        s.save_reputation(&[("a".into(), rec(5.0))])
            .expect("update");
        let mut got = s.reputation().expect("read");
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(got, vec![("a".into(), rec(5.0)), ("b".into(), rec(2.0))]);
        // Bounded: the peers with the least evidence go first.
        let many: Vec<(String, Record)> = (0..MAX_REPUTATION + 5)
            .map(|i| (format!("p{i}"), rec(10.0 + i as f64)))
            .collect();
        s.save_reputation(&many).expect("save many");
        let kept = s.reputation().expect("read");
        assert_eq!(kept.len(), MAX_REPUTATION);
        assert!(!kept.iter().any(|(p, _)| p == "a" || p == "b"));
    }

    #[test]
    fn module_files_are_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open_with(dir.path(), false, 10, 25).expect("open");
        let a = s.put_module(&[1u8; 10]).expect("a");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = s.put_module(&[2u8; 10]).expect("b");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let c = s.put_module(&[3u8; 10]).expect("c");
        assert_eq!(s.module(&a).expect("a"), None, "the oldest went first");
        assert!(s.module(&b).expect("b").is_some() && s.module(&c).expect("c").is_some());
    }

    #[test]
    fn modules_by_hash() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path(), false, 10).expect("open");
        let sha = s.put_module(b"bytes").expect("put");
        assert_eq!(s.module(&sha).expect("get"), Some(b"bytes".to_vec()));
        assert_eq!(s.module("../../etc/passwd").expect("get"), None);
        assert_eq!(s.module(&"0".repeat(64)).expect("get"), None);
    }
}
