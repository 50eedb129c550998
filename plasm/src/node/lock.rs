//! One node per data dir: `plasm start` holds an exclusive lock on the data dir
//! (its `node.lock` names the holder's pid) for its whole life, so a second node on the same data
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
    _dir: File,
}

/// The pid a running node wrote in `node.lock`, as ` (pid N)` for a message.
fn holder(path: &Path) -> String {
    let mut pid = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut pid);
    }
    let pid = pid.trim();
    if !pid.is_empty() && pid.len() <= 10 && pid.chars().all(|c| c.is_ascii_digit()) {
        format!(" (pid {pid})")
    } else {
        String::new()
    }
}

/// Takes the data dir's lock, creating the dir as needed. The lock is taken on the
/// directory itself (removing or replacing `node.lock` cannot release it, and every
/// spelling of the path, symlinks included, names the same directory); `node.lock`
/// only tells a second node which process holds it.
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let io = |path: &Path, source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let handle = File::open(dir).map_err(|e| io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    match handle.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(LockError::Held {
                dir: dir.to_owned(),
                holder: holder(&path),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(dir, e)),
    }
    // The holder's pid, for the message a second node prints (best effort: a file
    // this user cannot write changes nothing about the lock).
    if let Ok(mut file) = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
    }
    Ok(DataDirLock { _dir: handle })
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
        // Removing the pid file does not release the lock; another spelling of the
        // same directory does not get around it.
        std::fs::remove_file(d.path().join(LOCK_FILE)).expect("rm");
        assert!(lock(d.path()).is_err());
        let link = d.path().with_extension("link");
        std::os::unix::fs::symlink(d.path(), &link).expect("symlink");
        assert!(lock(&link).is_err());
        let _ = std::fs::remove_file(&link);
        drop(first);
        lock(d.path()).expect("free again");
    }
}
