//! `plasm run`'s own on-disk cache of instrumented modules and compiled code.
//!
//! Instrumenting a 30 MB module, or compiling it with Cranelift, costs far more
//! than running a short job, and `plasm run` is a fresh process every time, so
//! both results are kept on disk by content hash. (A node's worker processes
//! open no files and cache in memory: decision 0033.) The directory must belong
//! to this process's effective user and be 0700, or the cache is off: root
//! pointed at another user's data dir must never load what that user planted.
//! Each entry is a 0600 file whose first 32 bytes are an HMAC-SHA256, under a
//! per-cache secret (`.key`, 0600), of the entry's name and payload, so an entry
//! is bound to its key (which names the plasm build, the metering and the
//! engine configuration) and cannot be forged without the secret (decision
//! 0036). An entry with the wrong mode, owner or MAC is deleted and rebuilt.
//! Compiled code is deserialized only from here, never from bytes a peer sent
//! (decision 0028). The directory is bounded: beyond [`MAX_ENTRIES`] files or
//! [`MAX_BYTES`] bytes, the least recently written go.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Most files kept.
pub const MAX_ENTRIES: usize = 512;
/// Most bytes kept.
pub const MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// A cache directory.
#[derive(Clone)]
pub struct DiskCache {
    dir: PathBuf,
    uid: u32,
    secret: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The secret's file name inside the cache directory.
const SECRET_FILE: &str = ".key";

fn mac(secret: &[u8; 32], key: &str, payload: &[u8]) -> [u8; 32] {
    let Ok(mut m) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return [0; 32];
    };
    m.update(&(key.len() as u64).to_le_bytes());
    m.update(key.as_bytes());
    m.update(payload);
    m.finalize().into_bytes().into()
}

/// Reads the cache's secret, creating it (0600, this user's) on first use.
fn secret(dir: &Path, uid: u32) -> Option<zeroize::Zeroizing<[u8; 32]>> {
    let path = dir.join(SECRET_FILE);
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o077 != 0 || meta.len() != 32 {
            tracing::warn!(path = %path.display(), "cache secret is not a private file of this user; cache off");
            return None;
        }
        let bytes = zeroize::Zeroizing::new(fs::read(&path).ok()?);
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(bytes.get(..32)?);
        return Some(out);
    }
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(out.as_mut()).ok()?;
    crate::privfile::write(dir, SECRET_FILE, &[out.as_ref()], true).ok()?;
    // Another process may have made one meanwhile: use whichever won the rename.
    let bytes = zeroize::Zeroizing::new(fs::read(&path).ok()?);
    out.copy_from_slice(bytes.get(..32)?);
    Some(out)
}

impl DiskCache {
    /// Opens (creating, 0700) the cache directory. `None` when it cannot be made
    /// private: the cache is an optimisation and never a reason to fail a job.
    pub fn open(dir: &Path) -> Option<Self> {
        fs::create_dir_all(dir).ok()?;
        let uid = rustix::process::geteuid().as_raw();
        let meta = fs::symlink_metadata(dir).ok()?;
        if !meta.is_dir() || meta.uid() != uid {
            tracing::warn!(
                dir = %dir.display(),
                owner = meta.uid(),
                uid,
                "the cache directory is not this user's own; cache off (chown it, or use a data dir of your own)"
            );
            return None;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok()?;
        let secret = secret(dir, uid)?;
        Some(Self {
            dir: dir.to_owned(),
            uid,
            secret,
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
        if bytes.len() < 32 || mac(&self.secret, key, &bytes[32..]).as_slice() != &bytes[..32] {
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
        let tag = mac(&self.secret, key, payload);
        crate::privfile::write(&self.dir, key, &[&tag, payload], false)
    }

    /// Keeps the directory under its bounds, dropping the oldest entries first.
    fn trim(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != SECRET_FILE)
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
        // An entry renamed to another key (e.g. compiled code of another module): refused.
        cache.put("a", b"payload");
        fs::rename(dir.path().join("c/a"), dir.path().join("c/b")).expect("rename");
        assert_eq!(cache.get("b"), None);
        // An entry written with another cache's secret: refused.
        let other = DiskCache::open(&dir.path().join("d")).expect("open");
        other.put("k", b"payload");
        fs::copy(dir.path().join("d/k"), &path).expect("copy");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(cache.get("k"), None);
        // A world-readable file: refused and deleted.
        cache.put("k", b"payload");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(cache.get("k"), None);
        assert!(!path.exists());
    }
}
