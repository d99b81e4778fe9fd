//! Regression tests of issue 9's hostile-input fixes: bad chunk ranges, `peer get` of a
//! small file, a self-contradicting manifest, reconnect backoff, a neighbour that holds
//! requests, a busy owner, a shared file changed after hashing, `source_lost` probes and a
//! second client claiming a member's address. Hostile counterparts are raw sockets; the
//! servers under test run in process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ringswarm::chunkset::Ranges;
use ringswarm::events::EventSink;
use ringswarm::manifest::{DEFAULT_CHUNK_SIZE, Manifest};
use ringswarm::net::{BoxStream, TcpListener, TcpStream};
use ringswarm::owner;
use ringswarm::peer;
use ringswarm::protocol::{
    MAX_ANSWER_LEN, MAX_MANIFEST_LEN, Message, MessageCodec, PROTOCOL_VERSION,
};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::protocol::{SIZE, assert_refused, assert_serves, hello, start_owner, start_peer};
use crate::util::{dead_port, json_frame, random_file};

/// The most a test waits for an outcome that normally takes well under a second.
const WAIT: Duration = Duration::from_secs(20);

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
type Raw = Framed<BoxStream, MessageCodec>;

fn raw(stream: impl ringswarm::net::Stream) -> Raw {
    let mut codec = MessageCodec::new(MAX_MANIFEST_LEN);
    codec.set_max_answer(MAX_ANSWER_LEN);
    Framed::new(Box::new(stream), codec)
}

/// The server's side of the handshake on an accepted `stream` (a fake server's), then a raw
/// connection over it; `None` when the handshake failed.
async fn raw_accepted(stream: TcpStream) -> Option<Raw> {
    let me = ringswarm::secure::Identity::ephemeral();
    let (sealed, _) = ringswarm::secure::server(Box::new(stream), &me)
        .await
        .ok()?;
    Some(raw(sealed))
}

async fn connect(addr: SocketAddr) -> Raw {
    raw(TcpStream::connect(crate::util::seal::sealed(addr))
        .await
        .unwrap())
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
    let _owner = crate::util::spawn_owner(listener, &path, 16);
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
    let _owner = crate::util::spawn_owner(listener, &path, DEFAULT_CHUNK_SIZE);
    let (_dead, dead) = dead_port();
    let mut config = crate::util::ring_peer(port, dead, tmp.path().join("got"));
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
    let _owner = crate::util::spawn_owner(listener, &path, DEFAULT_CHUNK_SIZE);
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
        "expected an error naming the change, got {}",
        match &answer {
            Message::Chunk { chunk, .. } => format!("chunk {chunk}"),
            other => format!("{other:?}"),
        }
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

/// A file of [`SIZE`] bytes in `dir` and its manifest at the default chunk size.
fn shared_file(dir: &Path, seed: u64) -> (PathBuf, Manifest) {
    let path = dir.join("data.bin");
    random_file(&path, SIZE, seed);
    let m = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).unwrap();
    (path, m)
}

/// Chunk `n` of `file` as `m` cuts it.
fn chunk_of(m: &Manifest, file: &[u8], n: u32) -> Bytes {
    let id = m.chunk_id(n).unwrap();
    let off = usize::try_from(m.chunk_offset(id)).unwrap();
    Bytes::copy_from_slice(&file[off..off + m.chunk_len(id)])
}

/// Accepts connections on `listener` until dropped; each, once it said `hello`, is handled by
/// `serve` (given the connection and the hello) in a task of its own.
fn fake_server<F, Fut>(listener: TcpListener, serve: F) -> AbortOnDrop
where
    F: Fn(Raw, Message) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    AbortOnDrop(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let serve = serve.clone();
            tokio::spawn(async move {
                let Some(mut conn) = raw_accepted(stream).await else {
                    return;
                };
                if let Ok(Some(Ok(hello @ Message::Hello { .. }))) =
                    tokio::time::timeout(WAIT, conn.next()).await
                {
                    serve(conn, hello).await;
                }
            });
        }
    }))
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Item B5: an owner whose manifest has the right chunk hashes but a wrong whole-file hash
/// makes the peer stop with an error naming the inconsistency, instead of fetching and
/// reassembling for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_contradicting_itself_stops_the_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, mut m) = shared_file(tmp.path(), 8);
    let file = Arc::new(std::fs::read(&path).unwrap());
    m.hash = ringswarm::hash::Hash::of(b"not the file");
    let manifest = Bytes::from(serde_json::to_vec(&m).unwrap());
    let m = Arc::new(m);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _owner = fake_server(listener, move |mut conn, _hello| {
        let (manifest, m, file) = (manifest.clone(), m.clone(), file.clone());
        async move {
            let all = Ranges(vec![[0, m.chunk_count() - 1]]);
            if conn.send(Message::welcome(all, manifest)).await.is_err() {
                return;
            }
            while let Some(Ok(msg)) = conn.next().await {
                if let Message::Request { chunk, .. } = msg {
                    let data = chunk_of(&m, &file, chunk);
                    if conn.send(Message::chunk(chunk, data)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let (_dead, dead) = dead_port();
    let (run, _rx, _stop) =
        spawn_peer(crate::util::ring_peer(port, dead, tmp.path().join("peer"))).await;
    let res = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the peer still runs after 60 s")
        .unwrap();
    let err = res.expect_err("the peer accepted a manifest that contradicts itself");
    assert!(err.to_string().contains("inconsistent"), "{err}");
}

/// Item B6: a neighbour that completes the handshake and then sends a bad `have` is
/// reconnected to with growing pauses (from 50 ms, doubling to 2 s), not at once. The owner
/// is real but sends one chunk only (1 byte/s after a burst of one chunk), so nothing the
/// peer does after that counts as progress, which would reset the backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_to_a_failing_neighbour_back_off() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, m) = shared_file(tmp.path(), 9);
    let manifest = Bytes::from(serde_json::to_vec(&m).unwrap());
    let owner_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let owner_port = owner_listener.local_addr().unwrap().port();
    let mut config = owner::OwnerConfig::new(Arc::new(EventSink::console("owner")));
    config.upload_limit = Some(Arc::new(ringswarm::rate::RateLimiter::new(
        1,
        DEFAULT_CHUNK_SIZE,
    )));
    let _owner = crate::util::spawn_owner_with(owner_listener, &path, DEFAULT_CHUNK_SIZE, config);
    let (tx, mut accepts) = tokio::sync::mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _neighbour = fake_server(listener, move |mut conn, hello| {
        let (manifest, tx) = (manifest.clone(), tx.clone());
        async move {
            // Only connections made once the owner's one chunk was stored count: those
            // whose hello names it.
            let Message::Hello { have, .. } = hello else {
                return;
            };
            if !have.is_empty() {
                let _ = tx.send(tokio::time::Instant::now());
            }
            let reversed = Message::Have {
                chunks: Ranges(vec![[5, 2]]),
            };
            if conn
                .send(Message::welcome(Ranges::default(), manifest))
                .await
                .is_ok()
                && conn.send(reversed).await.is_ok()
            {
                while let Some(Ok(_)) = conn.next().await {}
            }
        }
    });
    let (_run, _rx, _stop) = spawn_peer(crate::util::ring_peer(
        owner_port,
        port,
        tmp.path().join("peer"),
    ))
    .await;
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = tokio::time::timeout(WAIT, accepts.recv())
            .await
            .unwrap_or_else(|_| panic!("the peer stopped reconnecting after {times:?}"))
            .unwrap();
        times.push(t);
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let least = ringswarm::net::BACKOFF_START - Duration::from_millis(5);
    assert!(
        gaps.iter().all(|g| *g >= least),
        "reconnected without a pause: {gaps:?}"
    );
    assert!(
        // `>=`: on a slow start the backoff may already be at its cap when counting begins.
        gaps[5] >= Duration::from_secs(1) && gaps[5] >= gaps[0],
        "the pauses do not grow: {gaps:?}"
    );
}

/// Item B7: a neighbour that announces every chunk and then sends only keep-alives, never
/// a requested chunk, does not hold the peer hostage: after the request deadline its
/// chunks come from the owner and the peer completes.
///
/// Ordered, not raced: the peer starts from a manifest saved in its folder while the owner's
/// port refuses connections, so its first requests can only go to the neighbour; the owner
/// starts on that port once the neighbour has been asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbour_that_never_answers_requests_is_bypassed() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, m) = shared_file(tmp.path(), 10);
    let dir = tmp.path().join("peer");
    drop(ringswarm::store::ChunkStore::open(&dir, &m, ringswarm::store::Layout::PartFile).unwrap());
    let manifest = Bytes::from(serde_json::to_vec(&m).unwrap());
    let (owner_socket, owner_port) = dead_port();
    let (asked_tx, asked_rx) = tokio::sync::watch::channel(0u32);
    let asked_tx = Arc::new(asked_tx);
    let all = Ranges(vec![[0, m.chunk_count() - 1]]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _neighbour = fake_server(listener, move |mut conn, _hello| {
        let (manifest, all, asked) = (manifest.clone(), all.clone(), asked_tx.clone());
        async move {
            if conn
                .send(Message::welcome(Ranges::default(), manifest))
                .await
                .is_err()
                || conn.send(Message::Have { chunks: all }).await.is_err()
            {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    m = conn.next() => match m {
                        Some(Ok(Message::Request { .. })) => asked.send_modify(|n| *n += 1),
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    _ = tick.tick() => {
                        let keep_alive = Message::Have { chunks: Ranges::default() };
                        if conn.send(keep_alive).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    let (mut run, rx, _stop) = spawn_peer(crate::util::ring_peer(owner_port, port, dir)).await;
    let mut asked = asked_rx;
    tokio::time::timeout(WAIT, asked.wait_for(|n| *n > 0))
        .await
        .expect("the peer never asked the neighbour")
        .unwrap();
    let _owner =
        crate::util::spawn_owner(owner_socket.listen(128).unwrap(), &path, DEFAULT_CHUNK_SIZE);
    let done = completion(&mut run, rx, Duration::from_secs(60)).await;
    assert!(
        std::fs::read(&done.path).unwrap() == std::fs::read(&path).unwrap(),
        "the file differs"
    );
}

/// Item B8: an owner at its connection cap says it is busy; the peer retries (here the
/// real owner comes up on the same port after one refusal) instead of giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_owner_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = shared_file(tmp.path(), 11);
    let busy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = busy.local_addr().unwrap();
    let (_dead, dead) = dead_port();
    let (mut run, rx, _stop) = spawn_peer(crate::util::ring_peer(
        addr.port(),
        dead,
        tmp.path().join("peer"),
    ))
    .await;
    let (stream, _) = tokio::time::timeout(WAIT, busy.accept())
        .await
        .expect("the peer never connected")
        .unwrap();
    let mut conn = raw_accepted(stream).await.expect("the peer's handshake");
    let first = next(&mut conn, WAIT).await;
    assert!(matches!(first, Message::Hello { .. }), "{first:?}");
    let message = "owner is busy: at most 1024 connections at once; try again later".to_string();
    conn.send(Message::Error { message }).await.unwrap();
    // The peer hangs up once it has read the refusal.
    let end =
        tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = conn.next().await {} }).await;
    assert!(end.is_ok(), "the peer kept the refused connection open");
    drop(busy);
    let listener = TcpListener::bind(addr).await.unwrap();
    let _owner = crate::util::spawn_owner(listener, &path, DEFAULT_CHUNK_SIZE);
    let done = completion(&mut run, rx, Duration::from_secs(60)).await;
    assert!(
        std::fs::read(&done.path).unwrap() == std::fs::read(&path).unwrap(),
        "the file differs"
    );
}

// Item A1 (idle connections keep no manifest-sized buffer) is tested on a spawned owner,
// whose memory no other test shares: `cli::idle_connections_do_not_keep_the_manifest`.

/// A node id in `hello` is checked like every other field: 1 to 64 hex digits, else the
/// client is refused with a clear error, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_node_id_is_refused() {
    let owner = start_owner().await;
    for bad in ["", "not hex!", &"a".repeat(65)] {
        let bytes = json_frame(json!({
            "type": "hello", "version": PROTOCOL_VERSION, "role": "getter", "node": bad
        }));
        assert_refused(
            owner.addr,
            "bad node id",
            &bytes,
            "node must be 1 to 64 hex digits",
        )
        .await;
    }
    assert_serves(owner.addr, "getter").await;
}
