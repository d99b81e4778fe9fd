//! `peer join`: a ring that assembles itself through the directory, and re-stitches itself
//! when a member dies, with the real binaries.

use std::path::{Path, PathBuf};

use ringswarm::events::EventKind;

use crate::args;
use crate::util::{
    PEER, Proc, WAIT, chunk_count, random_file, read_events_so_far, start_owner, wait_until,
};

/// Starts `peer join OWNER FILE` in `root/NAME`, its events in `root/NAME.jsonl`.
pub fn join(root: &Path, name: &str, owner: u16, extra: &[String]) -> (Proc, PathBuf) {
    let dir = root.join(name);
    let events = root.join(format!("{name}.jsonl"));
    let mut args = args![
        "join",
        owner,
        "data.bin",
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display(),
        "--events",
        events.display()
    ];
    args.extend_from_slice(extra);
    (Proc::spawn(name, PEER, &args, &dir, root), events)
}

fn count(events: &Path, kind: EventKind) -> usize {
    read_events_so_far(events)
        .iter()
        .filter(|e| e.event == kind)
        .count()
}

/// Six peers join, naming nothing but the owner and the file: each but the last is told its
/// new download neighbour when the next joins, and every one completes, byte-identical. Then, in a second ring, a member is SIGKILLed mid-transfer: the member
/// that downloaded from it is given the next one at once (`neighbour_changed`), and the
/// others complete.
#[test]
fn peers_join_a_ring_that_restitches_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("share").join("data.bin");
    std::fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, 3 << 20, 71);
    // At 512 KiB/s the owner needs 6 s for one copy, so no peer completes (and leaves the
    // ring) before the six have joined.
    let owner_args = args!["--peers", 6, "--upload-limit", "512KiB"];
    let (_owner, port) = start_owner(root, &original, &owner_args);
    let mut peers: Vec<(String, Proc, PathBuf)> = Vec::new();
    for i in 0..6 {
        let name = format!("p{i}");
        let (mut p, ev) = join(root, &name, port, &[]);
        // In the ring before the next one starts: the order they join is the order spawned.
        wait_joined(&mut p, &ev);
        // The one before was re-stitched to it.
        if let Some((_, before, before_ev)) = peers.last() {
            assert!(
                wait_until(WAIT, || count(before_ev, EventKind::NeighbourChanged) >= 1),
                "{} was not told its new neighbour {name}: {}",
                before.describe(),
                p.describe()
            );
        }
        peers.push((name, p, ev));
    }
    for (name, p, _) in &mut peers {
        assert_complete(root, name, p, &original);
    }
    for (_, p, _) in &mut peers {
        p.interrupt();
        p.wait_exit(WAIT);
    }

    // A second ring, slow enough to kill a member mid-transfer: at 256 KiB/s the owner needs
    // 12 s for one copy, so no member completes (and, with --linger 0, leaves) before the
    // four have joined, even on a loaded machine.
    let (_owner2, port2) = start_owner(
        &root.join("second"),
        &original,
        &args!["--peers", 4, "--upload-limit", "256KiB"],
    );
    let slow = args!["--upload-limit", "1MiB", "--linger", 0];
    let mut ring = Vec::new();
    for i in 0..4 {
        let name = format!("q{i}");
        let (mut p, ev) = join(root, &name, port2, &slow);
        wait_joined(&mut p, &ev);
        // The one before was told it downloads from this one now.
        assert!(
            wait_until(WAIT, || i == 0
                || count(&ring_events(&ring, i - 1), EventKind::NeighbourChanged)
                    >= 1),
            "{}",
            p.describe()
        );
        ring.push((name, p, ev));
    }
    // q1 dies once it holds a few chunks; q0 downloaded from it.
    let before = count(&ring[0].2, EventKind::NeighbourChanged);
    assert!(
        wait_until(WAIT, || count(&ring[1].2, EventKind::ChunkReceived) >= 5),
        "{}",
        ring[1].1.describe()
    );
    ring[1].1.kill();
    assert!(
        wait_until(WAIT, || count(&ring[0].2, EventKind::NeighbourChanged)
            > before),
        "q0 was not re-stitched after q1 died: {}",
        ring[0].1.describe()
    );
    for i in [0, 2, 3] {
        let (name, p, _) = &mut ring[i];
        assert_complete(root, name, p, &original);
    }
}

/// Waits until joiner `p` (its events in `events`) is in the ring: it has the owner's
/// welcome, whose hand-out is its first chunk-ID list. (Its `listening on` line comes before
/// it even asks, so a joiner started next could otherwise join first.)
fn wait_joined(p: &mut Proc, events: &Path) {
    assert!(
        wait_until(WAIT, || count(events, EventKind::IdListReceived) >= 1
            || p.try_status().is_some()),
        "{}",
        p.describe()
    );
    assert!(p.try_status().is_none(), "{}", p.describe());
}

/// Waits for `p` (in `root/NAME`) to complete, and checks its copy.
pub fn assert_complete(root: &Path, name: &str, p: &mut Proc, original: &Path) {
    p.wait_line("complete: ");
    assert_eq!(
        std::fs::read(root.join(name).join("data.bin")).unwrap(),
        std::fs::read(original).unwrap(),
        "{}",
        p.describe()
    );
}

fn ring_events(ring: &[(String, Proc, PathBuf)], i: usize) -> PathBuf {
    ring[i].2.clone()
}

/// The test: 40 peers join in a seeded random order; 3 of them, chosen at random,
/// are SIGKILLed once each holds a random number of chunks, mid-transfer. The 37 others
/// complete, byte-identical, and the member that downloaded from each dead one was told its
/// new neighbour after the death (`neighbour_changed`). Prints the wall time and each
/// re-stitch's latency (the neighbour_changed event after the kill).
#[test]
fn forty_joiners_complete_with_three_killed() {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("share").join("data.bin");
    std::fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, 4 << 20, 81);
    let started = std::time::Instant::now();
    let owner_args = args!["--peers", 40, "--upload-limit", "4MiB"];
    let (_owner, port) = start_owner(root, &original, &owner_args);
    let mut rng = rand::rngs::StdRng::seed_from_u64(40);
    let mut order: Vec<usize> = (0..40).collect();
    order.shuffle(&mut rng);
    let mut peers: Vec<Option<(String, Proc, PathBuf, u16)>> = (0..40).map(|_| None).collect();
    // The victims and their kill points are drawn first, and each victim is watched from its
    // start by a thread of its own: a victim neither waits for the others to be started nor
    // for another victim's kill, so it is killed while it still lacks chunks.
    let mut victims = order.clone();
    victims.shuffle(&mut rng);
    victims.truncate(3);
    let mut watchers = Vec::new();
    for &i in &order {
        let name = format!("r{i:02}");
        let (mut p, ev) = join(root, &name, port, &args!["--upload-limit", "2MiB"]);
        let listen = p.listening_port();
        if !victims.contains(&i) {
            peers[i] = Some((name, p, ev, listen));
            continue;
        }
        let at = rng.random_range(3..20usize);
        watchers.push((
            i,
            std::thread::spawn(move || {
                assert!(
                    wait_until(WAIT, || count(&ev, EventKind::ChunkReceived) >= at),
                    "{}",
                    p.describe()
                );
                // Who downloads from it now: the last to ask it for a chunk.
                let downstream = read_events_so_far(&ev)
                    .iter()
                    .rev()
                    .find(|e| e.event == EventKind::RequestReceived)
                    .map(|e| e.neighbour.clone());
                let killed_at = ringswarm::events::wall_clock();
                p.kill();
                let held = count(&ev, EventKind::ChunkReceived);
                ((name, p, ev, listen), downstream, killed_at, held)
            }),
        ));
    }
    let mut restitch = Vec::new();
    for (i, watcher) in watchers {
        let (victim, downstream, killed_at, held) = watcher
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        let all = chunk_count(4 << 20) as usize;
        assert!(
            held < all,
            "killed mid-transfer, not after: {held} of {all} chunks"
        );
        restitch.push((format!("127.0.0.1:{}", victim.3), downstream, killed_at));
        peers[i] = Some(victim);
    }
    for (i, slot) in peers.iter_mut().enumerate() {
        if victims.contains(&i) {
            continue;
        }
        let (name, p, _, _) = slot.as_mut().unwrap();
        assert_complete(root, name, p, &original);
    }
    let wall = started.elapsed();
    let by_label = |label: &str| {
        peers
            .iter()
            .flatten()
            .find(|(_, _, _, port)| label.ends_with(&format!(":{port}")))
            .map(|(_, _, ev, _)| ev.clone())
    };
    let mut latencies = Vec::new();
    for (victim, downstream, killed_at) in &restitch {
        let Some(down) = downstream else { continue };
        if restitch.iter().any(|(v, _, _)| v == down) {
            continue; // itself killed
        }
        let ev = by_label(down).expect("the downstream is one of the peers");
        let after: Vec<f64> = read_events_so_far(&ev)
            .iter()
            .filter(|e| e.event == EventKind::NeighbourChanged && e.ts >= *killed_at)
            .map(|e| e.ts - killed_at)
            .collect();
        assert!(
            !after.is_empty(),
            "{down}, which downloaded from {victim}, was not re-stitched after it died"
        );
        latencies.push(after[0]);
    }
    eprintln!(
        "40 joiners, 3 killed: the other 37 complete in {wall:?}; re-stitch latencies after each kill: {latencies:?} s"
    );
    for (i, slot) in peers.iter_mut().enumerate() {
        if let Some((_, p, _, _)) = slot.as_mut().filter(|_| !victims.contains(&i)) {
            p.interrupt();
        }
    }
}

/// A fixture: `root/share/data.bin` of `size` random bytes (from `seed`), shared by a
/// `file-owner` started with `extra`; the file and the owner's port.
fn owner_of_data(root: &Path, size: usize, seed: u64, extra: &[String]) -> (PathBuf, Proc, u16) {
    let original = root.join("share").join("data.bin");
    std::fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, size, seed);
    let (owner, port) = start_owner(root, &original, extra);
    (original, owner, port)
}

/// A squatter: a raw connection to the owner that says `hello` as a joiner of `data.bin`
/// serving on `squatted`, and waits for the first bytes of `welcome` (the owner registers a
/// joiner before it answers, so the address is held from then on).
fn squat(owner: u16, squatted: u16) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut squatter = std::net::TcpStream::connect(crate::util::seal::sealed_port(owner)).unwrap();
    squatter
        .write_all(&crate::util::json_frame(serde_json::json!({
            "type": "hello", "version": ringswarm::protocol::PROTOCOL_VERSION, "role": "joiner", "file": "data.bin",
            "have": [], "port": squatted
        })))
        .unwrap();
    let mut first = [0u8; 4];
    squatter.read_exact(&mut first).unwrap();
    squatter
}

/// A port squatter: another connection registered this joiner's `HOST:PORT` first. The
/// joiner says so (not that its port is not free), keeps trying instead of exiting, and joins
/// and completes once the squatter's connection is gone.
#[test]
fn a_joiner_whose_address_is_held_says_so_and_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (original, _owner, port) = owner_of_data(root, 1 << 20, 72, &[]);
    let mut reserved = crate::util::Reserved::new();
    let squatted = reserved.port;
    let squatter = squat(port, squatted);
    let (mut p, _) = join(root, "real", port, &args!["--port", reserved.release()]);
    let held = format!("another node holds 127.0.0.1:{squatted} in the directory");
    assert!(p.wait_log(&held), "{}", p.describe());
    assert!(
        p.try_status().is_none(),
        "it keeps trying: {}",
        p.describe()
    );
    assert!(
        !p.stderr_text().contains("needs its own port"),
        "{}",
        p.describe()
    );
    drop(squatter);
    assert_complete(root, "real", &mut p, &original);
}

/// A member that joins and never serves: it registered a port and its kernel accepts
/// connections there, but nothing answers. The joiner downloading from it reports it to the
/// directory (`source_lost`), which probes it, finds no answer, and re-stitches the ring
/// around it: that joiner is told the next member and both complete, byte-identical.
#[test]
fn a_member_that_never_serves_is_stitched_out_of_the_ring() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // At 256 KiB/s the owner needs 8 s for one copy: the ring must work for it.
    let slow = args!["--peers", 3, "--upload-limit", "256KiB"];
    let (original, mut owner, port) = owner_of_data(root, 2 << 20, 73, &slow);
    // The silent member: a listening socket nobody accepts from (the kernel completes the
    // connection; no byte ever comes back).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let squatter = squat(port, silent_port);
    // a joins: a downloads from the silent member (the ring's first); then b: a downloads
    // from b, and b from the silent member.
    let (mut a, a_ev) = join(root, "a", port, &[]);
    wait_joined(&mut a, &a_ev);
    let (mut b, b_ev) = join(root, "b", port, &[]);
    wait_joined(&mut b, &b_ev);
    let joined = std::time::Instant::now();
    let a_addr = format!("127.0.0.1:{}", a.listening_port());
    let reported = format!("download neighbour 127.0.0.1:{silent_port} has not served");
    assert!(b.wait_log(&reported), "{}", b.describe());
    let restitched = || {
        read_events_so_far(&b_ev)
            .iter()
            .any(|e| e.event == EventKind::NeighbourChanged && e.neighbour == a_addr)
    };
    assert!(
        wait_until(WAIT, restitched),
        "b was not given a ({a_addr}) as its neighbour: {}",
        b.describe()
    );
    eprintln!(
        "re-stitched around the silent member {:?} after b joined",
        joined.elapsed()
    );
    assert!(
        owner.wait_log(&format!(
            "127.0.0.1:{silent_port} reported lost and unreachable"
        )),
        "{}",
        owner.describe()
    );
    assert_complete(root, "a", &mut a, &original);
    assert_complete(root, "b", &mut b, &original);
    drop((squatter, silent));
}
