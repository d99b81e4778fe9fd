//! Test helpers: spawning the real binaries in temp folders, free ports, polling with
//! timeouts, and failures that explain themselves.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

pub mod browser;
pub mod fixtures;
pub mod seal;

/// The `file-owner` binary.
pub const OWNER: &str = env!("CARGO_BIN_EXE_file-owner");
/// The `peer` binary.
pub const PEER: &str = env!("CARGO_BIN_EXE_peer");

/// How long any one wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port of 127.0.0.1 held by a bound socket until [`Reserved::release`]: nobody else
/// (another test binding port 0, an outgoing connection) can take it meanwhile, and, as the
/// socket does not listen, connections to it are refused, as to a peer not started yet. For
/// the places a port must be known before its process binds it: the last link of a ring, a
/// peer restarted on its port.
pub struct Reserved {
    pub port: u16,
    socket: Option<tokio::net::TcpSocket>,
}

impl Reserved {
    /// A free port, held.
    pub fn new() -> Self {
        let (socket, port) = dead_port();
        Self {
            port,
            socket: Some(socket),
        }
    }

    /// Holds `port` again (right after the process on it was killed), for a restart on it.
    pub fn again(port: u16) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("creating a socket");
        // The killed process's connections may linger in TIME_WAIT on the port.
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(([127, 0, 0, 1], port).into())
            .unwrap_or_else(|e| {
                panic!("port {port} was taken by another process right after a kill: {e}")
            });
        Self {
            port,
            socket: Some(socket),
        }
    }

    /// Frees the port, right before the process that binds it is spawned; returns it.
    pub fn release(&mut self) -> u16 {
        self.socket = None;
        self.port
    }
}

impl Default for Reserved {
    fn default() -> Self {
        Self::new()
    }
}

/// A stderr that says the process could not bind its port because another process had it.
pub fn port_taken(stderr: &str) -> bool {
    stderr.contains("is already in use")
}

/// Writes `size` reproducible pseudo-random bytes to `path`.
pub fn random_file(path: &Path, size: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; size];
    rng.fill_bytes(&mut data);
    fs::write(path, data).unwrap();
}

/// A spawned binary, killed when dropped; its output goes to files in `dir`.
pub struct Proc {
    pub name: String,
    pub cmd: String,
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub dir: PathBuf,
    pub status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `bin args` with working folder `cwd`; output to `log_dir/name.{out,err}`.
    pub fn spawn(name: &str, bin: &str, args: &[String], cwd: &Path, log_dir: &Path) -> Self {
        fs::create_dir_all(cwd).unwrap();
        let stdout = log_dir.join(format!("{name}.out"));
        let stderr = log_dir.join(format!("{name}.err"));
        let child = Command::new(bin)
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            // An owner's or publisher's node key goes in the test's folder, not the home's.
            .env("XDG_CONFIG_HOME", log_dir.join("config"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        Self {
            name: name.to_string(),
            cmd: format!("{bin} {}", args.join(" ")),
            child,
            stdout,
            stderr,
            dir: cwd.to_path_buf(),
            status: None,
        }
    }

    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for a stdout line starting with `prefix`; returns it.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let mut found = None;
        let ok = wait_until(WAIT, || {
            found = self
                .stdout_text()
                .lines()
                .find(|l| l.starts_with(prefix))
                .map(str::to_string);
            found.is_some() || self.try_status().is_some()
        });
        match found {
            Some(line) if ok => line,
            _ => panic!("no line {prefix:?} from {}\n{}", self.name, self.describe()),
        }
    }

    /// Waits until stderr holds `needle` (or the process exits); whether it does. Log lines
    /// reach stderr in batches (every 100 ms, later on a loaded machine), so a line logged
    /// before a stdout line may still be on its way when that stdout line is seen.
    pub fn wait_log(&mut self, needle: &str) -> bool {
        wait_until(WAIT, || {
            self.stderr_text().contains(needle) || self.try_status().is_some()
        });
        self.stderr_text().contains(needle)
    }

    /// The port from a `listening on ADDR` line.
    pub fn listening_port(&mut self) -> u16 {
        match self.try_listening_port() {
            Ok(port) => port,
            Err(why) => panic!("{why}"),
        }
    }

    /// The port from a `listening on ADDR` line, or, if the process exits first (or never
    /// prints one), why not.
    pub fn try_listening_port(&mut self) -> Result<u16, String> {
        let mut found = None;
        wait_until(WAIT, || {
            found = self
                .stdout_text()
                .lines()
                .find_map(|l| l.strip_prefix("listening on ").map(str::to_string));
            found.is_some() || self.try_status().is_some()
        });
        let Some(rest) = found else {
            return Err(format!(
                "no line \"listening on \" from {}\n{}",
                self.name,
                self.describe()
            ));
        };
        let addr = rest.split([',', ' ']).next().unwrap();
        Ok(addr.rsplit(':').next().unwrap().parse().unwrap())
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Waits for exit (at most `timeout`), panicking with diagnostics if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if !wait_until(timeout, || self.try_status().is_some()) {
            panic!(
                "{} did not exit within {timeout:?}\n{}",
                self.name,
                self.describe()
            );
        }
        self.status.unwrap()
    }

    /// Sends SIGINT (Ctrl+C).
    pub fn interrupt(&self) {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Kills with SIGKILL and reaps.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    /// Command, status, output and folder listing, for failure messages.
    pub fn describe(&self) -> String {
        let listing = list_dir(&self.dir);
        format!(
            "--- {}: {}\nstatus: {:?}\nstdout:\n{}\nstderr (last 40 lines):\n{}\nfolder {}:\n{}",
            self.name,
            self.cmd,
            self.status,
            self.stdout_text(),
            tail(&self.stderr_text(), 40),
            self.dir.display(),
            listing
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn list_dir(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(rd) = fs::read_dir(dir) {
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push_str(&format!(
                "  {} ({len} bytes)\n",
                e.file_name().to_string_lossy()
            ));
        }
    }
    out
}

/// Runs `bin args` in a fresh temp folder until it exits (at most [`WAIT`]).
pub fn run_to_exit(name: &str, bin: &str, args: &[String]) -> (Proc, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(name, bin, args, tmp.path(), tmp.path());
    p.wait_exit(WAIT);
    (p, tmp)
}

/// One protocol frame: total length, header length (both `u32` big-endian), JSON header, body.
pub fn frame(header: &[u8], body: &[u8]) -> Vec<u8> {
    let total = u32::try_from(4 + header.len() + body.len()).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&u32::try_from(header.len()).unwrap().to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// A frame whose header is `v` and which has no body.
pub fn json_frame(v: serde_json::Value) -> Vec<u8> {
    frame(v.to_string().as_bytes(), &[])
}

/// Strings from anything displayable, for argument lists.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$($a.to_string()),*] };
}

/// Starts `file-owner 0 PATH extra…` in `root/owner` and returns it with its port.
pub fn start_owner(root: &Path, path: &Path, extra: &[String]) -> (Proc, u16) {
    let mut args = vec![
        "0".to_string(),
        path.display().to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn("owner", OWNER, &args, &root.join("owner"), root);
    let port = p.listening_port();
    (p, port)
}

/// In which order the peers of a ring start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Peer n-1 first, then n-2, ..., 0: each peer's download neighbour already listens when it
    /// starts, but peer n-1's (peer 0, the last to start). Peers bind port 0 and report their
    /// port, so only peer 0's port is chosen in advance.
    Chain,
    /// Peer 0 first, then 1, ..., n-1: no peer's download neighbour listens yet when it starts.
    /// Every port is chosen in advance; each stays held until just before its peer is spawned.
    Forward,
}

/// A ring run: options in, processes and folders out.
pub struct Ring {
    pub peers: usize,
    pub chunk_files: bool,
    pub order: Order,
    pub owner_args: Vec<String>,
    pub peer_args: Vec<String>,
}

impl Ring {
    pub fn new(peers: usize) -> Self {
        Self {
            peers,
            chunk_files: false,
            order: Order::Chain,
            owner_args: Vec::new(),
            peer_args: Vec::new(),
        }
    }
}

/// One peer of a ring.
pub struct RingPeer {
    pub port: u16,
    pub dir: PathBuf,
    pub events: PathBuf,
    pub proc: Proc,
}

/// Peer `i` of `ports` downloads from peer `i + 1` (wrapping).
pub fn peer_args(
    owner: u16,
    ports: &[u16],
    i: usize,
    dir: &Path,
    events: &Path,
    extra: &[String],
) -> Vec<String> {
    let next = ports[(i + 1) % ports.len()];
    let mut args = args![
        owner,
        ports[i],
        next,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display(),
        "--events",
        events.display(),
        "--timeout",
        "30"
    ];
    args.extend_from_slice(extra);
    args
}

/// Starts the peers of `ring` against an owner on `owner_port`; files under `root`.
pub fn start_peers(root: &Path, owner_port: u16, ring: &Ring) -> Vec<RingPeer> {
    let mut extra = ring.peer_args.clone();
    if ring.chunk_files {
        extra.push("--chunk-files".into());
    }
    start_ring(root, owner_port, ring.peers, ring.order, |_| extra.clone())
}

/// Starts a ring of `n` peers against an owner on `owner_port`, peer `i` with the extra
/// arguments `extra(i)`; files under `root`.
pub fn start_peers_each(
    root: &Path,
    owner_port: u16,
    n: usize,
    extra: impl Fn(usize) -> Vec<String>,
) -> Vec<RingPeer> {
    start_ring(root, owner_port, n, Order::Chain, extra)
}

/// Starts a ring of `n` peers in `order`; returns once every peer listens.
///
/// A port chosen in advance is held by a listener until just before its peer is spawned, so
/// only a process binding in that instant can take it. If one did anyway (the peer exits
/// saying the port is in use), the peers started so far are killed, their folders deleted and
/// the ring started again on other ports, up to 5 times.
pub fn start_ring(
    root: &Path,
    owner_port: u16,
    n: usize,
    order: Order,
    extra: impl Fn(usize) -> Vec<String>,
) -> Vec<RingPeer> {
    let mut failures = Vec::new();
    for _ in 0..5 {
        match try_start_ring(root, owner_port, n, order, &extra) {
            Ok(peers) => return peers,
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "a ring port was taken 5 times in a row:\n{}",
        failures.join("\n")
    );
}

fn try_start_ring(
    root: &Path,
    owner_port: u16,
    n: usize,
    order: Order,
    extra: &impl Fn(usize) -> Vec<String>,
) -> Result<Vec<RingPeer>, String> {
    let mut started: Vec<Option<RingPeer>> = (0..n).map(|_| None).collect();
    // Ports known before the peer runs: peer 0's for a chain, every one going forward.
    let mut reserved: Vec<Option<Reserved>> = (0..n)
        .map(|i| (i == 0 || order == Order::Forward).then(Reserved::new))
        .collect();
    let mut ports: Vec<u16> = reserved
        .iter()
        .map(|r| r.as_ref().map_or(0, |r| r.port))
        .collect();
    let spawn_order: Vec<usize> = match order {
        Order::Chain => (1..n).rev().chain(std::iter::once(0)).collect(),
        Order::Forward => (0..n).collect(),
    };
    let mut failed = None;
    for i in spawn_order {
        let own = reserved[i].as_mut().map_or(0, Reserved::release);
        let next = ports[(i + 1) % n];
        let dir = root.join(format!("peer-{i}"));
        let events = root.join(format!("events-{i}.jsonl"));
        let args = peer_args(owner_port, &[own, next], 0, &dir, &events, &extra(i));
        let mut proc = Proc::spawn(&format!("peer-{i}"), PEER, &args, root, root);
        // A chain needs this port for the next peer's command line; going forward, only the
        // check that it could bind its port.
        match proc.try_listening_port() {
            Ok(port) => {
                ports[i] = port;
                proc.name = format!("peer-{i} (port {port})");
            }
            Err(why) => {
                failed = Some((port_taken(&proc.stderr_text()), why));
            }
        }
        started[i] = Some(RingPeer {
            port: ports[i],
            dir,
            events,
            proc,
        });
        if failed.is_some() {
            break;
        }
    }
    match failed {
        None => Ok(started.into_iter().map(Option::unwrap).collect()),
        Some((true, why)) => {
            for p in started.into_iter().flatten() {
                let RingPeer {
                    dir,
                    events,
                    mut proc,
                    ..
                } = p;
                proc.kill();
                let _ = fs::remove_dir_all(dir);
                let _ = fs::remove_file(events);
            }
            Err(why)
        }
        Some((false, why)) => panic!("a ring peer did not start\n{why}"),
    }
}

/// Waits for every peer to exit 0 and checks its file against `original`.
pub fn assert_ring_complete(peers: &mut [RingPeer], original: &Path, extra: &str) {
    let want = fs::read(original).unwrap();
    let name = original.file_name().unwrap();
    for p in peers.iter_mut() {
        let status = p.proc.wait_exit(WAIT);
        assert!(
            status.success(),
            "peer failed{extra}\n{}",
            p.proc.describe()
        );
        let got = fs::read(p.dir.join(name))
            .unwrap_or_else(|e| panic!("no output file ({e}){extra}\n{}", p.proc.describe()));
        assert!(
            got == want,
            "file differs ({} vs {} bytes){extra}\n{}",
            got.len(),
            want.len(),
            p.proc.describe()
        );
        // Every peer stops because its upload neighbour said it was complete, never because
        // it gave up waiting for one.
        let err = p.proc.stderr_text();
        assert!(
            !err.contains("no upload neighbour for"),
            "peer waited in vain for its upload neighbour{extra}\n{}",
            p.proc.describe()
        );
    }
}

/// Runs a whole ring on a fresh random file of `size` bytes; returns the temp folder and peers.
pub fn run_ring(size: usize, ring: &Ring) -> (tempfile::TempDir, Vec<RingPeer>) {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("data.bin");
    random_file(&original, size, size as u64);
    let (mut owner, port) = start_owner(tmp.path(), &original, &ring.owner_args);
    let mut peers = start_peers(tmp.path(), port, ring);
    assert_ring_complete(
        &mut peers,
        &original,
        &format!("\n{}", tail(&owner.describe(), 20)),
    );
    owner.kill();
    (tmp, peers)
}

/// Starts `file-owner PORT PATH extra…` on a port chosen in advance, in `root/NAME`.
pub fn start_owner_on(root: &Path, name: &str, port: u16, path: &Path, extra: &[String]) -> Proc {
    let mut args = args![port, path.display(), "--bind", "127.0.0.1"];
    args.extend_from_slice(extra);
    Proc::spawn(name, OWNER, &args, &root.join(name), root)
}

/// The events of a JSON-lines log that may still be written to: complete lines that parse
/// (an empty list if the file is missing).
pub fn read_events_so_far(path: &Path) -> Vec<ringswarm::events::Event> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The chunk ids of the `kind` events in `events`, in log order.
pub fn event_chunks(
    events: &[ringswarm::events::Event],
    kind: ringswarm::events::EventKind,
) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e.event == kind)
        .filter_map(|e| e.chunk)
        .collect()
}

/// The chunk ids a peer's summary file lists (its inclusive ranges expanded).
pub fn summary_ids(path: &Path) -> std::collections::BTreeSet<u32> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading summary {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("parsing summary {}: {e}\n{text}", path.display()));
    v["chunks"]
        .as_array()
        .unwrap_or_else(|| panic!("summary without chunks: {text}"))
        .iter()
        .flat_map(|r| {
            let a = u32::try_from(r[0].as_u64().unwrap()).unwrap();
            let b = u32::try_from(r[1].as_u64().unwrap()).unwrap();
            a..=b
        })
        .collect()
}

/// Number of chunks of a file of `size` bytes at the default chunk size.
pub fn chunk_count(size: usize) -> u32 {
    ringswarm::manifest::chunk_layout(size as u64, ringswarm::manifest::DEFAULT_CHUNK_SIZE)
        .unwrap()
        .1
}

/// A port on 127.0.0.1 that refuses connections for as long as the returned socket lives: it
/// is bound (so no other test can take it) but not listening.
pub fn dead_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("creating a socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("binding 127.0.0.1:0");
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// `get OWNER FILE --port 0 --bind 127.0.0.1 --dir DIR` and `extra`: a `peer get` command line
/// serving on a free port of 127.0.0.1.
pub fn get_args(owner: u16, file: &str, dir: &Path, extra: &[String]) -> Vec<String> {
    let mut args = crate::args![
        "get",
        owner,
        file,
        "--port",
        0,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display()
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `peer get WHAT… --bind 127.0.0.1 --dir ROOT/NAME` and checks that it is refused:
/// exit 1, with `why` on stderr.
pub fn assert_get_refused(root: &Path, name: &str, what: &[String], why: &str) {
    let dir = root.join(name);
    let mut args = crate::args!["get"];
    args.extend_from_slice(what);
    args.extend(crate::args!["--bind", "127.0.0.1", "--dir", dir.display()]);
    let mut p = Proc::spawn(name, PEER, &args, &dir, root);
    assert_eq!(p.wait_exit(WAIT).code(), Some(1), "{}", p.describe());
    assert!(p.stderr_text().contains(why), "{why}: {}", p.describe());
}

/// The environment variable naming the file where skipped tests are listed (`.ci/run` sets
/// it, so its closing line counts them as skipped rather than passed).
pub const SKIPPED_ENV: &str = "RINGSWARM_SKIPPED";

/// Whether this is a CI run (`CI` set and not empty): a test whose tool is installed must
/// then run, and fail when the tool fails, instead of skipping.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Marks the calling test as skipped: prints `skipped: <reason>` on stderr and, when
/// [`SKIPPED_ENV`] names a file, appends a line `<test name>: <reason>` to it. The caller
/// returns right after.
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
    if let Some(path) = std::env::var_os(SKIPPED_ENV) {
        use std::io::Write;
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed test")
            .to_string();
        let line = format!("{name}: {reason}\n");
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot list a skipped test in {path:?}: {e}");
        }
    }
}

/// Starts an owner sharing `path` in chunks of `chunk_size` on `listener`; it stops when the
/// guard is dropped.
pub fn spawn_owner(
    listener: tokio::net::TcpListener,
    path: &Path,
    chunk_size: u64,
) -> tokio_util::sync::DropGuard {
    let config = ringswarm::owner::OwnerConfig::new(std::sync::Arc::new(
        ringswarm::events::EventSink::console("owner"),
    ));
    spawn_owner_with(listener, path, chunk_size, config)
}

/// As [`spawn_owner`], with `config`.
pub fn spawn_owner_with(
    listener: tokio::net::TcpListener,
    path: &Path,
    chunk_size: u64,
    config: ringswarm::owner::OwnerConfig,
) -> tokio_util::sync::DropGuard {
    let shared =
        std::sync::Arc::new(ringswarm::owner::SharedFile::open(path, chunk_size, 5).unwrap());
    let addr = listener.local_addr().unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let files = vec![shared];
    let directory =
        ringswarm::owner::directory(&files, addr, ringswarm::directory::DEFAULT_PEER_TTL);
    tokio::spawn(ringswarm::owner::run(
        listener,
        files,
        directory,
        config,
        token.clone(),
    ));
    token.drop_guard()
}

/// A ring peer's settings: owner and download neighbour on 127.0.0.1, files in `dir`.
pub fn ring_peer(owner: u16, neighbour: u16, dir: std::path::PathBuf) -> ringswarm::peer::Config {
    use ringswarm::net::Endpoint;
    ringswarm::peer::Config {
        sync: false,
        timeout: Duration::from_secs(300),
        ..ringswarm::peer::Config::ring(Endpoint::local(owner), Endpoint::local(neighbour), dir)
    }
}

/// Chromium, or `None` after marking the test skipped; under CI its absence fails the test.
pub fn chromium_or_skip() -> Option<PathBuf> {
    let bin = chromium();
    if bin.is_none() {
        assert!(!in_ci(), "CI must install chromium for the browser tests");
        skip("chromium not installed (not at /usr/bin/chromium or on PATH)");
    }
    bin
}

/// Debian's `chromium`, if installed.
pub fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.exists() {
        return Some(fixed);
    }
    on_path("chromium")
}

/// Prometheus's `promtool` (Debian's `prometheus` package), or `None` after marking the test
/// skipped; under CI its absence fails the test.
pub fn promtool_or_skip() -> Option<PathBuf> {
    let bin = on_path("promtool");
    if bin.is_none() {
        assert!(
            !in_ci(),
            "CI must install promtool (apt package prometheus) for the metrics tests"
        );
        skip("promtool not installed (apt package prometheus)");
    }
    bin
}

/// `promtool check metrics` of `text`: whether it passed (exit 0), and what it said.
pub fn promtool_check(bin: &Path, text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(bin)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The program `name` on `PATH`, if there is one.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

/// How long Chromium may take to render a page before the test calls it hung.
pub const CHROMIUM_LIMIT: Duration = Duration::from_secs(60);

/// How every test runs Chromium: headless, in a container (no sandbox, no GPU), and quiet on
/// the network (no QUIC, no first-run, background, update or sync requests).
pub const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Runs headless Chromium on `url` with `extra` arguments for at most [`CHROMIUM_LIMIT`];
/// returns its stdout, or why it could not run.
pub fn run_chromium(bin: &Path, url: &str, extra: &[&str]) -> Result<String, String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = scratch.path().join("stdout");
    let err = scratch.path().join("stderr");
    let profile = scratch.path().join("profile");
    let mut child = Command::new(bin)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).map_err(|e| e.to_string())?)
        .stderr(fs::File::create(&err).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut status = None;
    let exited = wait_until(CHROMIUM_LIMIT, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = fs::read_to_string(&out).unwrap_or_default();
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    if stdout.trim().is_empty() || !status.is_some_and(|s| s.success()) {
        let how = match status {
            Some(s) => format!("exited with {s}"),
            None => format!("no exit within {CHROMIUM_LIMIT:?}"),
        };
        return Err(format!(
            "{how}; stdout {} bytes; stderr: {}",
            stdout.len(),
            tail(&stderr, 10)
        ));
    }
    Ok(stdout)
}
