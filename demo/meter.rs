//! What the demo gathers while the swarm runs, and the optimality meter at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use ringswarm::cli::{human_size, human_size_f64};
use ringswarm::events::{Event, EventKind};
use ringswarm::manifest::Manifest;
use ringswarm::report::{Bound, CriticalPath, PeerResult, RunFile, Summary};

/// Bytes over one link, and its first and last arrival (event timestamps).
type LinkStat = (u64, f64, f64);

/// What the observers gather while the swarm runs.
pub struct Tally {
    pub owner: String,
    pub held: Vec<AtomicU32>,
    pub from_owner: Vec<AtomicU32>,
    /// Each peer's completion, seconds from the start.
    pub complete: Mutex<Vec<Option<f64>>>,
    /// (from, to) → bytes, first and last arrival.
    links: Mutex<BTreeMap<(String, usize), LinkStat>>,
}

impl Tally {
    pub fn new(owner: String, peers: usize) -> Self {
        Self {
            owner,
            held: (0..peers).map(|_| AtomicU32::new(0)).collect(),
            from_owner: (0..peers).map(|_| AtomicU32::new(0)).collect(),
            complete: Mutex::new(vec![None; peers]),
            links: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, i: usize, ev: &Event) {
        if ev.event != EventKind::ChunkReceived {
            return;
        }
        self.held[i].fetch_add(1, Ordering::Relaxed);
        if ev.neighbour == self.owner {
            self.from_owner[i].fetch_add(1, Ordering::Relaxed);
        }
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let e = links
            .entry((ev.neighbour.clone(), i))
            .or_insert((0, ev.ts, ev.ts));
        e.0 += ev.bytes.unwrap_or(0);
        e.2 = ev.ts;
    }

    pub fn completed(&self, i: usize, secs: f64) {
        self.complete.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(secs);
    }

    /// The slowest feed of peer `i`: who, bytes per second, bytes.
    fn slowest_feed(&self, i: usize) -> Option<(String, f64, u64)> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links
            .iter()
            .filter(|((_, to), _)| *to == i)
            .map(|((from, _), &(bytes, first, last))| {
                let secs = (last - first).max(1e-3);
                (from.clone(), bytes as f64 / secs, bytes)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// What the meter is told about the run.
pub struct Run<'a> {
    pub manifest: &'a Manifest,
    pub labels: &'a [String],
    pub rate: Option<u64>,
    /// Each peer's upload cap, in `labels`' order.
    pub peer_rates: Vec<Option<u64>>,
    pub owner_rate: Option<u64>,
    pub download_rate: Option<u64>,
    pub seed: Option<u64>,
    pub started_ts: f64,
    pub wall: f64,
}

/// Prints the optimality meter and returns it as the report summary.
pub fn meter(run: &Run<'_>, t: &Tally) -> Summary {
    let (n, size) = (run.labels.len(), run.manifest.size);
    let complete = t.complete.lock().unwrap_or_else(|p| p.into_inner()).clone();
    print_peers(run, t, &complete);
    let last = complete
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (i, c)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let last_time = last.map_or(run.wall, |(_, c)| c);
    let aggregate = n as f64 * size as f64 / last_time.max(1e-9);
    println!();
    println!(
        "last peer complete after {last_time:.3}s; aggregate {}/s ({n} × {} / {last_time:.3}s)",
        human_size_f64(aggregate),
        human_size(size)
    );
    let bound = print_bound(run, last_time);
    let critical = last.and_then(|(i, _)| {
        let (from, bps, bytes) = t.slowest_feed(i)?;
        println!(
            "critical path: peer {} finished last; its slowest feed was {from} at {}/s ({})",
            port_of(&run.labels[i]),
            human_size_f64(bps),
            human_size(bytes)
        );
        Some(CriticalPath {
            last_peer: run.labels[i].clone(),
            slowest_link_from: from,
            slowest_link_bytes_per_s: bps,
        })
    });
    Summary {
        file: RunFile {
            name: run.manifest.name.clone(),
            size,
            chunk_size: run.manifest.chunk_size,
            chunks: run.manifest.chunk_count(),
        },
        owner: t.owner.clone(),
        peers: results(run, t, &complete),
        started_ts: run.started_ts,
        wall_s: last_time,
        aggregate_bytes_per_s: aggregate,
        rate: run.rate,
        owner_rate: run.owner_rate,
        bound,
        critical_path: critical,
        seed: run.seed,
    }
}

fn port_of(label: &str) -> &str {
    label.rsplit_once(':').map_or(label, |(_, p)| p)
}

/// Peers beyond which the table shows only the slowest, and a distribution of the rest.
const TABLE_ROWS: usize = 40;

fn print_peers(run: &Run<'_>, t: &Tally, complete: &[Option<f64>]) {
    let n = run.labels.len();
    let mut rows: Vec<usize> = (0..n).collect();
    if n > TABLE_ROWS {
        // Incomplete peers first, then the latest to complete.
        rows.sort_by(|&a, &b| {
            let key = |i: usize| complete[i].unwrap_or(f64::INFINITY);
            key(b).total_cmp(&key(a)).then(a.cmp(&b))
        });
        rows.truncate(10);
        print_distribution(t, complete);
        println!("the 10 slowest of {n} peers (every peer: --report's summary.json):");
    }
    println!();
    println!(
        "{:<8} {:>10} {:>11} {:>11}",
        "peer", "complete", "from owner", "from ring"
    );
    for i in rows {
        let held = t.held[i].load(Ordering::Relaxed);
        let owner = t.from_owner[i].load(Ordering::Relaxed);
        let c = complete[i].map_or_else(|| "-".into(), |c| format!("{c:.3}s"));
        println!(
            "{:<8} {c:>10} {owner:>11} {:>11}",
            port_of(run.labels[i].as_str()),
            held - owner
        );
    }
}

/// Completion times by percentile, and the chunks the owner sent.
fn print_distribution(t: &Tally, complete: &[Option<f64>]) {
    let mut done: Vec<f64> = complete.iter().flatten().copied().collect();
    done.sort_by(f64::total_cmp);
    println!();
    if let (Some(first), Some(last)) = (done.first(), done.last()) {
        let at = |q: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = ((done.len() - 1) as f64 * q).round() as usize;
            done[i]
        };
        println!(
            "{} of {} peers complete: first {first:.3}s, median {:.3}s, p90 {:.3}s, p99 {:.3}s, last {last:.3}s",
            done.len(),
            complete.len(),
            at(0.5),
            at(0.9),
            at(0.99)
        );
    } else {
        println!("no peer completed");
    }
    let owner: Vec<u32> = t
        .from_owner
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    println!(
        "chunks from the owner: {} in all, {}–{} per peer",
        owner.iter().map(|&c| u64::from(c)).sum::<u64>(),
        owner.iter().min().unwrap_or(&0),
        owner.iter().max().unwrap_or(&0)
    );
}

/// Prints the bounds for the caps and how the run compares, when both caps are known.
fn print_bound(run: &Run<'_>, last_time: f64) -> Option<Bound> {
    let (n, size) = (run.labels.len(), run.manifest.size);
    let fluid = crate::slow::fluid_bound(size, run.owner_rate, &run.peer_rates, run.download_rate);
    // A pipeline round the ring runs at its slowest link.
    let slowest = run.peer_rates.iter().copied().min().flatten();
    let (Some(fluid), Some(u)) = (fluid, slowest) else {
        println!("no upload caps given (--rate): no lower bound to compare with");
        return None;
    };
    let ring = ringswarm::meter::chunked_ring(size, n, run.manifest.chunk_size, u);
    let terms = if run.download_rate.is_some() {
        "max(S/U_owner, N·S/(U_owner+ΣU_i), S/D)"
    } else {
        "max(S/U_owner, N·S/(U_owner+ΣU_i))"
    };
    println!(
        "fluid lower bound {terms} = {fluid:.3}s; measured/bound = {:.3}",
        last_time / fluid
    );
    if let Some(r) = ring {
        println!(
            "chunked ring S/U + (N−1)·c/U = {r:.3}s; measured/ring = {:.3}",
            last_time / r
        );
    }
    Some(Bound {
        fluid_s: fluid,
        chunked_ring_s: ring.unwrap_or_default(),
        ratio: last_time / fluid,
    })
}

fn results(run: &Run<'_>, t: &Tally, complete: &[Option<f64>]) -> Vec<PeerResult> {
    run.labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let held = t.held[i].load(Ordering::Relaxed);
            let owner = t.from_owner[i].load(Ordering::Relaxed);
            PeerResult {
                peer: label.clone(),
                complete_s: complete[i],
                from_owner: owner,
                from_neighbours: held - owner,
                upload_rate: (run.peer_rates[i] != run.rate)
                    .then_some(run.peer_rates[i])
                    .flatten(),
            }
        })
        .collect()
}
