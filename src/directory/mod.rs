//! The directory the file owner keeps: which files it shares (by a small numeric id and by
//! content hash) and which peers hold which of their chunks.
//!
//! Every peer that connects to the owner with a listening port (`hello` with `port`) is a
//! *member* for as long as that connection lives: its `have` messages add the chunks it gains,
//! and any message (a keep-alive included) counts as a heartbeat. A member is dropped when its
//! connection closes (the peer left or died), when it stays silent longer than the TTL (the
//! owner then closes the connection), or when a getter reports it unreachable and the owner
//! cannot reach it either. Nothing here is saved: a restarted owner learns the swarm again from
//! the peers, which reconnect and say `hello` with everything they hold.
//!
//! File ids are 1, 2, … in the order of the shared files' names, so they stay the same across
//! restarts of the owner as long as it shares the same files.
//!
//! Here: the module map. `state` (the files, members and rings behind the lock), `files`,
//! `members` and `rings` (the operations on them), `answer` (listing, locations, members:
//! each bounded), `view` (the dashboard's view), `client` (the wire client).

mod answer;
pub mod client;
mod files;
mod members;
mod rings;
mod state;
pub mod view;

pub use answer::{FileInfo, Listing, Locations, MAX_SOURCE_RANGES, PeerInfo, SourceInfo};
pub use members::{BAD_REPORTS_TO_DEMOTE, BadReport, Left, MAX_PROBES, PROBE_EVERY};
pub use rings::SLOW_BACKLOG;
pub use state::{DEFAULT_PEER_TTL, Directory, MAX_DEPARTED, MAX_GONE, MAX_SWARM_EVENTS, MemberId};

#[cfg(test)]
mod tests;
