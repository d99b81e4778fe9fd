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
    /// A multi-source downloader (`peer get`): to the owner it joins the directory without
    /// being handed chunks; to any source it is served under choking (upload slots).
    Getter,
    /// A directory query client that must prove the shared secret first (`list`, `search`,
    /// `locate` follow the handshake instead of `welcome`).
    Query,
    /// A ring peer that asks the directory for its place in the file's ring (`peer join`):
    /// served as a `peer`, and told its download neighbour in `welcome` and `neighbour`.
    Joiner,
    /// A peer that shares files of its own (`peer share`): to a tracker or file owner it
    /// publishes them (`publish` follows the handshake instead of `welcome`), and it serves
    /// their chunks on its own port.
    Publisher,
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
        /// The client's node id, 1 to 64 hex digits: the directory returns it with the
        /// client's entry, so a node knows itself in an answer whatever address it is seen at.
        /// Over a handshake that proved the client's key, it must be that key in hex (64
        /// digits), and the server records the proven key whatever the client said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Server → client answer to `hello`. Body: the manifest as JSON.
    Welcome {
        /// Chunks the owner hands this peer (empty from a neighbour).
        assigned: Ranges,
        /// Body length in bytes.
        len: u64,
        /// From the owner: how often the client must send something (a keep-alive `have` at
        /// least) to stay registered in the directory, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_ms: Option<u64>,
        /// To a `joiner`: its download neighbour in the file's ring (`IP:PORT`), absent while
        /// it is the ring's only member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        neighbour: Option<String>,
        /// True when the server holds none of the file's chunks (a directory listing a file
        /// that peers publish): ask the sources `locate` names.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        empty: bool,
        /// To a ring peer of a published file: the publisher (`IP:PORT`) that hands out its
        /// subset and serves the chunks an owner would; the directory stays its ring's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        publisher: Option<String>,
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
        /// Ring peer → owner: only if the owner's upload has nothing better to do (the peer's
        /// neighbour has nothing for it); the owner serves these to the most lagging peer first.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        spare: bool,
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
    /// Client → owner, instead of `hello`: list every shared file. Answer: `files`.
    List,
    /// Client → owner, instead of `hello`: the files whose name contains `text` (any case).
    /// Answer: `files`.
    Search {
        /// The text to look for.
        text: String,
    },
    /// Client → owner, instead of `hello` or during a session: where each chunk of `file` (an
    /// id or a name) is. Answer: `locations`.
    Locate {
        /// The file's numeric id or its name.
        file: String,
    },
    /// Owner → client: the answer to `list` or `search`. Body: a JSON [`crate::directory::Listing`].
    Files {
        /// Body length in bytes.
        len: u64,
        /// The JSON.
        #[serde(skip)]
        body: Bytes,
    },
    /// Owner → client: the answer to `locate`. Body: a JSON [`crate::directory::Locations`].
    Locations {
        /// Body length in bytes.
        len: u64,
        /// The JSON.
        #[serde(skip)]
        body: Bytes,
    },
    /// Getter or ring member → owner: a source this node could not reach or that broke off;
    /// with `bad_chunks`, one it left after repeated chunks that failed their hash (a ring
    /// member's publisher).
    SourceLost {
        /// The source's `IP:PORT`.
        addr: String,
        /// The source sent chunks that failed their hash.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bad_chunks: bool,
    },
    /// Server → getter: requests will not be served (queued ones are dropped).
    Choke,
    /// Server → getter: requests will be served.
    Unchoke,
    /// Getter → server: the server holds chunks the getter lacks.
    Interested,
    /// Getter → server: the server holds nothing the getter lacks.
    NotInterested,
    /// Getter → server: a request no longer wanted (end-game); dropped if not yet sent.
    Cancel {
        /// The chunk id.
        chunk: u32,
    },
    /// Owner → joiner: its download neighbour changed (a member joined after it, or the one
    /// it downloaded from left); `addr` absent: it is alone in the ring.
    Neighbour {
        /// `IP:PORT`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
    },
    /// Directory → ring peer of a published file: the publisher that serves its chunks now
    /// (the one named before left); `addr` absent: no publisher is left.
    Publisher {
        /// `IP:PORT`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
    },
    /// Publisher → directory: this file is shared, its chunks served at the publisher's
    /// port. Body: the manifest as JSON.
    Publish {
        /// Body length in bytes.
        len: u64,
        /// The manifest JSON.
        #[serde(skip)]
        manifest: Bytes,
    },
    /// Directory → publisher: the file's id in the directory (the same for every publisher
    /// of the same content and name).
    Published {
        /// The directory's id of the file.
        id: u32,
        /// The file's BLAKE3 hash, 64 hex digits.
        hash: String,
        /// How often the publisher must send something (a keep-alive `have` at least) to
        /// stay registered, in milliseconds.
        heartbeat_ms: u64,
    },
    /// Publisher → directory: this file (by its BLAKE3 hash) is no longer shared.
    Unpublish {
        /// 64 hex digits.
        hash: String,
    },
    /// The reason the sender is about to close the connection.
    Error {
        /// A specific, human-readable reason.
        message: String,
    },
}

impl Role {
    /// A ring member (named by hand, or joined through the directory).
    pub fn is_ring(self) -> bool {
        matches!(self, Self::Peer | Self::Joiner)
    }
}

impl Message {
    /// A plain `request` for `chunk`.
    pub fn request(chunk: u32) -> Self {
        Self::Request {
            chunk,
            spare: false,
        }
    }

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
            heartbeat_ms: None,
            neighbour: None,
            empty: false,
            publisher: None,
            manifest,
        }
    }

    /// A `publish` message carrying the manifest JSON.
    pub fn publish(manifest: Bytes) -> Self {
        Self::Publish {
            len: manifest.len() as u64,
            manifest,
        }
    }

    /// A `files` answer carrying `body` (JSON).
    pub fn files(body: Bytes) -> Self {
        Self::Files {
            len: body.len() as u64,
            body,
        }
    }

    /// A `locations` answer carrying `body` (JSON).
    pub fn locations(body: Bytes) -> Self {
        Self::Locations {
            len: body.len() as u64,
            body,
        }
    }

    /// A directory query (`list`, `search`, `locate`).
    pub fn is_query(&self) -> bool {
        matches!(self, Self::List | Self::Search { .. } | Self::Locate { .. })
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
            Self::List => "list",
            Self::Search { .. } => "search",
            Self::Locate { .. } => "locate",
            Self::Files { .. } => "files",
            Self::Locations { .. } => "locations",
            Self::SourceLost { .. } => "source_lost",
            Self::Choke => "choke",
            Self::Unchoke => "unchoke",
            Self::Interested => "interested",
            Self::NotInterested => "not_interested",
            Self::Cancel { .. } => "cancel",
            Self::Neighbour { .. } => "neighbour",
            Self::Publisher { .. } => "publisher",
            Self::Publish { .. } => "publish",
            Self::Published { .. } => "published",
            Self::Unpublish { .. } => "unpublish",
            Self::Error { .. } => "error",
        }
    }

    /// The body, for the variants that have one.
    pub fn body(&self) -> Option<&Bytes> {
        match self {
            Self::Welcome { manifest, .. } | Self::Publish { manifest, .. } => Some(manifest),
            Self::Chunk { data, .. } => Some(data),
            Self::Files { body, .. } | Self::Locations { body, .. } => Some(body),
            _ => None,
        }
    }
}
