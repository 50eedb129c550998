//! Module files kept by content hash: `<dir>/<sha256>.wasm`.
//!
//! The one writer of the module directory for every path (the API, the network
//! executor through the service, and `plasm run` on the command line), so the
//! naming, the atomic rename and the byte bound are decided in one place. Files
//! are written under a unique temporary name and renamed, so two processes
//! sharing a data dir (a running node and a `plasm run`) never see half a module.
//! With `fsync` on, the file and then the directory are synced before the module
//! counts as stored, so a power cut cannot leave a named file with missing bytes.
//! A file is checked against its name when read back: a torn or altered file (a
//! crash with `fsync` off, a disk error) is removed and reported as not held, and
//! the next upload of that module writes it again.

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
    /// Sync each file and the directory before a module counts as stored.
    fsync: bool,
}

impl ModuleStore {
    /// Opens (creating) the directory, without syncing writes.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        Self::open_with(dir, max_bytes, false)
    }

    /// Opens (creating) the directory; with `fsync`, every stored module is
    /// synced to disk, file and directory, before `put` returns.
    pub fn open_with(dir: &Path, max_bytes: u64, fsync: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            fsync,
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
        // A file of the wrong size is torn (a crash before its bytes reached the
        // disk): write it again. Same-size damage is caught when it is read.
        let held = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !held {
            // A unique temporary name: concurrent uploads of one module must not collide.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = self
                .dir
                .join(format!(".{sha}.{}.{n}.tmp", std::process::id()));
            // On a full disk the partial temporary file goes, so nothing half-written stays.
            if let Err(e) = self.write_file(&tmp, bytes) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            if let Err(e) = std::fs::rename(&tmp, &path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            if self.fsync {
                // The rename is durable only once the directory is.
                std::fs::File::open(&self.dir)?.sync_all()?;
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
        let path = self.path(sha256);
        match std::fs::read(&path) {
            Ok(b) if crate::job::sha256_hex(&b) == sha256 => Ok(Some(b)),
            Ok(b) => {
                tracing::warn!(
                    path = %path.display(),
                    bytes = b.len(),
                    "a module file does not match its hash (torn or altered): removed"
                );
                let _ = std::fs::remove_file(&path);
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        if self.fsync {
            f.sync_all()?;
        }
        Ok(())
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

    #[test]
    fn a_torn_or_altered_file_is_detected_and_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = ModuleStore::open_with(&dir.path().join("modules"), 1 << 20, true).expect("open");
        let module = b"\0asm\x01\0\0\0 some module bytes".to_vec();
        let sha = m.put(&module).expect("put");
        // Torn: the name is there, half the bytes are not.
        std::fs::write(m.path(&sha), &module[..5]).expect("tear");
        assert_eq!(m.get(&sha).expect("get"), None, "a torn file is not served");
        assert!(!m.path(&sha).exists(), "and it is removed");
        std::fs::write(m.path(&sha), &module[..5]).expect("tear again");
        m.put(&module).expect("put again");
        assert_eq!(m.get(&sha).expect("get").as_deref(), Some(&module[..]));
        // Altered in place, same size: caught when read back.
        let mut flipped = module.clone();
        flipped[10] ^= 1;
        std::fs::write(m.path(&sha), &flipped).expect("flip");
        assert_eq!(m.get(&sha).expect("get"), None);
        m.put(&module).expect("rewrite");
        assert_eq!(m.get(&sha).expect("get").as_deref(), Some(&module[..]));
    }
}
