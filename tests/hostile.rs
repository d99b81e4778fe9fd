//! Regression tests of issue 9's hostile-input fixes: bad chunk ranges, `peer get` of a
//! small file, a self-contradicting manifest, reconnect backoff, a neighbour that holds
//! requests, a busy owner, a shared file changed after hashing, `source_lost` probes and a
//! second client claiming a member's address. Hostile counterparts are raw sockets; the
//! servers under test run in process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ringswarm::events::EventSink;
use ringswarm::manifest::DEFAULT_CHUNK_SIZE;
use ringswarm::net::{Endpoint, TcpListener, TcpStream};
use ringswarm::owner::{self, SharedFile};
use ringswarm::peer;
use ringswarm::protocol::{
    MAX_ANSWER_LEN, MAX_MANIFEST_LEN, Message, MessageCodec, PROTOCOL_VERSION,
};
use ringswarm::store::Layout;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::protocol::{SIZE, assert_refused, assert_serves, hello, start_owner, start_peer};
use crate::util::{dead_port, json_frame, random_file};

/// The most a test waits for an outcome that normally takes well under a second.
const WAIT: Duration = Duration::from_secs(20);

/// Starts an owner sharing `path` in chunks of `chunk_size` on `listener`; it stops when the
/// guard is dropped.
fn spawn_owner(listener: TcpListener, path: &Path, chunk_size: u64) -> DropGuard {
    let shared = Arc::new(SharedFile::open(path, chunk_size, 5).unwrap());
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let config = owner::Config::new(Arc::new(EventSink::console("owner")));
    let files = vec![shared];
    let directory = owner::directory(&files, addr, ringswarm::directory::DEFAULT_PEER_TTL);
    tokio::spawn(owner::run(
        listener,
        files,
        directory,
        config,
        token.clone(),
    ));
    token.drop_guard()
}

/// A ring peer's settings: owner and download neighbour on 127.0.0.1, files in `dir`.
fn ring_peer(owner: u16, neighbour: u16, dir: PathBuf) -> peer::Config {
    peer::Config {
        owner: Endpoint::local(owner),
        neighbour: Endpoint::local(neighbour),
        get: None,
        upload_slots: ringswarm::choke::DEFAULT_UPLOAD_SLOTS,
        secret: None,
        sync: false,
        dir,
        file: None,
        layout: Layout::PartFile,
        linger: None,
        timeout: Duration::from_secs(300),
        in_flight: peer::DEFAULT_IN_FLIGHT,
        events: Arc::new(EventSink::console("peer")),
        upload_limit: None,
        corrupt_sends: 0,
        seed: None,
        on_complete: None,
    }
}

type PeerRun = JoinHandle<ringswarm::Result<peer::Outcome>>;

/// Starts `peer::run` with `config` on a fresh port; it stops when the guard is dropped.
async fn spawn_peer(
    mut config: peer::Config,
) -> (PeerRun, oneshot::Receiver<peer::Completion>, DropGuard) {
    let (tx, rx) = oneshot::channel();
    config.on_complete = Some(tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token = CancellationToken::new();
    let run = tokio::spawn(peer::run(listener, config, token.clone()));
    (run, rx, token.drop_guard())
}

/// Waits (at most `limit`) for the peer to report completion; panics with its result if it
/// ended without.
async fn completion(
    run: &mut PeerRun,
    rx: oneshot::Receiver<peer::Completion>,
    limit: Duration,
) -> peer::Completion {
    let done = tokio::time::timeout(limit, async {
        tokio::select! {
            c = rx => match c {
                Ok(c) => c,
                Err(_) => panic!("the peer ended without completing: {:?}", run.await),
            },
            r = &mut *run => panic!("the peer ended without completing: {r:?}"),
        }
    })
    .await;
    done.unwrap_or_else(|_| panic!("the peer did not complete within {limit:?}"))
}

/// A raw client connection that reads and writes whole messages.
type Raw = Framed<TcpStream, MessageCodec>;

fn raw(stream: TcpStream) -> Raw {
    let mut codec = MessageCodec::new(MAX_MANIFEST_LEN);
    codec.set_max_answer(MAX_ANSWER_LEN);
    Framed::new(stream, codec)
}

async fn connect(addr: SocketAddr) -> Raw {
    raw(TcpStream::connect(addr).await.unwrap())
}

/// A message from JSON (the test writes what a hostile client would).
fn msg(v: serde_json::Value) -> Message {
    serde_json::from_value(v).unwrap()
}

/// The next message on `conn` (at most `limit`); panics on a close or a bad frame.
async fn next(conn: &mut Raw, limit: Duration) -> Message {
    match tokio::time::timeout(limit, conn.next()).await {
        Ok(Some(Ok(m))) => m,
        Ok(other) => panic!("expected a message, got {other:?}"),
        Err(_) => panic!("no message within {limit:?}"),
    }
}

/// Reads messages until one matches `want` (at most `limit` in all).
async fn until(conn: &mut Raw, limit: Duration, want: impl Fn(&Message) -> bool) -> Message {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(limit, async {
        loop {
            match conn.next().await {
                Some(Ok(m)) if want(&m) => return m,
                Some(Ok(m)) => seen.push(m.kind()),
                other => panic!("connection ended ({other:?}) after {seen:?}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no such message within {limit:?}"))
}

/// Says hello as `role` (with `port` and `have` if given) and reads `welcome`.
async fn join(addr: SocketAddr, role: &str, port: Option<u16>, have: serde_json::Value) -> Raw {
    let mut conn = connect(addr).await;
    let mut h = json!({"type": "hello", "version": PROTOCOL_VERSION, "role": role, "have": have});
    if let Some(p) = port {
        h["port"] = json!(p);
    }
    conn.send(msg(h)).await.unwrap();
    let first = next(&mut conn, WAIT).await;
    assert!(
        matches!(first, Message::Welcome { .. }),
        "expected welcome, got {first:?}"
    );
    conn
}

fn hello_have(role: &str, have: serde_json::Value) -> Vec<u8> {
    json_frame(json!({"type": "hello", "version": PROTOCOL_VERSION, "role": role, "have": have}))
}

/// Item A2: a have list whose ranges overlap or are out of order, in `hello` or in a `have`
/// message, is refused by the owner and by a peer's upload server, as is one with more than
/// 8,192 ranges; both keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_unsorted_and_too_many_ranges_are_refused() {
    let (owner, peer) = (start_owner().await, start_peer().await);
    let overlapping = json!([[0, 9], [0, 9]]);
    let unsorted = json!([[4, 6], [0, 2]]);
    for (server, role) in [(&owner, "peer"), (&peer, "neighbour")] {
        let bytes = hello_have(role, overlapping.clone());
        assert_refused(
            server.addr,
            "overlapping hello",
            &bytes,
            "sorted and disjoint",
        )
        .await;
        let mut bytes = hello(PROTOCOL_VERSION, role);
        bytes.extend(json_frame(json!({"type": "have", "chunks": unsorted})));
        assert_refused(server.addr, "unsorted have", &bytes, "sorted and disjoint").await;
        let mut bytes = hello(PROTOCOL_VERSION, role);
        bytes.extend(json_frame(json!({"type": "have", "chunks": overlapping})));
        assert_refused(
            server.addr,
            "overlapping have",
            &bytes,
            "sorted and disjoint",
        )
        .await;
        assert_serves(server.addr, role).await;
    }

    // 8,193 one-chunk ranges, each valid, of a file of 8,193 chunks of 16 bytes.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("many.bin");
    random_file(&path, 8193 * 16, 5);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _owner = spawn_owner(listener, &path, 16);
    let many: Vec<[u32; 2]> = (0..8193).map(|i| [i, i]).collect();
    let bytes = hello_have("getter", json!(many));
    assert_refused(addr, "8,193 ranges", &bytes, "exceed the limit of 8192").await;
    assert_serves(addr, "getter").await;
}

/// Item A3/D15: `peer get` of a file smaller than 2 KiB completes (the directory answer
/// once had to fit under the body limit of one chunk: "body of N bytes exceeds the limit").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_a_tiny_file_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.bin");
    random_file(&path, 1000, 6);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _owner = spawn_owner(listener, &path, DEFAULT_CHUNK_SIZE);
    let (_dead, dead) = dead_port();
    let mut config = ring_peer(port, dead, tmp.path().join("got"));
    config.get = Some(peer::GetConfig { max_sources: 5 });
    let (mut run, rx, _stop) = spawn_peer(config).await;
    let done = completion(&mut run, rx, Duration::from_secs(60)).await;
    assert!(
        std::fs::read(&done.path).unwrap() == std::fs::read(&path).unwrap(),
        "{} differs from the original",
        done.path.display()
    );
}

/// Item B9: once the shared file changes after it was hashed, a request is answered with an
/// error saying so (not with bytes that fail their hash), and a new `hello` for the file is
/// refused with the same words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_hashing_is_withdrawn() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.bin");
    random_file(&path, SIZE, 7);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _owner = spawn_owner(listener, &path, DEFAULT_CHUNK_SIZE);
    let mut conn = join(addr, "peer", None, json!([])).await;
    // Served while unchanged.
    conn.send(Message::request(0)).await.unwrap();
    until(&mut conn, WAIT, |m| {
        matches!(m, Message::Chunk { chunk: 0, .. })
    })
    .await;

    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(SIZE as u64 / 2).unwrap();
    drop(file);
    conn.send(Message::request(1)).await.unwrap();
    let answer = until(&mut conn, WAIT, |m| {
        matches!(m, Message::Error { .. } | Message::Chunk { .. })
    })
    .await;
    assert!(
        matches!(&answer, Message::Error { message } if message.contains("changed after it was hashed")),
        "expected an error naming the change, got {answer:?}"
    );
    let again = hello(PROTOCOL_VERSION, "getter");
    assert_refused(
        addr,
        "hello after the change",
        &again,
        "changed after it was hashed",
    )
    .await;
}

/// Item A4: `source_lost` makes the owner probe only directory members, and one address at
/// most once per 5 s: 50 reports of a stranger's address and 50 of a member's, then a
/// `locate` on the same connection (handled in order, so every probe was decided by the
/// answer), lead to exactly one connection, to the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_lost_probes_only_members_and_seldom() {
    let owner = start_owner().await;
    let member = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stranger = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (member_addr, stranger_addr) =
        (member.local_addr().unwrap(), stranger.local_addr().unwrap());
    // Saying hello with `port` makes this client the member serving on that port.
    let mut conn = join(owner.addr, "getter", Some(member_addr.port()), json!([])).await;
    for addr in [stranger_addr, member_addr] {
        for _ in 0..50 {
            conn.send(msg(
                json!({"type": "source_lost", "addr": addr.to_string()}),
            ))
            .await
            .unwrap();
        }
    }
    conn.send(msg(json!({"type": "locate", "file": "data.bin"})))
        .await
        .unwrap();
    until(&mut conn, WAIT, |m| matches!(m, Message::Locations { .. })).await;

    // The member's probe arrives; probes are spawned in report order, so a stranger's probe
    // would have been spawned before it.
    tokio::time::timeout(WAIT, member.accept())
        .await
        .expect("the owner never probed the member")
        .unwrap();
    // No second probe of the member (the 49 other reports are within PROBE_EVERY). A
    // negative check needs a window: old code sent its 50 probes within milliseconds.
    let second = tokio::time::timeout(Duration::from_secs(2), member.accept()).await;
    assert!(second.is_err(), "the member was probed twice: {second:?}");
    let probe = tokio::time::timeout(Duration::from_millis(100), stranger.accept()).await;
    assert!(
        probe.is_err(),
        "the owner connected to a non-member: {probe:?}"
    );
}

/// Item 12: a second client saying `hello` with a member's port cannot take over its
/// directory entry: `locate` lists the address once, with the first client's chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_with_a_members_port_keeps_the_first_entry() {
    let owner = start_owner().await;
    let (_held, port) = dead_port();
    let _first = join(owner.addr, "getter", Some(port), json!([[0, 2]])).await;
    let _second = join(owner.addr, "getter", Some(port), json!([[0, 9]])).await;
    let mut q = connect(owner.addr).await;
    q.send(msg(json!({"type": "locate", "file": "data.bin"})))
        .await
        .unwrap();
    let Message::Locations { body, .. } = next(&mut q, WAIT).await else {
        panic!("expected locations");
    };
    let loc: ringswarm::directory::Locations = serde_json::from_slice(&body).unwrap();
    let me = format!("127.0.0.1:{port}");
    let entries: Vec<_> = loc.sources.iter().filter(|s| s.addr == me).collect();
    assert_eq!(
        entries.len(),
        1,
        "{me} listed {} times: {loc:?}",
        entries.len()
    );
    assert_eq!(
        entries[0].count, 3,
        "the second client replaced the first: {loc:?}"
    );
}
