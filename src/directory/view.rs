//! A view of the whole swarm for the dashboard (`GET /api/swarm` and its live feed): per file,
//! its members in ring order with their progress and download neighbour, a piece map, the
//! members that left with their completion times, and the latest comings and goings.

use std::net::SocketAddr;

use serde::Serialize;

use super::answer::{FileInfo, role_name};
pub use super::state::{Departed, SwarmEvent};
use super::state::{Directory, MAX_DEPARTED, MAX_SWARM_EVENTS, MemberEntry, MemberId, Tables};
use crate::protocol::Role;

/// Columns of a piece map at most: a file of more chunks has each column stand for a run of
/// them.
pub const MAX_PIECE_COLUMNS: usize = 128;

/// A member now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberView {
    pub addr: String,
    pub role: String,
    /// Chunks held, and whether that is all of them.
    pub count: u32,
    pub complete: bool,
    /// Its download neighbour in the file's ring (a joiner's), if it is in it.
    pub neighbour: Option<String>,
    pub joined_unix_ms: u64,
    pub completed_unix_ms: Option<u64>,
    /// The piece map's row: one hex digit per column, how much of the column's chunks it
    /// holds (0 none … f all).
    pub pieces: String,
}

/// One file's swarm.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileView {
    pub file: FileInfo,
    /// The members, the ring's in ring order (each downloads from the next, the last from
    /// the first), then the others by address.
    pub members: Vec<MemberView>,
    /// How many of `members` are the ring.
    pub ring_len: usize,
    /// Chunks per piece-map column (the last may have fewer).
    pub chunks_per_column: u32,
    /// Members that left, newest first.
    pub departed: Vec<Departed>,
}

/// The swarm now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SwarmView {
    pub files: Vec<FileView>,
    /// The latest comings and goings, newest first.
    pub events: Vec<SwarmEvent>,
}

/// Seconds on the directory's clock as Unix milliseconds.
// Float to integer casts saturate (and NaN is 0).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn ms(t: f64) -> u64 {
    (t * 1000.0) as u64
}

fn file_id(file: usize) -> u32 {
    u32::try_from(file + 1).unwrap_or(u32::MAX)
}

impl Tables {
    /// Records a swarm event.
    pub(super) fn note(
        &mut self,
        now: f64,
        file: usize,
        addr: SocketAddr,
        role: Role,
        what: &'static str,
    ) {
        if self.swarm_events.len() >= MAX_SWARM_EVENTS {
            self.swarm_events.pop_front();
        }
        self.swarm_events.push_back(SwarmEvent {
            unix_ms: ms(now),
            file_id: file_id(file),
            addr: addr.to_string(),
            role: role_name(role).into(),
            what,
        });
    }

    /// Records that `m` left at `now`.
    pub(super) fn departed(&mut self, m: &MemberEntry, now: f64) {
        self.departed_parts(m.file, m.addr, m.role, (m.joined, m.completed), now);
    }

    /// Records that a member left at `now` (a publisher only as an event).
    pub(super) fn departed_parts(
        &mut self,
        file: usize,
        addr: SocketAddr,
        role: Role,
        (joined, completed): (f64, Option<f64>),
        now: f64,
    ) {
        self.note(now, file, addr, role, "left");
        if role == Role::Publisher {
            return;
        }
        if self.departed.len() >= MAX_DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back(Departed {
            file_id: file_id(file),
            addr: addr.to_string(),
            role: role_name(role).into(),
            joined_unix_ms: ms(joined),
            completed_unix_ms: completed.map(ms),
            left_unix_ms: ms(now),
        });
    }
}

/// One piece-map row: per column of `per` chunks, how much of it `m` holds, as a hex digit.
fn pieces(manifest: &crate::manifest::Manifest, m: &MemberEntry, per: u32) -> String {
    piece_row(manifest.chunk_count(), per, |c| {
        manifest.chunk_id(c).is_ok_and(|id| m.have.contains(id))
    })
}

/// A piece-map row of `count` chunks in columns of `per`: per column, how much of it `holds`
/// (0 none … f all), one hex digit. The dashboard's and its replay's (`report::replay`).
pub(crate) fn piece_row(count: u32, per: u32, holds: impl Fn(u32) -> bool) -> String {
    let per = per.max(1);
    let mut row = String::new();
    let mut start = 0;
    while start < count {
        let end = start.saturating_add(per).min(count);
        let held = (start..end).filter(|&c| holds(c)).count();
        let n = (end - start) as usize;
        let level = (held * 15).div_ceil(n.max(1)).min(15);
        row.push(char::from_digit(u32::try_from(level).unwrap_or(15), 16).unwrap_or('f'));
        start = end;
    }
    row
}

impl Directory {
    /// Every member's chunks held now, as `(file id, address, chunks, chunk size)`: what the
    /// dashboard samples between snapshots for its rates, without building a whole view.
    pub fn member_counts(&self) -> Vec<(u32, String, u32, u64)> {
        let inner = self.inner();
        inner
            .members
            .values()
            .map(|m| {
                let chunk_size = inner
                    .files
                    .get(&m.file)
                    .map_or(0, |f| f.manifest.chunk_size);
                (
                    file_id(m.file),
                    m.addr.to_string(),
                    m.have.count(),
                    chunk_size,
                )
            })
            .collect()
    }

    /// The swarm now: one pass over the files, the members (and their chunks) and the
    /// departed, whatever their numbers.
    pub fn view(&self) -> SwarmView {
        let inner = self.inner();
        let counts = inner.counts();
        // One pass over the departed, not one per file.
        let mut departed_of: std::collections::HashMap<u32, Vec<Departed>> =
            std::collections::HashMap::new();
        for d in inner.departed.iter().rev() {
            departed_of.entry(d.file_id).or_default().push(d.clone());
        }
        // The members outside any ring, by file, in one pass too.
        let mut others_of: std::collections::HashMap<usize, Vec<MemberId>> =
            std::collections::HashMap::new();
        for (id, m) in &inner.members {
            if !inner.ring_pos.contains_key(id) {
                others_of.entry(m.file).or_default().push(*id);
            }
        }
        let mut files = Vec::with_capacity(inner.files.len());
        for (&index, entry) in &inner.files {
            let c = counts.get(&index).copied().unwrap_or_default();
            if !c.published {
                continue;
            }
            let manifest = &entry.manifest;
            let count = manifest.chunk_count();
            let columns = u32::try_from(MAX_PIECE_COLUMNS).unwrap_or(u32::MAX);
            let per = count.div_ceil(columns).max(1);
            let view_of = |id: &MemberId, m: &MemberEntry| MemberView {
                addr: m.addr.to_string(),
                role: role_name(m.role).into(),
                count: m.have.count(),
                complete: m.have.is_full(),
                neighbour: inner.ring_neighbour(*id).map(|a| a.to_string()),
                joined_unix_ms: ms(m.joined),
                completed_unix_ms: m.completed.map(ms),
                pieces: pieces(manifest, m, per),
            };
            let ring = inner.rings.get(&index);
            let mut members: Vec<MemberView> = ring
                .into_iter()
                .flatten()
                .filter_map(|id| inner.members.get(id).map(|m| view_of(id, m)))
                .collect();
            let ring_len = members.len();
            let mut others: Vec<MemberView> = others_of
                .remove(&index)
                .unwrap_or_default()
                .iter()
                .filter_map(|id| inner.members.get(id).map(|m| view_of(id, m)))
                .collect();
            others.sort_by(|a, b| a.addr.cmp(&b.addr));
            members.extend(others);
            let departed = departed_of.remove(&file_id(index)).unwrap_or_default();
            files.push(FileView {
                file: super::answer::file_info(&inner, index, c),
                members,
                ring_len,
                chunks_per_column: per,
                departed,
            });
        }
        SwarmView {
            files,
            events: inner.swarm_events.iter().rev().cloned().collect(),
        }
    }
}
