//! The node's own on-disk cache of instrumented modules and compiled code.
//!
//! Instrumenting a 30 MB module, or compiling it with Cranelift, costs far more
//! than running a short job, and `plasm run` is a fresh process every time, so
//! both results are kept on disk by content hash. Entries are written only by
//! this process's user into a 0700 directory, as 0600 files holding a SHA-256
//! of their payload; an entry with the wrong mode, owner or digest is deleted
//! and rebuilt. Compiled code is deserialized only from here, never from bytes
//! a peer sent (decision 0028). The directory is bounded: beyond
//! [`MAX_ENTRIES`] files or [`MAX_BYTES`] bytes, the least recently written go.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Most files kept.
pub const MAX_ENTRIES: usize = 512;
/// Most bytes kept.
pub const MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// A cache directory.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
    uid: u32,
}

impl DiskCache {
    /// Opens (creating, 0700) the cache directory. `None` when it cannot be made
    /// private: the cache is an optimisation and never a reason to fail a job.
    pub fn open(dir: &Path) -> Option<Self> {
        fs::create_dir_all(dir).ok()?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok()?;
        let meta = fs::metadata(dir).ok()?;
        (meta.mode() & 0o077 == 0).then(|| Self {
            dir: dir.to_owned(),
            uid: meta.uid(),
        })
    }

    /// The payload stored under `key`, if present, private and intact.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(key);
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.mode() & 0o777 != 0o600 || meta.uid() != self.uid {
            tracing::warn!(path = %path.display(), "cache entry is not a private file; removed");
            let _ = fs::remove_file(&path);
            return None;
        }
        let bytes = fs::read(&path).ok()?;
        if bytes.len() < 32 || Sha256::digest(&bytes[32..]).as_slice() != &bytes[..32] {
            tracing::warn!(path = %path.display(), "cache entry is torn or altered; removed");
            let _ = fs::remove_file(&path);
            return None;
        }
        Some(bytes[32..].to_vec())
    }

    /// Stores `payload` under `key` (atomically; errors are logged and ignored).
    pub fn put(&self, key: &str, payload: &[u8]) {
        if let Err(e) = self.try_put(key, payload) {
            tracing::debug!(error = %e, "cache write failed");
        }
        self.trim();
    }

    fn try_put(&self, key: &str, payload: &[u8]) -> std::io::Result<()> {
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let tmp = self.dir.join(format!(".{key}.{}.tmp", hex::encode(nonce)));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = f
            .write_all(&Sha256::digest(payload))
            .and_then(|()| f.write_all(payload));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, self.dir.join(key)).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// Keeps the directory under its bounds, dropping the oldest entries first.
    fn trim(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let total: u64 = entries.iter().map(|e| e.1).sum();
        if entries.len() <= MAX_ENTRIES && total <= MAX_BYTES {
            return;
        }
        entries.sort();
        let (mut n, mut bytes) = (entries.len(), total);
        for (_, len, path) in entries {
            if n <= MAX_ENTRIES && bytes <= MAX_BYTES {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                n -= 1;
                bytes = bytes.saturating_sub(len);
            }
        }
    }
}

static GLOBAL: OnceLock<Option<DiskCache>> = OnceLock::new();

/// Sets the process's cache directory (the node's or `plasm run`'s data
/// directory + `cache`). Only the first call counts.
pub fn configure(dir: &Path) {
    let _ = GLOBAL.set(DiskCache::open(dir));
}

/// The process's cache, if one was configured and could be opened.
pub fn global() -> Option<&'static DiskCache> {
    GLOBAL.get().and_then(Option::as_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_ones_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(&dir.path().join("c")).expect("open");
        assert_eq!(cache.get("k"), None);
        cache.put("k", b"payload");
        assert_eq!(cache.get("k").as_deref(), Some(&b"payload"[..]));
        // A flipped byte: refused and deleted.
        let path = dir.path().join("c/k");
        let mut raw = fs::read(&path).expect("read");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(&path, &raw).expect("write");
        assert_eq!(cache.get("k"), None);
        assert!(!path.exists());
        // A world-readable file: refused and deleted.
        cache.put("k", b"payload");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(cache.get("k"), None);
        assert!(!path.exists());
    }
}
