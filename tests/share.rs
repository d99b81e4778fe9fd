//! `peer share` and `file-owner --tracker`: every peer a publisher, a directory with no files
//! of its own, with the real binaries.

use std::path::{Path, PathBuf};

use ringswarm::events::EventKind;

use crate::args;
use crate::util::{
    OWNER, PEER, Proc, WAIT, assert_get_refused, chunk_count, random_file, read_events_so_far,
    wait_until,
};

/// Starts `file-owner 0 --tracker` on loopback in `root/tracker`; returns it and its port.
fn start_tracker(root: &Path) -> (Proc, u16) {
    let args = args!["0", "--tracker", "--bind", "127.0.0.1", "--peer-ttl", 3];
    let mut p = Proc::spawn("tracker", OWNER, &args, &root.join("tracker"), root);
    let port = p.listening_port();
    (p, port)
}

/// Starts `peer share TRACKER PATHS…` in `root/NAME`, and waits until every file is
/// published; returns it and its tickets.
fn start_share(root: &Path, name: &str, tracker: u16, paths: &[&Path]) -> (Proc, Vec<String>) {
    start_share_with(root, name, tracker, paths, &[])
}

/// [`start_share`] with more options.
fn start_share_with(
    root: &Path,
    name: &str,
    tracker: u16,
    paths: &[&Path],
    extra: &[String],
) -> (Proc, Vec<String>) {
    let mut args = args!["share", tracker, "--bind", "127.0.0.1"];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(name, PEER, &args, &root.join(name), root);
    let mut tickets = Vec::new();
    assert!(
        wait_until(WAIT, || {
            tickets = p
                .stdout_text()
                .lines()
                .filter_map(|l| l.strip_prefix("ticket: ").map(str::to_string))
                .collect();
            tickets.len() == paths.iter().map(|p| files_in(p)).sum::<usize>()
                || p.try_status().is_some()
        }),
        "{}",
        p.describe()
    );
    (p, tickets)
}

fn files_in(p: &Path) -> usize {
    if p.is_dir() {
        std::fs::read_dir(p).unwrap().count()
    } else {
        1
    }
}

/// `peer list TRACKER --json`: the files, as (id, name, hash, complete sources).
fn list(root: &Path, tracker: u16) -> Vec<(u64, String, String, u64)> {
    let mut p = Proc::spawn("list", PEER, &args!["list", tracker, "--json"], root, root);
    assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
    let v: serde_json::Value = serde_json::from_str(&p.stdout_text()).unwrap();
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_u64().unwrap(),
                f["name"].as_str().unwrap().to_string(),
                f["hash"].as_str().unwrap().to_string(),
                f["complete_sources"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Runs `peer get ARGS…` in `root/NAME` until it completes, then stops it.
fn get(root: &Path, name: &str, what: &[String]) -> Proc {
    let dir = root.join(name);
    let mut args = args!["get"];
    args.extend_from_slice(what);
    args.extend(args!["--bind", "127.0.0.1", "--dir", dir.display()]);
    let mut p = Proc::spawn(name, PEER, &args, &dir, root);
    p.wait_line("complete: ");
    p.interrupt();
    assert_eq!(p.wait_exit(WAIT).code(), Some(130), "{}", p.describe());
    p
}

/// A tracker holds no files; a peer shares a folder of two; both are listed with the
/// publisher as their one complete source; getters fetch them by name and by ticket,
/// byte-identical. A file added to the folder is published, a removed one withdrawn. A
/// second publisher of the same content adds a source to the same file; a
/// different content under the same name is another file. When the publishers stop, their
/// files leave the listing, and a getter is told why.
#[test]
fn a_tracker_lists_what_peers_share_and_getters_fetch_it_from_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let (a, b) = (share.join("a.bin"), share.join("b.bin"));
    random_file(&a, 2 << 20, 61);
    random_file(&b, 300_000, 62);
    let (_tracker, port) = start_tracker(root);
    assert!(
        list(root, port).is_empty(),
        "a tracker has no files of its own"
    );

    let (mut publisher, tickets) = start_share(root, "pub", port, &[&share]);
    let files = list(root, port);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().all(|f| f.3 == 1),
        "the publisher is each file's one complete source: {files:?}"
    );

    let g1 = get(root, "g1", &args![port, "a.bin"]);
    assert_eq!(
        std::fs::read(root.join("g1/a.bin")).unwrap(),
        std::fs::read(&a).unwrap(),
        "{}",
        g1.describe()
    );
    let ticket_b = tickets.iter().find(|t| t.contains("name=b.bin")).unwrap();
    let g2 = get(root, "g2", std::slice::from_ref(ticket_b));
    assert_eq!(
        std::fs::read(root.join("g2/b.bin")).unwrap(),
        std::fs::read(&b).unwrap(),
        "{}",
        g2.describe()
    );

    // The shared folder changes while it runs: a new file is published, a removed one is
    // withdrawn, within a few rescans.
    let c = share.join("c.bin");
    random_file(&c, 50_000, 64);
    std::fs::remove_file(&b).unwrap();
    let names = |files: &[(u64, String, String, u64)]| {
        files.iter().map(|f| f.1.clone()).collect::<Vec<_>>()
    };
    assert!(
        wait_until(WAIT, || names(&list(root, port)) == ["a.bin", "c.bin"]),
        "{:?}",
        list(root, port)
    );
    publisher.wait_line("withdrew b.bin (removed or changed)");
    let g3 = get(root, "g3", &args![port, "c.bin"]);
    assert_eq!(
        std::fs::read(root.join("g3/c.bin")).unwrap(),
        std::fs::read(&c).unwrap(),
        "{}",
        g3.describe()
    );

    // The same content from a second publisher: one file, two complete sources.
    let copy = root.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(&a, copy.join("a.bin")).unwrap();
    let (mut second, _) = start_share(root, "pub2", port, &[&copy.join("a.bin")]);
    let files = list(root, port);
    let a_entries: Vec<_> = files.iter().filter(|f| f.1 == "a.bin").collect();
    assert_eq!(a_entries.len(), 1, "{files:?}");
    assert_eq!(
        a_entries[0].3, 2,
        "two publishers of one content: {files:?}"
    );

    // Another content under the same name: another file, with its own id.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    random_file(&other.join("a.bin"), 1000, 63);
    let (mut third, _) = start_share(root, "pub3", port, &[&other.join("a.bin")]);
    let files = list(root, port);
    let ids: Vec<u64> = files
        .iter()
        .filter(|f| f.1 == "a.bin")
        .map(|f| f.0)
        .collect();
    assert_eq!(ids.len(), 2, "two contents named a.bin: {files:?}");
    assert_ne!(ids[0], ids[1]);
    // Asked for by that name, the directory says how to choose.
    let why = format!("2 files are named \"a.bin\" (ids {}, {})", ids[0], ids[1]);
    assert_get_refused(root, "which", &args![port, "a.bin"], &why);

    // Every publisher stops (Ctrl+C): their files leave the listing.
    for p in [&mut publisher, &mut second, &mut third] {
        p.interrupt();
        assert_eq!(p.wait_exit(WAIT).code(), Some(130), "{}", p.describe());
    }
    assert!(
        wait_until(WAIT, || list(root, port).is_empty()),
        "{:?}",
        list(root, port)
    );
    let why = "every publisher of \"b.bin\" has left";
    assert_get_refused(root, "late", &args![port, "b.bin", "--timeout", 5], why);
}

/// The publisher's mistakes get clear answers: a missing file, a tracker given a PATH.
/// Starts `peer join TRACKER data.bin` in `root/NAME`, its events in `root/NAME.jsonl`.
fn join(root: &Path, name: &str, tracker: u16) -> (Proc, PathBuf) {
    crate::join::join(root, name, tracker, &[])
}

/// A ring of a published file assembles itself at the tracker, which holds none of it: each
/// member is told the publisher, is handed its subset there (⌈chunks / 4⌉ with `--peers 4`)
/// and fetches it from the publisher, and the ring passes the rest; all four complete,
/// byte-identical. Once the publisher has left, a new member is told why it cannot join.
#[test]
fn a_ring_of_a_published_file_is_handed_out_by_its_publisher() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let original = share.join("data.bin");
    random_file(&original, 2 << 20, 63);
    let (_tracker, port) = start_tracker(root);
    let extra = args!["--peers", 4, "--upload-limit", "1MiB"];
    let (mut publisher, _) = start_share_with(root, "pub", port, &[&original], &extra);
    let publisher_port = publisher.listening_port();
    let publisher_addr = format!("127.0.0.1:{publisher_port}");
    let mut ring = Vec::new();
    for i in 0..4 {
        let name = format!("m{i}");
        let (mut p, ev) = join(root, &name, port);
        p.wait_line("listening on ");
        ring.push((name, p, ev));
    }
    let share_of = chunk_count(2 << 20).div_ceil(4);
    for (name, p, ev) in &mut ring {
        crate::join::assert_complete(root, name, p, &original);
        let events = read_events_so_far(ev);
        let hand_out = events.iter().find(|e| {
            e.event == EventKind::IdListReceived
                && e.neighbour == publisher_addr
                && e.count == Some(share_of)
        });
        assert!(
            hand_out.is_some(),
            "{name} was handed {share_of} chunks by the publisher {publisher_addr}: {}",
            p.describe()
        );
        assert!(
            p.wait_log(&format!("names publisher {publisher_addr}")),
            "{}",
            p.describe()
        );
    }
    for (_, p, _) in &mut ring {
        p.interrupt();
        p.wait_exit(WAIT);
    }
    publisher.interrupt();
    assert_eq!(publisher.wait_exit(WAIT).code(), Some(130));
    assert!(wait_until(WAIT, || list(root, port).is_empty()));
    let (mut late, _) = join(root, "late", port);
    assert_eq!(late.wait_exit(WAIT).code(), Some(1), "{}", late.describe());
    assert!(
        late.stderr_text()
            .contains("every publisher of \"data.bin\" has left"),
        "{}",
        late.describe()
    );
}

/// Three `peer join`s of `data.bin` at the tracker, `m0`…`m2`, each listening before the next
/// starts (so they join in that order).
fn join_three(root: &Path, tracker: u16) -> Vec<(String, Proc, PathBuf)> {
    (0..3)
        .map(|i| {
            let name = format!("m{i}");
            let (mut p, ev) = join(root, &name, tracker);
            p.wait_line("listening on ");
            (name, p, ev)
        })
        .collect()
}

/// `root/a/data.bin`, 2 MiB of random bytes from `seed`, and a copy of it in
/// `root/b/data.bin`: one content for two publishers.
fn two_copies(root: &Path, seed: u64) -> (PathBuf, PathBuf) {
    let original = root.join("a").join("data.bin");
    std::fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, 2 << 20, seed);
    let copy = root.join("b").join("data.bin");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&original, &copy).unwrap();
    (original, copy)
}

/// Two publishers of one file, and the first lies: its copy was overwritten after it was
/// hashed (same size, same modification time, so it is still served), and every chunk it
/// sends fails its hash. The ring is sent to it first; its members leave it after three bad
/// chunks each and report it, the tracker demotes it once two of them did, and every member
/// is told the honest publisher and completes from it, byte-identical.
#[test]
fn a_ring_moves_off_a_publisher_that_serves_bad_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (original, lie) = two_copies(root, 65);
    let (mut tracker, port) = start_tracker(root);
    let three = args!["--peers", 3];
    let (mut liar, _) = start_share_with(root, "liar", port, &[&lie], &three);
    let liar_addr = format!("127.0.0.1:{}", liar.listening_port());
    // Overwrite the liar's copy in place, then put its modification time back.
    let stamp = std::fs::metadata(&lie).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&lie).unwrap();
    for b in &mut bytes {
        *b = !*b;
    }
    std::fs::write(&lie, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&lie).unwrap();
    file.set_modified(stamp).unwrap();
    drop(file);
    let (mut honest, _) = start_share_with(root, "honest", port, &[&original], &three);
    let honest_addr = format!("127.0.0.1:{}", honest.listening_port());
    let mut ring = join_three(root, port);
    for (name, p, _) in &mut ring {
        crate::join::assert_complete(root, name, p, &original);
        assert!(
            p.wait_log(&format!("names publisher {honest_addr}")),
            "{name} was sent to the honest publisher: {}",
            p.describe()
        );
    }
    assert!(
        tracker.wait_log(&format!(
            "publisher {liar_addr} of data.bin sent bad chunks to"
        )),
        "{}",
        tracker.describe()
    );
    assert!(
        ring.iter_mut().any(
            |(_, p, _)| p.wait_log(&format!("publisher {liar_addr} sent bad chunks; reported"))
        ),
        "no member reported the liar"
    );
    for (_, p, _) in &mut ring {
        p.interrupt();
        p.wait_exit(WAIT);
    }
    for p in [&mut liar, &mut honest] {
        p.interrupt();
        p.wait_exit(WAIT);
    }
}

/// Two publishers of one file: its ring is sent to the first, and when that one is SIGKILLed
/// mid-transfer every member is told the second (`publisher`) and completes from it and the
/// ring, byte-identical.
#[test]
fn a_published_ring_moves_to_the_next_publisher_when_its_publisher_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (original, copy) = two_copies(root, 64);
    let (_tracker, port) = start_tracker(root);
    // The first is slow: the ring cannot be done before it dies.
    let slow = args!["--peers", 3, "--upload-limit", "128KiB"];
    let (mut first, _) = start_share_with(root, "pub1", port, &[&original], &slow);
    let (mut second, _) = start_share_with(root, "pub2", port, &[&copy], &args!["--peers", 3]);
    let second_addr = format!("127.0.0.1:{}", second.listening_port());
    let mut ring = join_three(root, port);
    let (_, m0, ev0) = &ring[0];
    assert!(
        wait_until(WAIT, || read_events_so_far(ev0)
            .iter()
            .any(|e| e.event == EventKind::ChunkReceived)),
        "{}",
        m0.describe()
    );
    first.kill();
    for (name, p, _) in &mut ring {
        crate::join::assert_complete(root, name, p, &original);
        assert!(
            p.wait_log(&format!("names publisher {second_addr}")),
            "{name} was sent to the second publisher: {}",
            p.describe()
        );
    }
    for (_, p, _) in &mut ring {
        p.interrupt();
        p.wait_exit(WAIT);
    }
    second.interrupt();
    second.wait_exit(WAIT);
}

#[test]
fn share_and_tracker_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let missing = root.join("nothing-here.bin");
    let mut p = Proc::spawn(
        "share",
        PEER,
        &args!["share", 1, missing.display(), "--bind", "127.0.0.1"],
        root,
        root,
    );
    assert_eq!(p.wait_exit(WAIT).code(), Some(1), "{}", p.describe());
    assert!(
        p.stderr_text().contains("cannot share") && p.stderr_text().contains("nothing-here.bin"),
        "{}",
        p.describe()
    );
    let mut p = Proc::spawn(
        "tracker",
        OWNER,
        &args![0, "--tracker", "x.bin"],
        root,
        root,
    );
    assert_eq!(p.wait_exit(WAIT).code(), Some(2), "{}", p.describe());
    assert!(p.stderr_text().contains("--tracker"), "{}", p.describe());
}
