//! Resolving in process, over the in-memory DHT: a publisher (`share::run`) announces its
//! file; with the tracker up, a ticket resolves to the directory; with it stopped, to the
//! publisher, past a dead address and a node serving another file that the DHT also names.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::net::Endpoint;
use crate::secure::Identity;
use crate::ticket::Ticket;

/// A tracker on loopback, in process, until `stop` is cancelled; its endpoint.
fn tracker(stop: &CancellationToken) -> Endpoint {
    let listener = crate::net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let directory = crate::owner::directory(&[], addr, crate::directory::DEFAULT_PEER_TTL);
    let config = crate::owner::OwnerConfig::new(Arc::new(
        crate::events::EventSink::console("tracker").quiet(),
    ));
    let run = crate::owner::run(listener, Vec::new(), directory, config, stop.clone());
    tokio::spawn(run);
    Endpoint::local(addr.port())
}

/// Publishes `file` to `directory` in process (`share::run`), announcing in `dht`, until
/// `stop`; the address it serves on.
fn publish(
    directory: &Endpoint,
    file: &Arc<crate::owner::SharedFile>,
    dht: &MemoryDht,
    stop: &CancellationToken,
) -> std::net::SocketAddr {
    let listener = crate::net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let publisher = listener.local_addr().unwrap();
    let config = crate::share::ShareConfig {
        directory: directory.clone(),
        paths: crate::share::Paths::new(vec![file.path().to_path_buf()]),
        files: vec![file.clone()],
        chunk_size: 16 * 1024,
        peers: 5,
        serve: crate::owner::OwnerConfig::new(Arc::new(
            crate::events::EventSink::console("share").quiet(),
        )),
        on_report: Arc::new(|_| {}),
        dht: Some(Arc::new(dht.handle("127.0.0.1".parse().unwrap()))),
    };
    tokio::spawn(crate::share::run(listener.into(), config, stop.clone()));
    publisher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_resolves_to_the_directory_then_to_a_source_the_dht_names() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("f.bin");
    std::fs::write(&path, vec![7u8; 50_000]).unwrap();
    let file = Arc::new(crate::owner::SharedFile::open(&path, 16 * 1024, 5).unwrap());
    let ticket_of = |d: &Endpoint| Ticket::new(d.to_string(), &file.manifest, None);
    let dht = MemoryDht::new("127.0.0.1".parse().unwrap());
    let key = key_of(&file.manifest.hash);
    // A node that announced and is gone: named first, skipped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    dht.insert(key, ([127, 0, 0, 1], dead).into());
    // A node that answers but serves another file (a liar, or a stale entry): skipped.
    let other_stop = CancellationToken::new();
    let _other_guard = other_stop.clone().drop_guard();
    let other = tracker(&other_stop);
    dht.insert(key, ([127, 0, 0, 1], other.port()).into());

    let tracker_stop = CancellationToken::new();
    let directory = tracker(&tracker_stop);
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let publisher = publish(&directory, &file, &dht, &stop);
    let me = Identity::ephemeral();
    let ticket = ticket_of(&directory);
    // Announced, and listed by the directory: the directory is used.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let listed = resolve(&ticket, &directory, &me, &dht).await;
        if dht.get(&key).contains(&publisher) && listed == Ok(Resolved::Directory) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listed:?}, {:?}",
            dht.get(&key)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The tracker stops: the DHT's second name, the publisher, is used.
    tracker_stop.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let found = loop {
        match resolve(&ticket, &directory, &me, &dht).await {
            Ok(Resolved::Directory) => {}
            other => break other,
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tracker never stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Three named; the publisher keeps a directory of its own.
    assert!(
        matches!(&found, Ok(Resolved::Source { source, named: 3, directory: true, .. })
            if *source == Endpoint::on(None, publisher)),
        "{found:?}"
    );
    // Nobody serves it: the words say what was asked.
    stop.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let why = loop {
        match resolve(&ticket, &directory, &me, &dht).await {
            Err(why) => break why,
            Ok(_) => assert!(tokio::time::Instant::now() < deadline),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        why.ends_with("and none of the 3 nodes the DHT named for it serves it (asked 3)"),
        "{why}"
    );
}
