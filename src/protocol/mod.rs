//! The wire format between file owner and peers, and between ring neighbours. No sockets here.
//!
//! # Goals
//!
//! - Raw chunk bytes on the wire (no base64), one copy from socket buffer to disk.
//! - Every length checked against a hard limit before anything is allocated.
//! - Human-readable headers (JSON), so a capture or a test can be read by eye.
//!
//! # Non-goals
//!
//! - Encryption or authentication (a later shared-secret handshake may add it).
//! - Compatibility across protocol versions: a version mismatch is refused in `hello`.
//!
//! # Frame
//!
//! ```text
//! +-----------------+-----------------+----------------------+----------------------+
//! | frame length    | header length   | header               | body                 |
//! | u32, big-endian | u32, big-endian | JSON, ≤ MAX_HEADER_LEN | raw bytes (chunk or |
//! | = 4 + H + B     | = H             | H bytes              | manifest), B bytes   |
//! +-----------------+-----------------+----------------------+----------------------+
//! ```
//!
//! The outer length prefix is tokio-util's `LengthDelimitedCodec` default. The header is one
//! [`Message`] tagged by `"type"`; only `welcome` (the manifest, as JSON) and `chunk` (the chunk
//! bytes) carry a body, whose length the header states.
//!
//! # Messages
//!
//! - `hello` — client → server, first message: protocol version, role, wanted file, chunks held.
//! - `welcome` — server → client: the chunks assigned to this peer; body: the manifest.
//! - `have` — either way: chunk ids the sender holds (added to what it said before).
//! - `orphans` — owner → peer: chunks no ring member was handed (replaces the previous list).
//! - `request` — client → server: send me this chunk.
//! - `chunk` — server → client: a chunk's id and length; body: its bytes.
//! - `error` — either way: why the sender is closing the connection.

mod codec;
mod message;

pub use codec::{MessageCodec, encode_head};
pub use message::{Message, Role};

/// The protocol version sent in `hello`; a server refuses any other.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message, other than a chunk, whose buffer room a connection keeps. A buffer
/// that grew for a larger one (a 256 KiB header, a manifest, an answer) is given back once
/// the message is through, so an idle connection costs at most a chunk's room, not the
/// largest message it ever carried. The codec flags such a frame (it owns the threshold);
/// the connection trims its buffers after it.
pub const KEEP_BUFFER: usize = 64 * 1024;

/// The longest JSON header accepted, in bytes. Chunk-id lists longer than this are split
/// across several `have` messages.
pub const MAX_HEADER_LEN: usize = 256 * 1024;

/// The longest manifest accepted in a `welcome` body: a chunk hash takes 67 bytes of JSON, so
/// this fits [`crate::manifest::MAX_CHUNKS`] chunks with room to spare.
pub const MAX_MANIFEST_LEN: usize = 80 * 1024 * 1024;

pub use crate::chunkset::MAX_RANGES_PER_MESSAGE;

/// The longest directory answer (`files`, `locations`) the owner sends and its clients
/// accept: an answer that would be longer is cut, saying how much was left out.
pub const MAX_ANSWER_LEN: usize = 1024 * 1024;

/// Errors of decoding and encoding frames, and of the conversation they carry.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("header of {len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is too short for its header length field")]
    FrameTooShort { len: usize },
    #[error("header length {header} exceeds the frame's {frame} bytes")]
    HeaderPastFrame { header: usize, frame: usize },
    #[error("unknown message type \"{}\"", crate::manifest::display_cut(.0, 64))]
    UnknownMessage(String),
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    #[error("{kind} message declares {declared} body bytes but carries {actual}")]
    BodyLength {
        kind: &'static str,
        declared: u64,
        actual: usize,
    },
    #[error("{kind} message must not carry a body ({len} bytes found)")]
    UnexpectedBody { kind: &'static str, len: usize },
    #[error("connection reset by peer mid-frame ({0} bytes buffered)")]
    ResetMidFrame(usize),
    #[error("unsupported protocol version {got}; this build speaks version {PROTOCOL_VERSION}")]
    Version { got: u32 },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("remote closed the connection: {0}")]
    Remote(String),
    #[error("unexpected {got} message while {doing}")]
    Unexpected {
        got: &'static str,
        doing: &'static str,
    },
    #[error("internal error: {0}")]
    Bug(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// `msg` (`None`: the end of the stream) was not expected while `doing`.
    pub fn unexpected(msg: Option<&Message>, doing: &'static str) -> Self {
        Self::Unexpected {
            got: msg.map_or("end of stream", Message::kind),
            doing,
        }
    }
}
