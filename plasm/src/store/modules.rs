//! Module files kept by content hash: `<dir>/<sha256>.wasm`.
//!
//! The one writer of the module directory for every path (the API, the network
//! executor through the service, and `plasm run` on the command line), so the
//! naming, the atomic rename and the byte bound are decided in one place. Files
//! are written under a unique temporary name and renamed, so two processes
//! sharing a data dir (a running node and a `plasm run`) never see half a module.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Default bound on stored module bytes (1 GiB).
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 1 << 30;

/// A directory of modules named by their SHA-256, bounded in bytes.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    dir: PathBuf,
    /// Bytes of module files kept; the least recently stored go first.
    max_bytes: u64,
}

impl ModuleStore {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    /// Where the module with this hash lives (whether or not it is held).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Stores module bytes under their hash (idempotent); returns the hash.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha = crate::job::sha256_hex(bytes);
        let path = self.path(&sha);
        if !path.exists() {
            // A unique temporary name: concurrent uploads of one module must not collide.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = self
                .dir
                .join(format!(".{sha}.{}.{n}.tmp", std::process::id()));
            // On a full disk the partial temporary file goes, so nothing half-written stays.
            if let Err(e) = std::fs::write(&tmp, bytes) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            if let Err(e) = std::fs::rename(&tmp, &path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            self.trim(&path)?;
        }
        Ok(sha)
    }

    /// Module bytes by hash; `None` when not held or when `sha256` is not
    /// lowercase hex of the right length (it names a file, so nothing else is tried).
    pub fn get(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        match std::fs::read(self.path(sha256)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the oldest module files until the total fits the bound, never `keep`.
    fn trim(&self, keep: &Path) -> std::io::Result<()> {
        let mut files = Vec::new();
        let mut total = 0u64;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if entry.path().extension().is_some_and(|e| e == "wasm") {
                total += meta.len();
                files.push((meta.modified()?, meta.len(), entry.path()));
            }
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        Ok(())
    }
}

/// Lowercase hex of 32 bytes.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_refuse_non_hashes() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = ModuleStore::open(&dir.path().join("modules"), 1 << 20).expect("open");
        let sha = m.put(b"\0asm\x01\0\0\0").expect("put");
        assert_eq!(m.put(b"\0asm\x01\0\0\0").expect("again"), sha);
        assert_eq!(
            m.get(&sha).expect("get").as_deref(),
            Some(&b"\0asm\x01\0\0\0"[..])
        );
        assert_eq!(m.get(&sha.to_uppercase()).expect("upper"), None);
        assert_eq!(m.get("../plasm.db").expect("traversal"), None);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("modules"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
