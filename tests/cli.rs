//! The real binaries end to end: rings of several sizes, file sizes, both layouts, errors.

use std::fs;

use crate::args;
use crate::util::*;

#[test]
fn five_peer_ring_reassembles_byte_identical() {
    let (_tmp, peers) = run_ring(3 << 20, &Ring::new(5));
    for p in &peers {
        let out = p.proc.stdout_text();
        assert!(out.contains("complete: "), "{out}");
        assert!(
            !p.dir.join("data.bin.part").exists(),
            "part file renamed away"
        );
        assert!(p.dir.join("data.bin.summary").exists());
    }
}

/// With several worker threads (the default on machines of 4 cores or more), every peer
/// hashes and stores its chunks on all of them, and every copy is byte-identical (`run_ring`
/// compares them with the original).
#[test]
fn five_peer_ring_on_several_worker_threads() {
    let ring = Ring {
        owner_args: args!["--threads", "3"],
        peer_args: args!["--threads", "3"],
        ..Ring::new(5)
    };
    run_ring(3 << 20, &ring);
}

#[test]
fn five_peer_ring_with_chunk_files() {
    let ring = Ring {
        chunk_files: true,
        ..Ring::new(5)
    };
    let (_tmp, peers) = run_ring(3 << 20, &ring);
    for p in &peers {
        let chunks = fs::read_dir(p.dir.join("chunks")).unwrap().count();
        assert_eq!(chunks, 31, "one file per chunk\n{}", p.proc.describe());
    }
}

#[test]
fn edge_file_sizes_reassemble() {
    for size in [0, 1, 4, 5, 511_999, 512_000, 512_001] {
        for chunk_files in [false, true] {
            let ring = Ring {
                chunk_files,
                ..Ring::new(3)
            };
            let (_tmp, peers) = run_ring(size, &ring);
            assert_eq!(peers.len(), 3, "size {size}");
        }
    }
}

#[test]
fn rings_of_two_three_and_ten() {
    for n in [2, 3, 10] {
        let (_tmp, peers) = run_ring(1 << 20, &Ring::new(n));
        assert_eq!(peers.len(), n);
    }
}

#[test]
fn ring_with_more_peers_than_expected() {
    let ring = Ring {
        owner_args: args!["--peers", "2"],
        ..Ring::new(4)
    };
    run_ring(1 << 20, &ring);
}

/// The default start order (peer n-1 first) finds most download neighbours listening; here
/// none is yet when its peer starts.
#[test]
fn peers_started_before_their_neighbours() {
    let ring = Ring {
        order: Order::Forward,
        ..Ring::new(5)
    };
    run_ring(3 << 20, &ring);
}

#[test]
fn custom_chunk_size_keeps_five_chunk_minimum() {
    let ring = Ring {
        owner_args: args!["--chunk-size", "64KiB"],
        ..Ring::new(3)
    };
    let (_tmp, peers) = run_ring(200_000, &ring);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(peers[0].dir.join("data.bin.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["chunk_size"], 40_000);
    assert_eq!(m["chunks"].as_array().unwrap().len(), 5);
}

#[test]
fn owner_shares_a_folder_and_peer_picks_with_file() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir(&share).unwrap();
    random_file(&share.join("a.bin"), 300_000, 1);
    random_file(&share.join("b.bin"), 200_000, 2);
    let (_owner, port) = start_owner(tmp.path(), &share, &[]);
    let (_dead, neighbour) = dead_port();

    // Without --file the peer is told which files there are.
    let mut p = Proc::spawn(
        "nofile",
        PEER,
        &args![
            port,
            0,
            neighbour,
            "--bind",
            "127.0.0.1",
            "--dir",
            tmp.path().join("x").display()
        ],
        tmp.path(),
        tmp.path(),
    );
    let status = p.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "{}", p.describe());
    let err = p.stderr_text();
    assert!(
        err.contains("choose one with --file NAME: a.bin, b.bin"),
        "{err}"
    );

    // Unknown --file names the choices.
    let mut p = Proc::spawn(
        "badfile",
        PEER,
        &args![
            port,
            0,
            neighbour,
            "--bind",
            "127.0.0.1",
            "--file",
            "c.bin",
            "--dir",
            tmp.path().join("y").display()
        ],
        tmp.path(),
        tmp.path(),
    );
    assert_eq!(p.wait_exit(WAIT).code(), Some(1));
    let err = p.stderr_text();
    assert!(
        err.contains("owner does not share \"c.bin\"; it shares: a.bin, b.bin"),
        "{err}"
    );

    // With --file, a two-peer ring fetches b.bin.
    let mut peers = start_peers_each(tmp.path(), port, 2, |_| args!["--file", "b.bin"]);
    for p in &mut peers {
        assert!(p.proc.wait_exit(WAIT).success(), "{}", p.proc.describe());
        let got = fs::read(p.dir.join("b.bin")).unwrap();
        assert_eq!(got, fs::read(share.join("b.bin")).unwrap());
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let (p, _t) = run_to_exit("owner", OWNER, &args!["0", "/nonexistent/file.iso"]);
    assert_eq!(p.status.unwrap().code(), Some(1));
    let err = p.stderr_text();
    assert!(
        err.contains("error: cannot share /nonexistent/file.iso: No such file or directory"),
        "{err}"
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.bin");
    random_file(&file, 1000, 3);
    for (name, bin, args) in [
        (
            "owner",
            OWNER,
            args![port, file.display(), "--bind", "127.0.0.1"],
        ),
        ("peer", PEER, args!["1", port, "2", "--bind", "127.0.0.1"]),
    ] {
        let mut p = Proc::spawn(name, bin, &args, tmp.path(), tmp.path());
        assert_eq!(p.wait_exit(WAIT).code(), Some(1), "{}", p.describe());
        let err = p.stderr_text();
        assert!(
            err.contains(&format!(
                "error: port {port} is already in use on 127.0.0.1"
            )),
            "{name}: {err}"
        );
    }
}

#[test]
fn unreachable_owner_times_out_with_a_clear_error() {
    let (_owner, owner) = dead_port();
    let (_neighbour, neighbour) = dead_port();
    let (p, _t) = run_to_exit(
        "peer",
        PEER,
        &args![owner, 0, neighbour, "--bind", "127.0.0.1", "--timeout", "1"],
    );
    assert_eq!(p.status.unwrap().code(), Some(1));
    let err = p.stderr_text();
    assert!(
        err.contains(&format!(
            "error: owner 127.0.0.1:{owner} unreachable after 1s"
        )),
        "{err}"
    );
    assert!(err.contains("is file-owner running there?"), "{err}");
    assert!(
        err.contains("waiting for owner"),
        "a retry is logged: {err}"
    );
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for (bin, args) in [
        (PEER, args!["5000", "5001"]),
        (PEER, args!["5000", "notaport", "5002"]),
        (PEER, args!["host:", "5001", "5002"]),
        (PEER, args!["5000", "5001", "5002", "--in-flight", "0"]),
        (PEER, args!["5000", "5001", "5002", "--threads", "0"]),
        (OWNER, args!["5000", ".", "--threads", "many"]),
        (OWNER, args![]),
        (OWNER, args!["5000", ".", "--chunk-size", "0"]),
        (OWNER, args!["5000", ".", "--peers", "0"]),
    ] {
        let (p, _t) = run_to_exit("bad", bin, &args);
        assert_eq!(p.status.unwrap().code(), Some(2), "{}", p.describe());
        let err = p.stderr_text();
        assert!(err.starts_with("error:"), "{err}");
        assert!(err.contains("Usage:") || err.contains("--help"), "{err}");
    }
}

#[test]
fn help_describes_the_positional_arguments() {
    let out = std::process::Command::new(PEER)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "<OWNER>",
        "<PORT>",
        "<NEIGHBOUR>",
        "--dir",
        "--chunk-files",
        "--linger",
    ] {
        assert!(text.contains(word), "{text}");
    }
    let out = std::process::Command::new(OWNER)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["<PORT>", "[PATH]", "--peers", "--chunk-size", "--bind"] {
        assert!(text.contains(word), "{text}");
    }
}

#[test]
fn owner_with_no_path_shares_the_current_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("owner");
    fs::create_dir(&share).unwrap();
    random_file(&share.join("only.bin"), 10_000, 9);
    let mut p = Proc::spawn(
        "owner",
        OWNER,
        &args!["0", "--bind", "127.0.0.1"],
        &share,
        tmp.path(),
    );
    let line = p.wait_line("listening on ");
    assert!(line.contains("sharing only.bin"), "{line}");
}

#[test]
fn an_idle_owner_serves_spare_chunks_to_slow_peers() {
    // Peers upload at 1 MiB/s, the owner without a cap, and hands each of the 3 peers a third
    // of the chunks: one copy of the file in all. Once the hand-out is done, the owner's idle
    // upload goes to the peers as spare chunks, so the ring gets more than one copy from it.
    // Which peer gets them depends on which lags (the fewest chunks first), and so on how the
    // machine schedules the run: only the total is certain. A spare chunk is served within
    // moments, while a neighbour needs 0.1 s per chunk to make it unnecessary.
    let size = 4 << 20;
    let mut ring = Ring::new(3);
    ring.owner_args = args!["--peers", 3];
    ring.peer_args = args!["--upload-limit", "1MiB"];
    let (tmp, peers) = run_ring(size, &ring);
    let _keep = tmp;
    let count = chunk_count(size) as usize;
    let mut total = 0;
    let mut counts = Vec::new();
    for p in &peers {
        let events = ringswarm::events::read_log(&p.events).unwrap();
        let from_neighbour = format!("127.0.0.1:{}", peers_next(&peers, p.port));
        let from_owner = events
            .iter()
            .filter(|e| e.event == ringswarm::events::EventKind::ChunkReceived)
            .filter(|e| e.neighbour != from_neighbour)
            .count();
        counts.push(from_owner);
        total += from_owner;
    }
    eprintln!("chunks from the owner, per peer: {counts:?}; {total} in all for {count}");
    assert!(
        total > count,
        "the owner sent {total} chunks ({counts:?} per peer), no more than its hand-out of {count}"
    );
}

/// The download neighbour's port of the peer on `port` (rings start peer i → i + 1).
fn peers_next(peers: &[RingPeer], port: u16) -> u16 {
    let i = peers.iter().position(|p| p.port == port).unwrap();
    peers[(i + 1) % peers.len()].port
}

/// `peer list OWNER --json | head -1`: a reader that goes away before the answer is printed
/// is no panic (exit 101 and a backtrace before); the command ends with exit 0.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    use ringswarm::directory::{FileInfo, Listing};
    use ringswarm::protocol::{Message, MessageCodec};
    use tokio_util::codec::Encoder;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = crate::util::seal::server_side(listener.local_addr().unwrap()).to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["list", &port, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away first; only then does the (fake) owner answer.
    drop(child.stdout.take());
    let (mut sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).unwrap();
    let mut query = vec![0u8; u32::from_be_bytes(len) as usize];
    sock.read_exact(&mut query).unwrap();
    let files = (1..=200)
        .map(|id| FileInfo {
            id,
            name: format!("file-{id}.bin"),
            size: 1,
            chunk_size: 1,
            chunks: 1,
            hash: "0".repeat(64),
            complete_sources: 1,
            partial_sources: 0,
        })
        .collect();
    let listing = Listing {
        query: None,
        files,
        more: 0,
        node: None,
    };
    let body = serde_json::to_vec(&listing).unwrap();
    let mut out = bytes::BytesMut::new();
    MessageCodec::new(0)
        .encode(Message::files(body.into()), &mut out)
        .unwrap();
    sock.write_all(&out).unwrap();
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(done.status.code(), Some(0), "{stderr}");
}

/// Starts an owner sharing a sparse file of `chunks` chunks of 1 KiB: a manifest of about
/// 67 bytes per chunk, quickly hashed.
fn start_sparse_owner(root: &std::path::Path, chunks: u64) -> (Proc, u16) {
    let path = root.join("big.bin");
    fs::File::create(&path)
        .unwrap()
        .set_len(chunks * 1024)
        .unwrap();
    start_owner(root, &path, &args!["--chunk-size", "1KiB"])
}

/// The owner's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Connections that said `hello` and read the manifest keep no buffer of its size: 200 idle
/// ones on a 40,000-chunk share (a 2.7 MB manifest each) grow the owner by a few MiB, not
/// by 200 manifests (540 MB before buffers were given back).
#[test]
fn idle_connections_do_not_keep_the_manifest() {
    use std::io::{Read, Write};

    let tmp = tempfile::tempdir().unwrap();
    let (owner, port) = start_sparse_owner(tmp.path(), 40_000);
    let pid = owner.child.id();
    let frame = json_frame(
        serde_json::json!({"type": "hello", "version": ringswarm::protocol::PROTOCOL_VERSION, "role": "getter"}),
    );
    let connect = || {
        let mut s = std::net::TcpStream::connect(crate::util::seal::sealed_port(port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(&frame).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut welcome = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut welcome).unwrap();
        assert!(
            welcome.len() > 2_000_000,
            "a manifest of {} bytes",
            welcome.len()
        );
        s
    };
    // One first, so that the owner's steady state (its own copy of the manifest) is counted.
    let first = connect();
    let before = rss_kib(pid);
    let idle: Vec<_> = (0..200).map(|_| connect()).collect();
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "200 idle connections grew the owner by {grown} KiB"
    );
    drop((first, idle));
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `8m`) at `path`; `None` where mounting is not allowed.
    fn mount(path: &std::path::Path, size: &str) -> Option<Self> {
        fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(path.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A disk that fills up mid-download stops the peer with exit 1 and the cause, at once (not
/// 50,000 reconnects and "no progress"), and every chunk it had verified stays on disk.
#[test]
fn a_full_disk_stops_the_peer_with_the_cause_and_keeps_its_chunks() {
    use std::io::Write;

    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("small"), "8m") else {
        skip("cannot mount a tmpfs here (needs root)");
        return;
    };
    let original = tmp.path().join("data.bin");
    random_file(&original, 3 << 20, 11);
    // A held rate limit: 3 MiB at 256 KiB/s takes 12 s, so the disk fills mid-way.
    let (_owner, port) = start_owner(tmp.path(), &original, &args!["--upload-limit", "256KiB"]);
    let dir = disk.0.join("get");
    let args = get_args(port, "data.bin", &dir, &args!["--chunk-files", "--no-sync"]);
    let mut getter = Proc::spawn("getter", PEER, &args, tmp.path(), tmp.path());
    let chunks = dir.join("chunks");
    let started = wait_until(WAIT, || {
        fs::read_dir(&chunks).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        })
    });
    assert!(started, "no chunk stored: {}", getter.describe());
    let mut filler = fs::File::create(disk.0.join("filler")).unwrap();
    let block = vec![0u8; 64 * 1024];
    while filler.write_all(&block).is_ok() {}
    let status = getter.wait_exit(WAIT);
    let stderr = getter.stderr_text();
    assert_eq!(status.code(), Some(1), "{}", getter.describe());
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("no progress"), "{stderr}");
    // What was stored is the original's bytes.
    let data = fs::read(&original).unwrap();
    let mut kept = 0;
    for entry in fs::read_dir(&chunks).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("data.bin.")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let bytes = fs::read(chunks.join(&name)).unwrap();
        let off = id * 102_400;
        assert_eq!(&bytes[..], &data[off..off + bytes.len()], "chunk {id}");
        assert_eq!(
            bytes.len(),
            102_400.min(data.len() - off),
            "chunk {id} whole"
        );
        kept += 1;
    }
    assert!(kept >= 1, "no chunk kept");
}

/// Clients that say `hello` and never read cost the owner no copy of the manifest each: the
/// body is written from the owner's one shared copy. 40 of them on a 250,000-chunk share
/// (a 17 MB manifest, far more than a socket's buffers take) grow the owner by a few MiB,
/// not by 40 manifests (680 MB when each was copied into its connection's write buffer).
#[test]
fn clients_that_never_read_cost_no_manifest_copy() {
    use std::io::Write;

    let tmp = tempfile::tempdir().unwrap();
    let (owner, port) = start_sparse_owner(tmp.path(), 250_000);
    let pid = owner.child.id();
    let frame = json_frame(
        serde_json::json!({"type": "hello", "version": ringswarm::protocol::PROTOCOL_VERSION, "role": "getter"}),
    );
    let connect = || {
        let mut s = std::net::TcpStream::connect(crate::util::seal::sealed_port(port)).unwrap();
        s.write_all(&frame).unwrap();
        // The owner has begun its welcome (so it holds whatever it holds for it) once the
        // first bytes arrive.
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut first = [0u8; 4];
        assert_eq!(s.peek(&mut first).unwrap(), 4);
        s
    };
    let first = connect();
    let before = rss_kib(pid);
    let stuck: Vec<_> = (0..40).map(|_| connect()).collect();
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "40 clients that do not read grew the owner by {grown} KiB"
    );
    drop((first, stuck));
}

/// Not on a terminal, `peer get` logs its events and a plain progress line every 5 s (the
/// owner's 1 MiB/s cap makes the 8 MB download take longer than that); with `--quiet` it
/// prints the final line alone, and nothing on stderr.
#[test]
fn progress_lines_off_a_terminal_and_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("share").join("p.bin");
    fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, 8_000_000, 21);
    let (_slow, slow_port) = start_owner(root, &original, &args!["--upload-limit", "1MiB"]);
    let (_fast, fast_port) = start_owner(&root.join("fast"), &original, &[]);
    let get = |name: &str, port: u16, extra: &[String]| {
        let dir = root.join(name);
        let mut a = args![
            "get",
            port,
            "p.bin",
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.display(),
            "--linger",
            0
        ];
        a.extend_from_slice(extra);
        Proc::spawn(name, PEER, &a, &dir, root)
    };
    let done = |p: &mut Proc, name: &str| {
        assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
        assert_eq!(
            fs::read(root.join(name).join("p.bin")).unwrap(),
            fs::read(&original).unwrap()
        );
    };
    let mut plain = get("plain", slow_port, &[]);
    let mut quiet = get("quiet", fast_port, &args!["--quiet"]);
    done(&mut quiet, "quiet");
    let out = quiet.stdout_text();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("complete: "), "{out}");
    assert_eq!(quiet.stderr_text(), "", "{}", quiet.describe());
    done(&mut plain, "plain");
    let err = plain.stderr_text();
    let line = err
        .lines()
        .find_map(|l| l.split_once("progress: ").map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| panic!("no progress line: {}", plain.describe()));
    assert!(
        line.contains("/79 chunks (") && line.contains("/s · ETA ") && line.contains(" source"),
        "{line}"
    );
    assert!(err.contains("received chunk"), "the events scroll too");
}

/// On a terminal, `peer get` draws a live status line in place — chunks, percent, rate, ETA
/// and sources, redrawn over itself (carriage return, erase line) — with the event lines
/// scrolling above it, and prints its final line; with `--quiet`, the final line alone. The
/// terminal is a pty from util-linux's `script`, which copies all that was drawn on it to a
/// file. The first owner's 512 KiB/s cap makes the 2 MB download last about 4 s: long enough
/// for several redraws (every 200 ms).
#[test]
fn a_live_status_line_on_a_terminal() {
    let Some(script) = on_path("script") else {
        assert!(!in_ci(), "CI machines have util-linux's script");
        return skip("no `script` (util-linux) to make a pty with");
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("share").join("t.bin");
    fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, 2_000_000, 23);
    let (_slow, slow_port) = start_owner(root, &original, &args!["--upload-limit", "512KiB"]);
    let (_fast, fast_port) = start_owner(&root.join("fast"), &original, &[]);
    let on_a_tty = |name: &str, port: u16, extra: &str| {
        let dir = root.join(name);
        let typescript = root.join(format!("{name}.typescript"));
        let command = format!(
            "'{PEER}' get {port} t.bin --bind 127.0.0.1 --linger 0 --dir '{}' {extra}",
            dir.display()
        );
        let a = args!["-qfec", command, typescript.display()];
        let mut p = Proc::spawn(name, script.to_str().unwrap(), &a, root, root);
        assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
        assert_eq!(
            fs::read(dir.join("t.bin")).unwrap(),
            fs::read(&original).unwrap()
        );
        fs::read_to_string(&typescript).unwrap()
    };
    let shown = on_a_tty("tty", slow_port, "");
    // Each redraw: back to the line's start, erase it, draw it again.
    let redraws: Vec<&str> = shown
        .split("\r\x1b[2K")
        .skip(1)
        .filter_map(|d| d.split(['\r', '\n']).next())
        .map(str::trim_end)
        .filter(|d| d.contains(" chunks ("))
        .collect();
    let mut counts: Vec<&str> = redraws.iter().filter_map(|d| d.split('/').next()).collect();
    counts.dedup();
    assert!(
        counts.len() >= 2,
        "the line was redrawn as chunks came: {redraws:#?}\n{shown}"
    );
    // A redraw falls between chunks (rate and ETA) or, when one lands after the last chunk
    // and before the line is cleared, shows the held file (`complete · … uploaded`).
    for d in &redraws {
        let moving = d.contains("/s · ETA ");
        let held = d.starts_with("20/20 chunks (100.0%) · complete · ");
        assert!(
            d.contains("/20 chunks (") && (moving || held) && d.ends_with(" · 1 source"),
            "{d}"
        );
    }
    assert!(shown.contains("received chunk"), "the events scroll above");
    assert!(shown.contains("complete: "), "{shown}");

    let quiet = on_a_tty("quiet", fast_port, "--quiet");
    let body: Vec<&str> = quiet
        .lines()
        .filter(|l| !l.starts_with("Script ") && !l.trim().is_empty())
        .collect();
    assert_eq!(body.len(), 1, "{quiet}");
    assert!(body[0].starts_with("complete: "), "{quiet}");
    assert!(!quiet.contains("\x1b[2K"), "no status line: {quiet}");
}
