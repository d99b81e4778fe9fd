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
mod error;
mod limits;
mod message;

pub use codec::{KEEP_BUFFER, MessageCodec, encode_head};
pub use error::ProtocolError;
pub use limits::{MAX_ANSWER_LEN, MAX_HEADER_LEN, MAX_MANIFEST_LEN, PROTOCOL_VERSION};
pub use message::{Message, Role};

pub use crate::chunkset::MAX_RANGES_PER_MESSAGE;
