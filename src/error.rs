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
    /// Every chunk matches its hash but the whole file does not match the manifest's.
    #[error("{0}")]
    InconsistentManifest(String),
    /// An error that retrying cannot mend (the disk is full, say): the peer stops with it.
    #[error("{0}")]
    Fatal(String),
    #[error("no progress for {secs}s with {have}/{total} chunks: {detail}")]
    Stalled {
        secs: u64,
        have: u32,
        total: u32,
        detail: String,
    },
    #[error("bug: {0}")]
    Bug(String),
}

/// What a server at its connection cap says before it closes (`owner is busy: …`,
/// `peer is busy: …`): a reason to retry later, not a refusal.
pub const BUSY: &str = " is busy: at most ";

/// What the directory says to a joiner whose address another node registered first: a
/// reason to retry (that node may leave, or its entry expire), not a refusal.
pub const ADDRESS_HELD: &str = " in the directory: it registered first";

impl Error {
    /// True for a server's "busy" answer ([`BUSY`]) or an address another node holds
    /// ([`ADDRESS_HELD`]): worth retrying.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Refused(m) | Self::Protocol(ProtocolError::Remote(m)) if m.contains(BUSY) || m.contains(ADDRESS_HELD))
    }

    /// True for [`ADDRESS_HELD`].
    pub fn is_address_held(&self) -> bool {
        matches!(self, Self::Refused(m) | Self::Protocol(ProtocolError::Remote(m)) if m.contains(ADDRESS_HELD))
    }

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
