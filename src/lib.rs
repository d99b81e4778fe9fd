//! ringswarm: a file owner cuts a file into chunks and seeds peers with a subset each; the
//! peers, arranged in a ring, pass chunk-ID lists and chunks to each other until every one of
//! them can reassemble and verify the file.
//!
//! # Layout
//!
//! - [`manifest`] — chunk arithmetic, the per-chunk and whole-file hashes, safe names.
//! - [`chunkset`] — which chunks a node holds, and its range form on the wire.
//! - [`hash`] — the BLAKE3 `Hash` newtype.
//! - [`meter`] — the optimality meter: lower bounds for given upload caps.
//! - [`protocol`] — frames and messages (no sockets).
//! - [`connection`] — a framed socket with named, bounded waits.
//! - [`storage`] — the `Storage` trait, the one chunk check, and the in-memory store.
//! - [`store`] — a peer's chunks on disk: part file or chunk files, summary, assembly.
//! - `accept` — the one accept loop every listening role runs.
//! - `serve` — the one chunk server the owner and peers serve with (cancel, choke, rate, event).
//! - [`owner`] — the file owner: chunk assignment, its sessions, directory queries.
//! - [`peer`] — a ring peer: bootstrap, upload server, download clients, completion.
//! - [`dht`] — `--dht`: the mainline DHT, announcing and finding files without the directory;
//!   [`dht_cli`], its command-line options.
//! - [`rate`] — the token bucket behind `--upload-limit`.
//! - [`events`] — the six product events, to console and JSON lines.
//! - [`report`] — a run's summary and its self-contained HTML report with charts.
//! - [`sim`] — the simulated world of `demo --sim`: virtual time, synthesised content.
//! - [`net`] — endpoints, connecting with backoff; the one place socket types come from.
//! - `watch` — a value and its changes, waking waiters in a fixed order (deterministic).
//! - `task` — named, spanned spawns and the shutdown signal.
//! - [`cli`] — what the binaries share: logging, binding, signals, sizes.
//! - [`progress`] — a peer's progress line, in words for people.
//! - [`app`] — `peer app`: a long-lived peer with a web app (list, download, share, unshare).

mod accept;
pub mod app;
pub mod auth;
pub mod choke;
pub mod chunkset;
pub mod cli;
pub mod connection;
pub mod dashboard;
pub mod dht;
pub mod dht_cli;
pub mod directory;
mod driver;
mod error;
pub mod events;
pub mod hash;
pub mod http;
pub mod identity;
pub mod key;
pub mod link;
pub mod manifest;
pub mod meter;
pub mod metrics;
pub mod net;
pub mod owner;
pub mod peer;
pub mod progress;
pub mod protocol;
pub mod query;
pub mod rate;
pub mod report;
pub mod secure;
mod serve;
pub mod share;
pub mod sim;
pub mod storage;
pub mod store;
mod task;
pub mod ticket;
pub mod units;
mod watch;

pub use error::Error;

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses a byte size such as `100KiB`, `64MiB`, `1GiB`, `500k` or `1234`.
///
/// # Errors
///
/// A message naming the input when it is not a number with an optional unit.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number such as 100KiB or 3MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?}: use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    let v = num * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("size {s:?} is out of range"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(v.round() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("1234").unwrap(), 1234);
        assert_eq!(super::parse_size("100KiB").unwrap(), 102_400);
        assert_eq!(super::parse_size("3MiB").unwrap(), 3 << 20);
        assert_eq!(super::parse_size("1.5k").unwrap(), 1536);
        assert!(super::parse_size("12 parsecs").is_err());
        assert!(super::parse_size("").is_err());
    }
}
