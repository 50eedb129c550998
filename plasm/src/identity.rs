//! The node identity: its libp2p Ed25519 keypair, which also signs receipts.
//!
//! One key serves both roles so that a receipt's executor is the very peer a
//! requester talked to. The key file holds libp2p's protobuf keypair encoding,
//! is created with mode 0600 (never wider), and is refused if group or others can
//! read it. The secret is zeroized on drop and never printed: `Debug` shows only
//! the peer id.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey};
use libp2p_identity::{Keypair, PeerId, ed25519};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File name of the identity key inside the data dir.
pub const KEY_FILE: &str = "identity.key";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading, writing or creating the key file or data dir failed.
    #[error("identity key file {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "identity key file {path} has mode {mode:o}; it must not be accessible to group or others (chmod 600)"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its current permission bits.
        mode: u32,
    },
    /// The data dir or the key belongs to another user, or others may write it:
    /// another user could plant a key this process would sign with.
    #[error(
        "{path} belongs to uid {owner} (mode {mode:o}) but plasm runs as uid {euid}; it must be this user's and not writable by group or others: run `chown {euid} {path}` and `chmod go-w {path}`, or point --data-dir at a directory of your own"
    )]
    NotOwned {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// The key file does not hold an Ed25519 libp2p keypair.
    #[error("identity key file {path} is not an Ed25519 libp2p keypair")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// The operating system gave no randomness for a new key.
    #[error("no randomness available to create a key: {0}")]
    Random(String),
}

/// A node's signing identity.
pub struct Identity {
    keypair: Keypair,
    signing: SigningKey,
    peer_id: PeerId,
    public_key: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

/// Refuses a file or directory that is not this process's user's own, or that
/// group or others may write (decision 0036).
pub fn owned_by_me(path: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return Err(IdentityError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
            euid,
        });
    }
    Ok(())
}

impl Identity {
    /// Builds an identity from a 32-byte Ed25519 seed (test vectors, tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut seed = Zeroizing::new(seed);
        let signing = SigningKey::from_bytes(&seed);
        // `try_from_bytes` zeroizes its argument; it only fails on a wrong length.
        let secret =
            ed25519::SecretKey::try_from_bytes(&mut seed[..]).expect("32-byte ed25519 seed");
        let ed = ed25519::Keypair::from(secret);
        let public_key = ed.public().to_bytes();
        let keypair = Keypair::from(ed);
        let peer_id = keypair.public().to_peer_id();
        Self {
            keypair,
            signing,
            peer_id,
            public_key,
        }
    }

    /// Generates a fresh random identity.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_seed(*seed))
    }

    /// Loads `<data_dir>/identity.key`, creating the dir (0700) and a new key (0600) when missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, source }
        };
        if !data_dir.exists() {
            fs::create_dir_all(data_dir).map_err(io(data_dir))?;
            fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
                .map_err(io(data_dir))?;
        }
        owned_by_me(data_dir)?;
        let path = data_dir.join(KEY_FILE);
        match fs::symlink_metadata(&path) {
            Ok(meta) => {
                // A symlinked key could point at any file another user chose.
                if meta.file_type().is_symlink() {
                    return Err(IdentityError::Permissions { path, mode: 0o777 });
                }
                owned_by_me(&path)?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(IdentityError::Permissions { path, mode });
                }
                let bytes = Zeroizing::new(fs::read(&path).map_err(io(&path))?);
                Self::from_protobuf(&bytes).ok_or(IdentityError::Malformed { path })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Self::generate()?;
                let encoded = Zeroizing::new(
                    id.keypair
                        .to_protobuf_encoding()
                        .map_err(|_| IdentityError::Malformed { path: path.clone() })?,
                );
                // Whole or not at all, synced with its directory: a crash never
                // leaves a torn key, and a power cut never a fresh node with a new
                // identity.
                crate::privfile::write(data_dir, KEY_FILE, &[encoded.as_slice()], true)
                    .map_err(io(&path))?;
                Ok(id)
            }
            Err(e) => Err(IdentityError::Io { path, source: e }),
        }
    }

    /// Loads a key file of the identity's format (libp2p's protobuf keypair
    /// encoding) anywhere: a publisher key (`plasm bootstrap keygen`), or a data
    /// dir's `identity.key`. Refused when it is a symlink, not this user's, or
    /// readable or writable by group or others.
    pub fn load_key_file(path: &Path) -> Result<Self, IdentityError> {
        let meta = fs::symlink_metadata(path).map_err(|source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.file_type().is_symlink() {
            return Err(IdentityError::Permissions {
                path: path.to_path_buf(),
                mode: 0o777,
            });
        }
        owned_by_me(path)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = Zeroizing::new(fs::read(path).map_err(|source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        })?);
        Self::from_protobuf(&bytes).ok_or_else(|| IdentityError::Malformed {
            path: path.to_path_buf(),
        })
    }

    /// Creates a new key file at `path` (mode 0600, written whole, synced); an
    /// existing file is never overwritten.
    pub fn create_key_file(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        if fs::symlink_metadata(path).is_ok() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists; not overwritten",
            )));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io(std::io::Error::other("no file name")))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let id = Self::generate()?;
        let encoded = Zeroizing::new(id.keypair.to_protobuf_encoding().map_err(|_| {
            IdentityError::Malformed {
                path: path.to_path_buf(),
            }
        })?);
        crate::privfile::write(dir, name, &[encoded.as_slice()], true).map_err(io)?;
        Ok(id)
    }

    fn from_protobuf(bytes: &[u8]) -> Option<Self> {
        let kp = Keypair::from_protobuf_encoding(bytes).ok()?;
        let ed = kp.try_into_ed25519().ok()?;
        let secret = ed.secret();
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(secret.as_ref());
        Some(Self::from_seed(*seed))
    }

    /// The libp2p keypair (for the swarm).
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The peer id derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The public key as standard padded base64, the form receipts carry.
    pub fn public_key_b64(&self) -> String {
        B64.encode(self.public_key)
    }

    /// Signs `msg` with Ed25519.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

/// Derives the libp2p peer id of a raw Ed25519 public key.
pub fn peer_id_of(public_key: &[u8; 32]) -> Option<PeerId> {
    let pk = ed25519::PublicKey::try_from_bytes(public_key).ok()?;
    Some(libp2p_identity::PublicKey::from(pk).to_peer_id())
}

/// The binary peer id of an Ed25519 key, built without decoding the curve point:
/// an identity multihash (`0x00`, length 36) of the protobuf `PublicKey`
/// (`08 01` = type Ed25519, `12 20` = 32 data bytes) followed by the key. Its
/// base58btc form is the familiar `12D3KooW...`; other verifiers (the PHP SDK)
/// rebuild exactly these bytes.
pub fn peer_id_bytes(public_key: &[u8; 32]) -> [u8; 38] {
    let mut out = [0u8; 38];
    out[..6].copy_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
    out[6..].copy_from_slice(public_key);
    out
}

/// Whether the text `peer_id` names the holder of `public_key`.
pub fn peer_id_matches(peer_id: &str, public_key: &[u8; 32]) -> bool {
    peer_id
        .parse::<PeerId>()
        .is_ok_and(|p| p.to_bytes() == peer_id_bytes(public_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::load_or_create(dir.path()).expect("create");
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let b = Identity::load_or_create(dir.path()).expect("load");
        assert_eq!(a.peer_id(), b.peer_id());
        assert_eq!(a.sign(b"x"), b.sign(b"x"));
    }

    #[test]
    fn key_files_anywhere_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("publisher.key");
        let a = Identity::create_key_file(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            Identity::create_key_file(&path).is_err(),
            "never overwritten"
        );
        let b = Identity::load_key_file(&path).expect("load");
        assert_eq!(a.public_key(), b.public_key());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            Identity::load_key_file(&path),
            Err(IdentityError::Permissions { .. })
        ));
        // A data dir's identity key is the same format.
        let id = Identity::load_or_create(dir.path()).expect("identity");
        let same = Identity::load_key_file(&dir.path().join(KEY_FILE)).expect("load");
        assert_eq!(id.peer_id(), same.peer_id());
    }

    #[test]
    fn refuses_world_readable_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        Identity::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Permissions { .. })
        ));
    }

    #[test]
    fn refuses_garbage_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, b"not a key").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
    }

    #[test]
    fn debug_never_shows_secret() {
        let id = Identity::from_seed([7u8; 32]);
        let dbg = format!("{id:?}");
        assert!(dbg.contains(&id.peer_id().to_string()));
        assert!(!dbg.contains(&hex::encode([7u8; 32])));
        assert!(!dbg.contains("signing"));
    }

    #[test]
    fn peer_id_derivation_matches() {
        let id = Identity::from_seed([1u8; 32]);
        assert_eq!(peer_id_of(&id.public_key()), Some(id.peer_id()));
        assert_eq!(id.peer_id().to_bytes(), peer_id_bytes(&id.public_key()));
        assert!(peer_id_matches(&id.peer_id().to_string(), &id.public_key()));
        let other = Identity::from_seed([2u8; 32]);
        assert!(!peer_id_matches(
            &other.peer_id().to_string(),
            &id.public_key()
        ));
        assert!(!peer_id_matches("not-a-peer-id", &id.public_key()));
    }
}
