//! Private files written whole or not at all.
//!
//! The identity key, the cache's secret and every cache entry are written the
//! same way: to a temporary name of their own in the same directory, created
//! new with mode 0600 (never following a file someone left there), then renamed
//! over the final name, so a reader never sees a torn file and a crash leaves at
//! most a stray temporary. A durable write also syncs the file and the
//! directory, so the rename survives a power cut.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes the concatenation of `parts` to `dir/name` (mode 0600, atomically).
pub fn write(dir: &Path, name: &str, parts: &[&[u8]], durable: bool) -> std::io::Result<()> {
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(name))?;
        if durable {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_whole_private_files_and_leaves_no_temporary() {
        let d = tempfile::tempdir().expect("tmp");
        write(d.path(), "f", &[b"ab", b"cd"], true).expect("write");
        assert_eq!(fs::read(d.path().join("f")).expect("read"), b"abcd");
        let mode = fs::metadata(d.path().join("f"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        write(d.path(), "f", &[b"x"], false).expect("overwrite");
        assert_eq!(fs::read(d.path().join("f")).expect("read"), b"x");
        assert_eq!(fs::read_dir(d.path()).expect("dir").count(), 1);
    }
}
