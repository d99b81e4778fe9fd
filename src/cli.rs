//! What the binaries share: logging setup, binding with clear errors, signal handling, size
//! and rate arguments. Presentation, not engine: only the binaries (and `query`'s printing)
//! use it, so its process-wide state (the tracing subscriber's buffered stderr, the default
//! log filter) never reaches a library path or a simulation.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::net::TcpListener;

/// Exit code for an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code after Ctrl+C or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How often buffered log lines reach stderr.
const LOG_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Log lines waiting for the next flush. A peer logs one line per event (six per chunk), so
/// writing each line with its own syscall cost a quarter of a 1 GiB ring's time.
static LOG_BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
/// Log bytes written at once at most; more are written out before the buffer grows.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Where flushed log lines go instead of stderr (a progress bar that moves out of their way).
type LogOutput = Box<dyn Fn(&[u8]) + Send + Sync>;
static LOG_OUTPUT: OnceLock<LogOutput> = OnceLock::new();

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    LOG_BUFFER.get_or_init(|| Mutex::new(Vec::with_capacity(LOG_BUFFER_BYTES)))
}

/// Writes `bytes` of log lines out: to the output set by [`set_log_output`], else stderr.
fn write_logs(bytes: &[u8]) {
    match LOG_OUTPUT.get() {
        Some(out) => out(bytes),
        None => {
            let _ = std::io::stderr().write_all(bytes);
        }
    }
}

/// Sends flushed log lines to `out` instead of stderr, from now on (once per process): a live
/// progress line hides itself while `out` writes them, so lines scroll above it.
pub fn set_log_output(out: impl Fn(&[u8]) + Send + Sync + 'static) {
    flush_logs();
    let _ = LOG_OUTPUT.set(Box::new(out));
}

/// A writer into [`LOG_BUFFER`], for the tracing subscriber.
struct BufferedStderr;

impl Write for BufferedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = log_buffer().lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() + buf.len() > LOG_BUFFER_BYTES && !pending.is_empty() {
            // Written under the lock, so lines keep their order.
            write_logs(&pending);
            pending.clear();
        }
        pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(()) // the flusher thread and flush_logs() flush
    }
}

static DEFAULT_LOG_FILTER: OnceLock<&'static str> = OnceLock::new();

/// The log filter when `RUST_LOG` is not set (call before [`run_main`]); `info` otherwise.
pub fn set_default_log_filter(filter: &'static str) {
    let _ = DEFAULT_LOG_FILTER.set(filter);
}

static QUIET: OnceLock<()> = OnceLock::new();

/// Logs errors only, whatever `RUST_LOG` says (`--quiet`; call before [`run_main`]).
pub fn set_quiet() {
    let _ = QUIET.set(());
}

/// Writes out buffered log lines; call before the process exits.
pub fn flush_logs() {
    if let Some(buf) = LOG_BUFFER.get() {
        let mut pending = buf.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            write_logs(&pending);
            pending.clear();
        }
    }
}

/// Logs to stderr (stdout is for the user), `info` unless `RUST_LOG` says otherwise. Lines are
/// buffered and flushed every 100 ms and by [`flush_logs`].
pub fn init_tracing() {
    let default = DEFAULT_LOG_FILTER.get().copied().unwrap_or("info");
    let filter = if QUIET.get().is_some() {
        tracing_subscriber::EnvFilter::new("error")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(LOG_FLUSH_INTERVAL);
            flush_logs();
        }
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| BufferedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Binds a TCP listener, turning the common failures into advice.
///
/// # Errors
///
/// The port is in use, not permitted, or the address is not local.
pub async fn bind(ip: IpAddr, port: u16) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    crate::net::listen(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "port {port} is already in use on {ip}: stop the process using it or choose another port"
        ),
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("not allowed to listen on port {port}: use a port above 1023")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            anyhow::anyhow!("cannot listen on {ip}: it is not an address of this machine")
        }
        _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
    })
}

/// A token cancelled by the first Ctrl+C or SIGTERM; a second one exits 130 at once. The
/// handlers are installed before this returns: call it before printing `listening on`.
///
/// # Errors
///
/// The signal handlers cannot be installed.
pub fn signal_token() -> std::io::Result<CancellationToken> {
    let mut signals = crate::task::ShutdownSignals::install()?;
    let token = CancellationToken::new();
    let t = token.clone();
    crate::task::spawn_named("signals", async move {
        signals.recv().await;
        tracing::info!("interrupted: shutting down (press Ctrl+C again to exit at once)");
        t.cancel();
        signals.recv().await;
        exit_interrupted();
    });
    Ok(token)
}

/// Flushes the logs and exits at once with [`EXIT_INTERRUPTED`] (a second Ctrl+C).
fn exit_interrupted() {
    flush_logs();
    std::process::exit(i32::from(EXIT_INTERRUPTED));
}

/// Which runtime a binary runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// One thread for all tasks (plus tokio's blocking pool): for a process that runs a single
    /// node. Its per-chunk work is short and done in place, so one thread avoids the wake-ups
    /// and hand-offs between worker threads (the 256 MiB ring used a third less CPU).
    One,
    /// This many worker threads (1: as [`Threads::One`]). A node's chunks are then hashed and
    /// written on every worker (see `peer::fetch`'s `storing`): see [`Threads::auto`].
    Workers(usize),
    /// A worker thread per core: for a process that runs many nodes (the demo).
    PerCore,
    /// One thread on a paused clock: a simulation in virtual time (see [`crate::sim`]).
    Simulated,
}

/// Most worker threads `--threads auto` gives a node.
pub const MAX_AUTO_THREADS: usize = 4;

impl Threads {
    /// `--threads auto` on a machine of `cores` cores: one thread up to 3 cores (the small
    /// machine often runs several nodes, and one thread wastes no CPU on hand-offs: measured
    /// in BENCHMARKS.md), else one worker per core up to [`MAX_AUTO_THREADS`].
    pub fn auto(cores: usize) -> Self {
        if cores <= 3 {
            Threads::One
        } else {
            Threads::Workers(cores.min(MAX_AUTO_THREADS))
        }
    }

    /// `--threads auto` on this machine.
    pub fn auto_here() -> Self {
        Self::auto(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
    }
}

/// Parses `--threads`: `auto`, or a worker count from 1 to 256.
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_threads(s: &str) -> Result<Threads, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(Threads::auto_here());
    }
    match t.parse::<usize>() {
        Ok(1) => Ok(Threads::One),
        Ok(n @ 2..=256) => Ok(Threads::Workers(n)),
        _ => Err(format!(
            "invalid thread count {s:?}: use auto or a number from 1 to 256"
        )),
    }
}

/// The body of a binary's `main`: logging, a runtime, `run`, and the exit code (0 when `run`
/// returns true, 130 when false (interrupted), 1 with the error printed).
pub fn run_main<F>(threads: Threads, run: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<bool>>,
{
    init_tracing();
    let rt = match threads {
        Threads::One => crate::task::runtime(1),
        Threads::Workers(n) => crate::task::runtime(n),
        Threads::PerCore => tokio::runtime::Runtime::new(),
        Threads::Simulated => crate::sim::runtime(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => return report(&e.into()),
    };
    let code = match rt.block_on(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_INTERRUPTED),
        Err(e) => report(&e),
    };
    flush_logs();
    code
}

/// Writes `text` to stdout and flushes it. A reader that went away (`peer list | head -1`)
/// is not an error: the rest is dropped quietly, as a pipe's reader asked.
///
/// # Errors
///
/// Any other write error.
pub fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Prints `error: ` and the error with its causes (each once) on stderr; returns exit code 1.
pub fn report(e: &anyhow::Error) -> ExitCode {
    flush_logs();
    // `{:#}` would repeat causes that an error's own message already quotes.
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_ERROR)
}

/// A clap value parser from `parse` whose error repeats the value escaped and cut after
/// [`crate::manifest::MAX_ECHO`] bytes (see [`crate::manifest::echo`]), where clap's own repeats
/// it whole and raw: a pasted ticket or address may be 100 kB long and carry escape
/// sequences. The exit code stays clap's (2).
#[derive(Clone, Copy, Debug)]
pub struct EchoSafe<F>(pub F);

impl<T, E, F> clap::builder::TypedValueParser for EchoSafe<F>
where
    F: Fn(&str) -> Result<T, E> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: std::fmt::Display,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let arg = arg.map_or_else(|| "...".to_string(), ToString::to_string);
        let text = value.to_string_lossy();
        let why = match value.to_str() {
            Some(s) => match (self.0)(s) {
                Ok(v) => return Ok(v),
                Err(e) => e.to_string(),
            },
            None => "it is not UTF-8".to_string(),
        };
        let message = format!(
            "invalid value {} for '{arg}': {why}",
            crate::manifest::echo(&text)
        );
        Err(
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message)
                .format(&mut cmd.clone()),
        )
    }
}

/// Parses a chunk size for clap (`100KiB`, `1MiB`, `4096`), between 1 byte and the maximum.
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_chunk_size(s: &str) -> Result<u64, String> {
    let v = crate::parse_size(s)?;
    if v == 0 || v > crate::manifest::MAX_CHUNK_SIZE {
        return Err(format!(
            "chunk size must be between 1 byte and {} MiB",
            crate::manifest::MAX_CHUNK_SIZE >> 20
        ));
    }
    Ok(v)
}

pub use crate::units::{human_size, human_size_f64};

/// Parses a rate for clap: a size per second (`10MiB`, `10MiB/s`, `500k`).
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let v = crate::parse_size(s.trim_end_matches("/s"))?;
    if v == 0 {
        return Err("rate must be above 0 bytes per second".into());
    }
    Ok(v)
}

/// Hashes and opens `paths` for sharing, on the blocking pool (hashing a big file takes a
/// while), each handed out to `peers` expected peers.
///
/// # Errors
///
/// A file cannot be read, or its name is unsafe: named.
pub async fn open_shared(
    paths: Vec<std::path::PathBuf>,
    chunk_size: u64,
    peers: u32,
) -> anyhow::Result<Vec<std::sync::Arc<crate::owner::SharedFile>>> {
    use anyhow::Context;
    tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .map(|p| {
                crate::owner::SharedFile::open(p, chunk_size, peers)
                    .map(std::sync::Arc::new)
                    .with_context(|| {
                        format!(
                            "cannot share {}",
                            crate::manifest::display_name(&p.to_string_lossy())
                        )
                    })
            })
            .collect()
    })
    .await?
}

/// A shared file for people: `big.iso (4.2 GiB, 43008 chunks of 100.0 KiB, blake3 1a2b3c4d)`.
pub fn describe_file(m: &crate::manifest::Manifest) -> String {
    format!(
        "{} ({}, {} chunks of {}, blake3 {})",
        crate::manifest::display_name(&m.name),
        human_size(m.size),
        m.chunk_count(),
        human_size(m.chunk_size),
        m.hash.short()
    )
}

/// The events of node `label`: on the console, and appended to `file` as JSON lines if given.
///
/// # Errors
///
/// `file` cannot be opened.
pub fn event_sink(
    label: impl Into<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<crate::events::EventSink> {
    use anyhow::Context;
    let label = label.into();
    Ok(match file {
        Some(p) => crate::events::EventSink::with_file(label, p)
            .with_context(|| format!("cannot open event log {}", p.display()))?,
        None => crate::events::EventSink::console(label),
    })
}
