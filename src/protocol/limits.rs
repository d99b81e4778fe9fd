//! The protocol's version and the hard limits every length is checked against.

/// The protocol version: named in the first line of every handshake (see `crate::secure`) and
/// sent in `hello`; a server refuses any other. Version 2 encrypts every connection.
pub const PROTOCOL_VERSION: u32 = 2;

/// The longest JSON header accepted, in bytes. Chunk-id lists longer than this are split
/// across several `have` messages.
pub const MAX_HEADER_LEN: usize = 256 * 1024;

/// The longest manifest accepted in a `welcome` body: a chunk hash takes 67 bytes of JSON, so
/// this fits [`crate::manifest::MAX_CHUNKS`] chunks with room to spare.
pub const MAX_MANIFEST_LEN: usize = 80 * 1024 * 1024;

/// The longest directory answer (`files`, `locations`) the owner sends and its clients
/// accept: an answer that would be longer is cut, saying how much was left out.
pub const MAX_ANSWER_LEN: usize = 1024 * 1024;
