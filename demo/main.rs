//! `demo`: a file owner and N peers in one process, with live progress and, at the end, an
//! optimality meter: per-peer completion times, throughput, and the lower bound for the given
//! upload caps. It runs exactly the library code of `file-owner` and `peer`: over real
//! loopback TCP, or with `--sim` over a simulated network in virtual time
//! (see `ringswarm::sim`).

mod dht;
mod faults;
mod meter;
mod progress;
mod slow;
mod swarm;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use rand::{RngCore, SeedableRng};
use ringswarm::cli::{self, human_size};
use ringswarm::events::EventLog;
use ringswarm::report::{write_html, write_summary};

/// The most peers of a run over TCP (a simulation takes up to `MAX_SIM_PEERS`).
const MAX_TCP_PEERS: u16 = 1000;
/// The most peers of a simulation.
const MAX_SIM_PEERS: u16 = 10_000;

/// Run a file owner and N peers in one process over loopback TCP (or, with --sim, over a
/// simulated network in virtual time), show their progress, and measure the run against the
/// lower bound for the given upload caps.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of peers in the ring (at most 1000 over TCP, 10000 simulated)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_SIM_PEERS)))]
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
    /// Peer K (1..N, in the demo's order) uploads at RATE instead of --rate; repeat it or
    /// give a comma list (e.g. 3:2.5MiB/s,5:1MiB/s)
    #[arg(long, value_name = "K:RATE", value_delimiter = ',', value_parser = slow::parse_slow)]
    slow: Vec<slow::Slow>,
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
    #[arg(long, conflicts_with = "sim")]
    chunk_files: bool,
    /// Peers join the ring through the directory (as `peer join`): the owner places each
    /// and re-stitches the ring when one crashes or leaves. The default; see --wired
    #[arg(long, conflicts_with = "wired")]
    join: bool,
    /// Peers name their download neighbours instead (as `peer OWNER PORT NEIGHBOUR`): peer
    /// i downloads from peer i+1, the last from the first, and a dead one is worked around
    /// by the fall-back rather than re-stitched
    #[arg(long)]
    wired: bool,
    /// Requests in flight per connection
    #[arg(long, value_name = "K", default_value_t = ringswarm::peer::DEFAULT_IN_FLIGHT)]
    in_flight: usize,
    /// Keep the file and the peers' folders in DIR [default: a temporary folder, removed]
    #[arg(long, value_name = "DIR", conflicts_with = "sim")]
    work: Option<PathBuf>,
    /// Simulate: one thread, virtual time, an in-memory network and in-memory peers; the same
    /// seed and options give the same run and the same event log, byte for byte
    #[arg(long)]
    sim: bool,
    /// Simulated: one-way latency of every link, in seconds (e.g. 0.02)
    #[arg(long, value_name = "SECS", default_value_t = 0.0, requires = "sim", value_parser = parse_secs)]
    latency: f64,
    /// Simulated: each link's latency differs by up to this fraction (seeded)
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, requires = "sim", value_parser = parse_fraction)]
    jitter: f64,
    /// Simulated: the fraction of segments lost (each arrives a retransmission timeout late)
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, requires = "sim", value_parser = parse_fraction)]
    loss: f64,
    /// Simulated: download cap of every peer, shared by its connections
    #[arg(long, value_name = "RATE", requires = "sim", value_parser = cli::parse_rate)]
    download_rate: Option<u64>,
    /// Simulated: K peers crash at seeded moments and restart, empty, --restart-after later
    #[arg(long, value_name = "K", default_value_t = 0, requires = "sim")]
    crash: usize,
    /// Simulated: seconds from a crash to the restart
    #[arg(long, value_name = "SECS", default_value_t = 1.0, requires = "sim", value_parser = parse_secs)]
    restart_after: f64,
    /// Simulated: K peers leave for good at seeded moments (the run does not wait for them)
    #[arg(long, value_name = "K", default_value_t = 0, requires = "sim")]
    leave: usize,
    /// Simulated: K peers join late, at seeded moments
    #[arg(long, value_name = "K", default_value_t = 0, requires = "sim")]
    late: usize,
    /// Simulated: faults fall within this many seconds [default: the fluid bound, or 1]
    #[arg(long, value_name = "SECS", requires = "sim", value_parser = parse_secs)]
    faults_within: Option<f64>,
    /// Simulated: cut the first half of the peers off from the owner and the rest at AT
    /// seconds for FOR seconds
    #[arg(long, value_name = "AT:FOR", requires = "sim", value_parser = faults::parse_partition)]
    partition: Option<faults::Partition>,
    /// Simulated: every node has an in-memory stand-in of the mainline DHT: the owner
    /// announces the file, each peer once it is whole, and a peer whose directory is gone
    /// finds sources there (as with `peer … --dht`)
    #[arg(long, requires = "sim")]
    dht: bool,
    /// Simulated: the owner (the swarm's directory, and its seeder) crashes for good the
    /// moment the first peer holds the whole file; the rest of the swarm finishes through the
    /// DHT stand-in
    #[arg(long, requires = "dht")]
    owner_crash: bool,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..1e6).contains(v))
        .ok_or_else(|| format!("invalid duration {s:?}: expected seconds, e.g. 0.02 or 1.5"))
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("invalid fraction {s:?}: expected a number from 0 to 1, e.g. 0.01"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = slow::check(&args.slow, args.peers) {
        use clap::CommandFactory;
        Args::command()
            .bin_name("demo")
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit();
    }
    if std::env::var_os("RUST_LOG").is_none() {
        // Progress replaces the per-event lines; lifecycle logs only when asked for.
        cli::set_default_log_filter("warn");
    }
    let threads = if args.sim {
        cli::Threads::Simulated
    } else {
        cli::Threads::PerCore
    };
    cli::run_main(threads, run(args))
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if !args.sim && args.peers > MAX_TCP_PEERS {
        anyhow::bail!(
            "--peers {} is more than {MAX_TCP_PEERS} over TCP: use --sim for more",
            args.peers
        );
    }
    let token = cli::signal_token()?;
    if !args.sim {
        raise_fd_limit(usize::from(args.peers))?;
    }
    let tmp;
    let work = match (&args.work, args.sim) {
        (Some(w), _) => w.clone(),
        // A simulation writes nothing but its report: its peers' folders are names only.
        (None, true) => PathBuf::from("sim"),
        (None, false) => {
            tmp = tempfile::Builder::new()
                .prefix("ringswarm-demo.")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    if !args.sim {
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    }
    let log = open_log(args.report.as_deref(), args.sim)?;
    let wall = std::time::Instant::now();
    let Some(done) = swarm::run(&args, &work, log.as_ref(), &token).await? else {
        return Ok(false);
    };
    if args.sim {
        println!(
            "simulated {:.3}s of virtual time in {:.3}s of wall time",
            done.summary.wall_s,
            wall.elapsed().as_secs_f64()
        );
    }
    if let Some(dir) = &args.report {
        if let Some(log) = &log {
            log.flush();
        }
        write_summary(dir, &done.summary)?;
        let page = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || write_html(&dir)
        })
        .await??;
        println!("report: {}", page.display());
        println!(
            "dashboard replay: {}",
            dir.join(ringswarm::report::DASHBOARD_FILE).display()
        );
    }
    Ok(true)
}

/// The report's event log, emptied first; a simulation's is written in large blocks
/// (nothing reads it before the end).
fn open_log(report: Option<&Path>, sim: bool) -> anyhow::Result<Option<EventLog>> {
    let Some(dir) = report else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let events = dir.join(ringswarm::report::EVENTS_FILE);
    let _ = std::fs::remove_file(&events);
    Ok(Some(if sim {
        EventLog::create_buffered(&events)?
    } else {
        EventLog::create(&events)?
    }))
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

pub(crate) fn rate_text(r: Option<u64>) -> String {
    r.map_or_else(|| "none".into(), |r| format!("{}/s", human_size(r)))
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes `size` pseudo-random bytes (seeded when asked) in 1 MiB pieces.
pub(crate) fn generate(path: &Path, size: u64, seed: Option<u64>) -> anyhow::Result<()> {
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
