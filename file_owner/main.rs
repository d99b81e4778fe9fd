//! `file-owner PORT [PATH]`: share a file (or every file of a folder) with a ring of peers.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use clap::builder::TypedValueParser;
use ringswarm::choke::DEFAULT_UPLOAD_SLOTS;
use ringswarm::cli;
use ringswarm::directory::DEFAULT_PEER_TTL;
use ringswarm::owner;
use ringswarm::ticket::Ticket;

/// Share a file with a ring of peers: each joining peer is handed a subset of the chunks, and
/// the peers pass the rest around the ring.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TCP port to listen on (0 picks a free one)
    port: u16,
    /// File to share, or a folder whose regular files are each shared [default: current folder]
    path: Option<PathBuf>,
    /// Run the directory only, sharing no files of its own: every file in it comes from
    /// publishers (`peer share`)
    #[arg(long, conflicts_with = "path")]
    tracker: bool,
    /// Address to listen on
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Host name or address other machines reach this owner at, for the tickets it prints
    /// [default: the --bind address, or this machine's host name when bound to all]
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
    /// Expected number of peers: each is handed ⌈chunks / PEERS⌉ chunks
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    peers: u32,
    /// Nominal chunk size (files under 5 chunks of it get size/5)
    #[arg(long, default_value = "100KiB", value_parser = cli::parse_chunk_size)]
    chunk_size: u64,
    /// Cap the owner's total upload rate, e.g. 10MiB (bytes per second)
    #[arg(long, value_name = "RATE", value_parser = cli::parse_rate)]
    upload_limit: Option<u64>,
    /// Also append every event as a JSON line to FILE
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Drop a peer from the directory when it has not been heard from for SECS (peers send a
    /// heartbeat every SECS/3)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_PEER_TTL.as_secs_f64())]
    peer_ttl: f64,
    /// Multi-source getters served at once (choking); ring peers are always served
    #[arg(long, value_name = "N", default_value_t = DEFAULT_UPLOAD_SLOTS, value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    upload_slots: usize,
    /// Also serve HTTP on PORT (same --bind address): the live dashboard at /, the directory
    /// as read-only JSON, and /metrics; under --secret, only to clients with its token
    #[arg(long, value_name = "PORT")]
    http: Option<u16>,
    /// Shared secret of the swarm: every peer must prove it knows it (never sent on the wire).
    /// Better passed in the environment than on the command line
    #[arg(long, env = ringswarm::auth::SECRET_ENV, hide_env_values = true, value_name = "SECRET")]
    secret: Option<String>,
    /// This node's key (made, mode 0600, when missing); tickets pin it [default:
    /// ringswarm/node.key in the user's config folder]
    #[arg(long, env = ringswarm::identity::KEY_ENV, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Worker threads: auto (one on machines of up to 3 cores, else one per core up to 4), or
    /// a number; with more, the peers' connections are served on all of them
    #[arg(long, value_name = "N", default_value = "auto", value_parser = cli::parse_threads)]
    threads: cli::Threads,
    #[command(flatten)]
    dht: ringswarm::dht_cli::DhtArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::run_main(args.threads, run(args))
}

async fn run(args: Args) -> anyhow::Result<bool> {
    // Before anything slow or visible: a Ctrl+C from now on is handled, never lost.
    let token = cli::signal_token()?;
    let paths = if args.tracker {
        Vec::new()
    } else {
        let path = match &args.path {
            Some(p) => p.clone(),
            None => std::env::current_dir().context("finding the current folder")?,
        };
        owner::files_to_share(&path).with_context(|| {
            format!(
                "cannot share {}",
                ringswarm::manifest::display_name(&path.to_string_lossy())
            )
        })?
    };
    let ttl = std::time::Duration::try_from_secs_f64(args.peer_ttl)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--peer-ttl must be a number of seconds > 0"))?;
    let listener = cli::bind(args.bind, args.port).await?;
    let http = match args.http {
        Some(port) => Some(cli::bind(args.bind, port).await?),
        None => None,
    };
    let files = cli::open_shared(paths, args.chunk_size, args.peers).await?;
    let events = cli::event_sink("owner", args.events.as_deref())?;
    let addr = listener.local_addr()?;
    let described: Vec<String> = files
        .iter()
        .map(|f| cli::describe_file(&f.manifest))
        .collect();
    let what = if args.tracker {
        "no files: a tracker of the files peers publish (peer share)".to_string()
    } else if described.len() == 1 {
        described[0].clone()
    } else {
        format!("{} files: {}", described.len(), described.join(", "))
    };
    ringswarm::cli::print_out(&format!("listening on {addr}, sharing {what}\n"))?;
    let host = advertised_host(args.advertise.as_deref(), addr.ip())?;
    let secret = args
        .secret
        .as_deref()
        .map(ringswarm::auth::Secret::new)
        .transpose()?;
    let key_path = match &args.key {
        Some(k) => k.clone(),
        None => ringswarm::identity::user_key_path()?,
    };
    let identity = ringswarm::identity::load(&key_path, secret.clone(), false)?;
    let node = identity.id();
    for f in &files {
        let ticket = Ticket::new(format!("{host}:{}", addr.port()), &f.manifest, Some(node));
        ringswarm::cli::print_out(&format!("ticket: {ticket}\n"))?;
    }
    let config = owner::OwnerConfig {
        peers: args.peers,
        upload_limit: args
            .upload_limit
            .map(|r| Arc::new(ringswarm::rate::RateLimiter::new(r, args.chunk_size))),
        upload_slots: args.upload_slots,
        identity,
        ..owner::OwnerConfig::new(Arc::new(events))
    };
    let directory = owner::directory(&files, addr, ttl);
    if let Some(listener) = http {
        let guarded = if secret.is_some() {
            " (under the shared secret: Authorization: Bearer TOKEN from peer http-token, or sign in at /)"
        } else {
            ""
        };
        let at = listener.local_addr()?;
        ringswarm::cli::print_out(&format!(
            "directory API on http://{at}/files{guarded}\ndashboard on http://{at}/\n"
        ))?;
        let (directory, token) = (directory.clone(), token.clone());
        let options = ringswarm::http::Options {
            secret: secret.map(Arc::new),
            metrics: Some(config.metrics.clone()),
            ticket_host: Some(format!("{host}:{}", addr.port())),
            ticket_node: Some(node),
        };
        tokio::spawn(async move {
            if let Err(e) = ringswarm::http::serve_with(listener, directory, options, token).await {
                tracing::error!("directory API stopped: {e}");
            }
        });
    }
    if let Some(dht) = args.dht.start()? {
        let keys: Vec<_> = files
            .iter()
            .map(|f| (f.manifest.hash, ringswarm::dht::key_of(&f.manifest.hash)))
            .collect();
        let run = ringswarm::dht::announce_every(
            dht,
            move || keys.clone(),
            addr.port(),
            token.child_token(),
        );
        tokio::spawn(run);
    }
    owner::run(listener, files, directory, config, token.clone()).await?;
    Ok(!token.is_cancelled())
}

/// The host a ticket names: `--advertise`, else the bound address, else (bound to all) this
/// machine's host name.
fn advertised_host(advertise: Option<&str>, ip: IpAddr) -> anyhow::Result<String> {
    let host = match advertise {
        Some(h) => h.to_string(),
        None if ip.is_unspecified() => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        None if ip.is_ipv6() => format!("[{ip}]"),
        None => ip.to_string(),
    };
    // The same check a ticket gets when it is read back.
    let probe = format!(
        "{}{host}:1/{}?name=x&size=0",
        ringswarm::ticket::SCHEME,
        ringswarm::hash::Hash::of(b"")
    );
    probe
        .parse::<Ticket>()
        .map_err(|e| anyhow::anyhow!("--advertise {host:?}: {e}"))?;
    Ok(host)
}
