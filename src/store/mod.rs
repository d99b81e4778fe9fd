//! `ChunkStore`: where a peer keeps verified chunks, its summary file, and the finished file.
//!
//! Layouts, for a file `NAME` in folder `DIR`:
//!
//! - [`Layout::PartFile`] (default): every chunk at its offset in `DIR/NAME.part`, sized to
//!   the file when created; renamed to `DIR/NAME` once the whole-file hash matches.
//! - [`Layout::ChunkFiles`] (`--chunk-files`, seed 002): `DIR/chunks/NAME.<id>` per chunk,
//!   joined into `DIR/NAME` at the end.
//!
//! Beside them: `DIR/NAME.manifest.json` (so a restarted peer can resume without the owner) and
//! `DIR/NAME.summary`, the chunk ids held, as JSON. Both are written to a `.tmp` name and
//! renamed (synced first unless [`ChunkStore::set_sync`] turned that off). Chunk bytes reach the
//! store (and, syncing, the disk) before the summary names them; on open, every chunk
//! the summary names is hashed again, so a write lost in a crash is fetched again, not trusted.
//!
//! [`ChunkStore::open`] refuses, before it creates anything, a `DIR/NAME` that is not a
//! verified copy of this file ([`StoreError::WouldReplace`]) and a file that does not fit the
//! space left in `DIR` ([`StoreError::NoSpace`]); it saves the manifest copy last, so a refused
//! manifest leaves nothing behind.
//!
//! Auxiliary names fit a file system's 255-byte limit: they are built on the *stem*
//! ([`aux_stem`]), which is `NAME` unless `NAME` plus the longest suffix
//! (`.manifest.json.tmp`, 18 bytes) would exceed 255 bytes; then it is `.rs-` and the first 16
//! hex digits of the BLAKE3 hash of `NAME`. The chunk folder is `DIR/chunks`, or
//! `DIR/.rs-chunks` for a file named `chunks` (it would collide with the finished file).
//!
//! No link in the folder is ever followed: every file is opened with `O_NOFOLLOW`, every
//! temporary file is created afresh with `O_EXCL` after a stale one (or a planted symlink) of
//! that name is removed, and `chunks/` must be a real folder.
//!
//! All methods block. Per-chunk reads and writes are short and are called in place from async
//! code; the long ones (open, assemble) go through `spawn_blocking`.
//!
//! Here: the module map. `disk` (the type, its paths, per-chunk reads and writes), `batch`
//! (when to sync: the batching policy, and what the syncs cost), `sync` (the data syncs and
//! the summary), `error` (`StoreError`), `open` (refusals, data files, resume), `fs` (the
//! link-refusing file operations) and `assemble`.

mod assemble;
mod batch;
mod disk;
mod error;
mod fs;
mod open;
mod sync;
mod tree;

pub use batch::{DATA_SYNC_BYTES, Flush, SUMMARY_BYTES, SUMMARY_INTERVAL, SyncBatch, SyncReport};
pub use disk::{ChunkStore, Layout};
pub use error::StoreError;
pub use fs::{aux_stem, hash_file, read_nofollow, write_atomic};

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests;

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod batch_tests;
