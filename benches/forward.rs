//! One ring peer's forwarding path (receive, verify, store in a part file, send on), in
//! process over in-memory links, with the peer's runtime on 1 worker thread and on 2 (or the
//! counts given): the throughput each gives and the ratio between them.
//!
//! Run with `cargo bench --bench forward` (256 MiB, 3 alternating rounds), or
//! `cargo bench --bench forward -- SIZE_MIB ROUNDS WORKERS...`, e.g. `-- 512 5 1 2 4`.
//! The part file lives in `TMPDIR` (default `/tmp`) and is not synced: this measures the CPU
//! path and the page cache, not the disk. Figures are in BENCHMARKS.md.

use std::time::Duration;

use bytes::Bytes;
use ringswarm::manifest::DEFAULT_CHUNK_SIZE;
use ringswarm::peer::forward::forward;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let size_mib = args.first().copied().unwrap_or(256);
    let rounds = args.get(1).copied().unwrap_or(3);
    let workers: Vec<usize> = match args.get(2..) {
        Some(w) if !w.is_empty() => w.to_vec(),
        _ => vec![1, 2],
    };
    let data = Bytes::from(
        (0..size_mib << 20)
            .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect::<Vec<u8>>(),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "forward: {size_mib} MiB in {DEFAULT_CHUNK_SIZE}-byte chunks, {rounds} rounds, {cores} cores"
    );
    let mut best: Vec<Vec<f64>> = vec![Vec::new(); workers.len()];
    for round in 1..=rounds {
        for (i, &w) in workers.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let run = forward(&data, DEFAULT_CHUNK_SIZE, w, dir.path())?;
            let mbs = run.bytes as f64 / run.seconds / 1e6;
            let cpu_gib = run.cpu_seconds / (run.bytes as f64 / f64::from(1u32 << 30));
            println!(
                "round {round}: {w} worker(s): {:.3} s, {mbs:.0} MB/s, {:.2} CPU s ({cpu_gib:.2} CPU s/GiB)",
                run.seconds, run.cpu_seconds
            );
            best[i].push(mbs);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = best.iter_mut().map(median).collect();
    for (w, m) in workers.iter().zip(&medians) {
        println!(
            "median: {w} worker(s): {m:.0} MB/s ({:.2}x the first)",
            m / medians[0]
        );
    }
    Ok(())
}
