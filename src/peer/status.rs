//! What a running peer reports for a progress line and its metrics ([`Status`]): chunks
//! held of how many, chunks verified and refused, bytes fetched and uploaded (by the role of
//! the one served), upload connections open, and where chunks come from. Updated by the
//! engine as chunks arrive and links change; read by whoever draws the line or answers a
//! scrape (the `peer` binary), never by the engine itself.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::choke::Choker;
use crate::chunkset::ChunkSet;
use crate::manifest::ChunkId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{HttpRefusals, RoleLabel, StateLabel, role};
use crate::protocol::Role;

/// A peer's progress, shared with whoever displays it.
#[derive(Debug, Default)]
pub struct Status {
    held: AtomicU32,
    total: AtomicU32,
    verified: AtomicU64,
    refused: AtomicU64,
    fetched_bytes: AtomicU64,
    /// Bytes and chunks uploaded, to the ring's upload neighbour (0) and to getters (1).
    sent_bytes: [AtomicU64; 2],
    sent_chunks: [AtomicU64; 2],
    /// Upload connections open: the upload neighbour's (0) and getters' (1).
    uploads: [AtomicI64; 2],
    via: Mutex<String>,
    choker: OnceLock<Arc<Choker>>,
    /// The verified chunks held, for a piece map.
    pieces: Mutex<ChunkSet>,
}

/// The slot of the counters for uploads to a client of `role`: the ring's upload neighbour
/// (0) or a getter (1).
fn slot(role: Role) -> usize {
    usize::from(role == Role::Getter)
}

/// A copy of a [`Status`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Verified chunks held.
    pub held: u32,
    /// Chunks in the file (0 until the manifest is known).
    pub total: u32,
    /// Chunks received, verified against the manifest and stored in this run.
    pub verified: u64,
    /// Chunks received in this run that failed verification (refused and fetched again).
    pub refused: u64,
    /// Chunk bytes received and stored in this run.
    pub fetched_bytes: u64,
    /// Chunk bytes uploaded in this run, to anyone.
    pub sent_bytes: u64,
    /// Chunk bytes uploaded to the upload neighbour.
    pub sent_neighbour_bytes: u64,
    /// Chunk bytes uploaded to getters.
    pub sent_getter_bytes: u64,
    /// Chunks uploaded to the upload neighbour.
    pub sent_neighbour_chunks: u64,
    /// Chunks uploaded to getters.
    pub sent_getter_chunks: u64,
    /// Upload neighbour connections open (0 or 1, 2 while one replaces another).
    pub neighbour_connections: u64,
    /// Getter connections open.
    pub getter_connections: u64,
    /// Getter connections choked now.
    pub choked: u64,
    /// Getter connections unchoked now.
    pub unchoked: u64,
    /// Getter connections interested in this peer's chunks.
    pub interested: u64,
    /// Where chunks come from: the download neighbour, or the number of sources.
    pub via: String,
}

impl Status {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The values now.
    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let open = |a: &AtomicI64| u64::try_from(a.load(Ordering::Relaxed)).unwrap_or(0);
        let (conns, unchoked, interested) = self.choker.get().map_or((0, 0, 0), |c| c.counts());
        Snapshot {
            held: self.held.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            verified: load(&self.verified),
            refused: load(&self.refused),
            fetched_bytes: load(&self.fetched_bytes),
            sent_bytes: load(&self.sent_bytes[0]) + load(&self.sent_bytes[1]),
            sent_neighbour_bytes: load(&self.sent_bytes[0]),
            sent_getter_bytes: load(&self.sent_bytes[1]),
            sent_neighbour_chunks: load(&self.sent_chunks[0]),
            sent_getter_chunks: load(&self.sent_chunks[1]),
            neighbour_connections: open(&self.uploads[0]),
            getter_connections: open(&self.uploads[1]),
            choked: (conns - unchoked) as u64,
            unchoked: unchoked as u64,
            interested: interested as u64,
            via: self.via.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    pub(super) fn start(&self, have: &ChunkSet, choker: &Arc<Choker>) {
        self.held.store(have.count(), Ordering::Relaxed);
        self.total.store(have.capacity(), Ordering::Relaxed);
        *self.pieces() = have.clone();
        let _ = self.choker.set(choker.clone());
    }

    fn pieces(&self) -> std::sync::MutexGuard<'_, ChunkSet> {
        self.pieces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The piece map: the file's chunks cut into at most `buckets` runs of equal length (the
    /// last may be shorter), and the percentage of each run held. Empty until the manifest is
    /// known.
    pub fn piece_map(&self, buckets: usize) -> Vec<u8> {
        let pieces = self.pieces();
        let n = pieces.capacity() as usize;
        if n == 0 || buckets == 0 {
            return Vec::new();
        }
        let per = n.div_ceil(buckets);
        let mut held = vec![0usize; n.div_ceil(per)];
        for i in pieces.indices() {
            held[i as usize / per] += 1;
        }
        held.iter()
            .enumerate()
            .map(|(b, &h)| {
                let len = per.min(n - b * per);
                u8::try_from(h * 100 / len).unwrap_or(100)
            })
            .collect()
    }

    pub(super) fn stored(&self, id: ChunkId, bytes: u64) {
        self.pieces().insert(id);
        self.held.fetch_add(1, Ordering::Relaxed);
        self.verified.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A chunk of `bytes` was uploaded to a client of `role` (a getter, or the neighbour).
    pub(super) fn sent(&self, role: Role, bytes: u64) {
        self.sent_bytes[slot(role)].fetch_add(bytes, Ordering::Relaxed);
        self.sent_chunks[slot(role)].fetch_add(1, Ordering::Relaxed);
    }

    /// An upload connection to a client of `role` is open until the guard drops.
    pub(super) fn upload(self: &Arc<Self>, role: Role) -> UploadGuard {
        self.uploads[slot(role)].fetch_add(1, Ordering::Relaxed);
        UploadGuard {
            status: self.clone(),
            slot: slot(role),
        }
    }

    pub(super) fn set_via(&self, via: String) {
        *self.via.lock().unwrap_or_else(|p| p.into_inner()) = via;
    }
}

/// An open upload connection, counted in [`Snapshot`]'s connections until dropped.
pub(super) struct UploadGuard {
    status: Arc<Status>,
    slot: usize,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        self.status.uploads[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Status {
    /// This peer's text exposition (OpenMetrics), read now, with what its HTTP side refused
    /// if given (see [`crate::metrics`] for the families and the formats).
    pub fn render_metrics(&self, http: Option<&HttpRefusals>) -> String {
        let s: Snapshot = self.snapshot();
        let mut r = Registry::with_prefix("ringswarm");
        let gauge = |v: u64| {
            let g: Gauge<i64, AtomicI64> = Gauge::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        let counter = |v: u64| {
            let c: Counter = Counter::default();
            c.inc_by(v);
            c
        };
        let by_role = |neighbour: u64, getter: u64| {
            let f: Family<RoleLabel, Counter> = Family::default();
            f.get_or_create(&role(Role::Neighbour)).inc_by(neighbour);
            f.get_or_create(&role(Role::Getter)).inc_by(getter);
            f
        };
        r.register(
            "held_chunks",
            "Verified chunks this peer holds",
            gauge(u64::from(s.held)),
        );
        r.register(
            "file_chunks",
            "Chunks in the file (0 until the manifest is known)",
            gauge(u64::from(s.total)),
        );
        r.register(
            "verified_chunks",
            "Chunks received, verified against the manifest and stored in this run",
            counter(s.verified),
        );
        r.register(
            "refused_chunks",
            "Chunks received that failed verification (refused and fetched again)",
            counter(s.refused),
        );
        r.register(
            "received_bytes",
            "Bytes of verified chunks received in this run",
            counter(s.fetched_bytes),
        );
        r.register(
            "sent_bytes",
            "Chunk bytes this peer sent, by the role of the one served",
            by_role(s.sent_neighbour_bytes, s.sent_getter_bytes),
        );
        r.register(
            "sent_chunks",
            "Chunks this peer sent, by the role of the one served",
            by_role(s.sent_neighbour_chunks, s.sent_getter_chunks),
        );
        register_connections(&mut r, &s);
        if let Some(http) = http {
            http.register(&mut r);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The upload connections open by role, and the getters' choke states, of snapshot `s`.
fn register_connections(r: &mut Registry, s: &Snapshot) {
    let open: Family<RoleLabel, Gauge<i64, AtomicI64>> = Family::default();
    for (who, n) in [
        (Role::Neighbour, s.neighbour_connections),
        (Role::Getter, s.getter_connections),
    ] {
        open.get_or_create(&role(who))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register("connections", "Upload connections open now, by role", open);
    let choke: Family<StateLabel, Gauge<i64, AtomicI64>> = Family::default();
    for (state, n) in [
        ("choked", s.choked),
        ("unchoked", s.unchoked),
        ("interested", s.interested),
    ] {
        choke
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register(
        "choke_connections",
        "Getter connections by choke state (choked, unchoked) and interested ones",
        choke,
    );
}
