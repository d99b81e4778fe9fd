//! Bad input on raw sockets against an in-process owner and an in-process peer's upload
//! server: each gets an `error` message naming the problem, then the connection closes, and
//! the server keeps serving well-behaved clients.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use ringswarm::connection::HANDSHAKE_TIMEOUT;
use ringswarm::manifest::{DEFAULT_CHUNK_SIZE, Manifest};
use ringswarm::net::{TcpListener, TcpStream};
use ringswarm::peer;
use ringswarm::protocol::{MAX_MANIFEST_LEN, Message, MessageCodec, PROTOCOL_VERSION};
use ringswarm::store::{ChunkStore, Layout};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::util::seal::sealed;
use crate::util::{dead_port, frame, json_frame, random_file};

/// How long a test waits for a reply before it fails: a guard against a hang, not a
/// deadline the server must meet (a loaded machine may be slow to schedule it).
pub(crate) const REPLY_WAIT: Duration = Duration::from_secs(30);

/// File size for the in-process servers: 10 chunks of 100 KiB.
pub(crate) const SIZE: usize = 1_024_000;

/// An in-process server on `127.0.0.1:0`, stopped when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) file: Vec<u8>,
    _tmp: tempfile::TempDir,
    /// Ports that refuse connections, held while the server runs.
    _dead: Vec<tokio::net::TcpSocket>,
    _stop: DropGuard,
}

/// Starts an owner sharing a fresh 10-chunk file.
pub(crate) async fn start_owner() -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.bin");
    random_file(&path, SIZE, 99);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = crate::util::spawn_owner(listener, &path, DEFAULT_CHUNK_SIZE);
    Server {
        addr,
        file: std::fs::read(&path).unwrap(),
        _tmp: tmp,
        _dead: Vec::new(),
        _stop: stop,
    }
}

/// Starts a peer that holds chunks 0..=2 of a 10-chunk file, with no owner and no neighbour
/// reachable: it resumes from the manifest saved in its folder and serves what it holds.
pub(crate) async fn start_peer() -> Server {
    start_peer_holding(0..3).await.0
}

/// As [`start_peer`], holding chunks `ids`; also returns the peer's task.
async fn start_peer_holding(
    ids: std::ops::Range<u32>,
) -> (
    Server,
    tokio::task::JoinHandle<ringswarm::Result<peer::Outcome>>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.bin");
    random_file(&path, SIZE, 98);
    let file = std::fs::read(&path).unwrap();
    let manifest = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).unwrap();
    let dir = tmp.path().join("peer");
    seed_store(&dir, &manifest, &file, ids);

    let (owner_socket, owner_port) = dead_port();
    let (neighbour_socket, neighbour_port) = dead_port();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let config = peer::Config {
        timeout: Duration::from_secs(60),
        ..crate::util::ring_peer(owner_port, neighbour_port, dir)
    };
    let task = tokio::spawn(peer::run(listener, config, token.clone()));
    let server = Server {
        addr,
        file,
        _tmp: tmp,
        _dead: vec![owner_socket, neighbour_socket],
        _stop: token.drop_guard(),
    };
    (server, task)
}

/// Writes chunks `ids` of `file` into a peer store in `dir`, with their summary.
pub(crate) fn seed_store(dir: &Path, m: &Manifest, file: &[u8], ids: std::ops::Range<u32>) {
    let (store, mut have) = ChunkStore::open(dir, m, Layout::PartFile).unwrap();
    for n in ids {
        let id = m.chunk_id(n).unwrap();
        let off = usize::try_from(m.chunk_offset(id)).unwrap();
        store
            .write_chunk(id, &file[off..off + m.chunk_len(id)])
            .unwrap();
        have.insert(id);
    }
    store.write_summary(&have).unwrap();
}

pub(crate) fn hello(version: u32, role: &str) -> Vec<u8> {
    json_frame(serde_json::json!({"type": "hello", "version": version, "role": role}))
}

/// What a server said on one connection before it closed it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) messages: Vec<Message>,
    /// How the connection ended: `None` for a clean EOF, else the read error.
    pub(crate) end: Option<String>,
}

impl Reply {
    pub(crate) fn error(&self) -> Option<&str> {
        self.messages.iter().find_map(|m| match m {
            Message::Error { message } => Some(message.as_str()),
            _ => None,
        })
    }
}

/// Connects, writes `bytes`, and reads messages until the server closes (within
/// `REPLY_WAIT`, else panics).
pub(crate) async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(sealed(addr)).await.unwrap();
    // The server may close before it read everything; that is its right.
    let _ = stream.write_all(bytes).await;
    read_until_closed(stream, REPLY_WAIT).await
}

pub(crate) async fn read_until_closed(
    stream: impl tokio::io::AsyncRead + Unpin,
    limit: Duration,
) -> Reply {
    let mut frames = FramedRead::new(stream, MessageCodec::new(MAX_MANIFEST_LEN));
    let mut messages = Vec::new();
    let read = tokio::time::timeout(limit, async {
        loop {
            match frames.next().await {
                None => return None,
                Some(Ok(m)) => messages.push(m),
                Some(Err(e)) => return Some(e.to_string()),
            }
        }
    })
    .await;
    match read {
        Ok(end) => Reply { messages, end },
        Err(_) => panic!("connection still open after {limit:?}; received {messages:?}"),
    }
}

/// Sends `bytes` and asserts an `error` reply containing `needle`, then the close.
pub(crate) async fn assert_refused(addr: SocketAddr, what: &str, bytes: &[u8], needle: &str) {
    let reply = exchange(addr, bytes).await;
    let Some(err) = reply.error() else {
        panic!("{what} to {addr}: no error message before the close: {reply:?}");
    };
    assert!(
        err.contains(needle),
        "{what}: error {err:?} does not mention {needle:?}"
    );
    assert!(
        matches!(reply.messages.last(), Some(Message::Error { .. })),
        "{what}: messages after the error: {reply:?}"
    );
    // A clean close, or a reset if the server closed with our bytes unread.
    assert!(
        reply
            .end
            .as_deref()
            .is_none_or(|e| e.to_lowercase().contains("reset")),
        "{what}: the connection ended with {:?}",
        reply.end
    );
}

/// A well-behaved client still gets `welcome`.
pub(crate) async fn assert_serves(addr: SocketAddr, role: &str) {
    let mut stream = TcpStream::connect(sealed(addr)).await.unwrap();
    stream
        .write_all(&hello(PROTOCOL_VERSION, role))
        .await
        .unwrap();
    let mut frames = FramedRead::new(stream, MessageCodec::new(MAX_MANIFEST_LEN));
    let first = tokio::time::timeout(REPLY_WAIT, frames.next())
        .await
        .expect("no reply to hello")
        .expect("closed before welcome")
        .expect("bad frame");
    assert!(
        matches!(first, Message::Welcome { .. }),
        "expected welcome, got {first:?}"
    );
}

/// Cases that fail while decoding the frame: `(what, bytes, the error names)`.
fn undecodable() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        ("random bytes", vec![0xab; 64], "exceeds the limit"),
        ("4 GiB length prefix", vec![0xff; 4], "exceeds the limit"),
        (
            "non-JSON header",
            frame(b"\x00not json{", &[]),
            "malformed header",
        ),
        (
            "unknown message type",
            json_frame(serde_json::json!({"type": "gossip"})),
            "unknown message type",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_refuses_bad_input_after_hello_and_keeps_serving() {
    let owner = start_owner().await;
    for (what, bad, needle) in undecodable() {
        let mut bytes = hello(PROTOCOL_VERSION, "getter");
        bytes.extend_from_slice(&bad);
        assert_refused(owner.addr, what, &bytes, needle).await;
    }
    let mut out_of_range = hello(PROTOCOL_VERSION, "peer");
    out_of_range.extend(json_frame(
        serde_json::json!({"type": "request", "chunk": 10}),
    ));
    assert_refused(owner.addr, "chunk 10 of 10", &out_of_range, "out of range").await;
    assert_serves(owner.addr, "peer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_refuses_bad_hello_and_keeps_serving() {
    let owner = start_owner().await;
    assert_refused(
        owner.addr,
        "wrong version",
        &hello(PROTOCOL_VERSION + 1, "peer"),
        "unsupported protocol version",
    )
    .await;
    let request = json_frame(serde_json::json!({"type": "request", "chunk": 0}));
    assert_refused(owner.addr, "request before hello", &request, "hello").await;
    assert_serves(owner.addr, "peer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_first_message_is_refused_and_serving_goes_on() {
    let (owner, peer) = (start_owner().await, start_peer().await);
    for (server, role) in [(&owner, "peer"), (&peer, "neighbour")] {
        for (what, bytes, needle) in undecodable() {
            assert_refused(server.addr, what, &bytes, needle).await;
        }
        assert_serves(server.addr, role).await;
    }
}

#[tokio::test(start_paused = true)]
async fn owner_drops_a_silent_client_after_the_hello_timeout() {
    let owner = start_owner().await;
    let stream = crate::util::seal::sealed_stream(owner.addr).await;
    let start = tokio::time::Instant::now();
    let reply = read_until_closed(stream, HANDSHAKE_TIMEOUT * 3).await;
    let waited = start.elapsed();
    assert!(
        waited >= HANDSHAKE_TIMEOUT,
        "closed after {waited:?}, before the {HANDSHAKE_TIMEOUT:?} hello timeout: {reply:?}"
    );
    assert!(
        matches!(&reply.messages[..], [Message::Error { message }] if message.contains("timed out waiting for hello")),
        "expected only an error naming the hello timeout: {reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_refuses_bad_requests_and_keeps_serving() {
    let peer = start_peer().await;
    let request = |chunk: u32| json_frame(serde_json::json!({"type": "request", "chunk": chunk}));

    let mut not_held = hello(PROTOCOL_VERSION, "neighbour");
    not_held.extend(request(5));
    assert_refused(peer.addr, "chunk 5, not held", &not_held, "not held").await;

    let mut out_of_range = hello(PROTOCOL_VERSION, "neighbour");
    out_of_range.extend(request(10));
    assert_refused(peer.addr, "chunk 10 of 10", &out_of_range, "out of range").await;

    assert_refused(
        peer.addr,
        "wrong version",
        &hello(PROTOCOL_VERSION + 1, "neighbour"),
        "unsupported protocol version",
    )
    .await;
    assert_refused(peer.addr, "request before hello", &request(0), "hello").await;
    for (what, bad, needle) in undecodable() {
        let mut bytes = hello(PROTOCOL_VERSION, "getter");
        bytes.extend_from_slice(&bad);
        assert_refused(peer.addr, what, &bytes, needle).await;
    }

    // A held chunk is still served, byte for byte.
    let mut stream = TcpStream::connect(sealed(peer.addr)).await.unwrap();
    let mut bytes = hello(PROTOCOL_VERSION, "neighbour");
    bytes.extend(request(1));
    stream.write_all(&bytes).await.unwrap();
    let mut frames = FramedRead::new(stream, MessageCodec::new(MAX_MANIFEST_LEN));
    let chunk = tokio::time::timeout(REPLY_WAIT, async {
        loop {
            match frames.next().await {
                Some(Ok(Message::Chunk { chunk, data, .. })) => return (chunk, data),
                Some(Ok(_)) => {}
                other => panic!("no chunk: {other:?}"),
            }
        }
    })
    .await
    .expect("no chunk within the wait");
    let want = &peer.file[102_400..204_800];
    assert_eq!(chunk.0, 1);
    assert!(chunk.1 == want, "chunk 1 differs from the file");
}

#[tokio::test(start_paused = true)]
async fn owner_drops_a_client_that_trickles_a_byte_a_second() {
    let owner = start_owner().await;
    let mut stream = crate::util::seal::sealed_stream(owner.addr).await;
    let start = tokio::time::Instant::now();
    let bytes = hello(PROTOCOL_VERSION, "getter");
    // One byte a (virtual) second: the whole hello would take far longer than the wait for it.
    let mut sent = 0;
    for b in &bytes {
        if stream.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if start.elapsed() > HANDSHAKE_TIMEOUT * 2 {
            break;
        }
    }
    assert!(
        sent < bytes.len(),
        "the owner read a hello trickled over {sent} s"
    );
    let reply = read_until_closed(stream, HANDSHAKE_TIMEOUT * 3).await;
    assert!(
        start.elapsed() >= HANDSHAKE_TIMEOUT,
        "dropped before the hello timeout: {reply:?}"
    );
    assert!(
        reply
            .error()
            .is_some_and(|e| e.contains("timed out waiting for hello")),
        "expected an error naming the hello timeout: {reply:?}"
    );
}

/// The listen backlog of a tokio (mio) listener, as of the standard library's: 128.
const LISTEN_BACKLOG: usize = 128;
/// Connections over the cap the test keeps open at once (see below).
const REFUSED_AT_ONCE: usize = (LISTEN_BACKLOG - peer::MAX_UPLOAD_CONNECTIONS) / 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_refuses_connections_over_its_cap_politely_and_keeps_serving() {
    let peer = start_peer().await;
    let peer_addr = peer.addr;
    // Fill every upload slot with clients that said hello, were welcomed, and then say
    // nothing (a silent client that never said hello would be dropped at the hello timeout,
    // which the handshakes below may outlast on a loaded machine).
    let mut held = Vec::new();
    for _ in 0..peer::MAX_UPLOAD_CONNECTIONS {
        let mut stream = TcpStream::connect(sealed(peer.addr)).await.unwrap();
        stream
            .write_all(&hello(PROTOCOL_VERSION, "neighbour"))
            .await
            .unwrap();
        let mut frames = FramedRead::new(stream, MessageCodec::new(MAX_MANIFEST_LEN));
        let first = tokio::time::timeout(REPLY_WAIT, frames.next()).await;
        assert!(
            matches!(first, Ok(Some(Ok(Message::Welcome { .. })))),
            "a held client was not welcomed: {first:?}"
        );
        held.push(frames);
    }
    // Hundreds more, many at once: each is told why, and closed. At most
    // REFUSED_AT_ONCE are open at a time, so that with the held connections the peer may not
    // have accepted yet they fit its accept queue (the listen backlog); beyond it the kernel
    // drops the handshake's last ACK, and the client, which believes it is connected, waits
    // for SYN-ACK retransmissions (1, 2, 4, 8, 16 s): a wait on the kernel, not on the peer.
    let at_once = std::sync::Arc::new(tokio::sync::Semaphore::new(REFUSED_AT_ONCE));
    let mut refused = Vec::new();
    for _ in 0..200 {
        let at_once = at_once.clone();
        refused.push(tokio::spawn(async move {
            let _turn = at_once.acquire_owned().await.unwrap();
            exchange_owned(peer_addr).await
        }));
    }
    for r in refused {
        let reply = r.await.unwrap();
        assert!(
            reply.error().is_some_and(|e| e.contains("peer is busy")),
            "expected a polite refusal: {reply:?}"
        );
    }
    drop(held);
    // Slots come back as the held clients go.
    let ok = tokio::time::timeout(REPLY_WAIT, async {
        loop {
            let mut stream = TcpStream::connect(sealed(peer.addr)).await.unwrap();
            stream
                .write_all(&hello(PROTOCOL_VERSION, "neighbour"))
                .await
                .unwrap();
            let mut frames = FramedRead::new(stream, MessageCodec::new(MAX_MANIFEST_LEN));
            if let Some(Ok(Message::Welcome { .. })) = frames.next().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "the peer did not serve again after the flood");
}

/// Connects and reads until the server closes, sending nothing.
async fn exchange_owned(addr: SocketAddr) -> Reply {
    exchange(addr, &[]).await
}

/// Anyone may connect to an upload port as `neighbour` and claim every chunk; that must not
/// end the service of the real upload neighbour, still incomplete and connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_complete_neighbour_does_not_end_the_service() {
    let (peer, mut task) = start_peer_holding(0..10).await;
    // The real upload neighbour, holding nothing yet.
    let mut real = TcpStream::connect(sealed(peer.addr)).await.unwrap();
    real.write_all(&hello(PROTOCOL_VERSION, "neighbour"))
        .await
        .unwrap();
    let mut real = FramedRead::new(real, MessageCodec::new(MAX_MANIFEST_LEN));
    let first = tokio::time::timeout(REPLY_WAIT, real.next()).await.unwrap();
    assert!(
        matches!(first, Some(Ok(Message::Welcome { .. }))),
        "{first:?}"
    );
    // The spoofer claims all ten chunks and leaves.
    let full = json_frame(serde_json::json!({
        "type": "hello", "version": PROTOCOL_VERSION, "role": "neighbour", "have": [[0, 9]]
    }));
    let mut spoof = TcpStream::connect(sealed(peer.addr)).await.unwrap();
    spoof.write_all(&full).await.unwrap();
    let mut spoof = FramedRead::new(spoof, MessageCodec::new(MAX_MANIFEST_LEN));
    let first = tokio::time::timeout(REPLY_WAIT, spoof.next())
        .await
        .unwrap();
    assert!(
        matches!(first, Some(Ok(Message::Welcome { .. }))),
        "{first:?}"
    );
    drop(spoof);
    // Before, the peer stopped within ~2 s (TELL_NEIGHBOUR_WAIT): it must still be serving.
    let early = tokio::time::timeout(peer::TELL_NEIGHBOUR_WAIT * 2, &mut task).await;
    assert!(early.is_err(), "the peer stopped: {early:?}");
    // And it serves the real neighbour, which then says it is complete: only now it stops.
    let mut real = real.into_inner();
    real.write_all(&json_frame(
        serde_json::json!({"type": "request", "chunk": 4}),
    ))
    .await
    .unwrap();
    let mut frames = FramedRead::new(real, MessageCodec::new(MAX_MANIFEST_LEN));
    let chunk = loop {
        match tokio::time::timeout(REPLY_WAIT, frames.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Chunk { chunk, data, .. })) => break (chunk, data),
            Some(Ok(_)) => {}
            other => panic!("no chunk: {other:?}"),
        }
    };
    let off = 4 * ringswarm::manifest::DEFAULT_CHUNK_SIZE as usize;
    assert_eq!(
        (chunk.0, &chunk.1[..]),
        (4, &peer.file[off..off + chunk.1.len()])
    );
    let mut real = frames.into_inner();
    real.write_all(&json_frame(
        serde_json::json!({"type": "have", "chunks": [[0, 9]]}),
    ))
    .await
    .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), task).await;
    assert!(
        matches!(done, Ok(Ok(Ok(peer::Outcome::Complete(_))))),
        "{done:?}"
    );
}
