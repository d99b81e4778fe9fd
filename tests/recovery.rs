//! Faults end to end with the real binaries, where a process matters: a peer SIGKILLed and
//! restarted (what its disk holds beyond the last summary), tampered chunk files, peers
//! started before the owner, Ctrl+C and its exit code, a getter killed again and again; and
//! the event log they all write. The engine's fault behaviours (owner gone, corrupt uploads,
//! a neighbour down, a restarted peer) are tested in process, in virtual time, in
//! tests/engine.rs.

// `args![..]` builds a `Vec` that is often passed on as a slice.
#![allow(clippy::useless_vec)]

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use ringswarm::events::{EventKind, read_log};

use crate::args;
use crate::util::*;

/// How many chunk events of `kind` a peer's log holds so far.
fn count_events(path: &Path, kind: EventKind) -> usize {
    read_events_so_far(path)
        .iter()
        .filter(|e| e.event == kind)
        .count()
}

/// The file's `complete:` line has been printed.
fn printed_complete(p: &Proc) -> bool {
    p.stdout_text().contains("complete: ")
}

#[test]
fn killed_peer_restarts_and_fetches_only_what_it_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 6 << 20;
    let original = tmp.path().join("data.bin");
    random_file(&original, size, 6);
    // Every node uploads at 1 MiB/s, the owner too (else its spare chunks finish the ring in a
    // fraction of a second): a peer takes in at most 2 MiB/s (its neighbour and the owner), so
    // it needs 3 s or more for the 62 chunks, and is killed after 10.
    let limit = args!["--upload-limit", "1MiB"];
    let (owner, port) = start_owner(tmp.path(), &original, &limit);
    let extra = limit.clone();
    let ring = Ring {
        peer_args: extra.clone(),
        ..Ring::new(5)
    };
    let mut peers = start_peers(tmp.path(), port, &ring);
    let ports: Vec<u16> = peers.iter().map(|p| p.port).collect();
    let victim = &mut peers[2];
    let summary = victim.dir.join("data.bin.summary");

    let started = wait_until(WAIT, || {
        count_events(&victim.events, EventKind::ChunkReceived) >= 10 && summary.exists()
    });
    assert!(
        started,
        "peer #2 never received 10 chunks\n{}",
        victim.proc.describe()
    );
    victim.proc.kill();
    let mut hold = Reserved::again(victim.port);
    assert!(
        !printed_complete(&victim.proc),
        "peer #2 completed before it was killed: the test proves nothing\n{}",
        victim.proc.describe()
    );
    let held = summary_ids(&summary);
    let count = chunk_count(size);
    assert!(
        !held.is_empty() && held.len() < count as usize,
        "summary at kill time lists {} of {count} chunks\n{}",
        held.len(),
        victim.proc.describe()
    );

    let events2 = tmp
        .path()
        .join(format!("events-{}-restarted.jsonl", victim.port));
    let args = peer_args(port, &ports, 2, &victim.dir, &events2, &extra);
    hold.release();
    victim.proc = Proc::spawn(
        &format!("peer-{}-restarted", victim.port),
        PEER,
        &args,
        tmp.path(),
        tmp.path(),
    );
    assert_ring_complete(
        &mut peers,
        &original,
        &format!("\n{}", tail(&owner.describe(), 20)),
    );

    let second: Vec<u32> = event_chunks(&read_log(&events2).unwrap(), EventKind::ChunkReceived);
    eprintln!(
        "summary at kill: {} chunks; fetched after restart: {} of {count}",
        held.len(),
        second.len()
    );
    let refetched: Vec<u32> = second
        .iter()
        .copied()
        .filter(|c| held.contains(c))
        .collect();
    assert!(
        refetched.is_empty(),
        "the restarted peer fetched chunks its summary already listed: {refetched:?}"
    );
    // Chunks written after the last summary are found on disk and kept, not fetched again:
    // the restarted peer says how many.
    let mut union: BTreeSet<u32> = second.iter().copied().collect();
    union.extend(&held);
    let missing: Vec<u32> = (0..count).filter(|c| !union.contains(c)).collect();
    let log = peers[2].proc.stderr_text();
    let recovered = log
        .lines()
        .find_map(|l| {
            let (n, _) = l.split_once(" verified chunks found on disk beyond the summary")?;
            n.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .unwrap_or(0);
    assert_eq!(
        missing.len(),
        recovered,
        "chunks neither in the summary nor fetched after the restart: {missing:?}\n{}",
        peers[2].proc.describe()
    );
}

#[test]
fn tampered_chunk_on_disk_is_refused_and_fetched_again() {
    let (received, log) = restart_after_damage(true, |d| {
        assert!(d.join("data.bin.summary").exists());
        flip(&d.join("chunks").join("data.bin.3"), 0, 102_400);
    });
    assert_eq!(
        received,
        vec![3],
        "only the tampered chunk should be fetched\n{log}"
    );
    assert!(
        log.contains("fails its hash"),
        "the log does not mention the hash failure\n{log}"
    );
}

#[test]
fn every_event_kind_is_logged() {
    // A slow owner (31 chunks at 2 MiB/s: 1.5 s or more), so the peers pass chunks to each
    // other instead of getting every one from the owner's spare upload.
    let ring = Ring {
        owner_args: args!["--upload-limit", "2MiB"],
        ..Ring::new(5)
    };
    let (_tmp, peers) = run_ring(3 << 20, &ring);
    let logs: Vec<_> = peers.iter().map(|p| read_log(&p.events).unwrap()).collect();

    let union: HashSet<EventKind> = logs.iter().flatten().map(|e| e.event).collect();
    for kind in EventKind::ALL {
        assert!(union.contains(&kind), "no {kind:?} event in any peer log");
    }
    for e in logs.iter().flatten() {
        if e.event == EventKind::ChunkReceived {
            assert!(
                e.chunk.is_some() && e.bytes.is_some_and(|b| b > 0),
                "chunk_received without chunk or bytes: {e:?}"
            );
        }
    }
    let middle: HashSet<EventKind> = logs[2].iter().map(|e| e.event).collect();
    for kind in EventKind::ALL {
        assert!(
            middle.contains(&kind),
            "peer #2 logged no {kind:?} event\n{}",
            peers[2].proc.describe()
        );
    }
}

#[test]
fn peer_started_before_owner_waits_then_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("data.bin");
    random_file(&original, 1 << 20, 3);
    // The owner's port is held, refusing connections, until the owner starts on it.
    let (reserved, owner_port) = dead_port();
    let mut peers = start_peers(tmp.path(), owner_port, &Ring::new(2));
    for p in &mut peers {
        let waiting = p.proc.wait_log("waiting for owner");
        assert!(
            waiting,
            "peer did not wait for the owner\n{}",
            p.proc.describe()
        );
    }

    drop(reserved);
    let mut owner = start_owner_on(
        tmp.path(),
        "owner",
        owner_port,
        &original,
        &args!["--peers", 2],
    );
    assert_eq!(owner.listening_port(), owner_port, "{}", owner.describe());
    assert_ring_complete(
        &mut peers,
        &original,
        &format!("\n{}", tail(&owner.describe(), 20)),
    );
}

#[test]
fn ctrl_c_stops_a_peer_with_130() {
    let tmp = tempfile::tempdir().unwrap();
    let (_owner, owner) = dead_port();
    let (_neighbour, neighbour) = dead_port();
    let args = args![
        owner,
        0,
        neighbour,
        "--bind",
        "127.0.0.1",
        "--dir",
        tmp.path().join("peer").display(),
        "--timeout",
        "30"
    ];
    let mut peer = Proc::spawn("peer", PEER, &args, tmp.path(), tmp.path());
    // Logged once the runtime (and its signal handler) runs and the owner was tried.
    let waiting = peer.wait_log("waiting for owner");
    assert!(waiting, "peer did not start waiting\n{}", peer.describe());
    peer.interrupt();
    let status = peer.wait_exit(WAIT);
    assert_eq!(status.code(), Some(130), "{}", peer.describe());
}

/// Runs a 3-peer ring on 1 MiB (11 chunks), then takes peer 0's folder back to "killed
/// before the end" (the finished file renamed back to the part file, for that layout),
/// applies `damage` to it, restarts the peer alone (dead neighbour, live owner) and returns
/// the chunks it fetched, sorted, and its log. The file must come out byte-identical.
fn restart_after_damage(chunk_files: bool, damage: impl FnOnce(&Path)) -> (Vec<u32>, String) {
    let ring = Ring {
        chunk_files,
        ..Ring::new(3)
    };
    let (tmp, peers) = run_ring(1 << 20, &ring);
    let original = tmp.path().join("data.bin");
    let dir = &peers[0].dir;
    if chunk_files {
        fs::remove_file(dir.join("data.bin")).unwrap();
    } else {
        fs::rename(dir.join("data.bin"), dir.join("data.bin.part")).unwrap();
    }
    damage(dir);
    let root = tmp.path().join("second");
    let (_owner, port) = start_owner(&root, &original, &[]);
    let (_dead, neighbour) = dead_port();
    let events = root.join("events.jsonl");
    let mut extra = args!["--linger", 0];
    if chunk_files {
        extra.push("--chunk-files".into());
    }
    let args = peer_args(port, &[0, neighbour], 0, dir, &events, &extra);
    let mut peer = Proc::spawn("peer-damaged", PEER, &args, &root, &root);
    assert!(peer.wait_exit(WAIT).success(), "{}", peer.describe());
    assert!(
        fs::read(dir.join("data.bin")).unwrap() == fs::read(&original).unwrap(),
        "file differs\n{}",
        peer.describe()
    );
    let mut got = event_chunks(&read_log(&events).unwrap(), EventKind::ChunkReceived);
    got.sort_unstable();
    (got, peer.stderr_text())
}

/// Flips the bytes of `path` from `from` for `len` bytes.
fn flip(path: &Path, from: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, from).unwrap();
    for b in &mut buf {
        *b ^= 0xa5;
    }
    f.write_all_at(&buf, from).unwrap();
}

#[test]
fn altered_or_truncated_chunks_on_disk_are_fetched_again() {
    const C: u64 = 102_400;
    // Part file: a byte of chunk 3 altered.
    let (got, _) = restart_after_damage(false, |d| flip(&d.join("data.bin.part"), 3 * C + 17, 1));
    assert_eq!(got, vec![3]);
    // Part file cut in the middle of chunk 7: chunks 7..=10 are gone.
    let (got, _) = restart_after_damage(false, |d| {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(d.join("data.bin.part"))
            .unwrap();
        f.set_len(7 * C + 500).unwrap();
    });
    assert_eq!(got, vec![7, 8, 9, 10]);
    // Chunk files: chunk 5 cut short, chunk 2 altered, chunk 9 deleted.
    let (got, _) = restart_after_damage(true, |d| {
        let c = d.join("chunks");
        let f = fs::OpenOptions::new()
            .write(true)
            .open(c.join("data.bin.5"))
            .unwrap();
        f.set_len(C / 2).unwrap();
        flip(&c.join("data.bin.2"), 0, 64);
        fs::remove_file(c.join("data.bin.9")).unwrap();
    });
    assert_eq!(got, vec![2, 5, 9]);
}

#[test]
fn a_getter_killed_again_and_again_keeps_its_chunks_and_a_whole_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("data.bin");
    let size = 8 << 20; // 82 chunks at 2 MiB/s: about 4 s
    random_file(&original, size, 10);
    let (_owner, port) = start_owner(root, &original, &args!["--upload-limit", "2MiB"]);
    let dir = root.join("g");
    let summary = dir.join("data.bin.summary");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
    let mut total_received = 0;
    for round in 0.. {
        let events = root.join(format!("g-{round}.jsonl"));
        let args = get_args(
            port,
            "data.bin",
            &dir,
            &args!["--events", events.display(), "--linger", 0],
        );
        let mut g = Proc::spawn(&format!("g-{round}"), PEER, &args, &dir, root);
        if round == 4 {
            assert!(g.wait_exit(WAIT).success(), "{}", g.describe());
            total_received +=
                event_chunks(&read_log(&events).unwrap(), EventKind::ChunkReceived).len();
            break;
        }
        // SIGKILL once this run has logged a number of verified chunks, 3 to 12 (seeded), so
        // the kills land at different points of the write-and-summary cycle. The owner sends
        // at most 2 MiB/s (20 chunks a second): the four runs cannot fetch all 82 chunks.
        let target = rand::Rng::random_range(&mut rng, 3..=12);
        let reached = wait_until(WAIT, || {
            count_events(&events, EventKind::ChunkReceived) >= target || g.try_status().is_some()
        });
        assert!(
            reached && g.try_status().is_none(),
            "run {round} exited or never logged {target} chunks\n{}",
            g.describe()
        );
        g.kill();
        let received = read_events_so_far(&events);
        total_received += event_chunks(&received, EventKind::ChunkReceived).len();
        // Whatever moment the kill hit, the summary is whole JSON (never half-written).
        if summary.exists() {
            summary_ids(&summary);
        }
        assert!(
            !dir.join("data.bin").exists() && !printed_complete(&g),
            "run {round} finished before it was killed: the test proves nothing\n{}",
            g.describe()
        );
    }
    assert!(fs::read(dir.join("data.bin")).unwrap() == fs::read(&original).unwrap());
    // Chunks fetched twice are at most those received but not yet stored at each kill (a
    // chunk received moments before a kill may also be missing from the log).
    let chunks = chunk_count(size) as usize;
    assert!(
        total_received <= chunks + 4 * 8,
        "{total_received} chunks received for {chunks}: kept chunks were fetched again"
    );
}

/// Reads one frame's JSON header (the body, if any, is skipped).
fn read_header(s: &mut std::net::TcpStream) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).ok()?;
    let hlen = u32::from_be_bytes(frame[..4].try_into().ok()?) as usize;
    serde_json::from_slice(&frame[4..4 + hlen]).ok()
}

#[test]
fn a_neighbour_sending_bad_chunks_is_logged_dropped_and_avoided() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("data.bin");
    random_file(&original, 1 << 20, 13);
    let manifest = ringswarm::manifest::Manifest::from_file(
        &original,
        ringswarm::manifest::DEFAULT_CHUNK_SIZE,
    )
    .unwrap();
    let count = manifest.chunk_count();
    let manifest_json = serde_json::to_vec(&manifest).unwrap();
    // A slow owner, so the peer is still fetching when the liar's chunks come.
    let (_owner, port) = start_owner(root, &original, &args!["--upload-limit", "400KiB"]);

    // A neighbour that lies: first a chunk shorter than it declares, then chunks of the right
    // length with the wrong bytes.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // The peer reaches it through a relay that runs the handshake, so the lies arrive sealed.
    let fake_port = crate::util::seal::server_side(fake.local_addr().unwrap());
    // It accepts every connection until told to stop (after the peer exited) and counts them,
    // so a reconnect it should not get makes the test fail, not hang.
    fake.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let liar = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut connections = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut s = match fake.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                let n = connections;
                connections += 1;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                let Some(hello) = read_header(&mut s) else {
                    continue;
                };
                assert_eq!(hello["role"], "neighbour");
                let welcome = serde_json::json!({"type": "welcome", "assigned": [], "len": manifest_json.len()});
                if s.write_all(&frame(welcome.to_string().as_bytes(), &manifest_json))
                    .is_err()
                {
                    continue;
                }
                let have = serde_json::json!({"type": "have", "chunks": [[0, count - 1]]});
                let _ = s.write_all(&json_frame(have));
                let mut answered = 0;
                while let Some(msg) = read_header(&mut s) {
                    if msg["type"] != "request" {
                        continue;
                    }
                    let chunk = msg["chunk"].as_u64().unwrap();
                    let header =
                        serde_json::json!({"type": "chunk", "chunk": chunk, "len": 102_400});
                    let body = if n == 0 {
                        vec![7u8; 10]
                    } else {
                        vec![7u8; 102_400]
                    };
                    if s.write_all(&frame(header.to_string().as_bytes(), &body))
                        .is_err()
                    {
                        break;
                    }
                    answered += 1;
                    if answered == 3 {
                        break;
                    }
                }
                // Keep the connection until the peer closes it.
                while read_header(&mut s).is_some() {}
            }
            connections
        })
    };

    let dir = root.join("peer");
    let args = args![
        port,
        0,
        fake_port,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display(),
        "--timeout",
        30,
        "--linger",
        0
    ];
    let mut peer = Proc::spawn("peer", PEER, &args, root, root);
    assert!(peer.wait_exit(WAIT).success(), "{}", peer.describe());
    assert!(fs::read(dir.join("data.bin")).unwrap() == fs::read(&original).unwrap());
    let log = peer.stderr_text();
    let liar_label = format!("127.0.0.1:{fake_port}");
    for needle in [
        "chunk message declares 102400 body bytes but carries 10".to_string(),
        format!("3 bad chunks from {liar_label}; disconnecting; avoiding it for 30s"),
    ] {
        assert!(
            log.contains(&needle),
            "no {needle:?} in the log\n{}",
            peer.describe()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let connections = liar.join().expect("the liar's thread panicked");
    assert_eq!(
        connections,
        2,
        "the peer connected to the liar {connections} times, not twice: it was not avoided after its bad chunks\n{}",
        peer.describe()
    );
}
