//! The manifest of a shared file and the chunk arithmetic.
//!
//! A file is cut into chunks of [`DEFAULT_CHUNK_SIZE`] bytes (the last may be shorter), with
//! at least [`MIN_CHUNKS`] chunks for any file of 5 bytes or more: a file smaller than
//! 5 × chunk size gets chunk size ⌊size / 5⌋. A file of 1–4 bytes has one chunk per byte and
//! a 0-byte file has none. Every chunk and the whole file carry a BLAKE3 [`Hash`].
//!
//! Ids from the wire become [`ChunkId`]s only through [`Manifest::chunk_id`], so code past
//! that point never rechecks a range. File names are checked here, once, when a manifest is
//! built or read: no `..`, no separators, no empty or absolute names.
//!
//! A name is another node's choice, so it never reaches a terminal or a folder raw: logs and
//! messages show it through [`display_name`] (control and bidirectional characters as
//! `\u{..}`), and a peer stores it under [`disk_name`] (the same characters as `%XX`).

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// The default chunk size: 100 KiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 100 * 1024;
/// Every file of at least this many bytes has at least this many chunks.
pub const MIN_CHUNKS: u64 = 5;
/// The largest chunk size accepted (`--chunk-size` or a manifest from the wire).
pub const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;
/// The most chunks one file may have (a 100 GiB file at 100 KiB chunks; larger files need a
/// larger `--chunk-size`). Bounded so that a manifest fits `protocol::MAX_MANIFEST_LEN`.
pub const MAX_CHUNKS: u32 = 1024 * 1024;
/// The longest file name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Errors of building, reading or checking a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "unsafe file name \"{}\": names must be plain, without '/', '\\', '..' or NUL, and at most {MAX_NAME_LEN} bytes once control characters are written as %XX",
        display_name(.0)
    )]
    UnsafeName(String),
    #[error(
        "the owner answered with a manifest for \"{}\", not for the \"{}\" asked for: refusing it",
        display_name(offered),
        display_name(asked)
    )]
    NameMismatch { asked: String, offered: String },
    #[error("chunk {chunk} is out of range: the file has {count} chunks")]
    ChunkOutOfRange { chunk: u32, count: u32 },
    #[error("chunk size {0} is out of range: it must be between 1 and {MAX_CHUNK_SIZE} bytes")]
    BadChunkSize(u64),
    #[error("{got} chunk ranges in one message exceed the limit of {max}")]
    TooManyRanges { got: usize, max: usize },
    #[error("bad chunk ranges: {0}")]
    BadRanges(String),
    #[error("inconsistent manifest: {0}")]
    Inconsistent(String),
    #[error(
        "file too large: {size} bytes would need more than {MAX_CHUNKS} chunks; use a larger --chunk-size"
    )]
    TooManyChunks { size: u64 },
    #[error("reading {}: {source}", display_name(path))]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} changed while it was being hashed", display_name(path))]
    Changed { path: String },
    #[error("malformed manifest: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// The index of a chunk that has been checked against a manifest's chunk count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(u32);

impl ChunkId {
    /// The index as the wire carries it.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index for slice access.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The chunk layout of a file of `size` bytes with nominal chunk size `base`:
/// `(chunk_size, chunk_count)`. See the module docs for the rule.
///
/// # Errors
///
/// [`ManifestError::BadChunkSize`] for `base` 0 or above [`MAX_CHUNK_SIZE`], and
/// [`ManifestError::TooManyChunks`] when the file needs more than [`MAX_CHUNKS`] chunks.
pub fn chunk_layout(size: u64, base: u64) -> Result<(u64, u32), ManifestError> {
    if base == 0 || base > MAX_CHUNK_SIZE {
        return Err(ManifestError::BadChunkSize(base));
    }
    let chunk_size = match size {
        0 => base,
        1..5 => 1,
        s if s < MIN_CHUNKS * base => s / MIN_CHUNKS,
        _ => base,
    };
    let count = size.div_ceil(chunk_size);
    let count = u32::try_from(count)
        .ok()
        .filter(|&c| c <= MAX_CHUNKS)
        .ok_or(ManifestError::TooManyChunks { size })?;
    Ok((chunk_size, count))
}

/// Checks that `name` can be used as a plain file name inside a peer's folder.
///
/// # Errors
///
/// [`ManifestError::UnsafeName`] for an empty name, `.`, `..`, a name with `/`, `\` or NUL,
/// or a name whose stored form ([`disk_name`]) is longer than [`MAX_NAME_LEN`] bytes.
pub fn check_name(name: &str) -> Result<(), ManifestError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || disk_name(name).len() > MAX_NAME_LEN;
    if bad {
        return Err(ManifestError::UnsafeName(name.chars().take(80).collect()));
    }
    Ok(())
}

/// Checks the name in a manifest a peer received against what it asked for: a peer that
/// asked for a name writes only that name; one that asked by numeric directory id (`peer get
/// OWNER 2`), or for the only file, takes the manifest's name, which must still be safe.
///
/// # Errors
///
/// [`ManifestError::NameMismatch`] or [`ManifestError::UnsafeName`].
pub fn check_offered_name(asked: Option<&str>, offered: &str) -> Result<(), ManifestError> {
    check_name(offered)?;
    match asked {
        Some(a) if a != offered && a.trim().parse::<usize>().is_err() => {
            Err(ManifestError::NameMismatch {
                asked: a.to_string(),
                offered: offered.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// A name (or a path) as it may reach a terminal or a log: see [`display_name`].
#[derive(Clone, Copy, Debug)]
pub struct DisplayName<'a>(&'a str);

/// Shows `name` with every control character (C0, DEL, C1: escape sequences, newlines) and
/// every bidirectional control (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069: the
/// right-to-left overrides) written as `\u{..}`, and `\` as `\\`, so a hostile name can
/// neither drive the terminal nor disguise itself. Everything else is shown as is.
pub fn display_name(name: &str) -> DisplayName<'_> {
    DisplayName(name)
}

/// `text` as [`display_name`] shows it, cut after `max` bytes of `text` (at a character
/// boundary) with ` … (N more bytes)`: for text from another node or a pasted ticket, which
/// may be long.
pub fn display_cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut shown = display_name(&text[..end]).to_string();
    if end < text.len() {
        use fmt::Write;
        let _ = write!(shown, " … ({} more bytes)", text.len() - end);
    }
    shown
}

/// The most bytes of a pasted value (a ticket, an address, or a part of one) that an error
/// message repeats.
pub const MAX_ECHO: usize = 100;

/// `text` quoted for an error message that repeats what was given: escaped and cut after
/// [`MAX_ECHO`] bytes (see [`display_cut`]), so a 100 kB ticket gives a short line and its
/// escape sequences never reach the terminal.
pub fn echo(text: &str) -> String {
    format!("\"{}\"", display_cut(text, MAX_ECHO))
}

/// The name a peer stores the file `name` under in its folder (the finished file, and the
/// stem of its part file, summary and saved manifest): `name` itself, except that every
/// character [`display_name`] escapes (control characters and bidirectional controls) is
/// written as `%XX`, the percent-encoding of its UTF-8 bytes (`a\x1bb` → `a%1Bb`, U+202E →
/// `%E2%80%AE`). So no file name on disk can drive a terminal that lists it or disguise its
/// extension. `%` itself is kept as is: a name that already reads `a%1Bb` is stored under the
/// same name (the peer then refuses to replace a different file there).
pub fn disk_name(name: &str) -> Cow<'_, str> {
    if !name.chars().any(needs_escape) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if needs_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                use fmt::Write;
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` must be escaped by [`display_name`] (and [`disk_name`]).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for DisplayName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        if !self.0.chars().any(|c| c == '\\' || needs_escape(c)) {
            return f.pad(self.0); // keeps width and alignment for tables
        }
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if needs_escape(c) {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            } else {
                out.push(c);
            }
        }
        f.pad(&out)
    }
}

/// What a peer needs to fetch, verify and reassemble one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file name, a plain name (checked by [`check_name`]).
    pub name: String,
    /// The file size in bytes.
    pub size: u64,
    /// The size of every chunk but the last.
    pub chunk_size: u64,
    /// The BLAKE3 hash of the whole file.
    pub hash: Hash,
    /// The BLAKE3 hash of each chunk, in order.
    pub chunks: Vec<Hash>,
}

impl Manifest {
    /// Reads and hashes the file at `path`, cut with nominal chunk size `base`.
    ///
    /// Reads the file once, in chunk-sized pieces, so memory stays at one chunk.
    ///
    /// # Errors
    ///
    /// An unreadable file ([`ManifestError::Io`]), an unsafe name, a bad chunk size, or a
    /// file whose size changed while it was read ([`ManifestError::Changed`]).
    pub fn from_file(path: &Path, base: u64) -> Result<Self, ManifestError> {
        let io_err = |source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ManifestError::UnsafeName(path.display().to_string()))?
            .to_string();
        check_name(&name)?;
        let mut file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let (chunk_size, count) = chunk_layout(size, base)?;
        let mut whole = blake3::Hasher::new();
        let mut chunks = Vec::with_capacity(count as usize);
        let buf_len = usize::try_from(chunk_size).expect("chunk size ≤ MAX_CHUNK_SIZE fits usize");
        let mut buf = vec![0u8; buf_len];
        let mut left = size;
        while left > 0 {
            let n = usize::try_from(left.min(chunk_size)).expect("≤ chunk size");
            file.read_exact(&mut buf[..n]).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    ManifestError::Changed {
                        path: path.display().to_string(),
                    }
                } else {
                    io_err(e)
                }
            })?;
            whole.update(&buf[..n]);
            chunks.push(Hash::of(&buf[..n]));
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        if file.read(&mut probe).map_err(io_err)? != 0 {
            return Err(ManifestError::Changed {
                path: path.display().to_string(),
            });
        }
        Ok(Self {
            name,
            size,
            chunk_size,
            hash: whole.finalize().into(),
            chunks,
        })
    }

    /// The manifest of `data` named `name`, cut with nominal chunk size `base`: an in-memory
    /// file (a simulation's synthesised content).
    ///
    /// # Errors
    ///
    /// An unsafe name or a bad chunk size.
    pub fn from_bytes(name: &str, data: &[u8], base: u64) -> Result<Self, ManifestError> {
        check_name(name)?;
        let (chunk_size, _) = chunk_layout(data.len() as u64, base)?;
        let step = usize::try_from(chunk_size).expect("chunk size ≤ MAX_CHUNK_SIZE fits usize");
        Ok(Self {
            name: name.to_string(),
            size: data.len() as u64,
            chunk_size,
            hash: Hash::of(data),
            chunks: data.chunks(step).map(Hash::of).collect(),
        })
    }

    /// Parses a manifest from JSON and checks it with [`Manifest::validate`].
    ///
    /// # Errors
    ///
    /// Malformed JSON or any check of [`Manifest::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Self = serde_json::from_slice(bytes)?;
        m.validate()?;
        Ok(m)
    }

    /// Checks the name, the chunk size and that the chunk count fits the size.
    ///
    /// # Errors
    ///
    /// [`ManifestError::UnsafeName`], [`ManifestError::BadChunkSize`] or
    /// [`ManifestError::Inconsistent`].
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_name(&self.name)?;
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(ManifestError::BadChunkSize(self.chunk_size));
        }
        let expected = self.size.div_ceil(self.chunk_size);
        if expected > u64::from(MAX_CHUNKS) {
            return Err(ManifestError::Inconsistent(format!(
                "{} bytes in chunks of {} need {expected} chunks, over the limit of {MAX_CHUNKS} chunks per file; {} chunk hashes were sent",
                self.size,
                self.chunk_size,
                self.chunks.len()
            )));
        }
        if expected != self.chunks.len() as u64 {
            return Err(ManifestError::Inconsistent(format!(
                "{} bytes in chunks of {} need {expected} chunk hashes, found {}",
                self.size,
                self.chunk_size,
                self.chunks.len()
            )));
        }
        Ok(())
    }

    /// The number of chunks.
    pub fn chunk_count(&self) -> u32 {
        u32::try_from(self.chunks.len()).expect("validated: ≤ MAX_CHUNKS")
    }

    /// Turns a chunk index from the wire into a [`ChunkId`].
    ///
    /// # Errors
    ///
    /// [`ManifestError::ChunkOutOfRange`] when `n` ≥ the chunk count.
    pub fn chunk_id(&self, n: u32) -> Result<ChunkId, ManifestError> {
        let count = self.chunk_count();
        if n < count {
            Ok(ChunkId(n))
        } else {
            Err(ManifestError::ChunkOutOfRange { chunk: n, count })
        }
    }

    /// Every chunk id, in order.
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + use<> {
        (0..self.chunk_count()).map(ChunkId)
    }

    /// The byte offset of `id` in the file.
    pub fn chunk_offset(&self, id: ChunkId) -> u64 {
        u64::from(id.0) * self.chunk_size
    }

    /// The length of `id` in bytes (the last chunk may be shorter).
    pub fn chunk_len(&self, id: ChunkId) -> usize {
        let len = (self.size - self.chunk_offset(id)).min(self.chunk_size);
        usize::try_from(len).expect("≤ MAX_CHUNK_SIZE")
    }

    /// A manifest of `chunks` one-byte chunks with dummy hashes, for tests of chunk
    /// bookkeeping.
    #[cfg(test)]
    pub(crate) fn for_tests(chunks: usize) -> Self {
        Self {
            name: "f".into(),
            size: chunks as u64,
            chunk_size: 1,
            hash: Hash::of(b""),
            chunks: vec![Hash::of(b""); chunks],
        }
    }

    /// The expected hash of `id`.
    pub fn chunk_hash(&self, id: ChunkId) -> Hash {
        self.chunks[id.index()]
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
#[path = "manifest_tests.rs"]
mod tests;
