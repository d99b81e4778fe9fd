//! `demo`: a file owner and N peers in one process over real loopback TCP, with live progress
//! and, at the end, an optimality meter: per-peer completion times, throughput, and the lower
//! bound for the given upload caps. It runs exactly the library code of `file-owner` and `peer`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use rand::{RngCore, SeedableRng};
use ringswarm::cli::{self, human_size, human_size_f64};
use ringswarm::events::{Event, EventKind, EventLog, EventSink};
use ringswarm::net::Endpoint;
use ringswarm::owner::{self, SharedFile};
use ringswarm::peer::{self, Completion};
use ringswarm::report::{
    Bound, CriticalPath, FileInfo, PeerResult, Summary, write_html, write_summary,
};
use ringswarm::store::Layout;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Run a file owner and N peers in one process over loopback TCP, show their progress, and
/// measure the run against the lower bound for the given upload caps.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of peers in the ring
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    peers: u16,
    /// Size of the generated file to share (e.g. 64MiB)
    #[arg(long, default_value = "64MiB", value_parser = ringswarm::parse_size, conflicts_with = "file")]
    size: u64,
    /// Share this file instead of a generated one
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Nominal chunk size
    #[arg(long, default_value = "100KiB", value_parser = cli::parse_chunk_size)]
    chunk_size: u64,
    /// Upload cap of every peer, e.g. 10MiB/s
    #[arg(long, value_name = "RATE", value_parser = cli::parse_rate)]
    rate: Option<u64>,
    /// Upload cap of the owner [default: --rate]
    #[arg(long, value_name = "RATE", value_parser = cli::parse_rate)]
    owner_rate: Option<u64>,
    /// Seed for the generated file and every random choice (hand-out start, chunk picks)
    #[arg(long)]
    seed: Option<u64>,
    /// Write index.html, events.jsonl and summary.json to DIR
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// No live progress
    #[arg(long)]
    no_progress: bool,
    /// Peers store one file per chunk
    #[arg(long)]
    chunk_files: bool,
    /// Requests in flight per connection
    #[arg(long, value_name = "K", default_value_t = peer::DEFAULT_IN_FLIGHT)]
    in_flight: usize,
    /// Keep the file and the peers' folders in DIR [default: a temporary folder, removed]
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // Progress replaces the per-event lines; lifecycle logs only when asked for.
        cli::set_default_log_filter("warn");
    }
    cli::run_main(cli::Threads::PerCore, run(args))
}

/// Bytes over one link, and its first and last arrival (unix seconds).
type LinkStat = (u64, f64, f64);

/// What the observers gather while the swarm runs.
struct Tally {
    owner: String,
    held: Vec<AtomicU32>,
    from_owner: Vec<AtomicU32>,
    complete: Mutex<Vec<Option<f64>>>,
    /// (from, to) → bytes, first and last arrival (unix seconds).
    links: Mutex<HashMap<(String, usize), LinkStat>>,
}

impl Tally {
    fn observe(&self, i: usize, ev: &Event) {
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
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let token = cli::signal_token()?;
    let n = usize::from(args.peers);
    raise_fd_limit(n)?;
    let tmp;
    let work = match &args.work {
        Some(w) => w.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ringswarm-demo.")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let path = match &args.file {
        Some(p) => p.clone(),
        None => {
            let p = work.join("demo.bin");
            let (size, seed) = (args.size, args.seed);
            let p2 = p.clone();
            tokio::task::spawn_blocking(move || generate(&p2, size, seed)).await??;
            p
        }
    };
    let (chunk_size, peers) = (args.chunk_size, u32::from(args.peers));
    let p2 = path.clone();
    let shared = tokio::task::spawn_blocking(move || SharedFile::open(&p2, chunk_size, peers))
        .await?
        .with_context(|| format!("cannot share {}", path.display()))?;
    let manifest = shared.manifest.clone();

    let owner_listener = ringswarm::net::listen(([127, 0, 0, 1], 0).into())?;
    let owner_port = owner_listener.local_addr()?.port();
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        listeners.push(ringswarm::net::listen(([127, 0, 0, 1], 0).into())?);
    }
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;

    let log = match &args.report {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let events = dir.join(ringswarm::report::EVENTS_FILE);
            let _ = std::fs::remove_file(&events);
            Some(EventLog::create(&events)?)
        }
        None => None,
    };
    let tally = Arc::new(Tally {
        owner: format!("127.0.0.1:{owner_port}"),
        held: (0..n).map(|_| AtomicU32::new(0)).collect(),
        from_owner: (0..n).map(|_| AtomicU32::new(0)).collect(),
        complete: Mutex::new(vec![None; n]),
        links: Mutex::new(HashMap::new()),
    });
    let owner_rate = args.owner_rate.or(args.rate);
    println!(
        "demo: {} ({}, {} chunks of {}), owner + {n} peers on 127.0.0.1, caps: peers {}, owner {}",
        ringswarm::manifest::display_name(&manifest.name),
        human_size(manifest.size),
        manifest.chunk_count(),
        human_size(manifest.chunk_size),
        rate_text(args.rate),
        rate_text(owner_rate),
    );

    let started_ts = unix_now();
    let t0 = Instant::now();
    let stop = token.child_token();
    let mut owner_events = EventSink::console("owner").quiet();
    if let Some(log) = &log {
        owner_events = owner_events.log(log.clone());
    }
    let owner_config = owner::Config {
        peers,
        upload_limit: owner_rate
            .map(|r| Arc::new(ringswarm::rate::RateLimiter::new(r, chunk_size))),
        seed: args.seed,
        ..owner::Config::new(Arc::new(owner_events))
    };
    let files = vec![Arc::new(shared)];
    let directory = owner::directory(
        &files,
        owner_listener.local_addr()?,
        ringswarm::directory::DEFAULT_PEER_TTL,
    );
    let owner_task = tokio::spawn(owner::run(
        owner_listener,
        files,
        directory,
        owner_config,
        stop.clone(),
    ));

    let mut peer_tasks = Vec::with_capacity(n);
    for (i, listener) in listeners.into_iter().enumerate() {
        let label = format!("127.0.0.1:{}", ports[i]);
        let t = tally.clone();
        let mut events = EventSink::console(label)
            .quiet()
            .observe(Arc::new(move |ev: &Event| t.observe(i, ev)));
        if let Some(log) = &log {
            events = events.log(log.clone());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<Completion>();
        let config = peer::Config {
            owner: Endpoint::local(owner_port),
            neighbour: Endpoint::local(ports[(i + 1) % n]),
            get: None,
            upload_slots: ringswarm::choke::DEFAULT_UPLOAD_SLOTS,
            secret: None,
            sync: false,
            dir: work.join(format!("peer-{}", ports[i])),
            file: None,
            layout: if args.chunk_files {
                Layout::ChunkFiles
            } else {
                Layout::PartFile
            },
            linger: None,
            timeout: Duration::from_secs(120),
            in_flight: args.in_flight.max(1),
            events: Arc::new(events),
            corrupt_sends: 0,
            upload_limit: args.rate,
            seed: args.seed.map(|s| s.wrapping_add(i as u64 + 1)),
            on_complete: Some(tx),
        };
        let t = tally.clone();
        tokio::spawn(async move {
            if rx.await.is_ok() {
                t.complete.lock().unwrap_or_else(|p| p.into_inner())[i] =
                    Some(t0.elapsed().as_secs_f64());
            }
        });
        let span = tracing::info_span!(parent: None, "peer", port = ports[i]);
        peer_tasks.push(tokio::spawn(
            peer::run(listener, config, stop.clone()).instrument(span),
        ));
    }

    let progress = (!args.no_progress).then(|| {
        let t = tally.clone();
        let total = manifest.chunk_count();
        let done = CancellationToken::new();
        let d = done.clone();
        let handle = tokio::spawn(show_progress(t, total, t0, d));
        (handle, done)
    });

    let mut failures = Vec::new();
    for (i, task) in peer_tasks.into_iter().enumerate() {
        match task.await? {
            Ok(peer::Outcome::Complete(_)) => {}
            Ok(peer::Outcome::Interrupted) => {
                failures.push(format!("peer {} interrupted", ports[i]))
            }
            Err(e) => failures.push(format!("peer {}: {e:#}", ports[i])),
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    stop.cancel();
    owner_task.await??;
    if let Some((handle, done)) = progress {
        done.cancel();
        let _ = handle.await;
    }
    if token.is_cancelled() {
        return Ok(false);
    }
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }

    let report = meter(
        &args, &tally, &ports, &manifest, owner_rate, started_ts, wall,
    );
    if let Some(dir) = &args.report {
        if let Some(log) = &log {
            log.flush();
        }
        write_summary(dir, &report)?;
        let page = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || write_html(&dir)
        })
        .await??;
        println!("report: {}", page.display());
    }
    Ok(true)
}

/// File descriptors a run needs: per peer a listener, its part file, an owner and a neighbour
/// connection and an upload connection, plus the owner's end of each peer's connection (six
/// per peer, rounded up), and a margin for the runtime, logs and the shared file.
fn fds_needed(peers: usize) -> u64 {
    8 * peers as u64 + 64
}

/// Raises the soft open-file limit towards the hard one when `peers` need more.
fn raise_fd_limit(peers: usize) -> anyhow::Result<()> {
    let need = fds_needed(peers);
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft >= need {
        return Ok(());
    }
    if hard < need {
        anyhow::bail!(
            "{peers} peers need about {need} file descriptors but the hard limit is {hard}: \
             raise it (ulimit -Hn) or run fewer peers"
        );
    }
    rlimit::Resource::NOFILE.set(need, hard)?;
    eprintln!("raised the open-file limit from {soft} to {need} for {peers} peers");
    Ok(())
}

fn rate_text(r: Option<u64>) -> String {
    r.map_or_else(|| "none".into(), |r| format!("{}/s", human_size(r)))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes `size` pseudo-random bytes (seeded when asked) in 1 MiB pieces.
fn generate(path: &Path, size: u64, seed: Option<u64>) -> anyhow::Result<()> {
    let mut rng = match seed {
        Some(s) => rand::rngs::StdRng::seed_from_u64(s),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let k = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        rng.fill_bytes(&mut buf[..k]);
        w.write_all(&buf[..k])?;
        left -= k as u64;
    }
    w.flush()?;
    Ok(())
}

/// Live progress: on a terminal one bar per peer (chunks held, rate, ETA) under an overall
/// bar; otherwise one plain line a second. One task owns the display.
async fn show_progress(t: Arc<Tally>, total: u32, t0: Instant, done: CancellationToken) {
    if std::io::stderr().is_terminal() {
        show_bars(&t, total, &done).await;
    } else {
        show_lines(&t, total, t0, &done).await;
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
async fn show_lines(t: &Tally, total: u32, t0: Instant, done: &CancellationToken) {
    let n = t.held.len() as u64;
    let goal = u64::from(total) * n;
    let mut last = (0u64, Instant::now());
    let mut finished = false;
    while !finished {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            // One last line with the final state.
            () = done.cancelled() => finished = true,
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
        let rate = (held - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
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
        eprintln!(
            "{:6.1}s  peers complete {complete}/{n}  chunks {held}/{goal} ({pct:.1}%)  {rate:.0} chunks/s  ETA {eta}",
            t0.elapsed().as_secs_f64()
        );
    }
}

/// Prints the optimality meter and returns it as the report summary.
fn meter(
    args: &Args,
    t: &Tally,
    ports: &[u16],
    manifest: &ringswarm::manifest::Manifest,
    owner_rate: Option<u64>,
    started_ts: f64,
    wall: f64,
) -> Summary {
    let n = ports.len();
    let complete = t.complete.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let size = manifest.size;
    println!();
    println!(
        "{:<8} {:>10} {:>11} {:>11}",
        "peer", "complete", "from owner", "from ring"
    );
    for (i, port) in ports.iter().enumerate() {
        let held = t.held[i].load(Ordering::Relaxed);
        let owner = t.from_owner[i].load(Ordering::Relaxed);
        let c = complete[i].map_or_else(|| "-".into(), |c| format!("{c:.3}s"));
        println!("{port:<8} {c:>10} {owner:>11} {:>11}", held - owner);
    }
    let last = complete
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (i, c)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let last_time = last.map_or(wall, |(_, c)| c);
    let aggregate = n as f64 * size as f64 / last_time.max(1e-9);
    println!();
    println!(
        "last peer complete after {last_time:.3}s; aggregate {}/s ({n} × {} / {last_time:.3}s)",
        human_size_f64(aggregate),
        human_size(size)
    );
    let bound = match (owner_rate, args.rate) {
        (Some(u0), Some(u)) => {
            let fluid = ringswarm::meter::fluid_bound(size, n, u0, &vec![u; n]);
            let ring = ringswarm::meter::chunked_ring(size, n, manifest.chunk_size, u);
            fluid.map(|f| (f, ring))
        }
        _ => None,
    };
    if let Some((fluid, ring)) = bound {
        println!(
            "fluid lower bound max(S/U_owner, N·S/(U_owner+ΣU)) = {fluid:.3}s; measured/bound = {:.3}",
            last_time / fluid
        );
        if let Some(r) = ring {
            println!(
                "chunked ring S/U + (N−1)·c/U = {r:.3}s; measured/ring = {:.3}",
                last_time / r
            );
        }
    } else {
        println!("no upload caps given (--rate): no lower bound to compare with");
    }
    let critical = last.map(|(i, _)| {
        let links = t.links.lock().unwrap_or_else(|p| p.into_inner());
        let slowest = links
            .iter()
            .filter(|((_, to), _)| *to == i)
            .map(|((from, _), &(bytes, first, lastts))| {
                let secs = (lastts - first).max(1e-3);
                (from.clone(), bytes as f64 / secs, bytes)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((from, bps, bytes)) = &slowest {
            println!(
                "critical path: peer {} finished last; its slowest feed was {from} at {}/s ({})",
                ports[i],
                human_size_f64(*bps),
                human_size(*bytes)
            );
        }
        (i, slowest)
    });
    Summary {
        file: FileInfo {
            name: manifest.name.clone(),
            size,
            chunk_size: manifest.chunk_size,
            chunks: manifest.chunk_count(),
        },
        owner: t.owner.clone(),
        peers: ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let held = t.held[i].load(Ordering::Relaxed);
                let owner = t.from_owner[i].load(Ordering::Relaxed);
                PeerResult {
                    peer: format!("127.0.0.1:{p}"),
                    complete_s: complete[i],
                    from_owner: owner,
                    from_neighbours: held - owner,
                }
            })
            .collect(),
        started_ts,
        wall_s: last_time,
        aggregate_bytes_per_s: aggregate,
        rate: args.rate,
        owner_rate,
        bound: bound.map(|(fluid, ring)| Bound {
            fluid_s: fluid,
            chunked_ring_s: ring.unwrap_or_default(),
            ratio: last_time / fluid,
        }),
        critical_path: critical.and_then(|(i, s)| {
            s.map(|(from, bps, _)| CriticalPath {
                last_peer: format!("127.0.0.1:{}", ports[i]),
                slowest_link_from: from,
                slowest_link_bytes_per_s: bps,
            })
        }),
        seed: args.seed,
    }
}
