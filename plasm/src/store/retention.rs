//! Output retention, as a bounded background task rather than per-request work.
//!
//! The store keeps the newest `max_outputs` outputs (receipts are always kept).
//! Clearing older outputs used to run inside every job's commit as an `UPDATE`
//! over every row below the bound, so each job paid for the whole history and
//! throughput fell as the store grew. Now a watermark remembers how far outputs
//! are already cleared; each pass touches only the rows between the watermark
//! and the bound, in batches that each hold the connection briefly, so a pass
//! costs what arrived since the last one and the request path pays nothing.

use super::{Store, StoreError};
use rusqlite::params;
use std::sync::atomic::Ordering;

/// Rows a single batch may touch while it holds the connection.
pub const PRUNE_BATCH: i64 = 2_000;

impl Store {
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
