//! One node per data dir: `plasm start` holds an exclusive lock on
//! `<data dir>/node.lock` for its whole life, so a second node on the same data
//! dir (same peer id, same database) refuses to start and says which process holds
//! it. The lock is advisory (`flock`) and dies with the process, so a crash never
//! leaves a stale lock; commands that only read the key or run a job here
//! (`plasm run`, `plasm id`, `plasm receipt …`) do not take it and work beside a
//! running node.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data dir.
pub const LOCK_FILE: &str = "node.lock";

/// Why the data dir could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "another plasm node is running on data dir {dir}{holder}: stop it, or give this one its own --data-dir"
    )]
    Held {
        /// The data dir.
        dir: PathBuf,
        /// ` (pid N)` when the holder wrote its pid.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The held lock: released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the data dir's lock, creating the dir and the file as needed.
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                dir: dir.to_owned(),
                holder: if pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty() {
                    format!(" (pid {pid})")
                } else {
                    String::new()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    // The holder's pid, for the message a second node prints.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_goes() {
        let d = tempfile::tempdir().expect("tmp");
        let first = lock(d.path()).expect("first");
        let e = lock(d.path()).expect_err("second");
        let msg = e.to_string();
        assert!(msg.contains("another plasm node is running"), "{msg}");
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        drop(first);
        lock(d.path()).expect("free again");
    }
}
