//! The live status line of `peer`, `peer join`, `peer get` and `peer share`.
//!
//! On a terminal: one line at the bottom of stderr (indicatif), redrawn five times a second,
//! with the log lines scrolling above it. Not on a terminal: a plain `progress:` log line
//! every [`PLAIN_EVERY`]. With `--quiet`: nothing (errors and the final line only).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringswarm::peer::Status;
use tokio_util::sync::CancellationToken;

/// How often the line is redrawn on a terminal.
const TTY_EVERY: Duration = Duration::from_millis(200);
/// How often a plain progress line is logged when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// The window the rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// A running status line; [`Line::finish`] removes it.
pub struct Line {
    bar: Option<ProgressBar>,
    stop: CancellationToken,
}

impl Line {
    /// Shows `render`'s line until [`Line::finish`]: on a terminal, or as log lines; nothing
    /// when `quiet`.
    pub fn start(quiet: bool, mut render: impl FnMut() -> String + Send + 'static) -> Self {
        let stop = CancellationToken::new();
        if quiet {
            return Self { bar: None, stop };
        }
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = tty.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            let b = bar.clone();
            ringswarm::cli::set_log_output(move |bytes| {
                b.suspend(|| {
                    let _ = std::io::stderr().write_all(bytes);
                });
            });
            bar
        });
        let (b, s) = (bar.clone(), stop.clone());
        tokio::spawn(async move {
            // Sampled as often either way, so the rate is measured before the first line.
            let mut tick = tokio::time::interval(TTY_EVERY);
            let mut last_plain = Instant::now();
            loop {
                tokio::select! {
                    biased;
                    () = s.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let line = render();
                match &b {
                    Some(bar) => bar.set_message(line),
                    None if last_plain.elapsed() >= PLAIN_EVERY => {
                        last_plain = Instant::now();
                        tracing::info!("progress: {line}");
                    }
                    None => {}
                }
            }
        });
        Self { bar, stop }
    }

    /// Prints `text` on stdout without tearing the line.
    pub fn print_out(&self, text: &str) {
        let print = || {
            let _ = ringswarm::cli::print_out(text);
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the line.
    pub fn finish(&self) {
        self.stop.cancel();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A rate over the last [`RATE_WINDOW`], from a growing count.
#[derive(Default)]
pub struct Rate {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Adds the count now; the rate per second over the window (0 until two samples).
    pub fn update(&mut self, count: u64) -> f64 {
        let now = Instant::now();
        self.samples.push_back((now, count));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        let (t0, c0) = self.samples.front().copied().unwrap_or((now, count));
        let secs = now.duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        count.saturating_sub(c0) as f64 / secs
    }
}

/// A publisher's line: `12.3 MiB sent · 4.1 MiB/s · 3 connections`.
// A rate shown rounded down: a finite, non-negative rate fits u64.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn share_line(
    metrics: Arc<ringswarm::metrics::Metrics>,
) -> impl FnMut() -> String + Send + 'static {
    let mut rate = Rate::default();
    move || {
        let (sent, open) = metrics.totals();
        let r = rate.update(sent);
        format!(
            "sharing · {} sent · {}/s · {open} connections",
            ringswarm::units::human_size(sent),
            ringswarm::units::human_size(r as u64)
        )
    }
}

/// A downloading peer's line: `412/1024 chunks (40.2%) · 9.8 MiB/s · ETA 6s · from HOST:PORT`.
pub fn peer_line(status: Arc<Status>) -> impl FnMut() -> String + Send + 'static {
    let (mut bytes, mut chunks) = (Rate::default(), Rate::default());
    move || {
        let s = status.snapshot();
        let byte_rate = bytes.update(s.fetched_bytes);
        let chunk_rate = chunks.update(u64::from(s.held));
        ringswarm::progress::status_line(&s, byte_rate, chunk_rate)
    }
}
