//! Retention, as a bounded background task rather than per-request work.
//!
//! Two policies, both run by the node's once-a-second `retention` task:
//! outputs (stdout) are kept for the newest `max_outputs` jobs; whole jobs
//! (manifest, state, receipt) are kept longest, and a job row is deleted only
//! when it is *both* older than [`JobRetention::min_age`] (90 days by default,
//! by `finished_at`) *and* outside the newest [`JobRetention::min_jobs`]
//! (1,000,000 by default). Jobs not yet finished are never deleted.
//!
//! The store keeps the newest `max_outputs` outputs (receipts are kept much longer, below).
//! Clearing older outputs used to run inside every job's commit as an `UPDATE`
//! over every row below the bound, so each job paid for the whole history and
//! throughput fell as the store grew. Now a watermark remembers how far outputs
//! are already cleared; each pass touches only the rows between the watermark
//! and the bound, in batches that each hold the connection briefly, so a pass
//! costs what arrived since the last one and the request path pays nothing.

use super::{Store, StoreError};
use rusqlite::params;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Rows a single batch may touch while it holds the connection.
pub const PRUNE_BATCH: i64 = 2_000;

/// How long whole jobs are kept: a job goes only when both bounds are passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRetention {
    /// The newest this many jobs are always kept (0: the count keeps nothing by itself).
    pub min_jobs: u64,
    /// Jobs finished less than this long ago are always kept.
    pub min_age: Duration,
}

impl Default for JobRetention {
    fn default() -> Self {
        Self {
            min_jobs: 1_000_000,
            min_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl Store {
    /// Deletes whole jobs past both retention bounds, oldest first, at most
    /// `batch` rows per call (`now` is the current time); returns how many went.
    /// Stops at the first job that is too young or not finished: rows are in
    /// `seq` order, which is submission order, so each call costs one batch.
    pub fn prune_jobs(&self, batch: i64, now: time::OffsetDateTime) -> Result<u64, StoreError> {
        let r = self.job_retention;
        let cutoff = crate::time::format_rfc3339(
            now - time::Duration::seconds(i64::try_from(r.min_age.as_secs()).unwrap_or(i64::MAX)),
        );
        let conn = self.conn();
        let max: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM jobs", [], |r| r.get(0))?;
        let bound = max.saturating_sub(i64::try_from(r.min_jobs).unwrap_or(i64::MAX));
        if bound <= 0 {
            return Ok(0);
        }
        let mut old = Vec::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, finished_at FROM jobs WHERE seq <= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![bound, batch.max(1)], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
            })?;
            for row in rows {
                match row? {
                    (seq, Some(finished)) if finished < cutoff => old.push(seq),
                    _ => break,
                }
            }
        }
        let Some(&last) = old.last() else {
            return Ok(0);
        };
        let n = conn.execute(
            "DELETE FROM jobs WHERE seq >= ?1 AND seq <= ?2",
            params![old[0], last],
        )?;
        Ok(n as u64)
    }

    /// Clears outputs older than the newest `max_outputs`, in batches of at most
    /// `batch` rows; returns how many outputs were cleared. Cheap when there is
    /// nothing new: one indexed `MAX(seq)` lookup.
    pub fn prune_outputs(&self, batch: i64) -> Result<u64, StoreError> {
        if self.max_outputs == 0 {
            return Ok(0);
        }
        let batch = batch.max(1);
        let mut cleared = 0u64;
        loop {
            let conn = self.conn();
            let max: i64 =
                conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM jobs", [], |r| r.get(0))?;
            let bound = max - self.max_outputs as i64;
            let from = self.pruned_upto.load(Ordering::Relaxed);
            if bound <= from {
                return Ok(cleared);
            }
            let to = bound.min(from + batch);
            let n = conn.execute(
                "UPDATE jobs SET stdout = NULL WHERE seq > ?1 AND seq <= ?2 AND stdout IS NOT NULL",
                params![from, to],
            )?;
            self.pruned_upto.store(to, Ordering::Relaxed);
            cleared += n as u64;
            drop(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_go_only_past_both_bounds_and_never_unfinished() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path(), false, 0)
            .expect("open")
            .with_job_retention(JobRetention {
                min_jobs: 5,
                min_age: Duration::from_secs(3600),
            });
        for i in 1..=12 {
            finish(&store, i);
        }
        // Job 3 never finished (still queued).
        store
            .conn()
            .execute(
                "UPDATE jobs SET finished_at = NULL, state = 'queued' WHERE seq = 3",
                [],
            )
            .expect("unfinish");
        let now = time::OffsetDateTime::now_utc();
        // Everything finished just now: too young, whatever the count.
        assert_eq!(store.prune_jobs(100, now).expect("prune"), 0);
        // Two hours later: jobs 1-2 go, job 3 (unfinished) stops the pass.
        let later = now + time::Duration::hours(2);
        assert_eq!(store.prune_jobs(100, later).expect("prune"), 2);
        assert!(store.job(&format!("{:064}", 2)).expect("read").is_none());
        assert!(store.job(&format!("{:064}", 3)).expect("read").is_some());
        store
            .finish(&format!("{:064}", 3), "me", ("local", None), "{}", b"out")
            .expect("finish 3");
        store
            .conn()
            .execute(
                "UPDATE jobs SET finished_at = '2000-01-01T00:00:00.000Z' WHERE seq = 3",
                [],
            )
            .expect("age");
        // Batches of 2; the newest 5 (8-12) always stay.
        assert_eq!(store.prune_jobs(2, later).expect("prune"), 2);
        assert_eq!(store.prune_jobs(100, later).expect("prune"), 3);
        assert_eq!(store.prune_jobs(100, later).expect("prune"), 0);
        for i in 1..=7 {
            assert!(
                store.job(&format!("{i:064}")).expect("read").is_none(),
                "{i}"
            );
        }
        for i in 8..=12 {
            assert!(
                store.job(&format!("{i:064}")).expect("read").is_some(),
                "{i}"
            );
        }
        // The nonces of deleted jobs are free again; the store stays whole.
        assert_eq!(store.integrity_check().expect("check"), "ok");
    }

    fn finish(store: &Store, i: usize) {
        let id = format!("{i:064}");
        store
            .insert_job(&id, &format!("nonce-{i:016}"), "{}", "local")
            .expect("insert");
        store
            .finish(&id, "me", ("local", None), "{}", b"out")
            .expect("finish");
    }

    #[test]
    fn outputs_beyond_the_bound_are_cleared_by_the_pass_not_the_commit() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path(), false, 10).expect("open");
        for i in 1..=25 {
            finish(&store, i);
        }
        // The commit no longer prunes: every output is still there.
        assert!(store.output(&format!("{:064}", 1)).expect("read").is_some());
        assert_eq!(store.prune_outputs(4).expect("prune"), 15);
        assert!(
            store
                .output(&format!("{:064}", 15))
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .output(&format!("{:064}", 16))
                .expect("read")
                .is_some()
        );
        // Nothing new: nothing to do.
        assert_eq!(store.prune_outputs(4).expect("prune"), 0);
        for i in 26..=30 {
            finish(&store, i);
        }
        assert_eq!(store.prune_outputs(1000).expect("prune"), 5);
        assert!(
            store
                .output(&format!("{:064}", 20))
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .output(&format!("{:064}", 21))
                .expect("read")
                .is_some()
        );
        // Receipts stay.
        assert!(store.job(&format!("{:064}", 1)).expect("read").is_some());
    }

    #[test]
    fn a_reopened_store_finishes_what_the_last_process_left() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let store = Store::open(dir.path(), false, 0).expect("open");
            for i in 1..=12 {
                finish(&store, i);
            }
        }
        let store = Store::open(dir.path(), false, 2).expect("reopen");
        assert_eq!(store.prune_outputs(PRUNE_BATCH).expect("prune"), 10);
        assert!(
            store
                .output(&format!("{:064}", 11))
                .expect("read")
                .is_some()
        );
    }
}
