//! In-process twins of the spawned-binary engine tests: the real owner and peers (and their
//! disk stores, in a temporary folder) over an in-memory network, under tokio's paused clock.
//! Kills are cancellations, waits are on events, and every deadline is virtual: the same
//! behaviours as tests/recovery.rs and tests/getter.rs, without processes or wall time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringswarm::events::{Event, EventKind, EventSink};
use ringswarm::manifest::DEFAULT_CHUNK_SIZE;
use ringswarm::net::MemNet;
use ringswarm::owner::{self, SharedFile};
use ringswarm::peer::{self, Completion, Outcome};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::util::{chunk_count, random_file, summary_ids};

/// The owner's port on every test's network.
const OWNER: u16 = 5000;
/// The longest any wait here may take, in virtual time.
const VIRTUAL_WAIT: Duration = Duration::from_secs(600);

/// Every node's events, in order, and a signal for each new one.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<Event>>,
    grew: Notify,
}

impl Log {
    fn sink(self: &Arc<Self>, label: impl Into<String>) -> Arc<EventSink> {
        let log = self.clone();
        Arc::new(
            EventSink::console(label)
                .quiet()
                .clock(ringswarm::events::tokio_clock(0.0))
                .observe(Arc::new(move |e: &Event| {
                    log.events.lock().unwrap().push(e.clone());
                    log.grew.notify_waiters();
                })),
        )
    }

    /// Waits (in virtual time) until `cond` holds of the events so far.
    async fn until(&self, what: &str, cond: impl Fn(&[Event]) -> bool) {
        let wait = async {
            loop {
                let grew = self.grew.notified();
                tokio::pin!(grew);
                grew.as_mut().enable();
                if cond(&self.events.lock().unwrap()) {
                    return;
                }
                grew.await;
            }
        };
        if tokio::time::timeout(VIRTUAL_WAIT, wait).await.is_err() {
            panic!("{what}: not within {VIRTUAL_WAIT:?} of virtual time");
        }
    }

    /// Waits until `peer` has received `n` chunks (from `from`, when given).
    async fn received(&self, peer: &str, from: Option<&str>, n: usize) {
        let what = format!("{peer} receiving {n} chunks");
        self.until(&what, |ev| {
            chunks_of(ev, peer, EventKind::ChunkReceived, from).len() >= n
        })
        .await;
    }

    /// The chunks of `kind` events by `peer` (from `from`, when given).
    fn chunks(&self, peer: &str, kind: EventKind, from: Option<&str>) -> Vec<u32> {
        chunks_of(&self.events.lock().unwrap(), peer, kind, from)
    }
}

fn chunks_of(events: &[Event], peer: &str, kind: EventKind, from: Option<&str>) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e.peer == peer && e.event == kind)
        .filter(|e| from.is_none_or(|f| e.neighbour == f))
        .filter_map(|e| e.chunk)
        .collect()
}

fn label(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A running node: stop it with its token, then await its task.
struct Node<T> {
    token: CancellationToken,
    task: JoinHandle<ringswarm::Result<T>>,
}

impl<T> Node<T> {
    async fn stop(self) -> ringswarm::Result<T> {
        self.token.cancel();
        self.task.await.expect("the node's task panicked")
    }
}

/// A peer, and the news of its completion.
struct Peer {
    port: u16,
    dir: PathBuf,
    node: Node<Outcome>,
    done: oneshot::Receiver<Completion>,
}

/// A file, an owner and its network, in a temporary folder.
struct World {
    tmp: tempfile::TempDir,
    net: Arc<MemNet>,
    log: Arc<Log>,
    original: Vec<u8>,
    chunks: u32,
    directory: Arc<ringswarm::directory::Directory>,
    owner: Option<Node<()>>,
}

impl World {
    /// A random file of `size` bytes shared by an owner expecting `peers` peers, uploading at
    /// `rate` bytes a second at most, serving `slots` getters at once.
    fn new(size: usize, seed: u64, peers: u32, rate: Option<u64>, slots: usize) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data.bin");
        random_file(&path, size, seed);
        let original = std::fs::read(&path).unwrap();
        let net = MemNet::new();
        let log = Arc::new(Log::default());
        let files = vec![Arc::new(
            SharedFile::open(&path, DEFAULT_CHUNK_SIZE, peers).unwrap(),
        )];
        let addr = ([127, 0, 0, 1], OWNER).into();
        let directory = owner::directory(&files, addr, ringswarm::directory::DEFAULT_PEER_TTL);
        let config = owner::OwnerConfig {
            peers,
            upload_limit: rate.map(|r| Arc::new(ringswarm::rate::RateLimiter::new(r, 1 << 17))),
            upload_slots: slots,
            seed: Some(seed),
            ..owner::OwnerConfig::new(log.sink("owner"))
        };
        let token = CancellationToken::new();
        let task = tokio::spawn(owner::run(
            net.listen(OWNER).unwrap(),
            files,
            directory.clone(),
            config,
            token.clone(),
        ));
        Self {
            tmp,
            net,
            log,
            chunks: chunk_count(size),
            original,
            directory,
            owner: Some(Node { token, task }),
        }
    }

    fn dir(&self, port: u16) -> PathBuf {
        self.tmp.path().join(format!("peer-{port}"))
    }

    /// Starts a peer on `port`: a ring peer downloading from `neighbour`, or with `get` a
    /// getter; `tune` sets the rest.
    fn start(&self, port: u16, neighbour: u16, tune: impl FnOnce(&mut peer::Config)) -> Peer {
        let (tx, done) = oneshot::channel();
        let dir = self.dir(port);
        let mut config = peer::Config {
            owner: self.net.endpoint_from(port, OWNER),
            neighbour: self.net.endpoint_from(port, neighbour),
            events: self.log.sink(label(port)),
            seed: Some(u64::from(port)),
            on_complete: Some(tx),
            ..crate::util::ring_peer(OWNER, neighbour, dir.clone())
        };
        tune(&mut config);
        let token = CancellationToken::new();
        let listener = self.net.listen(port).unwrap();
        let task = tokio::spawn(peer::run(listener, config, token.clone()));
        Peer {
            port,
            dir,
            node: Node { token, task },
            done,
        }
    }

    /// A ring of `n` peers on ports 5001… (each downloading from the next), each tuned by
    /// `tune(i, config)`.
    fn ring(&self, n: u16, tune: impl Fn(u16, &mut peer::Config)) -> Vec<Peer> {
        (0..n)
            .map(|i| self.start(5001 + i, 5001 + (i + 1) % n, |c| tune(i, c)))
            .collect()
    }

    /// Waits for `peer` to complete; checks its file is the original.
    async fn completes(&self, peer: Peer) {
        let port = peer.port;
        let outcome = tokio::time::timeout(VIRTUAL_WAIT, peer.node.task)
            .await
            .unwrap_or_else(|_| panic!("peer {port} still running after {VIRTUAL_WAIT:?}"))
            .unwrap()
            .unwrap_or_else(|e| panic!("peer {port} failed: {e}"));
        let Outcome::Complete(c) = outcome else {
            panic!("peer {port} was interrupted");
        };
        self.same_file(&c.path);
    }

    fn same_file(&self, path: &Path) {
        assert!(
            std::fs::read(path).unwrap() == self.original,
            "{} differs from the original",
            path.display()
        );
    }

    /// True once every chunk was sent by `who` at least once.
    fn all_sent_by(&self, events: &[Event], who: &str) -> bool {
        let sent: BTreeSet<u32> = chunks_of(events, who, EventKind::ChunkSent, None)
            .into_iter()
            .collect();
        sent.len() == self.chunks as usize
    }
}

/// Twin of `recovery::owner_killed_once_ring_holds_every_chunk`: the owner stops once the
/// ring holds every chunk, with peers unfinished; the ring completes without it.
#[tokio::test(start_paused = true)]
async fn the_ring_completes_after_the_owner_stops() {
    let mut world = World::new(4 << 20, 41, 5, Some(2 << 20), 4);
    let mut peers = world.ring(5, |_, c| c.upload_limit = Some(1 << 20));
    let labels: Vec<String> = peers.iter().map(|p| label(p.port)).collect();
    let chunks = world.chunks as usize;
    world
        .log
        .until(
            "the owner sending every chunk and the ring holding them",
            |ev| {
                let held: BTreeSet<u32> = labels
                    .iter()
                    .flat_map(|l| chunks_of(ev, l, EventKind::ChunkReceived, None))
                    .collect();
                world.all_sent_by(ev, "owner") && held.len() == chunks
            },
        )
        .await;
    world.owner.take().unwrap().stop().await.unwrap();
    let mut unfinished = 0;
    for p in &mut peers {
        unfinished += usize::from(p.done.try_recv().is_err());
    }
    assert!(
        unfinished > 0,
        "every peer was complete: the test proves nothing"
    );
    for p in peers {
        world.completes(p).await;
    }
}

/// Twin of `recovery::killed_peer_restarts_and_fetches_only_what_it_lacks`.
#[tokio::test(start_paused = true)]
async fn a_stopped_peer_restarts_and_fetches_only_what_it_lacks() {
    let world = World::new(6 << 20, 6, 5, Some(1 << 20), 4);
    let capped = |_: u16, c: &mut peer::Config| c.upload_limit = Some(1 << 20);
    let mut peers = world.ring(5, capped);
    let victim = peers.remove(2);
    let who = label(victim.port);
    world.log.received(&who, None, 10).await;
    let (port, dir) = (victim.port, victim.dir.clone());
    assert!(matches!(victim.node.stop().await, Ok(Outcome::Interrupted)));
    let held = summary_ids(&dir.join("data.bin.summary"));
    assert!(
        !held.is_empty() && held.len() < world.chunks as usize,
        "{held:?}"
    );
    let before = world.log.chunks(&who, EventKind::ChunkReceived, None).len();

    let again = world.start(port, 5004, |c| c.upload_limit = Some(1 << 20));
    for p in peers {
        world.completes(p).await;
    }
    world.completes(again).await;
    let second = &world.log.chunks(&who, EventKind::ChunkReceived, None)[before..];
    let refetched: Vec<u32> = second
        .iter()
        .copied()
        .filter(|c| held.contains(c))
        .collect();
    assert!(
        refetched.is_empty(),
        "fetched again after the restart: {refetched:?}"
    );
    assert_eq!(held.len() + second.len(), world.chunks as usize);
}

/// Twin of `recovery::corrupted_upload_is_refused_and_fetched_again`: the two chunks peer 1
/// corrupts are refused by peer 0 (sent, never received) and fetched again. Their metrics
/// (`peer --http`'s `/metrics`, read from each one's status) agree with the event log: peer 0
/// refused 2 chunks and verified every one it received; peer 1 sent its upload neighbour
/// every chunk the log says it sent.
#[tokio::test(start_paused = true)]
async fn corrupted_uploads_are_refused_and_fetched_again() {
    let world = World::new(2 << 20, 2, 3, Some(1 << 20), 4);
    let status: Vec<_> = (0..3).map(|_| Arc::new(peer::Status::new())).collect();
    let peers = world.ring(3, |i, c| {
        if i == 1 {
            c.corrupt_sends = 2;
        }
        c.status = Some(status[usize::from(i)].clone());
    });
    for p in peers {
        world.completes(p).await;
    }
    let (zero, one) = (label(5001), label(5002));
    let sent = world.log.chunks(&one, EventKind::ChunkSent, Some(&zero));
    let received = world
        .log
        .chunks(&zero, EventKind::ChunkReceived, Some(&one));
    assert_eq!(
        sent.len(),
        received.len() + 2,
        "peer 1 sent {sent:?}, peer 0 kept {received:?}"
    );
    let zero_metrics = status[0].render_metrics(None);
    let one_metrics = status[1].render_metrics(None);
    let from_all = world
        .log
        .chunks(&zero, EventKind::ChunkReceived, None)
        .len();
    for (text, line) in [
        (
            &zero_metrics,
            "ringswarm_refused_chunks_total 2".to_string(),
        ),
        (
            &zero_metrics,
            format!("ringswarm_verified_chunks_total {from_all}"),
        ),
        (
            &zero_metrics,
            format!("ringswarm_held_chunks {}", world.chunks),
        ),
        (
            &zero_metrics,
            format!("ringswarm_file_chunks {}", world.chunks),
        ),
        (&one_metrics, "ringswarm_refused_chunks_total 0".to_string()),
        (
            &one_metrics,
            format!(
                "ringswarm_sent_chunks_total{{role=\"neighbour\"}} {}",
                world.log.chunks(&one, EventKind::ChunkSent, None).len()
            ),
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

/// Twin of `recovery::a_peer_whose_neighbour_stays_down_fetches_from_other_sources`: peer 0's
/// download neighbour stops; peer 0 falls back to the other sources the directory lists and
/// completes; the neighbour comes back on its folder and the ring completes.
#[tokio::test(start_paused = true)]
async fn a_peer_whose_neighbour_stays_down_fetches_from_other_sources() {
    let world = World::new(6 << 20, 12, 4, Some(1 << 20), 4);
    let mut peers = world.ring(4, |_, _| {});
    let dead = peers.remove(1);
    let dead_label = label(dead.port);
    world.log.received(&dead_label, None, 3).await;
    let port = dead.port;
    dead.node.stop().await.unwrap();
    let zero = peers.remove(0);
    world.completes(zero).await;
    let others = [label(5003), label(5004)];
    let from_others: usize = others
        .iter()
        .map(|o| {
            world
                .log
                .chunks(&label(5001), EventKind::ChunkReceived, Some(o))
                .len()
        })
        .sum();
    assert!(
        from_others > 0,
        "peer 0 got nothing from peers 2 and 3: {:?}",
        world
            .log
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.peer == label(5001) && e.event != EventKind::ChunkRequested)
            .map(|e| format!("{:.2} {:?} {:?} {}", e.ts, e.event, e.chunk, e.neighbour))
            .collect::<Vec<_>>()
    );
    let back = world.start(port, 5003, |_| {});
    for p in peers {
        world.completes(p).await;
    }
    world.completes(back).await;
}

/// A getter's settings: many sources, serving others until stopped.
fn getter(c: &mut peer::Config, max_sources: usize) {
    c.get = Some(peer::GetConfig { max_sources });
}

/// Twin of `getter::a_source_killed_mid_download_is_replaced_and_reported`.
#[tokio::test(start_paused = true)]
async fn a_getter_replaces_a_source_that_stops_and_reports_it() {
    let world = World::new(10 << 20, 42, 5, Some(2 << 20), 4);
    let mut a = world.start(6001, 0, |c| {
        getter(c, 5);
        c.upload_limit = Some(3 << 20);
    });
    tokio::time::timeout(VIRTUAL_WAIT, &mut a.done)
        .await
        .expect("a never completed")
        .unwrap();
    let b = world.start(6002, 0, |c| getter(c, 5));
    let (a_label, b_label) = (label(6001), label(6002));
    world.log.received(&b_label, Some(&a_label), 5).await;
    a.node.stop().await.unwrap();
    let mut b = b;
    let done = tokio::time::timeout(VIRTUAL_WAIT, &mut b.done)
        .await
        .expect("b never completed")
        .unwrap();
    world.same_file(&done.path);
    let lost =
        world.log.events.lock().unwrap().iter().any(|e| {
            e.peer == b_label && e.event == EventKind::SourceLost && e.neighbour == a_label
        });
    assert!(lost, "b did not report {a_label} lost");
    let listed = |d: &ringswarm::directory::Directory| d.peers().iter().any(|m| m.addr == a_label);
    let gone = async {
        while listed(&world.directory) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::time::timeout(VIRTUAL_WAIT, gone)
        .await
        .expect("the stopped source is still in the directory");
    b.node.stop().await.unwrap();
}

/// Twin of `getter::an_uploader_never_serves_a_getter_it_chokes`: one upload slot, three
/// getters that may use only the owner; they take turns, and no chunk goes to a choked one.
#[tokio::test(start_paused = true)]
async fn an_uploader_never_serves_a_getter_it_chokes() {
    let world = World::new(4_000_000, 45, 5, Some(8 << 20), 1);
    let mut getters: Vec<Peer> = (6001..=6003)
        .map(|port| world.start(port, 0, |c| getter(c, 1)))
        .collect();
    for g in &mut getters {
        let c = tokio::time::timeout(VIRTUAL_WAIT, &mut g.done)
            .await
            .expect("a getter never completed")
            .unwrap();
        world.same_file(&c.path);
    }
    for g in getters {
        g.node.stop().await.unwrap();
    }
    let events = world.log.events.lock().unwrap().clone();
    let mut unchoked = BTreeSet::new();
    let mut sent = 0;
    for e in events.iter().filter(|e| e.peer == "owner") {
        match e.event {
            EventKind::Unchoke => {
                unchoked.insert(e.neighbour.clone());
            }
            EventKind::Choke => {
                unchoked.remove(&e.neighbour);
            }
            EventKind::ChunkSent => {
                sent += 1;
                assert!(
                    unchoked.contains(&e.neighbour),
                    "sent to {} while choked",
                    e.neighbour
                );
            }
            _ => {}
        }
    }
    assert_eq!(sent, 3 * world.chunks as usize);
    assert!(
        events
            .iter()
            .any(|e| e.peer == "owner" && e.event == EventKind::Choke),
        "one slot for three getters, yet nobody was choked"
    );
}
