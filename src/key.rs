//! Node keys: every node's static X25519 key pair ([`NodeKey`]), the public half as an id
//! people and tickets use ([`NodeId`], `rsw1…`), and the key file that keeps it.
//!
//! The key file is text: a first line naming the format, then the private key as 64 hex
//! digits. It is created on first use with mode 0600 (owner only, never replaced), and a file
//! that is empty, corrupt, not a regular file, or readable by group or others is an error
//! that names the file and what to do: a node never silently takes a new identity, since
//! tickets and directories know it by its key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::RngCore;

/// The key file's name in a node's folder.
pub const KEY_FILE: &str = "node.key";
/// The key file's first line.
const KEY_HEADER: &str = "ringswarm node key v1";
/// What every id starts with.
pub const ID_PREFIX: &str = "rsw1";
/// Characters of an id's short form (prefix included), as shown at start and in lists.
pub const SHORT_ID_LEN: usize = 16;
/// The longest key file read, in bytes.
const MAX_KEY_FILE: u64 = 1024;

/// RFC 4648 base32 in lower case, without padding.
fn base32() -> data_encoding::Encoding {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.encoding().expect("a valid base32 alphabet")
}

/// A node's public key: who it is. Shown as `rsw1` and 52 base32 letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// The id of the public key `bytes`.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The public key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first [`SHORT_ID_LEN`] characters: enough to tell nodes apart by eye.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_ID_LEN);
        s
    }

    /// The public key as 64 hex digits (as `hello.node` carries it).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The id of 64 hex digits; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| Self(*h.as_bytes()))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ID_PREFIX}{}", base32().encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a text is not a node id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid node id {}: expected rsw1 and 52 base32 letters (a-z, 2-7)", crate::manifest::echo(.0))]
pub struct ParseNodeIdError(String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseNodeIdError(s.to_string());
        let body = s.strip_prefix(ID_PREFIX).ok_or_else(err)?;
        if body.len() != 52 {
            return Err(err());
        }
        let bytes = base32().decode(body.as_bytes()).map_err(|_| err())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| err())?;
        Ok(Self(bytes))
    }
}

/// A node's static key pair.
#[derive(Clone)]
pub struct NodeKey {
    private: [u8; 32],
    id: NodeId,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.id.short())
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {what}", .path.display())]
    Bad { path: PathBuf, what: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NodeKey {
    /// The key pair of the private key `private`.
    pub fn from_private(private: [u8; 32]) -> Self {
        let id = NodeId(public_of(&private));
        Self { private, id }
    }

    /// A fresh random key pair (for a node that keeps no identity: a query, a test).
    pub fn generate() -> Self {
        let mut private = [0u8; 32];
        rand::rng().fill_bytes(&mut private);
        Self::from_private(private)
    }

    /// A key pair derived from `seed` and `label`: the same every run (a seeded simulation).
    pub fn from_seed(seed: u64, label: &str) -> Self {
        let mut h = blake3::Hasher::new_derive_key("ringswarm 2026-12-04 seeded node key v1");
        h.update(&seed.to_le_bytes());
        h.update(label.as_bytes());
        Self::from_private(*h.finalize().as_bytes())
    }

    /// Who this is.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The private key, for the handshake.
    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }

    /// The key kept in `path`, created (mode 0600, with its folder) when there is none.
    /// Returns the key and whether it was created.
    ///
    /// # Errors
    ///
    /// The file is empty, corrupt, a link or not a regular file, readable by group or others,
    /// or cannot be read or created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::load(path) {
            Ok(k) => Ok((k, false)),
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Self::create(path).map(|k| (k, true))
            }
            Err(e) => Err(e),
        }
    }

    /// The key kept in `path`.
    ///
    /// # Errors
    ///
    /// As [`NodeKey::load_or_create`], and a missing file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let bad = |what: String| KeyError::Bad {
            path: path.to_path_buf(),
            what,
        };
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    bad("is a symbolic link; a node key must be a regular file".into())
                } else {
                    io(e)
                }
            })?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(bad("is not a regular file".into()));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "is readable by others (mode {mode:04o}): a node key must be private; \
                 run chmod 600 on it"
            )));
        }
        let mut text = String::new();
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(|_| bad(corrupt("it is not text")))?;
        if text.is_empty() {
            return Err(bad(corrupt("it is empty")));
        }
        let mut lines = text.lines();
        if lines.next() != Some(KEY_HEADER) {
            return Err(bad(corrupt(
                "its first line is not \"ringswarm node key v1\"",
            )));
        }
        let private = lines
            .next()
            .and_then(|l| blake3::Hash::from_hex(l.trim()).ok())
            .ok_or_else(|| bad(corrupt("its second line is not 64 hex digits")))?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(bad(corrupt("it has more than two lines")));
        }
        Ok(Self::from_private(*private.as_bytes()))
    }

    fn create(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let key = Self::generate();
        // Written whole beside it, then linked in place: a link never replaces a file, so
        // of two nodes starting at once on the same path, the second reads the first's key.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".new.{:016x}", rand::random::<u64>()));
        let tmp = PathBuf::from(tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| {
                let hex = blake3::Hash::from_bytes(key.private).to_hex();
                file.write_all(format!("{KEY_HEADER}\n{hex}\n").as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io(e)),
        }
    }
}

fn corrupt(why: &str) -> String {
    format!(
        "is not a node key ({why}); move it away to make a new key (the node then has a new \
         id, and tickets that pin the old one stop working), or restore it"
    )
}

/// The X25519 public key of `private`.
fn public_of(private: &[u8; 32]) -> [u8; 32] {
    use snow::resolvers::CryptoResolver;
    let mut dh = snow::resolvers::DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .expect("X25519 is built in");
    dh.set(private);
    let mut public = [0u8; 32];
    public.copy_from_slice(dh.pubkey());
    public
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_id_round_trips_and_refuses_garbage() {
        let key = NodeKey::generate();
        let text = key.id().to_string();
        assert!(text.starts_with("rsw1") && text.len() == 56, "{text}");
        assert_eq!(text.parse::<NodeId>().unwrap(), key.id());
        assert_eq!(key.id().short().len(), SHORT_ID_LEN);
        for bad in [
            "",
            "rsw1",
            "rsw2aaaa",
            &text[..55],
            &format!("{text}a"),
            &text.to_uppercase(),
        ] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?}");
        }
        let e = "rsw1\x1b[2J".parse::<NodeId>().unwrap_err().to_string();
        assert!(!e.contains('\x1b'), "{e}");
    }

    #[test]
    fn seeded_keys_are_the_same_every_run() {
        assert_eq!(
            NodeKey::from_seed(7, "a").id(),
            NodeKey::from_seed(7, "a").id()
        );
        assert_ne!(
            NodeKey::from_seed(7, "a").id(),
            NodeKey::from_seed(7, "b").id()
        );
    }

    #[test]
    fn a_key_file_is_created_private_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/node.key");
        let (a, created) = NodeKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = NodeKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn nodes_starting_at_once_share_the_first_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let makers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || NodeKey::load_or_create(&path).unwrap().0.id())
            })
            .collect();
        let ids: Vec<NodeId> = makers.into_iter().map(|m| m.join().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 1, "temporary files were left behind");
    }

    #[test]
    fn a_bad_key_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let cases: [(&[u8], u32, &str); 4] = [
            (b"", 0o600, "it is empty"),
            (b"garbage\n", 0o600, "first line"),
            (b"ringswarm node key v1\nxyz\n", 0o600, "64 hex digits"),
            (b"ringswarm node key v1\n", 0o644, "mode 0644"),
        ];
        for (content, mode, says) in cases {
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = NodeKey::load_or_create(&path).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("node.key"), "{e}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                content,
                "the file was replaced"
            );
        }
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = NodeKey::load_or_create(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }
}
