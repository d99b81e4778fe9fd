//! `peer join`: a ring that assembles itself through the directory, and re-stitches itself
//! when a member dies, with the real binaries.

use std::path::{Path, PathBuf};

use ringswarm::events::EventKind;

use crate::args;
use crate::util::{PEER, Proc, WAIT, random_file, read_events_so_far, start_owner, wait_until};

/// Starts `peer join OWNER FILE` in `root/NAME`, its events in `root/NAME.jsonl`.
fn join(root: &Path, name: &str, owner: u16, extra: &[String]) -> (Proc, PathBuf) {
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

/// Six peers join, naming nothing but the owner and the file: every one completes,
/// byte-identical, and each but the last to join was told a new download neighbour when the
/// next joined. Then, in a second ring, a member is SIGKILLed mid-transfer: the member
/// that downloaded from it is given the next one at once (`neighbour_changed`), and the
/// others complete.
#[test]
fn peers_join_a_ring_that_restitches_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("share").join("data.bin");
    std::fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, 3 << 20, 71);
    let (_owner, port) = start_owner(root, &original, &args!["--peers", 6]);
    let mut peers = Vec::new();
    for i in 0..6 {
        let name = format!("p{i}");
        let (mut p, ev) = join(root, &name, port, &[]);
        p.wait_line("listening on ");
        peers.push((name, p, ev));
    }
    for (name, p, _) in &mut peers {
        p.wait_line("complete: ");
        assert_eq!(
            std::fs::read(root.join(name.as_str()).join("data.bin")).unwrap(),
            std::fs::read(&original).unwrap(),
            "{}",
            p.describe()
        );
    }
    let changed: Vec<usize> = peers
        .iter()
        .map(|(_, _, ev)| count(ev, EventKind::NeighbourChanged))
        .collect();
    // Whatever order the owner saw the joins in, every member but the last to join was
    // re-stitched when the next one joined after it.
    assert!(
        changed.iter().filter(|&&c| c >= 1).count() >= 5,
        "each member but the last was re-stitched when the next joined: {changed:?}"
    );
    for (_, p, _) in &mut peers {
        p.interrupt();
        p.wait_exit(WAIT);
    }

    // A second ring, slow enough to kill a member mid-transfer.
    let (_owner2, port2) = start_owner(
        &root.join("second"),
        &original,
        &args!["--peers", 4, "--upload-limit", "2MiB"],
    );
    let slow = args!["--upload-limit", "1MiB", "--linger", 0];
    let mut ring = Vec::new();
    for i in 0..4 {
        let name = format!("q{i}");
        let (mut p, ev) = join(root, &name, port2, &slow);
        p.wait_line("listening on ");
        // In the ring (and told so) before the next joins.
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
        p.wait_line("complete: ");
        assert_eq!(
            std::fs::read(root.join(name.as_str()).join("data.bin")).unwrap(),
            std::fs::read(&original).unwrap(),
            "{}",
            p.describe()
        );
    }
}

fn ring_events(ring: &[(String, Proc, PathBuf)], i: usize) -> PathBuf {
    ring[i].2.clone()
}
