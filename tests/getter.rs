//! `peer get`: multi-source downloads from the owner and other getters, rarest first, with
//! the real binaries. Fall-over when a source stops and choking are tested in process, in
//! virtual time, in tests/engine.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use ringswarm::chunkset::Ranges;
use ringswarm::events::{Event, EventKind};
use ringswarm::protocol::{Message, MessageCodec, PROTOCOL_VERSION, Role};
use tokio_util::codec::Encoder;

use crate::args;
use crate::util::{
    PEER, Proc, WAIT, assert_get_refused, chunk_count, get_args, random_file, read_events_so_far,
    start_owner, wait_until,
};

/// Starts `peer get OWNER FILE` in `root/NAME`, logging events to `root/NAME.jsonl`.
fn start_getter(root: &Path, name: &str, owner: u16, file: &str, extra: &[String]) -> Proc {
    let dir = root.join(name);
    let mut args = get_args(owner, file, &dir, extra);
    args.extend(args!["--events", events_path(root, name).display()]);
    Proc::spawn(name, PEER, &args, &dir, root)
}

fn events_path(root: &Path, name: &str) -> PathBuf {
    root.join(format!("{name}.jsonl"))
}

/// Chunks received per source address.
fn received_from(events: &[Event]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.event == EventKind::ChunkReceived)
    {
        *by.entry(e.neighbour.clone()).or_insert(0) += 1;
    }
    by
}

fn assert_same_file(got: &Path, original: &Path, who: &Proc) {
    let (a, b) = (std::fs::read(got), std::fs::read(original).unwrap());
    assert!(
        a.as_ref().is_ok_and(|a| *a == b),
        "{} differs from the original\n{}",
        got.display(),
        who.describe()
    );
}

#[test]
fn three_getters_fetch_from_the_seeder_and_from_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let original = share.join("data.bin");
    let size = 20 << 20;
    random_file(&original, size, 41);
    // Alone at 8 MiB/s the owner would need 7.5 s for three copies: the getters must share.
    let (_owner, port) = start_owner(root, &original, &args!["--upload-limit", "8MiB"]);
    let mut getters: Vec<Proc> = (1..=3)
        .map(|i| start_getter(root, &format!("g{i}"), port, "data.bin", &[]))
        .collect();
    for g in &mut getters {
        g.wait_line("complete: ");
    }
    // Every getter serves until Ctrl+C, which ends it with 130.
    for g in &getters {
        g.interrupt();
    }
    for g in &mut getters {
        assert_eq!(g.wait_exit(WAIT).code(), Some(130), "{}", g.describe());
    }
    let owner_label = format!("127.0.0.1:{port}");
    let chunks = chunk_count(size);
    let mut most_peers = 0;
    for (i, g) in getters.iter().enumerate() {
        let name = format!("g{}", i + 1);
        assert_same_file(&root.join(&name).join("data.bin"), &original, g);
        let events = read_events_so_far(&events_path(root, &name));
        let from = received_from(&events);
        assert_eq!(
            from.values().sum::<usize>(),
            chunks as usize,
            "{name}: {from:?}"
        );
        let peers = from.keys().filter(|a| **a != owner_label).count();
        most_peers = most_peers.max(peers);
        // Every verified chunk was registered with the directory.
        let registered: u32 = events
            .iter()
            .filter(|e| e.event == EventKind::ChunkRegistered)
            .filter_map(|e| e.count)
            .sum();
        assert_eq!(registered, chunks, "{name} registered {registered} chunks");
        for kind in [EventKind::Interested, EventKind::Unchoke] {
            assert!(
                events.iter().any(|e| e.event == kind),
                "{name}: no {kind:?} event"
            );
        }
    }
    assert!(
        most_peers >= 2,
        "no getter received chunks from two other getters"
    );
}

/// Sends `msg` framed on `stream`.
fn send(stream: &mut TcpStream, msg: Message) {
    let mut buf = BytesMut::new();
    MessageCodec::new(0).encode(msg, &mut buf).unwrap();
    stream.write_all(&buf).unwrap();
}

/// A fake source: registered with the owner as holding `have`, listening (but never
/// serving) on its own port. Dropping it unregisters it.
struct FakeSource {
    _listener: TcpListener,
    _session: TcpStream,
}

fn fake_source(owner: u16, file: &str, have: Ranges) -> FakeSource {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut session = TcpStream::connect(crate::util::seal::sealed_port(owner)).unwrap();
    send(
        &mut session,
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Getter,
            file: Some(file.into()),
            have,
            port: Some(port),
            node: None,
        },
    );
    // The welcome's first bytes: the owner took the hello.
    let mut len = [0u8; 4];
    session.read_exact(&mut len).unwrap();
    FakeSource {
        _listener: listener,
        _session: session,
    }
}

#[test]
fn the_rarest_chunk_is_requested_first() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("data.bin");
    let size = 3_000_000; // 30 chunks
    random_file(&original, size, 43);
    let (_owner, port) = start_owner(root, &original, &[]);
    // Two sources hold every chunk but 17: chunk 17 is on the owner alone, the rarest.
    let rare = 17;
    let most = Ranges(vec![[0, rare - 1], [rare + 1, chunk_count(size) - 1]]);
    let _fakes: Vec<FakeSource> = (0..2)
        .map(|_| fake_source(port, "data.bin", most.clone()))
        .collect();
    let sources = || {
        let out = std::process::Command::new(PEER)
            .args(args!["locate", port, "1", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["sources"].as_array().map_or(0, Vec::len)
    };
    assert!(wait_until(WAIT, || sources() == 3), "fakes not registered");
    // One source at a time: the owner, which holds everything. Only rarity decides.
    let mut g = start_getter(root, "g", port, "1", &args!["--max-sources", 1]);
    g.wait_line("complete: ");
    assert_same_file(&root.join("g").join("data.bin"), &original, &g);
    // The event log is flushed every 100 ms: wait for all of it.
    let mut events = Vec::new();
    wait_until(WAIT, || {
        events = read_events_so_far(&events_path(root, "g"));
        received_from(&events).values().sum::<usize>() == chunk_count(size) as usize
    });
    let requested: Vec<u32> = events
        .iter()
        .filter(|e| e.event == EventKind::ChunkRequested)
        .filter_map(|e| e.chunk)
        .collect();
    assert_eq!(
        requested.first(),
        Some(&rare),
        "first requests: {:?}",
        &requested[..requested.len().min(8)]
    );
    let all: BTreeSet<u32> = requested.iter().copied().collect();
    assert_eq!(all.len(), chunk_count(size) as usize);
    g.interrupt();
    g.wait_exit(WAIT);
}

/// `peer locate OWNER FILE --json`, parsed.
fn locate_json(owner: u16, file: &str) -> serde_json::Value {
    let out = std::process::Command::new(PEER)
        .args(args!["locate", owner, file, "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_restarted_owner_learns_its_sources_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("data.bin");
    random_file(&original, 1_000_000, 44);
    let (mut owner, port) = start_owner(root, &original, &args!["--peer-ttl", 3]);
    let mut g = start_getter(root, "g", port, "data.bin", &[]);
    let g_label = format!("127.0.0.1:{}", g.listening_port());
    g.wait_line("complete: ");
    let holds_all = |v: &serde_json::Value| {
        v["sources"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["addr"] == g_label.as_str() && s["complete"] == true)
        })
    };
    assert!(wait_until(WAIT, || holds_all(&locate_json(
        port, "data.bin"
    ))));
    owner.kill();
    // The port is held (refusing connections, as a dead owner's would) until the restart.
    let mut hold = crate::util::Reserved::again(port);
    // A new owner on the same port knows nothing until the getter reconnects and says hello
    // with everything it holds.
    hold.release();
    let mut owner2 =
        crate::util::start_owner_on(root, "owner2", port, &original, &args!["--peer-ttl", 3]);
    owner2.wait_line("listening on ");
    assert!(
        wait_until(WAIT, || holds_all(&locate_json(port, "data.bin"))),
        "the restarted owner never listed {g_label}\n{}",
        owner2.describe()
    );
    g.interrupt();
    g.wait_exit(WAIT);
}

/// The owner prints a ticket for each file it shares; `peer get TICKET` fetches that file,
/// asked for by its hash, and checks the content against it. A ticket whose hash the owner
/// does not serve gets the owner's answer naming the hash; a malformed ticket, or a ticket
/// with a FILE too, is a usage error.
#[test]
fn a_ticket_fetches_the_file_it_pins() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let (a, b) = (share.join("a b.bin"), share.join("other.bin"));
    random_file(&a, 1 << 20, 51);
    random_file(&b, 1 << 20, 52);
    let (mut owner, port) = start_owner(root, &share, &[]);
    let ticket = owner.wait_line("ticket: ringswarm://127.0.0.1:");
    let ticket = ticket.strip_prefix("ticket: ").unwrap().to_string();
    assert!(
        ticket.contains(&format!("127.0.0.1:{port}/"))
            && ticket.contains("?name=a%20b.bin&size=1048576"),
        "{ticket}"
    );

    let dir = root.join("g");
    let args = args![
        "get",
        ticket.clone(),
        "--port",
        0,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display()
    ];
    let mut g = Proc::spawn("g", PEER, &args, &dir, root);
    g.wait_line("complete: ");
    g.interrupt();
    assert_eq!(g.wait_exit(WAIT).code(), Some(130), "{}", g.describe());
    assert_same_file(&dir.join("a b.bin"), &a, &g);

    // The same ticket with another hash: nothing to fetch, and the answer says why.
    let hash = ticket.split('/').nth(3).unwrap().split('?').next().unwrap();
    let unknown = ticket.replace(hash, &"0".repeat(64));
    let why = format!("owner shares no file with blake3 {}", "0".repeat(64));
    assert_get_refused(root, "u", &[unknown], &why);

    for (bad, why) in [
        (
            args!["get", "ringswarm://127.0.0.1:1/xyz?name=a&size=1"],
            "invalid ticket: ",
        ),
        (
            args!["get", ticket.clone(), "a b.bin"],
            "a ticket names its file",
        ),
        (args!["get", port], "FILE is missing"),
    ] {
        let mut p = Proc::spawn("bad", PEER, &bad, root, root);
        assert_eq!(p.wait_exit(WAIT).code(), Some(2), "{}", p.describe());
        assert!(p.stderr_text().contains(why), "{why}: {}", p.describe());
    }
}
