//! The command-line side of node keys: where each command keeps its key file, loading (or
//! making) it, and saying the node's id at start.
//!
//! - `file-owner` and `peer share` (a directory, a publisher): the user's config folder,
//!   `$XDG_CONFIG_HOME/ringswarm/node.key` or `~/.config/ringswarm/node.key`. Their tickets
//!   pin this key, so it must stay the same whichever folder they serve, and a user runs few
//!   of them.
//! - `peer` (ring, get, join): `.node.key` in the peer's own folder (`--dir`, or
//!   `peer-PORT/`). Many peers of one user often run on one machine; each is its own member
//!   of the swarm, and its folder already holds its state. The name is hidden, so sharing
//!   that folder (`file-owner`, `peer share`: hidden files are skipped) never shares it.
//! - `--key FILE` (or `RINGSWARM_KEY`) chooses another file.
//! - `peer list|search|locate` keep no identity: a fresh key per run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::anyhow;

use crate::auth::Secret;
use crate::cli::print_out;
use crate::key::{KEY_FILE, NodeKey};
use crate::secure::Identity;

/// The environment variable read when `--key` is not given.
pub const KEY_ENV: &str = "RINGSWARM_KEY";

/// The key file of a directory or publisher, unless `--key` says: in the user's config
/// folder.
///
/// # Errors
///
/// Neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn user_key_path() -> anyhow::Result<PathBuf> {
    let set = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let base = set("XDG_CONFIG_HOME")
        .or_else(|| set("HOME").map(|h| h.join(".config")))
        .ok_or_else(|| {
            anyhow!("no config folder for the node key (neither XDG_CONFIG_HOME nor HOME is set): give --key FILE")
        })?;
    Ok(base.join("ringswarm").join(KEY_FILE))
}

/// The key file's name in a peer's folder (hidden: a shared folder's hidden files are not
/// shared).
pub const PEER_KEY_FILE: &str = ".node.key";

/// The key file of a peer whose folder is `dir`, unless `--key` says.
pub fn peer_key_path(dir: &Path) -> PathBuf {
    dir.join(PEER_KEY_FILE)
}

/// Loads the key kept in `path` (making it, mode 0600, when there is none), prints
/// `node id: rsw1…` (unless `quiet`), and returns this node's identity in the swarm of
/// `secret`.
///
/// # Errors
///
/// The key file is unusable (named, with what to do), or stdout cannot be written.
pub fn load(path: &Path, secret: Option<Secret>, quiet: bool) -> anyhow::Result<Arc<Identity>> {
    let (key, created) =
        NodeKey::load_or_create(path).map_err(|e| anyhow!("cannot use the node key {e}"))?;
    if quiet {
        // Nothing but errors and the result.
    } else if created {
        print_out(&format!(
            "node id: {} (a new key, kept in {})\n",
            key.id(),
            path.display()
        ))?;
    } else {
        print_out(&format!("node id: {}\n", key.id()))?;
    }
    Ok(Arc::new(Identity::new(key, secret)))
}
