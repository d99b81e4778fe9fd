//! `Message`: one variant per message of the protocol; see the module docs of `protocol`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chunkset::Ranges;

/// Who is saying `hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A peer joining the swarm, talking to the file owner.
    Peer,
    /// A peer's download client, talking to its ring neighbour's upload server.
    Neighbour,
}

/// A protocol message: a JSON header (`"type"` names the variant) and, for `welcome` and
/// `chunk`, a raw body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First message of every connection, client → server.
    Hello {
        /// Must equal [`super::PROTOCOL_VERSION`].
        version: u32,
        /// Who is connecting.
        role: Role,
        /// The file wanted, when the owner shares several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        /// The chunks the client already holds.
        #[serde(default)]
        have: Ranges,
        /// The port of the client's own upload server, if it runs one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// Server → client answer to `hello`. Body: the manifest as JSON.
    Welcome {
        /// Chunks the owner hands this peer (empty from a neighbour).
        assigned: Ranges,
        /// Body length in bytes.
        len: u64,
        /// The manifest JSON.
        #[serde(skip)]
        manifest: Bytes,
    },
    /// Chunk ids the sender holds, added to those it sent before.
    Have {
        /// The ids, as ranges.
        chunks: Ranges,
    },
    /// Owner → peer: the chunks that no ring member has been handed yet (replaces the last).
    Orphans {
        /// The ids, as ranges.
        chunks: Ranges,
    },
    /// Client → server: send this chunk.
    Request {
        /// The chunk id.
        chunk: u32,
    },
    /// Server → client: a chunk. Body: its bytes.
    Chunk {
        /// The chunk id.
        chunk: u32,
        /// Body length in bytes.
        len: u64,
        /// The chunk bytes.
        #[serde(skip)]
        data: Bytes,
    },
    /// The reason the sender is about to close the connection.
    Error {
        /// A specific, human-readable reason.
        message: String,
    },
}

impl Message {
    /// A `chunk` message carrying `data`.
    pub fn chunk(chunk: u32, data: Bytes) -> Self {
        Self::Chunk {
            chunk,
            len: data.len() as u64,
            data,
        }
    }

    /// A `welcome` message carrying the manifest JSON.
    pub fn welcome(assigned: Ranges, manifest: Bytes) -> Self {
        Self::Welcome {
            assigned,
            len: manifest.len() as u64,
            manifest,
        }
    }

    /// The `type` tag, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Welcome { .. } => "welcome",
            Self::Have { .. } => "have",
            Self::Orphans { .. } => "orphans",
            Self::Request { .. } => "request",
            Self::Chunk { .. } => "chunk",
            Self::Error { .. } => "error",
        }
    }

    /// The body, for the variants that have one.
    pub fn body(&self) -> Option<&Bytes> {
        match self {
            Self::Welcome { manifest, .. } => Some(manifest),
            Self::Chunk { data, .. } => Some(data),
            _ => None,
        }
    }
}
