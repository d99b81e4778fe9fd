//! A peer's progress line, as the `peer` binary shows it on a terminal or logs it: words for
//! people, made from the numbers a peer's [`Status`](crate::peer::Status) counts.

use crate::peer::Snapshot;

/// The progress line: `412/1024 chunks (40.2%) · 9.8 MiB/s · ETA 6s · from HOST:PORT`,
/// at `byte_rate` bytes and `chunk_rate` chunks per second.
// A rate shown rounded down: a finite, non-negative rate fits u64.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn status_line(s: &Snapshot, byte_rate: f64, chunk_rate: f64) -> String {
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

/// `42s`, `3m05s`, `2h01m`.
// A finite, non-negative number of seconds, rounded up.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
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
            via: "from 127.0.0.1:5002".into(),
            ..Snapshot::default()
        };
        assert_eq!(
            status_line(&s, 10.0 * 1024.0 * 1024.0, 100.0),
            "412/1024 chunks (40.2%) · 10.0 MiB/s · ETA 7s · from 127.0.0.1:5002"
        );
        let done = Snapshot {
            held: 1024,
            sent_bytes: 3 << 20,
            ..s
        };
        assert_eq!(
            status_line(&done, 0.0, 0.0),
            "1024/1024 chunks (100.0%) · complete · 3.0 MiB uploaded · from 127.0.0.1:5002"
        );
        assert_eq!(eta(185.0), "3m05s");
        assert_eq!(eta(7261.0), "2h01m");
    }
}
