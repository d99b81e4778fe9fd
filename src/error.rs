//! The crate's `Error`: one variant per module error, plus the peer's and owner's own.

use crate::manifest::ManifestError;
use crate::protocol::ProtocolError;
use crate::store::StoreError;

/// Any error of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("owner {owner} unreachable after {secs}s ({last}): is file-owner running there?")]
    OwnerUnreachable {
        owner: String,
        secs: u64,
        last: String,
    },
    #[error("{0}")]
    Refused(String),
    /// A source sent too many chunks that failed their hash.
    #[error("{0}")]
    BadChunks(String),
    #[error(
        "no progress for {secs}s with {have}/{total} chunks: {detail}; check that the neighbour and the owner are running"
    )]
    Stalled {
        secs: u64,
        have: u32,
        total: u32,
        detail: String,
    },
    #[error("bug: {0}")]
    Bug(String),
}

impl Error {
    /// Whether the other side should be told this error in an `error` message before the
    /// connection closes (not when the connection itself failed or the other side said why).
    pub fn deserves_reply(&self) -> bool {
        !matches!(
            self,
            Self::Protocol(ProtocolError::Remote(_) | ProtocolError::Io(_))
        )
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Bug(format!("task failed: {e}"))
    }
}
