//! Live progress while the swarm runs: bars on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::meter::Tally;

/// Live progress: on a terminal one bar per peer (chunks held, rate, ETA) under an overall
/// bar; otherwise, or simulated, one plain line a second (of virtual time, then, with the
/// wall time beside it). One task owns the display.
pub async fn show_progress(
    t: Arc<Tally>,
    total: u32,
    t0: Instant,
    done: CancellationToken,
    simulated: bool,
) {
    if std::io::stderr().is_terminal() && !simulated {
        show_bars(&t, total, &done).await;
    } else {
        let wall = simulated.then(std::time::Instant::now);
        show_lines(&t, total, (t0, wall), &done).await;
    }
}

async fn show_bars(t: &Tally, total: u32, done: &CancellationToken) {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let multi = MultiProgress::new();
    let n = t.held.len() as u64;
    let style = ProgressStyle::with_template(
        "{prefix:>7} [{bar:30.cyan/blue}] {pos:>6}/{len} chunks  ETA {eta:>4}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let overall = multi.add(ProgressBar::new(u64::from(total) * n));
    overall.set_style(style.clone());
    overall.set_prefix("all");
    // More bars than a screen holds help nobody: show the first 20 peers.
    let bars: Vec<ProgressBar> = (0..t.held.len().min(20))
        .map(|i| {
            let b = multi.add(ProgressBar::new(u64::from(total)));
            b.set_style(style.clone());
            b.set_prefix(format!("peer {i}"));
            b
        })
        .collect();
    loop {
        let mut sum = 0;
        for (i, h) in t.held.iter().enumerate() {
            let v = u64::from(h.load(Ordering::Relaxed));
            sum += v;
            if let Some(b) = bars.get(i) {
                b.set_position(v);
            }
        }
        overall.set_position(sum);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = done.cancelled() => break,
        }
    }
    for b in &bars {
        b.finish_and_clear();
    }
    overall.finish_and_clear();
}

/// One line a second: peers complete, chunks held, rate and ETA.
async fn show_lines(
    t: &Tally,
    total: u32,
    (t0, wall): (Instant, Option<std::time::Instant>),
    done: &CancellationToken,
) {
    let n = t.held.len() as u64;
    let goal = u64::from(total) * n;
    let mut last = (0u64, Instant::now());
    let mut finished = false;
    while !finished {
        tokio::select! {
            biased;
            // One last line with the final state.
            () = done.cancelled() => finished = true,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let held: u64 = t
            .held
            .iter()
            .map(|h| u64::from(h.load(Ordering::Relaxed)))
            .sum();
        let complete = t
            .complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|c| c.is_some())
            .count();
        let now = Instant::now();
        // No time passed (a simulation without caps moves everything at once): no rate.
        let secs = now.duration_since(last.1).as_secs_f64();
        let rate = if secs > 0.0 {
            (held - last.0) as f64 / secs
        } else {
            0.0
        };
        last = (held, now);
        let eta = if rate > 0.0 {
            format!("{:.0}s", goal.saturating_sub(held) as f64 / rate)
        } else {
            "?".into()
        };
        let pct = if goal == 0 {
            100.0
        } else {
            100.0 * held as f64 / goal as f64
        };
        let wall = wall.map_or_else(String::new, |w| {
            format!(" (wall {:.1}s)", w.elapsed().as_secs_f64())
        });
        eprintln!(
            "{:6.1}s{wall}  peers complete {complete}/{n}  chunks {held}/{goal} ({pct:.1}%)  {rate:.0} chunks/s  ETA {eta}",
            t0.elapsed().as_secs_f64()
        );
    }
}
