//! `peer share`: a peer that publishes files of its own. It serves their chunks on its port
//! with the owner's serving code (choking, upload slots, rate limit: a getter meets it as a
//! source), and registers them with a directory (a tracker or a file owner) over one
//! connection: `hello` (role `publisher`, its port), then one `publish` per file, each
//! answered `published` with the file's id, then keep-alives. The directory lists each file
//! with this peer as a complete source for as long as that connection lives; a lost
//! connection is made again with backoff, and every file published again. Stopping (the
//! token) withdraws everything.
//!
//! The paths shared are looked at again every [`RESCAN`]: a file added to a shared folder is
//! hashed and published, a file removed (or changed: it is hashed again) is withdrawn.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::connection::{ConnWriter, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::driver::{self, Flow, Reading, Writing};
use crate::hash::Hash;
use crate::key::NodeId;
use crate::manifest::Manifest;
use crate::net::{Backoff, Endpoint, Listener};
use crate::owner::{self, Files, SharedFile};
use crate::protocol::{MAX_MANIFEST_LEN, Message, PROTOCOL_VERSION, ProtocolError, Role};
use crate::secure::Identity;
use crate::{Error, Result, watch};

mod scan;
mod state;
use scan::Rescan;
use state::Current;
pub use state::{OnReport, Paths, RESCAN, Report};

/// A connection to the directory that lasted this long counts as progress: the backoff
/// starts again.
const STABLE: Duration = Duration::from_secs(30);

/// What a publisher shares, where, and how.
pub struct ShareConfig {
    /// The directory to publish to.
    pub directory: Endpoint,
    /// The paths given (files, or folders whose regular files are shared; changeable while
    /// it runs), looked at again
    /// every [`RESCAN`].
    pub paths: Paths,
    /// The files of `paths` at start, hashed and open.
    pub files: Vec<Arc<SharedFile>>,
    /// The chunk size for files found later.
    pub chunk_size: u64,
    /// The expected ring size of each file: a ring member of it is handed ⌈chunks / peers⌉
    /// chunks (a tracker sends the members of a published file's ring here for their chunks).
    pub peers: u32,
    /// How its chunks are served (the owner's settings: events, cap, slots), and who this
    /// node is on the wire (`serve.identity`: its key, and the swarm's shared secret), to the
    /// directory as to its getters.
    pub serve: owner::OwnerConfig,
    /// Told of each file published (the first time) and withdrawn.
    pub on_report: OnReport,
    /// `--dht`: every file shared is announced there too.
    pub dht: Option<Arc<dyn crate::dht::Discovery>>,
}

impl std::fmt::Debug for ShareConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareConfig")
            .field("directory", &self.directory)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// Shares the files on `listener` and publishes them until `token` is cancelled.
///
/// # Errors
///
/// The directory refused a file (a bad name, another publisher on this address): retrying
/// would not help.
pub async fn run(listener: Listener, config: ShareConfig, token: CancellationToken) -> Result<()> {
    let addr = listener.local_addr().map_err(ProtocolError::Io)?;
    let ShareConfig {
        directory,
        paths,
        files,
        chunk_size,
        peers,
        serve,
        on_report,
        dht,
    } = config;
    let identity = serve.identity.clone();
    // Its own directory holds the getters it serves (their `locate` goes to `directory`).
    let local = owner::directory(&files, addr, crate::directory::DEFAULT_PEER_TTL);
    let served = Arc::new(Files::new(files.clone()));
    let server = crate::task::spawn_named(
        "owner",
        owner::run_with(
            listener,
            served.clone(),
            local.clone(),
            serve,
            token.child_token(),
        ),
    );
    let current = Arc::new(Current {
        files: Mutex::new(files),
        changed: watch::Sender::new(()),
        reported: Mutex::new(BTreeSet::new()),
    });
    let scan = Rescan {
        paths,
        chunk_size,
        peers,
        current: current.clone(),
        served,
        local,
        on_report: on_report.clone(),
    };
    let scanner = crate::task::spawn_named("scanner", scan.run(token.child_token()));
    let announcer = dht.map(|dht| {
        let c = current.clone();
        let keys = move || {
            c.snapshot()
                .iter()
                .map(|f| (f.manifest.hash, crate::dht::key_of(&f.manifest.hash)))
                .collect()
        };
        let run = crate::dht::announce_every(dht, keys, addr.port(), token.child_token());
        crate::task::spawn_named("dht-announcer", run)
    });
    let publisher = Publisher {
        directory,
        node: identity.id().to_hex(),
        identity,
        current,
        on_report,
        directory_node: Mutex::new(None),
    };
    let res = publish_loop(&publisher, addr.port(), &token).await;
    token.cancel();
    let _ = scanner.await;
    if let Some(a) = announcer {
        let _ = a.await;
    }
    let _ = server.await;
    res
}

/// What publishing needs.
struct Publisher {
    directory: Endpoint,
    identity: Arc<Identity>,
    /// This node's key in hex, as `hello.node` carries it.
    node: String,
    current: Arc<Current>,
    on_report: OnReport,
    /// The directory's key, as the last connection's handshake proved it (for tickets).
    directory_node: Mutex<Option<NodeId>>,
}

impl Publisher {
    /// Reports `manifest` published as `id`, the first time.
    fn published(&self, id: u32, hash: &str) {
        let Ok(hash) = hash.parse::<Hash>() else {
            return;
        };
        let files = self.current.snapshot();
        let Some(f) = files.iter().find(|f| f.manifest.hash == hash) else {
            return;
        };
        if self.current.reported().insert(hash) {
            let node = *self
                .directory_node
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            (self.on_report)(&Report::Published {
                id,
                manifest: f.manifest.clone(),
                node,
                file: f.clone(),
            });
        }
    }
}

/// Keeps the files published until `token` is cancelled.
async fn publish_loop(publisher: &Publisher, port: u16, token: &CancellationToken) -> Result<()> {
    let mut backoff = Backoff::default();
    while !token.is_cancelled() {
        let since = Instant::now();
        let res = tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            r = session(publisher, port, token) => r,
        };
        match res {
            Ok(()) => return Ok(()),
            Err(e @ (Error::Refused(_) | Error::Manifest(_))) => return Err(e),
            Err(e) => warn!("directory {}: {e}; publishing again", publisher.directory),
        }
        backoff.after(since.elapsed() >= STABLE);
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
    Ok(())
}

/// One connection to the directory: the handshake, a `publish` per file, then changes and
/// keep-alives.
async fn session(publisher: &Publisher, port: u16, token: &CancellationToken) -> Result<()> {
    let me = &publisher.identity;
    let mut conn = crate::link::connect(&publisher.directory, me, None, MAX_MANIFEST_LEN).await?;
    *publisher
        .directory_node
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = conn.node();
    conn.send(Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Publisher,
        file: None,
        have: crate::chunkset::Ranges::default(),
        port: Some(port),
        node: Some(publisher.node.clone()),
    })
    .await?;
    let mut changed = publisher.current.changed.subscribe();
    let files = publisher.current.snapshot();
    let mut heartbeat = KEEPALIVE_INTERVAL;
    let mut told = BTreeMap::new();
    for f in &files {
        let msg = Message::publish(f.manifest_json());
        let what = "waiting for published";
        conn.send(msg).await?;
        let answer = conn.recv(what, HANDSHAKE_TIMEOUT).await.map_err(refusal)?;
        let Some(Message::Published {
            id,
            hash,
            heartbeat_ms,
        }) = answer
        else {
            return Err(ProtocolError::unexpected(answer.as_ref(), what).into());
        };
        heartbeat = Duration::from_millis(heartbeat_ms)
            .clamp(Duration::from_millis(100), KEEPALIVE_INTERVAL);
        publisher.published(id, &hash);
        told.insert(f.manifest.hash, f.manifest.clone());
    }
    info!(
        "published {} file(s) at {}",
        told.len(),
        publisher.directory
    );
    // Changes while connecting are looked at once the driver runs.
    changed.mark_changed();
    let writing = Changes {
        publisher,
        told,
        changed,
        heartbeat,
    };
    driver::drive(conn, Listen { publisher }, writing, 1, token).await?;
    Err(Error::Protocol(ProtocolError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the directory closed the connection",
    ))))
}

/// An `error` from the directory is its refusal.
fn refusal(e: ProtocolError) -> Error {
    match e {
        ProtocolError::Remote(m) => Error::Refused(m),
        e => e.into(),
    }
}

/// The reader's side after the first publications: `published` answers, keep-alives.
struct Listen<'a> {
    publisher: &'a Publisher,
}

impl Reading for Listen<'_> {
    type Out = ();

    fn limit(&self) -> (&'static str, Duration) {
        ("waiting for the directory's keep-alive", IDLE_TIMEOUT)
    }

    async fn on_message(&mut self, msg: Message, _tx: &mpsc::Sender<()>) -> Result<()> {
        match msg {
            Message::Have { chunks } if chunks.is_empty() => Ok(()),
            Message::Published { id, hash, .. } => {
                self.publisher.published(id, &hash);
                Ok(())
            }
            other => Err(ProtocolError::unexpected(Some(&other), "publishing").into()),
        }
    }
}

/// The writer's side after the first publications: what the folder gained or lost, and a
/// keep-alive within the directory's TTL.
struct Changes<'a> {
    publisher: &'a Publisher,
    /// What the directory was told this connection shares, by hash.
    told: BTreeMap<Hash, Arc<Manifest>>,
    changed: watch::Receiver<()>,
    heartbeat: Duration,
}

impl Writing for Changes<'_> {
    type Out = ();
    type Wake = bool;

    fn keepalive(&self) -> Duration {
        self.heartbeat
    }

    async fn wake(&mut self) -> bool {
        self.changed.changed().await.is_ok()
    }

    async fn on_wake(&mut self, open: bool, writer: &mut ConnWriter) -> Result<Flow> {
        if !open {
            return Ok(Flow::Done);
        }
        let now: BTreeMap<Hash, Arc<SharedFile>> = self
            .publisher
            .current
            .snapshot()
            .into_iter()
            .map(|f| (f.manifest.hash, f))
            .collect();
        let mut sent = false;
        let gone: Vec<Hash> = self
            .told
            .keys()
            .filter(|h| !now.contains_key(h))
            .copied()
            .collect();
        for hash in gone {
            self.told.remove(&hash);
            writer
                .send(Message::Unpublish {
                    hash: hash.to_string(),
                })
                .await?;
            sent = true;
        }
        for (hash, f) in now {
            if let std::collections::btree_map::Entry::Vacant(e) = self.told.entry(hash) {
                writer.send(Message::publish(f.manifest_json())).await?;
                e.insert(f.manifest.clone());
                sent = true;
            }
        }
        Ok(sent.into())
    }

    async fn on_out(&mut self, (): (), _writer: &mut ConnWriter) -> Result<Flow> {
        Ok(Flow::Idle)
    }
}
