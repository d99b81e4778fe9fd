//! One ring peer's forwarding path (receive, verify, store in a part file, send on), in
//! process over in-memory links, on 1 core and on 2 (or the counts given): the throughput
//! each gives and the ratio between them. A run on W cores pins the whole process (the peer,
//! its upstream and its downstream) to the first W cores it may use, as `taskset` would, and
//! gives the peer's runtime W worker threads (what `--threads auto` gives on a machine of W
//! cores, 1 below 4). Counts above the cores there are run unpinned.
//!
//! Run with `cargo bench --bench forward` (256 MiB, 3 alternating rounds), or
//! `cargo bench --bench forward -- SIZE_MIB ROUNDS CORES...`, e.g. `-- 512 5 1 2 4`.
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
    let allowed = rustix::thread::sched_getaffinity(None)?;
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    let cores = cpus.len();
    println!(
        "forward: {size_mib} MiB in {DEFAULT_CHUNK_SIZE}-byte chunks, {rounds} rounds, {cores} cores"
    );
    let mut best: Vec<Vec<f64>> = vec![Vec::new(); workers.len()];
    for round in 1..=rounds {
        for (i, &w) in workers.iter().enumerate() {
            pin(&cpus[..w.min(cores)])?;
            let dir = tempfile::tempdir()?;
            let run = forward(&data, DEFAULT_CHUNK_SIZE, w, dir.path())?;
            let mbs = run.bytes as f64 / run.seconds / 1e6;
            let cpu_gib = run.cpu_seconds / (run.bytes as f64 / f64::from(1u32 << 30));
            println!(
                "round {round}: {w} core(s): {:.3} s, {mbs:.0} MB/s, {:.2} CPU s ({cpu_gib:.2} CPU s/GiB)",
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
            "median: {w} core(s): {m:.0} MB/s ({:.2}x the first)",
            m / medians[0]
        );
    }
    Ok(())
}

/// Lets this thread, and the threads it starts from now on, run only on `cpus`.
fn pin(cpus: &[usize]) -> anyhow::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}
