//! The dashboard's replay of a recorded run: `demo --report` writes `dashboard.html`, the live
//! dashboard's own page ([`crate::dashboard::PAGE`]) fed with snapshots rebuilt from the
//! event log instead of a live feed, so a simulated run and a live one look alike.
//!
//! One streaming pass over `events.jsonl`: every `chunk_received` adds the chunk to its peer
//! (and names the peer's download neighbour, when it came from another peer), and a snapshot
//! of every peer is taken at evenly spaced moments of the run — [`FRAMES`] of them (fewer
//! columns and frames beyond 100 peers, so that the page stays a few MiB).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use super::error::ReportError;
use super::summary::Summary;

/// Snapshots of a run of up to 100 peers (a larger run gets half as many).
pub const FRAMES: usize = 40;

/// One peer as the replay follows it.
struct PeerState {
    addr: String,
    have: Vec<u64>,
    count: u32,
    neighbour: Option<String>,
    joined: Option<f64>,
    completed: Option<f64>,
    /// Its count at the previous frame, for its rate.
    counted: u32,
}

impl PeerState {
    fn holds(&self, c: u32) -> bool {
        self.have
            .get(c as usize / 64)
            .is_some_and(|w| w & (1 << (c % 64)) != 0)
    }

    fn add(&mut self, c: u32) -> bool {
        let Some(w) = self.have.get_mut(c as usize / 64) else {
            return false;
        };
        let bit = 1u64 << (c % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.count += 1;
        true
    }
}

/// Seconds as Unix milliseconds.
// Float to integer casts saturate (and NaN is 0).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn ms(t: f64) -> u64 {
    (t * 1000.0) as u64
}

/// The recording: `{"frames": [snapshot…], "times": [seconds from the start…], "wall_s"}`,
/// each snapshot shaped as the live dashboard's.
pub(super) fn recording(events: &Path, summary: &Summary) -> Result<Value, ReportError> {
    let chunks = summary.file.chunks;
    let big = summary.peers.len() > 100;
    let frames = if big { FRAMES / 2 } else { FRAMES };
    let columns: u32 = if big { 32 } else { 128 };
    let per = chunks.div_ceil(columns).max(1);
    let words = (chunks as usize).div_ceil(64);
    let mut peers: Vec<PeerState> = summary
        .peers
        .iter()
        .map(|p| PeerState {
            addr: p.peer.clone(),
            have: vec![0; words],
            count: 0,
            neighbour: None,
            joined: None,
            completed: None,
            counted: 0,
        })
        .collect();
    let row: HashMap<String, usize> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.addr.clone(), i))
        .collect();
    let wall = summary.wall_s.max(1e-3);
    // `frames` evenly spaced moments, the last the end of the run.
    #[allow(clippy::cast_precision_loss)]
    let times: Vec<f64> = (0..frames)
        .map(|k| wall * k as f64 / (frames - 1) as f64)
        .collect();
    let mut out = Vec::with_capacity(frames);
    let mut last_t = 0.0;
    // The snapshots due before `t` (all that are left, at the end).
    let mut take_until = |t: f64, peers: &mut [PeerState], out: &mut Vec<Value>| {
        while out.len() < frames && times[out.len()] < t {
            let at = times[out.len()];
            out.push(frame(summary, peers, per, at, at - last_t));
            last_t = at;
        }
    };
    super::scan::for_each_received(events, |ev| {
        take_until(ev.ts - summary.started_ts, &mut peers, &mut out);
        let (Some(&r), Some(c)) = (row.get(&ev.peer), ev.chunk) else {
            return;
        };
        let p = &mut peers[r];
        p.joined.get_or_insert(ev.ts);
        if c < chunks && p.add(c) {
            if ev.neighbour != summary.owner {
                p.neighbour = Some(ev.neighbour.clone());
            }
            if p.count == chunks {
                p.completed = Some(ev.ts);
            }
        }
    })?;
    take_until(f64::INFINITY, &mut peers, &mut out);
    Ok(json!({ "frames": out, "times": times, "wall_s": summary.wall_s }))
}

/// The snapshot at `t` seconds from the start, `dt` after the previous one.
fn frame(summary: &Summary, peers: &mut [PeerState], per: u32, t: f64, dt: f64) -> Value {
    let chunks = summary.file.chunks;
    let mut rates = serde_json::Map::new();
    let mut events = Vec::new();
    let members: Vec<Value> = peers
        .iter_mut()
        .map(|p| {
            let gained = f64::from(p.count - p.counted);
            p.counted = p.count;
            // The first moment has no interval: no rate (the page shows "—"), as live.
            if dt > 0.0 {
                let rate = gained * summary.file.chunk_size as f64 / dt;
                rates.insert(format!("1 {}", p.addr), json!(rate));
            }
            if let Some(done) = p.completed {
                events.push((done, p.addr.clone()));
            }
            let pieces = crate::directory::view::piece_row(chunks, per, |c| p.holds(c));
            let joined = p.joined.unwrap_or(summary.started_ts);
            json!({
                "addr": p.addr,
                "role": "peer",
                "count": p.count,
                "complete": p.count == chunks,
                "neighbour": p.neighbour,
                "joined_unix_ms": ms(joined),
                "completed_unix_ms": p.completed.map(ms),
                "pieces": pieces,
            })
        })
        .collect();
    events.sort_by(|a, b| b.0.total_cmp(&a.0));
    events.truncate(50);
    let complete = peers.iter().filter(|p| p.count == chunks).count();
    json!({
        "files": [{
            "file": {
                "id": 1,
                "name": summary.file.name,
                "size": summary.file.size,
                "chunk_size": summary.file.chunk_size,
                "chunks": chunks,
                "hash": "",
                "complete_sources": complete + 1,
                "partial_sources": peers.len() - complete,
            },
            "members": members,
            "ring_len": peers.len(),
            "chunks_per_column": per,
            "departed": [],
        }],
        "events": events.iter().map(|(ts, addr)| json!({
            "unix_ms": ms(*ts), "file_id": 1, "addr": addr, "role": "peer", "what": "completed",
        })).collect::<Vec<_>>(),
        "tickets": {},
        "rates": rates,
        "now_unix_ms": ms(summary.started_ts + t),
    })
}

/// The dashboard page with `recording` in it.
pub(super) fn page(recording: &Value) -> String {
    let json = recording.to_string().replace('<', "\\u003c");
    crate::dashboard::PAGE.replacen(
        "<!--INITIAL-->",
        &format!("<script id=\"replay\" type=\"application/json\">{json}</script>"),
        1,
    )
}
