//! The chunk store's errors, and the helpers that build them with the path they are about.

use std::path::{Path, PathBuf};

use crate::hash::Hash;
use crate::manifest::display_name;
use crate::units::human_size;

/// Errors of the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {}: {source}", shown(path))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("chunk {chunk} hash mismatch: expected {}, got {}", expected.short(), actual.short())]
    ChunkHashMismatch {
        chunk: u32,
        expected: Hash,
        actual: Hash,
    },
    #[error("chunk {chunk} has {actual} bytes, expected {expected}")]
    ChunkLength {
        chunk: u32,
        expected: usize,
        actual: usize,
    },
    #[error("whole-file hash mismatch for {}: expected {}, got {}", display_name(name), expected.short(), actual.short())]
    FileHashMismatch {
        name: String,
        expected: Hash,
        actual: Hash,
    },
    #[error(
        "{} exists and is not a verified copy of this file: refusing to replace it (move it away or use another --dir)",
        shown(.0)
    )]
    WouldReplace(PathBuf),
    #[error(
        "{} needs {needed} bytes ({}) more, {} has {available} available ({}): free some space or use another --dir",
        display_name(name), human_size(*needed), shown(dir), human_size(*available)
    )]
    NoSpace {
        name: String,
        needed: u64,
        dir: PathBuf,
        available: u64,
    },
    #[error(
        "{} is not a folder (a symlink?): refusing to store chunks through it",
        shown(.0)
    )]
    NotAFolder(PathBuf),
    #[error("bug: {0}")]
    Bug(&'static str),
}

/// A path in an error message: the file name in it is the owner's choice (see
/// [`display_name`]).
pub(super) fn shown(path: &Path) -> String {
    display_name(&path.to_string_lossy()).to_string()
}

pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
