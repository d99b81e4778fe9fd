//! What a running peer reports for a progress line ([`Status`]): chunks held of how many,
//! bytes fetched, and where from. Updated by the engine as chunks arrive and links change;
//! read by whoever draws the line (the `peer` binary), never by the engine itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A peer's progress, shared with whoever displays it.
#[derive(Debug, Default)]
pub struct Status {
    held: AtomicU32,
    total: AtomicU32,
    fetched_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    via: Mutex<String>,
}

/// A copy of a [`Status`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Verified chunks held.
    pub held: u32,
    /// Chunks in the file (0 until the manifest is known).
    pub total: u32,
    /// Chunk bytes received and stored in this run.
    pub fetched_bytes: u64,
    /// Chunk bytes uploaded in this run.
    pub sent_bytes: u64,
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
        Snapshot {
            held: self.held.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            via: self.via.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    pub(super) fn start(&self, held: u32, total: u32) {
        self.held.store(held, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub(super) fn stored(&self, bytes: u64) {
        self.held.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn sent(&self, bytes: u64) {
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn set_via(&self, via: String) {
        *self.via.lock().unwrap_or_else(|p| p.into_inner()) = via;
    }
}

impl Snapshot {
    /// The progress line: `412/1024 chunks (40.2%) · 9.8 MiB/s · ETA 6s · from HOST:PORT`,
    /// at `byte_rate` bytes and `chunk_rate` chunks per second.
    // A rate shown rounded down: a finite, non-negative rate fits u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn line(&self, byte_rate: f64, chunk_rate: f64) -> String {
        let s = self;
        if s.total == 0 {
            return "waiting for the manifest".into();
        }
        let pct = f64::from(s.held) * 100.0 / f64::from(s.total);
        let mut line = format!("{}/{} chunks ({pct:.1}%)", s.held, s.total);
        if s.held == s.total {
            line.push_str(&format!(
                " · complete · {} uploaded",
                crate::units::human_size(s.sent_bytes)
            ));
        } else {
            line.push_str(&format!(
                " · {}/s",
                crate::units::human_size(byte_rate as u64)
            ));
            let left = f64::from(s.total - s.held);
            if chunk_rate > 0.0 {
                line.push_str(&format!(" · ETA {}", eta(left / chunk_rate)));
            } else {
                line.push_str(" · ETA –");
            }
        }
        if !s.via.is_empty() {
            line.push_str(" · ");
            line.push_str(&s.via);
        }
        line
    }
}

// A finite, non-negative number of seconds, rounded up.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
/// `42s`, `3m05s`, `2h01m`.
fn eta(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_chunks_rate_eta_and_source() {
        let s = Snapshot {
            held: 412,
            total: 1024,
            fetched_bytes: 0,
            sent_bytes: 0,
            via: "from 127.0.0.1:5002".into(),
        };
        assert_eq!(
            s.line(10.0 * 1024.0 * 1024.0, 100.0),
            "412/1024 chunks (40.2%) · 10.0 MiB/s · ETA 7s · from 127.0.0.1:5002"
        );
        let done = Snapshot {
            held: 1024,
            sent_bytes: 3 << 20,
            ..s
        };
        assert_eq!(
            done.line(0.0, 0.0),
            "1024/1024 chunks (100.0%) · complete · 3.0 MiB uploaded · from 127.0.0.1:5002"
        );
        assert_eq!(eta(185.0), "3m05s");
        assert_eq!(eta(7261.0), "2h01m");
    }
}
