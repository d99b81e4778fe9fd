//! A ring in one process over an in-memory network (`net::MemNet`) under tokio's paused
//! clock: the real owner, peers, handlers and stores, no socket, virtual time.

use std::sync::Arc;
use std::time::Duration;

use ringswarm::events::EventSink;
use ringswarm::manifest::DEFAULT_CHUNK_SIZE;
use ringswarm::net::MemNet;
use ringswarm::owner::{self, SharedFile};
use ringswarm::peer;
use tokio_util::sync::CancellationToken;

use crate::util::random_file;

/// Starts an owner sharing `path` on port 5000 of `net`; returns its directory.
fn start_owner(
    net: &Arc<MemNet>,
    path: &std::path::Path,
    config: owner::OwnerConfig,
    token: &CancellationToken,
) -> Arc<ringswarm::directory::Directory> {
    let files = vec![Arc::new(
        SharedFile::open(path, DEFAULT_CHUNK_SIZE, 5).unwrap(),
    )];
    let directory = owner::directory(
        &files,
        "127.0.0.1:5000".parse().unwrap(),
        ringswarm::directory::DEFAULT_PEER_TTL,
    );
    let listener = net.listen(5000).unwrap();
    tokio::spawn(owner::run(
        listener,
        files,
        directory.clone(),
        config,
        token.clone(),
    ));
    directory
}

/// An observer that records the `ts` of every `chunk_received` event into `stamps`.
fn record(stamps: &Arc<std::sync::Mutex<Vec<f64>>>) -> ringswarm::events::Observer {
    let stamps = stamps.clone();
    Arc::new(move |e: &ringswarm::events::Event| {
        if e.event == ringswarm::events::EventKind::ChunkReceived {
            stamps.lock().unwrap().push(e.ts);
        }
    })
}

/// Every node's upload cap, bytes per second.
const RATE: u64 = 1 << 20;

/// Five peers and an owner on a `MemNet`, every node's upload capped at 1 MiB/s: every copy
/// completes, byte-identical, in no less virtual time than the caps allow (the owner must
/// send each of the 2 MiB at least once, its token bucket starting with one chunk's worth:
/// 1.9 s), and in a moment of wall time.
#[tokio::test(start_paused = true)]
async fn a_ring_completes_over_an_in_memory_network_in_virtual_time() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.bin");
    random_file(&path, 2 << 20, 21);
    let original = std::fs::read(&path).unwrap();
    let net = MemNet::new();
    let token = CancellationToken::new();
    let _stop = token.clone().drop_guard();

    let mut config = owner::OwnerConfig::new(Arc::new(EventSink::console("owner")));
    config.upload_limit = Some(Arc::new(ringswarm::rate::RateLimiter::new(
        RATE,
        DEFAULT_CHUNK_SIZE,
    )));
    start_owner(&net, &path, config, &token);

    let ports: Vec<u16> = (5001..=5005).collect();
    let started = tokio::time::Instant::now();
    // Every peer's events, stamped in virtual time from 0.
    let stamps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut done = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let next = ports[(i + 1) % ports.len()];
        let (tx, rx) = tokio::sync::oneshot::channel();
        let config = peer::Config {
            owner: net.endpoint(5000),
            neighbour: net.endpoint(next),
            seed: Some(i as u64),
            upload_limit: Some(RATE),
            events: Arc::new(
                EventSink::console(format!("127.0.0.1:{port}"))
                    .quiet()
                    .observe(record(&stamps))
                    .clock(ringswarm::events::tokio_clock(0.0)),
            ),
            on_complete: Some(tx),
            ..crate::util::ring_peer(5000, next, tmp.path().join(format!("peer-{port}")))
        };
        let listener = net.listen(port).unwrap();
        tokio::spawn(peer::run(listener, config, token.clone()));
        done.push(rx);
    }
    for rx in done {
        let c = tokio::time::timeout(Duration::from_secs(600), rx)
            .await
            .expect("a peer did not complete within 600 s of virtual time")
            .expect("a peer ended without completing");
        assert!(
            std::fs::read(&c.path).unwrap() == original,
            "{} differs",
            c.path.display()
        );
    }
    let took = started.elapsed();
    let bound = Duration::from_secs_f64(((2 << 20) - DEFAULT_CHUNK_SIZE) as f64 / RATE as f64);
    assert!(
        took >= bound && took < Duration::from_secs(60),
        "{took:?} of virtual time at {RATE} B/s per node"
    );
    eprintln!("ring over MemNet: {took:?} of virtual time");
    // The last chunk arrived when the run ended, in virtual time.
    let last = stamps.lock().unwrap().iter().copied().fold(0.0, f64::max);
    assert!(
        (last - took.as_secs_f64()).abs() < 0.1,
        "last chunk at {last} s, the run ended at {took:?}"
    );
}

/// The peer's own deadlines run on tokio's clock too: with nothing listening for the owner,
/// a peer gives up after exactly its `--timeout` of virtual time, saying why.
#[tokio::test(start_paused = true)]
async fn a_peer_without_an_owner_gives_up_after_its_timeout_in_virtual_time() {
    let tmp = tempfile::tempdir().unwrap();
    let net = MemNet::new();
    let timeout = Duration::from_secs(120);
    let config = peer::Config {
        owner: net.endpoint(5000),
        neighbour: net.endpoint(5002),
        timeout,
        ..crate::util::ring_peer(5000, 5002, tmp.path().join("peer"))
    };
    let started = tokio::time::Instant::now();
    let run = peer::run(net.listen(5001).unwrap(), config, CancellationToken::new());
    let res = tokio::time::timeout(timeout * 2, run)
        .await
        .expect("still waiting after twice the timeout of virtual time");
    let waited = started.elapsed();
    let err = res.expect_err("a peer without an owner cannot succeed");
    assert!(err.to_string().contains("unreachable after 120s"), "{err}");
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(3),
        "gave up after {waited:?} of virtual time"
    );
}

/// The owner probes a reported source on its own network: on a `MemNet`, the probe reaches
/// the member's in-memory listener (over TCP it would find nothing there), and the member,
/// answering its `hello`, is kept. Reported again later, another key answers at its address:
/// it is dropped.
#[tokio::test(start_paused = true)]
async fn the_owners_probe_goes_over_its_own_network() {
    use ringswarm::protocol::{MAX_MANIFEST_LEN, Message, PROTOCOL_VERSION, Role};

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.bin");
    random_file(&path, 100_000, 22);
    let net = MemNet::new();
    let token = CancellationToken::new();
    let _stop = token.clone().drop_guard();
    let config = owner::OwnerConfig::new(Arc::new(EventSink::console("owner")));
    let directory = start_owner(&net, &path, config, &token);

    // A member serving on port 6000 of the in-memory network.
    let mut member_listener = net.listen(6000).unwrap();
    let me = ringswarm::secure::Identity::ephemeral();
    let endpoint = net.endpoint(5000);
    let mut conn = ringswarm::link::connect(&endpoint, &me, None, MAX_MANIFEST_LEN)
        .await
        .unwrap();
    conn.send(Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Getter,
        file: None,
        have: Default::default(),
        port: Some(6000),
        node: None,
    })
    .await
    .unwrap();
    let welcome = conn.recv("welcome", Duration::from_secs(10)).await.unwrap();
    assert!(
        matches!(welcome, Some(Message::Welcome { .. })),
        "{welcome:?}"
    );
    let lost = Message::SourceLost {
        addr: "127.0.0.1:6000".into(),
        bad_chunks: false,
    };
    conn.send(lost.clone()).await.unwrap();
    let (probe, _) = tokio::time::timeout(Duration::from_secs(5), member_listener.accept())
        .await
        .expect("the probe never reached the member's in-memory listener")
        .unwrap();
    let mut probe = ringswarm::link::accept(probe, "probe".into(), &me, 0)
        .await
        .unwrap();
    let hello = probe
        .recv("the probe's hello", Duration::from_secs(5))
        .await;
    assert!(
        matches!(hello, Ok(Some(Message::Hello { .. }))),
        "{hello:?}"
    );
    probe.send_error("busy elsewhere".into()).await;
    // It answered: still a member once the probe is judged (2 s at most).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(directory.peers().len(), 1, "{:?}", directory.peers());

    // Past the probe interval, reported again: another node now listens at the member's
    // address and would answer as the member did, but proves another key: the probe does not
    // take it for the member, which is dropped.
    tokio::time::sleep(ringswarm::directory::PROBE_EVERY).await;
    conn.send(lost).await.unwrap();
    let (probe, _) = tokio::time::timeout(Duration::from_secs(5), member_listener.accept())
        .await
        .expect("the second probe never came")
        .unwrap();
    let stranger = ringswarm::secure::Identity::ephemeral();
    let shake = ringswarm::link::accept(probe, "probe".into(), &stranger, 0).await;
    if let Ok(mut probe) = shake {
        probe.send_error("busy elsewhere".into()).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(directory.peers().is_empty(), "{:?}", directory.peers());
}

/// A getter whose directory dies mid-run, with the DHT's in-memory stand-in: the owner link
/// is down, no source the directory named is left, and the node the DHT names (a second
/// owner of the same file, unknown to the directory) finishes the file, byte-identical.
/// Without the DHT the getter would wait for the owner until its timeout.
#[tokio::test(start_paused = true)]
async fn a_getter_whose_directory_dies_finishes_from_a_source_the_dht_names() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.bin");
    random_file(&path, 2 << 20, 22);
    let original = std::fs::read(&path).unwrap();
    let net = MemNet::new();
    let (first, second) = (CancellationToken::new(), CancellationToken::new());
    let _stop = second.clone().drop_guard();
    let mut config = owner::OwnerConfig::new(Arc::new(EventSink::console("owner").quiet()));
    config.upload_limit = Some(Arc::new(ringswarm::rate::RateLimiter::new(
        RATE,
        DEFAULT_CHUNK_SIZE,
    )));
    start_owner(&net, &path, config, &first);
    // The other copy, on port 6000 with a directory of its own; only the DHT names it.
    let files = vec![Arc::new(
        SharedFile::open(&path, DEFAULT_CHUNK_SIZE, 5).unwrap(),
    )];
    let hash = files[0].manifest.hash;
    let addr = "127.0.0.1:6000".parse().unwrap();
    let directory = owner::directory(&files, addr, ringswarm::directory::DEFAULT_PEER_TTL);
    let quiet = owner::OwnerConfig::new(Arc::new(EventSink::console("other").quiet()));
    let listener = net.listen(6000).unwrap();
    tokio::spawn(owner::run(
        listener,
        files,
        directory,
        quiet,
        second.clone(),
    ));
    let dht = ringswarm::dht::MemoryDht::new("127.0.0.1".parse().unwrap());
    dht.insert(ringswarm::dht::key_of(&hash), addr);

    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = received.clone();
    let observe: ringswarm::events::Observer = Arc::new(move |e: &ringswarm::events::Event| {
        if e.event == ringswarm::events::EventKind::ChunkReceived {
            seen.lock().unwrap().push(e.neighbour.clone());
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = peer::Config {
        events: Arc::new(EventSink::console("getter").quiet().observe(observe)),
        on_complete: Some(tx),
        sync: false,
        dht: Some(Arc::new(dht)),
        ..peer::Config::getter(net.endpoint(5000), tmp.path().join("got"), 5)
    };
    tokio::spawn(peer::run(net.listen(5001).unwrap(), config, second.clone()));
    // A few chunks from the directory's owner, then it dies.
    while received.lock().unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.cancel();
    let c = tokio::time::timeout(Duration::from_secs(600), rx)
        .await
        .expect("the getter did not complete within 600 s of virtual time")
        .expect("the getter ended without completing");
    assert!(std::fs::read(&c.path).unwrap() == original);
    let from: Vec<String> = received.lock().unwrap().clone();
    assert!(
        from.iter().any(|f| f.ends_with(":6000")),
        "no chunk came from the node the DHT named: {from:?}"
    );
}
