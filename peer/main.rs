//! `peer OWNER PORT NEIGHBOUR`: join a ring, fetch every chunk, reassemble and verify the file.
//! `peer list|search|locate|get OWNER ...`: ask the owner's directory, or fetch from many sources.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};
use ringswarm::auth::Secret;
use ringswarm::choke::DEFAULT_UPLOAD_SLOTS;
use ringswarm::cli;
use ringswarm::net::Endpoint;
use ringswarm::peer::{self, Outcome};
use ringswarm::query;
use ringswarm::store::Layout;
use ringswarm::ticket::{Ticket, TicketError};

mod progress;

/// Join a ring swarm: get a subset of chunks from the file owner, serve chunks to the upload
/// neighbour on PORT, download the rest from NEIGHBOUR, then reassemble and verify the file.
///
/// Or ask the owner's directory (`list`, `search`, `locate`), fetch a file from many sources
/// at once (`get`), join a file's ring through the directory (`join`), publish files of your
/// own (`share`), run it all from a web page (`app`), or run a DHT node (`dht-node`).
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    override_usage = "peer [OPTIONS] OWNER PORT NEIGHBOUR\n       peer list OWNER [--json]\n       peer search OWNER TEXT [--json]\n       peer locate OWNER FILE [--json]\n       peer get (OWNER FILE | TICKET) [--port P] [--dir DIR] [--dht] [OPTIONS]\n       peer join (OWNER FILE | TICKET) [--port P] [--dir DIR] [--dht] [OPTIONS]\n       peer share OWNER PATH... [--port P] [OPTIONS]\n       peer app (OWNER | TICKET) [--http PORT] [--dir DIR] [--port P] [OPTIONS]\n       peer dht-node PORT [--bind ADDR] [--dht-bootstrap HOST:PORT,...]\n       peer http-token [--secret SECRET]"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The file owner: a port (meaning 127.0.0.1) or HOST:PORT
    #[arg(required = true, value_parser = cli::EchoSafe(str::parse::<Endpoint>))]
    owner: Option<Endpoint>,
    /// Port this peer's upload server listens on, for its upload neighbour
    #[arg(required = true)]
    port: Option<u16>,
    /// The download neighbour: a port (meaning 127.0.0.1) or HOST:PORT
    #[arg(required = true, value_parser = cli::EchoSafe(str::parse::<Endpoint>))]
    neighbour: Option<Endpoint>,
    /// Folder for chunks, the summary and the finished file [default: peer-PORT]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The file to fetch (name or id), when the owner shares several
    #[arg(long, value_name = "NAME")]
    file: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the HTTP token derived from the shared secret: what the owner's HTTP API and
    /// dashboard ask of a client under --secret (Authorization: Bearer TOKEN)
    HttpToken {
        #[command(flatten)]
        secret: SecretArg,
    },
    /// List every file the owner shares: id, name, size, chunks, complete and partial sources
    List {
        /// The file owner: a port (meaning 127.0.0.1) or HOST:PORT
        #[arg(value_parser = cli::EchoSafe(str::parse::<Endpoint>))]
        owner: Endpoint,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        secret: SecretArg,
    },
    /// The files whose name contains TEXT (any case)
    Search {
        /// The file owner: a port (meaning 127.0.0.1) or HOST:PORT
        #[arg(value_parser = cli::EchoSafe(str::parse::<Endpoint>))]
        owner: Endpoint,
        /// Text to look for in file names
        text: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        secret: SecretArg,
    },
    /// Which source holds which chunks of FILE (an id or a name)
    Locate {
        /// The file owner: a port (meaning 127.0.0.1) or HOST:PORT
        #[arg(value_parser = cli::EchoSafe(str::parse::<Endpoint>))]
        owner: Endpoint,
        /// The file: its id (from `list`) or its name
        file: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        secret: SecretArg,
    },
    /// Publish files of your own: register them with the directory (a tracker or a file
    /// owner) and serve their chunks on --port until Ctrl+C, which withdraws them
    Share {
        /// The directory: a port (meaning 127.0.0.1) or HOST:PORT
        #[arg(value_parser = cli::EchoSafe(str::parse::<Endpoint>))]
        owner: Endpoint,
        /// Files to share, or folders whose regular files are each shared
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Port to serve chunks on [default: any free port]
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        port: u16,
        /// Nominal chunk size (files under 5 chunks of it get size/5)
        #[arg(long, default_value = "100KiB", value_parser = cli::parse_chunk_size)]
        chunk_size: u64,
        /// Expected ring size of each file: a member of its ring (peer join) is handed
        /// ⌈chunks / PEERS⌉ chunks from here
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        peers: u32,
        #[command(flatten)]
        serving: Serving,
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        key: KeyArg,
        #[command(flatten)]
        dht: ringswarm::dht_cli::DhtArgs,
    },
    /// Download FILE from up to --max-sources sources at once (rarest chunk first), then
    /// keep serving it until Ctrl+C or --linger
    Get {
        /// The file owner: a port (meaning 127.0.0.1) or HOST:PORT; or a ticket
        /// (ringswarm://HOST:PORT/HASH?name=…&size=…, as the owner prints it), which names
        /// both the owner and the file and pins the file's content
        #[arg(value_name = "OWNER|TICKET", value_parser = cli::EchoSafe(parse_target))]
        owner: Target,
        /// The file: its id (from `list`) or its name (not with a ticket)
        file: Option<String>,
        /// Port to serve chunks on while and after downloading [default: any free port]
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        port: u16,
        /// Folder for the file, its chunks and its summary [default: the current folder]
        #[arg(long, default_value = ".", hide_default_value = true)]
        dir: PathBuf,
        /// Sources downloaded from at once (the owner counts as one)
        #[arg(long, value_name = "N", default_value_t = peer::DEFAULT_MAX_SOURCES, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
        max_sources: usize,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        dht: ringswarm::dht_cli::DhtArgs,
    },
    /// A long-lived peer with a web app on this machine: list and filter the directory's
    /// files, download them with live progress, paste a ticket, share and unshare files and
    /// folders; prints the app's address with its login token
    App(AppArgs),
    /// Join FILE's ring: the directory places this peer and names its download neighbour,
    /// and names another when that one leaves or dies
    Join {
        /// The file owner: a port (meaning 127.0.0.1) or HOST:PORT; or a ticket
        #[arg(value_name = "OWNER|TICKET", value_parser = cli::EchoSafe(parse_target))]
        owner: Target,
        /// The file: its id (from `list`) or its name (not with a ticket)
        file: Option<String>,
        /// Port of this peer's upload server [default: any free port]
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        port: u16,
        /// Folder for the file, its chunks and its summary [default: peer-PORT]
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        dht: ringswarm::dht_cli::DhtArgs,
    },
    /// Run a plain BitTorrent mainline DHT node on UDP PORT: a bootstrap node for
    /// --dht-bootstrap in a private network; it logs the nodes in its routing table
    DhtNode {
        /// UDP port (0 picks a free one)
        port: u16,
        /// Address to listen on
        #[arg(long, default_value = "0.0.0.0")]
        bind: std::net::Ipv4Addr,
        /// Other nodes to join, HOST:PORT,… [default: none: the first node of a new network]
        #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
        dht_bootstrap: Vec<String>,
    },
}

/// `peer app`'s options.
#[derive(Debug, Args)]
struct AppArgs {
    /// The directory (a tracker or a file owner): a port (meaning 127.0.0.1) or HOST:PORT; or
    /// a ticket, whose directory the app uses and whose file it fetches at once
    #[arg(value_name = "OWNER|TICKET", value_parser = cli::EchoSafe(parse_target))]
    owner: Target,
    /// Port of the web app (0 picks a free port)
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    http: u16,
    /// Address of the web app: loopback, so only this machine reaches it (the token guards
    /// it, but it is plain HTTP: put it behind TLS before opening it to a network)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    http_bind: IpAddr,
    /// Folder downloads are written to, and nothing else [default: the current folder]
    #[arg(long, default_value = ".", hide_default_value = true)]
    dir: PathBuf,
    /// Port the shared files are served on [default: any free port]; each download serves
    /// what it has on a free port of its own
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    port: u16,
    /// Address to serve chunks on (shares and downloads)
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Nominal chunk size of shared files (files under 5 chunks of it get size/5)
    #[arg(long, default_value = "100KiB", value_parser = cli::parse_chunk_size)]
    chunk_size: u64,
    /// Expected ring size of each shared file
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    peers: u32,
    /// Sources a download (get) fetches from at once
    #[arg(long, value_name = "N", default_value_t = peer::DEFAULT_MAX_SOURCES, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    max_sources: usize,
    /// Cap the whole app's upload rate (its shares and every download together), e.g.
    /// 10MiB (bytes per second)
    #[arg(long, value_name = "RATE", value_parser = cli::parse_rate)]
    upload_limit: Option<u64>,
    /// Getters served at once by each download and by the shares (choking)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_UPLOAD_SLOTS, value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    upload_slots: usize,
    /// A download gives up when the directory is unreachable at its start, or nothing
    /// arrives, for SECS (it can be resumed)
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    timeout: f64,
    /// Do not sync downloads to disk before relying on them
    #[arg(long)]
    no_sync: bool,
    /// Print only the app's address (its one line)
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    secret: SecretArg,
    #[command(flatten)]
    key: KeyArg,
    #[command(flatten)]
    dht: ringswarm::dht_cli::DhtArgs,
}

/// Options of both a ring peer and a getter.
#[derive(Debug, Args)]
struct Common {
    /// Worker threads: auto (one on machines of up to 3 cores, else one per core up to 4), or
    /// a number; with more than one, received chunks are hashed and written on all of them
    #[arg(long, value_name = "N", default_value = "auto", value_parser = cli::parse_threads)]
    threads: cli::Threads,
    /// Store each chunk as its own file under DIR/chunks/ instead of one part file
    #[arg(long)]
    chunk_files: bool,
    /// After completing, stop serving after SECS (a ring peer stops earlier once its upload
    /// neighbour is complete; a getter serves until Ctrl+C without it)
    #[arg(long, value_name = "SECS")]
    linger: Option<f64>,
    /// Give up when the owner is unreachable at start, or nothing arrives, for SECS
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    timeout: f64,
    /// Requests in flight per connection
    #[arg(long, value_name = "K", default_value_t = peer::DEFAULT_IN_FLIGHT, value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    in_flight: usize,
    #[command(flatten)]
    serving: Serving,
    #[command(flatten)]
    secret: SecretArg,
    #[command(flatten)]
    key: KeyArg,
    /// Do not sync chunks, summaries and the finished file to disk before relying on them:
    /// faster, and still safe if the process is killed, but a power cut may cost chunks
    #[arg(long)]
    no_sync: bool,
    /// Fault injection for tests: corrupt the first N chunks this peer uploads
    #[arg(long, hide = true, default_value_t = 0)]
    corrupt_sends: u32,
}

/// How a node serves chunks: every peer command's.
#[derive(Debug, Args)]
struct Serving {
    /// Address to serve chunks on
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Cap this node's total upload rate, e.g. 10MiB (bytes per second)
    #[arg(long, value_name = "RATE", value_parser = cli::parse_rate)]
    upload_limit: Option<u64>,
    /// Multi-source getters served at once (choking); a ring neighbour is always served
    #[arg(long, value_name = "N", default_value_t = DEFAULT_UPLOAD_SLOTS, value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    upload_slots: usize,
    /// Also append every event as a JSON line to FILE
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Serve this node's progress (/api/status) and Prometheus metrics (/metrics) over HTTP
    /// on PORT (0 picks a free port), on the --bind address; under --secret they need the
    /// HTTP token (peer http-token)
    #[arg(long, value_name = "PORT")]
    http: Option<u16>,
    /// Print only errors and the result (the final line, a ticket): no events, no progress
    #[arg(long, short)]
    quiet: bool,
}

/// This node's key file.
#[derive(Debug, Args)]
struct KeyArg {
    /// This node's key (made, mode 0600, when missing) [default: .node.key in the peer's
    /// folder; for share, ringswarm/node.key in the user's config folder]
    #[arg(long, env = ringswarm::identity::KEY_ENV, value_name = "FILE")]
    key: Option<PathBuf>,
}

/// The swarm's shared secret.
#[derive(Debug, Args)]
struct SecretArg {
    /// Shared secret of the swarm: prove it to every node and require it of every node (never
    /// sent on the wire). Better passed in the environment than on the command line
    #[arg(long, env = ringswarm::auth::SECRET_ENV, hide_env_values = true, value_name = "SECRET")]
    secret: Option<String>,
}

impl SecretArg {
    fn get(&self) -> anyhow::Result<Option<Arc<Secret>>> {
        Ok(match &self.secret {
            Some(s) => Some(Arc::new(Secret::new(s)?)),
            None => None,
        })
    }
}

/// What `run` is asked to do, once the command line is parsed.
/// Where `peer get` goes: an owner, or a ticket naming the owner and the file.
#[derive(Debug, Clone)]
enum Target {
    Owner(Endpoint),
    Ticket(Ticket),
}

fn parse_target(s: &str) -> Result<Target, String> {
    if Ticket::looks_like(s) {
        s.parse()
            .map(Target::Ticket)
            .map_err(|e: TicketError| e.to_string())
    } else {
        s.parse()
            .map(Target::Owner)
            .map_err(|e: ringswarm::net::ParseEndpointError| e.to_string())
    }
}

struct Job {
    owner: Endpoint,
    port: u16,
    /// `None` for a getter.
    neighbour: Option<Endpoint>,
    dir: Option<PathBuf>,
    file: Option<String>,
    /// A ticket's file, pinned by its hash.
    pin: Option<Ticket>,
    /// A ring peer placed by the directory (`peer join`).
    join: bool,
    max_sources: usize,
    common: Common,
    /// `--dht`, for get and join.
    dht: Option<ringswarm::dht_cli::DhtArgs>,
}

/// The owner, the file and the pinned ticket `peer get` or `peer join` names.
fn resolve_target(
    target: Target,
    file: Option<String>,
    cmd: &str,
) -> (Endpoint, String, Option<Ticket>) {
    match (target, file) {
        (Target::Owner(owner), Some(file)) => (owner, file, None),
        (Target::Ticket(t), None) => match t.directory.parse::<Endpoint>() {
            Ok(owner) => (owner, t.hash.to_string(), Some(t)),
            Err(e) => usage_error(format!("the ticket's directory: {e}")),
        },
        (Target::Owner(_), None) => usage_error(format!(
            "FILE is missing: peer {cmd} OWNER FILE, or peer {cmd} TICKET"
        )),
        (Target::Ticket(_), Some(_)) => usage_error(format!(
            "a ticket names its file: peer {cmd} TICKET, without FILE"
        )),
    }
}

fn main() -> ExitCode {
    let job = match Cli::parse() {
        Cli {
            command: Some(Command::HttpToken { secret }),
            ..
        } => {
            return cli::run_main(cli::Threads::One, async move {
                let Some(secret) = secret.get()? else {
                    anyhow::bail!(
                        "no shared secret: give --secret or set {}",
                        ringswarm::auth::SECRET_ENV
                    );
                };
                cli::print_out(&format!("{}\n", secret.http_token()))?;
                Ok(true)
            });
        }
        Cli {
            command:
                Some(Command::List {
                    owner,
                    json,
                    secret,
                }),
            ..
        } => {
            return cli::run_main(cli::Threads::One, async move {
                query::list(owner, json, secret.get()?).await
            });
        }
        Cli {
            command:
                Some(Command::Search {
                    owner,
                    text,
                    json,
                    secret,
                }),
            ..
        } => {
            return cli::run_main(cli::Threads::One, async move {
                query::search(owner, text, json, secret.get()?).await
            });
        }
        Cli {
            command:
                Some(Command::Locate {
                    owner,
                    file,
                    json,
                    secret,
                }),
            ..
        } => {
            return cli::run_main(cli::Threads::One, async move {
                query::locate(owner, file, json, secret.get()?).await
            });
        }
        Cli {
            command: Some(share @ Command::Share { .. }),
            ..
        } => {
            if let Command::Share { serving, .. } = &share
                && serving.quiet
            {
                cli::set_quiet();
            }
            return cli::run_main(cli::Threads::One, publish(share));
        }
        Cli {
            command:
                Some(Command::DhtNode {
                    port,
                    bind,
                    dht_bootstrap,
                }),
            ..
        } => {
            return cli::run_main(cli::Threads::One, dht_node(port, bind, dht_bootstrap));
        }
        Cli {
            command: Some(Command::App(args)),
            ..
        } => {
            if args.quiet {
                cli::set_quiet();
            }
            return cli::run_main(cli::Threads::auto_here(), run_app(args));
        }
        Cli {
            command:
                Some(Command::Get {
                    owner,
                    file,
                    port,
                    dir,
                    max_sources,
                    common,
                    dht,
                }),
            ..
        } => {
            let (owner, file, pin) = resolve_target(owner, file, "get");
            check_dht(&dht, pin.as_ref());
            Job {
                owner,
                port,
                neighbour: None,
                dir: Some(dir),
                file: Some(file),
                pin,
                join: false,
                max_sources,
                common,
                dht: Some(dht),
            }
        }
        Cli {
            command:
                Some(Command::Join {
                    owner,
                    file,
                    port,
                    dir,
                    common,
                    dht,
                }),
            ..
        } => {
            let (owner, file, pin) = resolve_target(owner, file, "join");
            check_dht(&dht, pin.as_ref());
            Job {
                owner,
                port,
                neighbour: None,
                dir,
                file: Some(file),
                pin,
                join: true,
                max_sources: peer::DEFAULT_MAX_SOURCES,
                common,
                dht: Some(dht),
            }
        }
        Cli {
            command: None,
            owner: Some(owner),
            port: Some(port),
            neighbour: Some(neighbour),
            dir,
            file,
            common,
        } => Job {
            owner,
            port,
            neighbour: Some(neighbour),
            dir,
            file,
            pin: None,
            join: false,
            max_sources: peer::DEFAULT_MAX_SOURCES,
            common,
            dht: None,
        },
        Cli { .. } => unreachable!("clap requires OWNER PORT NEIGHBOUR without a subcommand"),
    };
    if job.common.serving.quiet {
        cli::set_quiet();
    }
    cli::run_main(job.common.threads, run(job))
}

/// `peer share`: hashes the files, serves them, publishes them, and prints their tickets.
async fn publish(share: Command) -> anyhow::Result<bool> {
    let Command::Share {
        owner,
        paths,
        port,
        chunk_size,
        peers,
        serving:
            Serving {
                bind,
                upload_limit,
                upload_slots,
                events,
                http,
                quiet,
            },
        secret,
        key,
        dht,
    } = share
    else {
        unreachable!("called for share only")
    };
    let token = cli::signal_token()?;
    let secret = secret.get()?;
    let key_path = match key.key {
        Some(k) => k,
        None => ringswarm::identity::user_key_path()?,
    };
    let identity = ringswarm::identity::load(&key_path, secret.as_deref().cloned(), quiet)?;
    let mut files_of = Vec::new();
    for p in &paths {
        files_of.extend(ringswarm::owner::files_to_share(p).with_context(|| {
            format!(
                "cannot share {}",
                ringswarm::manifest::display_name(&p.to_string_lossy())
            )
        })?);
    }
    let listener = cli::bind(bind, port).await?;
    let addr = listener.local_addr()?;
    let files = cli::open_shared(files_of, chunk_size, peers).await?;
    let label = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let sink = cli::event_sink(label, events.as_deref())?;
    let names: Vec<String> = files
        .iter()
        .map(|f| cli::describe_file(&f.manifest))
        .collect();
    if !quiet {
        cli::print_out(&format!(
            "listening on {addr}, sharing {}\n",
            names.join(", ")
        ))?;
    }
    let directory = owner.to_string();
    let metrics = Arc::new(ringswarm::metrics::Metrics::new());
    let node = ringswarm::http::Node::Publisher(metrics.clone());
    serve_http(bind, http, node, secret.clone(), quiet, &token).await?;
    let line = Arc::new(progress::Line::start(
        quiet,
        progress::share_line(metrics.clone()),
    ));
    let l = line.clone();
    let m = metrics.clone();
    let on_report = move |r: &ringswarm::share::Report| {
        m.files_changed(match r {
            ringswarm::share::Report::Published { .. } => 1,
            ringswarm::share::Report::Withdrawn { .. } => -1,
        });
        let line = match r {
            ringswarm::share::Report::Published {
                id, manifest, node, ..
            } => format!(
                "published {} as file {id} of {directory}\nticket: {}\n",
                ringswarm::manifest::display_name(&manifest.name),
                Ticket::new(directory.clone(), manifest, *node)
            ),
            ringswarm::share::Report::Withdrawn { manifest } => format!(
                "withdrew {} (removed or changed)\n",
                ringswarm::manifest::display_name(&manifest.name)
            ),
        };
        if quiet {
            // The result only: the tickets.
            let tickets: String = line
                .lines()
                .filter(|l| l.starts_with("ticket: "))
                .map(|l| format!("{l}\n"))
                .collect();
            l.print_out(&tickets);
        } else {
            l.print_out(&line);
        }
    };
    let config = ringswarm::share::ShareConfig {
        directory: owner,
        paths: ringswarm::share::Paths::new(paths),
        files,
        chunk_size,
        peers,
        serve: ringswarm::owner::OwnerConfig {
            upload_limit: upload_limit
                .map(|r| Arc::new(ringswarm::rate::RateLimiter::new(r, chunk_size))),
            upload_slots,
            metrics,
            identity,
            ..ringswarm::owner::OwnerConfig::new(Arc::new(sink))
        },
        on_report: Arc::new(on_report),
        dht: dht.start()?,
    };
    let res = ringswarm::share::run(listener.into(), config, token.clone()).await;
    line.finish();
    res?;
    Ok(!token.is_cancelled())
}

/// `peer app`: the web app and the peer under it, until Ctrl+C.
async fn run_app(args: AppArgs) -> anyhow::Result<bool> {
    let token = cli::signal_token()?;
    let (directory, directory_node, ticket) = match args.owner {
        Target::Owner(e) => (e, None, None),
        Target::Ticket(t) => match t.directory.parse::<Endpoint>() {
            Ok(e) => (e, t.node, Some(t)),
            Err(e) => usage_error(format!("the ticket's directory: {e}")),
        },
    };
    let timeout = secs("timeout", args.timeout)?;
    std::fs::create_dir_all(&args.dir).with_context(|| {
        format!(
            "cannot make the download folder {}",
            ringswarm::manifest::display_name(&args.dir.to_string_lossy())
        )
    })?;
    let secret = args.secret.get()?;
    // A peer's key, in its folder: two apps of one user (two folders) are two nodes.
    let key_path = match args.key.key {
        Some(k) => k,
        None => ringswarm::identity::peer_key_path(&args.dir),
    };
    let identity = ringswarm::identity::load(&key_path, secret.as_deref().cloned(), args.quiet)?;
    let http = cli::bind(args.http_bind, args.http).await?;
    let shares = cli::bind(args.bind, args.port).await?;
    let at = http.local_addr()?;
    let login = ringswarm::app::new_token();
    let host = match at.ip() {
        ip if ip.is_unspecified() => format!("127.0.0.1:{}", at.port()),
        _ => at.to_string(),
    };
    cli::print_out(&format!(
        "open http://{host}/?token={login} in a browser (Ctrl+C stops the app)\n"
    ))?;
    if !args.quiet {
        cli::print_out(&format!(
            "directory {directory}; downloads go to {}; shares served on {}\n",
            ringswarm::manifest::display_name(&args.dir.to_string_lossy()),
            shares.local_addr()?
        ))?;
    }
    let config = ringswarm::app::AppConfig {
        directory,
        directory_node,
        dir: args.dir,
        bind: args.bind,
        identity,
        token: login,
        http: at,
        chunk_size: args.chunk_size,
        peers: args.peers,
        max_sources: args.max_sources,
        upload_slots: args.upload_slots,
        upload_limit: args.upload_limit,
        sync: !args.no_sync,
        timeout,
        dht: args.dht.start()?,
    };
    let app = ringswarm::app::App::new(config, token.clone());
    if let Some(t) = ticket {
        ringswarm::app::download(&app, &t.to_string(), ringswarm::app::FetchMode::Get)
            .map_err(anyhow::Error::msg)?;
    }
    ringswarm::app::run(app, http.into(), shares.into()).await?;
    Ok(!token.is_cancelled())
}

/// `--dht` on a get or join needs a ticket (exits as for a wrong argument without one).
fn check_dht(dht: &ringswarm::dht_cli::DhtArgs, pin: Option<&Ticket>) {
    if dht.dht && pin.is_none() {
        usage_error(
            "--dht needs a ticket: it pins the file's hash, which the DHT is asked for".into(),
        );
    }
}

/// `--dht`: where `peer get/join TICKET` fetches from: the ticket's directory while it answers
/// with a source, else a node the DHT names that serves the file. Such a source is pinned by
/// the file's hash and size only: the ticket's key is its directory's, not the source's. A
/// `join` whose source keeps no directory (a plain peer) fetches as a getter, and says so;
/// the last value: whether it still joins a ring.
async fn via_dht(
    owner: &Endpoint,
    pin: Option<Ticket>,
    me: &ringswarm::secure::Identity,
    dht: &dyn ringswarm::dht::Discovery,
    (join, quiet): (bool, bool),
) -> anyhow::Result<(Endpoint, Option<Ticket>, bool)> {
    let Some(ticket) = pin else {
        anyhow::bail!("--dht needs a ticket");
    };
    let found = ringswarm::dht::resolve(&ticket, owner, me, dht)
        .await
        .map_err(anyhow::Error::msg)?;
    match found {
        ringswarm::dht::Resolved::Directory => Ok((owner.clone(), Some(ticket), join)),
        ringswarm::dht::Resolved::Source {
            source,
            why,
            named,
            directory,
        } => {
            let how = match (join, directory) {
                (true, true) => " (its directory places this peer in a ring)",
                (true, false) => " as a getter (it keeps no directory to form a ring)",
                (false, _) => "",
            };
            if !quiet {
                cli::print_out(&format!(
                    "{why}; the DHT named {named} node(s): fetching from {source}{how}\n"
                ))?;
            }
            Ok((
                source,
                Some(Ticket {
                    node: None,
                    ..ticket
                }),
                join && directory,
            ))
        }
    }
}

/// `peer dht-node PORT`: a plain DHT node until Ctrl+C.
async fn dht_node(
    port: u16,
    bind: std::net::Ipv4Addr,
    bootstrap: Vec<String>,
) -> anyhow::Result<bool> {
    let token = cli::signal_token()?;
    let options = ringswarm::dht::DhtOptions {
        bootstrap: Some(bootstrap),
        port: Some(port),
        bind: Some(bind),
        server: true,
    };
    let on_start = |addr: std::net::SocketAddr| {
        let _ = cli::print_out(&format!(
            "listening on {addr} (UDP): a mainline DHT node; Ctrl+C stops it\n"
        ));
    };
    ringswarm::dht::run_node(&options, on_start, token.clone())
        .await
        .with_context(|| format!("cannot run a DHT node on UDP port {port}"))?;
    Ok(!token.is_cancelled())
}

/// With `--http PORT`, serves `node`'s status and metrics on `bind`:`PORT` until `token` is
/// cancelled, and says where (unless `quiet`).
async fn serve_http(
    bind: IpAddr,
    port: Option<u16>,
    node: ringswarm::http::Node,
    secret: Option<Arc<Secret>>,
    quiet: bool,
    token: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let Some(port) = port else {
        return Ok(());
    };
    let listener = cli::bind(bind, port).await?;
    let at = listener.local_addr()?;
    if !quiet {
        let guarded = if secret.is_some() {
            " (under the shared secret: Authorization: Bearer TOKEN from peer http-token)"
        } else {
            ""
        };
        ringswarm::cli::print_out(&format!(
            "status on http://{at}/api/status, metrics on http://{at}/metrics{guarded}\n"
        ))?;
    }
    let token = token.clone();
    tokio::spawn(async move {
        if let Err(e) = ringswarm::http::serve_node(listener, node, secret, token).await {
            tracing::error!("HTTP side stopped: {e}");
        }
    });
    Ok(())
}

/// Exits as clap does for a wrong argument (status 2, with the usage).
fn usage_error(msg: String) -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("--{name} must be a number of seconds ≥ 0"))
}

async fn run(job: Job) -> anyhow::Result<bool> {
    let Job {
        owner,
        port,
        neighbour,
        dir,
        file,
        pin,
        join,
        max_sources,
        common: args,
        dht,
    } = job;
    // Before anything slow or visible: a Ctrl+C from now on is handled, never lost.
    let token = cli::signal_token()?;
    let linger = args.linger.map(|v| secs("linger", v)).transpose()?;
    let timeout = secs("timeout", args.timeout)?;
    let listener = cli::bind(args.serving.bind, port).await?;
    let addr = listener.local_addr()?;
    let label = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let dir = dir.unwrap_or_else(|| PathBuf::from(format!("peer-{}", addr.port())));
    let events = cli::event_sink(label.clone(), args.serving.events.as_deref())?;
    let quiet = args.serving.quiet;
    if !quiet {
        ringswarm::cli::print_out(&format!("listening on {addr}\n"))?;
    }
    let status = Arc::new(peer::Status::new());
    let secret = args.secret.get()?;
    let key_path = match &args.key.key {
        Some(k) => k.clone(),
        None => ringswarm::identity::peer_key_path(&dir),
    };
    let identity = ringswarm::identity::load(&key_path, secret.as_deref().cloned(), quiet)?;
    let dht = dht
        .as_ref()
        .map(ringswarm::dht_cli::DhtArgs::start)
        .transpose()?
        .flatten();
    let found = match &dht {
        Some(d) => Some(via_dht(&owner, pin.clone(), &identity, &**d, (join, quiet)).await?),
        None => None,
    };
    // A ring needs a directory: from a plain peer found in the DHT, the file is fetched as a
    // getter fetches it.
    let (owner, pin, join) = found.unwrap_or((owner, pin, join));
    let node = ringswarm::http::Node::Peer(status.clone());
    serve_http(
        args.serving.bind,
        args.serving.http,
        node,
        secret.clone(),
        quiet,
        &token,
    )
    .await?;
    let line = Arc::new(progress::Line::start(
        quiet,
        progress::peer_line(status.clone()),
    ));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let getter = neighbour.is_none() && !join;
    let config = peer::Config {
        neighbour: neighbour.unwrap_or_else(|| owner.clone()),
        owner,
        get: getter.then_some(peer::GetConfig { max_sources }),
        upload_slots: args.serving.upload_slots,
        identity,
        sync: !args.no_sync,
        dir,
        file,
        join,
        pin,
        layout: if args.chunk_files {
            Layout::ChunkFiles
        } else {
            Layout::PartFile
        },
        linger,
        timeout,
        in_flight: args.in_flight,
        events: Arc::new(events),
        in_memory: None,
        corrupt_sends: args.corrupt_sends,
        upload_limit: args.serving.upload_limit,
        shared_limiter: None,
        seed: None,
        on_complete: Some(tx),
        status: Some(status),
        // Whole and verified, this peer is a source others find there.
        dht,
        seed_until_stopped: false,
    };
    let l = line.clone();
    tokio::spawn(async move {
        if let Ok(c) = rx.await {
            l.print_out(&format!("{c}\n"));
        }
    });
    let outcome = peer::run(listener, config, token).await;
    line.finish();
    match outcome? {
        Outcome::Complete(_) => Ok(true),
        Outcome::Interrupted => Ok(false),
    }
}
