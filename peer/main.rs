//! `peer OWNER PORT NEIGHBOUR`: join a ring, fetch every chunk, reassemble and verify the file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clap::builder::TypedValueParser;
use ringswarm::cli::{self, human_size};
use ringswarm::events::EventSink;
use ringswarm::net::Endpoint;
use ringswarm::peer::{self, Outcome};
use ringswarm::store::Layout;

/// Join a ring swarm: get a subset of chunks from the file owner, serve chunks to the upload
/// neighbour on PORT, download the rest from NEIGHBOUR, then reassemble and verify the file.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The file owner: a port (meaning 127.0.0.1) or HOST:PORT
    owner: Endpoint,
    /// Port this peer's upload server listens on, for its upload neighbour
    port: u16,
    /// The download neighbour: a port (meaning 127.0.0.1) or HOST:PORT
    neighbour: Endpoint,
    /// Folder for chunks, the summary and the finished file [default: peer-PORT]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The file to fetch, when the owner shares several
    #[arg(long, value_name = "NAME")]
    file: Option<String>,
    /// Store each chunk as its own file under DIR/chunks/ instead of one part file
    #[arg(long)]
    chunk_files: bool,
    /// After completing, stop serving after SECS even if the upload neighbour is not complete
    #[arg(long, value_name = "SECS")]
    linger: Option<f64>,
    /// Give up when the owner is unreachable at start, or nothing arrives, for SECS
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    timeout: f64,
    /// Requests in flight per connection
    #[arg(long, value_name = "K", default_value_t = peer::DEFAULT_IN_FLIGHT, value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    in_flight: usize,
    /// Address the upload server listens on
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Cap this peer's total upload rate, e.g. 10MiB (bytes per second)
    #[arg(long, value_name = "RATE", value_parser = cli::parse_rate)]
    upload_limit: Option<u64>,
    /// Also append every event as a JSON line to FILE
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Fault injection for tests: corrupt the first N chunks this peer uploads
    #[arg(long, hide = true, default_value_t = 0)]
    corrupt_sends: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::run_main(cli::Threads::One, run(args))
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("--{name} must be a number of seconds ≥ 0"))
}

async fn run(args: Args) -> anyhow::Result<bool> {
    // Before anything slow or visible: a Ctrl+C from now on is handled, never lost.
    let token = cli::signal_token()?;
    let linger = args.linger.map(|v| secs("linger", v)).transpose()?;
    let timeout = secs("timeout", args.timeout)?;
    let listener = cli::bind(args.bind, args.port).await?;
    let addr = listener.local_addr()?;
    let label = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from(format!("peer-{}", addr.port())));
    let events = match &args.events {
        Some(p) => EventSink::with_file(label.clone(), p)
            .with_context(|| format!("cannot open event log {}", p.display()))?,
        None => EventSink::console(label.clone()),
    };
    println!("listening on {addr}");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = peer::Config {
        owner: args.owner,
        neighbour: args.neighbour,
        dir,
        file: args.file,
        layout: if args.chunk_files {
            Layout::ChunkFiles
        } else {
            Layout::PartFile
        },
        linger,
        timeout,
        in_flight: args.in_flight,
        events: Arc::new(events),
        corrupt_sends: args.corrupt_sends,
        upload_limit: args.upload_limit,
        seed: None,
        on_complete: Some(tx),
    };
    tokio::spawn(async move {
        if let Ok(c) = rx.await {
            println!(
                "complete: {} ({}, blake3 {}) verified in {:.3}s, {} chunks fetched",
                c.path.display(),
                human_size(c.manifest.size),
                c.manifest.hash.short(),
                c.elapsed.as_secs_f64(),
                c.fetched
            );
        }
    });
    match peer::run(listener, config, token).await? {
        Outcome::Complete(_) => Ok(true),
        Outcome::Interrupted => Ok(false),
    }
}
