//! Jobs this node ran for peers: who asked, how each ended, the fuel it used and
//! when, with its signed receipt. An executor lists them (`GET /v1/served`, the
//! dashboard) although nobody submitted them here. Bounded: the newest
//! [`MAX_SERVED`] are kept.

use super::{Store, StoreError};
use crate::job::ServedJob;
use rusqlite::params;

/// Records of jobs run for peers kept (the oldest go first).
pub const MAX_SERVED: i64 = 10_000;

fn served_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServedJob> {
    Ok(ServedJob {
        job_id: r.get(0)?,
        requester: r.get(1)?,
        outcome: r.get(2)?,
        exit_status: r
            .get::<_, Option<i64>>(3)?
            .and_then(|c| u8::try_from(c).ok()),
        fuel_used: r
            .get::<_, Option<i64>>(4)?
            .and_then(|f| u64::try_from(f).ok()),
        path: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        error: r.get(8)?,
        receipt: r.get(9)?,
    })
}

impl Store {
    /// Records a job run for a peer, dropping the oldest beyond [`MAX_SERVED`].
    pub fn record_served(&self, job: &ServedJob) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO served (job_id, requester, outcome, exit_status, fuel_used, path,
                                 started_at, finished_at, error, receipt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                job.job_id,
                job.requester,
                job.outcome,
                job.exit_status.map(i64::from),
                job.fuel_used.and_then(|f| i64::try_from(f).ok()),
                job.path,
                job.started_at,
                job.finished_at,
                job.error,
                job.receipt,
            ],
        )?;
        let seq = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM served WHERE seq <= ?1",
            params![seq - MAX_SERVED],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` jobs run for peers, newest first.
    pub fn served(&self, limit: usize) -> Result<Vec<ServedJob>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job_id, requester, outcome, exit_status, fuel_used, path, started_at,
                    finished_at, error, receipt
             FROM served ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
            served_row,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(i: u64) -> ServedJob {
        ServedJob {
            job_id: format!("job{i}"),
            requester: "12D3KooWrequester".into(),
            outcome: Some("exited".into()),
            exit_status: Some(0),
            fuel_used: Some(i),
            path: "direct".into(),
            started_at: "2026-12-07T00:00:00Z".into(),
            finished_at: "2026-12-07T00:00:01Z".into(),
            error: None,
            receipt: Some("{}".into()),
        }
    }

    #[test]
    fn served_jobs_are_listed_newest_first_and_bounded() {
        let d = tempfile::tempdir().expect("tmp");
        let s = Store::open(d.path(), false, 10).expect("store");
        for i in 0..5 {
            s.record_served(&job(i)).expect("record");
        }
        let rows = s.served(3).expect("list");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], job(4));
        // The bound: rows older than the newest MAX_SERVED go.
        s.conn()
            .execute("UPDATE served SET seq = seq - ?1", params![MAX_SERVED])
            .expect("age");
        s.record_served(&job(9)).expect("record");
        let rows = s.served(100).expect("list");
        assert_eq!(rows.len(), 1, "only the newest is within the bound");
        assert_eq!(rows[0].job_id, "job9");
    }
}
