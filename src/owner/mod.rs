//! The file owner: shares files, hands each joining peer a subset of chunks, and serves any
//! chunk asked of it.
//!
//! [`run`] takes a bound listener and a cancellation token (tests and the demo bind
//! `127.0.0.1:0` first) and runs the crate's one accept loop; each connection runs in its own
//! task ([`dispatch`]): a directory query is answered (`answer`), a publisher publishes
//! (`publisher`), and a client joins (`join`: `hello` → hand-out and registration →
//! `welcome`) and is served chunks (`session`). A bad connection is answered, closed and
//! logged there, and the accept loop never sees it.

mod answer;
pub mod assign;
mod config;
mod files;
mod join;
mod member;
mod place;
mod probe;
mod publisher;
mod session;
mod shared;
mod spare;
mod state;
mod urgent;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Result;
use crate::accept::{Accepted, Admission, accept_loop};
use crate::choke::{Choker, spawn_rechoker};
use crate::connection::{Connection, Hello};
use crate::directory::Directory;
use crate::link;
use crate::net::Listener;
use crate::protocol::Role;
use crate::task::spawn_tracked;
pub use config::{MAX_CONNECTIONS, ORPHAN_BATCH, ORPHAN_QUIET, OwnerConfig};
pub(crate) use files::Files;
pub use files::files_to_share;
use join::{Joining, Opened};
pub use shared::SharedFile;
use state::Owner;

/// The directory of `files` for an owner listening on `addr`: ids in the files' order.
pub fn directory(files: &[Arc<SharedFile>], addr: SocketAddr, ttl: Duration) -> Arc<Directory> {
    Arc::new(Directory::new(
        files.iter().map(|f| f.manifest.clone()).collect(),
        addr,
        ttl,
    ))
}

/// Serves `files` on `listener` until `token` is cancelled, keeping `directory` (made by
/// [`directory`] from the same files).
///
/// # Errors
///
/// None today: accept errors are logged and retried; the signature leaves room for them.
pub async fn run(
    listener: impl Into<Listener>,
    files: Vec<Arc<SharedFile>>,
    directory: Arc<Directory>,
    config: OwnerConfig,
    token: CancellationToken,
) -> crate::Result<()> {
    let tracker = TaskTracker::new();
    for f in &files {
        spawn_tracked(
            &tracker,
            "orphans",
            f.clone().publish_orphans(token.child_token()),
        );
    }
    let files = Arc::new(Files::new(files));
    serve(listener.into(), files, directory, config, token, tracker).await
}

/// As [`run`], with a list of files the caller may add to while it runs (a publisher's
/// folder).
pub(crate) async fn run_with(
    listener: Listener,
    files: Arc<Files>,
    directory: Arc<Directory>,
    config: OwnerConfig,
    token: CancellationToken,
) -> crate::Result<()> {
    serve(
        listener,
        files,
        directory,
        config,
        token,
        TaskTracker::new(),
    )
    .await
}

async fn serve(
    listener: Listener,
    files: Arc<Files>,
    directory: Arc<Directory>,
    config: OwnerConfig,
    token: CancellationToken,
    tracker: TaskTracker,
) -> crate::Result<()> {
    let choker = Choker::new(config.upload_slots);
    config.metrics.set_choker(choker.clone());
    let rechoker = spawn_rechoker(&choker);
    let max_connections = config.max_connections;
    let owner = Arc::new(Owner {
        config: Arc::new(config),
        files,
        directory,
        choker,
        spare: spare::SpareGate::default(),
        urgent: urgent::UrgentGate::default(),
        net: listener.mem_net(),
    });
    let admission = Admission {
        max_connections,
        what: "accept",
    };
    accept_loop(listener, &token, &tracker, admission, |a: Accepted| {
        let owner = owner.clone();
        let span = info_span!("conn", peer = %a.addr);
        async move {
            let identity = &owner.config.identity;
            let conn = match link::accept(a.stream, a.addr.to_string(), identity, 0).await {
                Ok(c) => c,
                Err(e) => {
                    warn!("connection closed in the handshake: {e}");
                    return;
                }
            };
            dispatch(conn, a.permit, owner, a.token).await;
        }
        .instrument(span)
    })
    .await;
    info!("owner shutting down");
    rechoker.abort();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close within 3s");
    }
    Ok(())
}

/// Serves one accepted connection (over TCP, or any stream in tests); `permit` is its place
/// under the owner's `max_connections`, `None` when there is none left. How it ends is
/// logged here.
async fn dispatch(
    mut conn: Connection,
    permit: Option<OwnedSemaphorePermit>,
    owner: Arc<Owner>,
    token: CancellationToken,
) {
    if permit.is_none() {
        warn!("too many connections; refusing");
        conn.send_error(format!(
            "owner is busy: at most {} connections at once; try again later",
            owner.config.max_connections
        ))
        .await;
        return;
    }
    let served = match Opened::read(&mut conn).await {
        Ok(Opened::Queries(first)) => answer::answer_queries(conn, first, &owner.directory).await,
        Ok(Opened::Client(hello)) => serve_client(conn, &owner, hello, &token).await,
        Err(e) => Err(e),
    };
    match served {
        Ok(()) => debug!("connection closed"),
        Err(e) => warn!("connection closed: {e}"),
    }
}

/// A client after `hello`: a publisher publishes; a ring peer or a getter joins and is
/// served. A refusal is counted in the metrics.
async fn serve_client(
    conn: Connection,
    owner: &Owner,
    hello: Hello,
    token: &CancellationToken,
) -> Result<()> {
    let role = hello.role;
    let metrics = &owner.config.metrics;
    let _open = metrics.connection(role);
    let res = match role {
        Role::Publisher => publisher::run(conn, owner, &hello, token).await,
        _ => join(conn, owner, hello, token).await,
    };
    if matches!(res, Err(crate::Error::Refused(_))) {
        metrics.refused(role);
    }
    res
}

/// A ring peer's or a getter's join (the steps are in `join.rs`), then its session.
async fn join(
    mut conn: Connection,
    owner: &Owner,
    hello: Hello,
    token: &CancellationToken,
) -> Result<()> {
    let joining = Joining::find(hello, conn.remote(), owner);
    let placed = match joining.and_then(|j| j.place(owner)) {
        Ok(placed) => placed,
        Err(refusal) => return Err(refusal.send(&mut conn).await),
    };
    let client = placed.welcome(&mut conn, owner).await?;
    session::run(conn, owner, client, token).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::chunkset::Ranges;
    use crate::connection::HANDSHAKE_TIMEOUT;
    use crate::protocol::{MAX_MANIFEST_LEN, Message, PROTOCOL_VERSION, ProtocolError};

    /// An owner session over an in-memory stream, under tokio's paused clock: a directory
    /// member that goes silent is dropped exactly when its TTL has passed in virtual time,
    /// with an error saying why.
    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_dropped_when_its_ttl_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data.bin");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let files = vec![Arc::new(SharedFile::open(&path, 1000, 5).unwrap())];
        let ttl = Duration::from_secs(45);
        let owner = Arc::new(Owner::for_tests(files, ttl));
        let directory = owner.directory.clone();
        let (conn, mut client) = connected();
        let token = CancellationToken::new();
        tokio::spawn(dispatch(conn, permit(), owner, token.clone()));

        client
            .send(Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Getter,
                file: None,
                have: Ranges::default(),
                port: Some(7001),
                node: Some("ab12".into()),
            })
            .await
            .unwrap();
        let welcome = client.recv("welcome", HANDSHAKE_TIMEOUT).await.unwrap();
        assert!(
            matches!(welcome, Some(Message::Welcome { .. })),
            "{welcome:?}"
        );
        let joined = tokio::time::Instant::now();
        assert_eq!(directory.peers()[0].addr, "127.0.0.1:7001");
        let listed = directory.locate("1").sources;
        assert_eq!(listed[1].node.as_deref(), Some("ab12"), "{listed:?}");
        // Silent from now on: the owner says it holds everything, its keep-alives arrive,
        // then the error.
        let all = client.recv("the owner's have", HANDSHAKE_TIMEOUT).await;
        assert!(
            matches!(&all, Ok(Some(Message::Have { chunks })) if chunks.0 == [[0, 9]]),
            "{all:?}"
        );
        let why = loop {
            match client.recv("the owner", Duration::from_secs(600)).await {
                Ok(Some(Message::Have { chunks })) if chunks.is_empty() => {}
                Err(ProtocolError::Remote(why)) => break why,
                other => panic!("expected keep-alives, then an error: {other:?}"),
            }
        };
        let waited = joined.elapsed();
        assert!(why.contains("past --peer-ttl"), "{why}");
        assert!(
            waited >= ttl && waited < ttl + Duration::from_secs(1),
            "dropped after {waited:?} of virtual time, the TTL being {ttl:?}"
        );
        assert!(directory.peers().is_empty(), "still listed");
        token.cancel();
    }

    /// A `hello` in `role` for `file`, from a client without an upload server.
    fn hello(role: Role, file: Option<&str>) -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
            role,
            file: file.map(Into::into),
            have: Ranges::default(),
            port: None,
            node: None,
        }
    }

    /// A 10-chunk file in memory, for 5 expected peers.
    fn owner_of_one_file() -> Arc<Owner> {
        let data = bytes::Bytes::from(vec![7u8; 10_000]);
        let file = SharedFile::from_memory("data.bin", data, 1000, 5).unwrap();
        Arc::new(Owner::for_tests(
            vec![Arc::new(file)],
            Duration::from_secs(45),
        ))
    }

    /// A place under `max_connections`.
    fn permit() -> Option<OwnedSemaphorePermit> {
        Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .ok()
    }

    /// The owner's end of an in-memory stream, and the client's.
    fn connected() -> (Connection, Connection) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let ours = Connection::over(ours, "127.0.0.1:40000".into(), 0);
        (
            ours,
            Connection::over(theirs, "owner".into(), MAX_MANIFEST_LEN),
        )
    }

    /// A connection with no place left under `max_connections` is told so, and closed.
    #[tokio::test(start_paused = true)]
    async fn a_connection_past_the_limit_is_told_the_owner_is_busy() {
        let owner = owner_of_one_file();
        let (ours, mut theirs) = connected();
        dispatch(ours, None, owner, CancellationToken::new()).await;
        let got = theirs.recv("the owner", HANDSHAKE_TIMEOUT).await;
        let busy = "owner is busy: at most 1024 connections at once; try again later";
        assert!(
            matches!(&got, Err(ProtocolError::Remote(m)) if m == busy),
            "{got:?}"
        );
        assert!(
            crate::Error::Refused(busy.into()).is_busy(),
            "worth retrying"
        );
    }

    /// A `hello` for a file the owner does not share is told why, and counted as refused.
    #[tokio::test(start_paused = true)]
    async fn a_refused_join_is_told_why_and_counted() {
        let owner = owner_of_one_file();
        let (ours, mut theirs) = connected();
        let client = async {
            theirs
                .send(hello(Role::Getter, Some("nope.bin")))
                .await
                .unwrap();
            theirs.recv("welcome", HANDSHAKE_TIMEOUT).await
        };
        let ((), got) = tokio::join!(
            dispatch(ours, permit(), owner.clone(), CancellationToken::new()),
            client
        );
        let told = "owner does not share \"nope.bin\"; it shares: ";
        assert!(
            matches!(&got, Err(ProtocolError::Remote(m)) if m.starts_with(told)),
            "{got:?}"
        );
        let metrics = owner.config.metrics.render(None);
        assert!(
            metrics.contains("ringswarm_refused_requests_total{role=\"getter\"} 1"),
            "{metrics}"
        );
    }

    /// A connection that opens with a query is answered, and may ask again.
    #[tokio::test(start_paused = true)]
    async fn a_query_is_answered_until_the_client_closes() {
        let owner = owner_of_one_file();
        let (ours, mut theirs) = connected();
        let client = async move {
            theirs.accept_answers();
            let mut answers = Vec::new();
            for q in [
                Message::List,
                Message::Search {
                    text: "DATA".into(),
                },
            ] {
                theirs.send(q).await.unwrap();
                answers.push(theirs.recv("files", HANDSHAKE_TIMEOUT).await.unwrap());
            }
            answers
        };
        let ((), answers) = tokio::join!(
            dispatch(ours, permit(), owner, CancellationToken::new()),
            client
        );
        for a in answers {
            let Some(Message::Files { body, .. }) = a else {
                panic!("{a:?}");
            };
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("data.bin"), "{text}");
        }
    }

    /// A ring peer is welcomed with its share, then served any chunk it asks for, and the
    /// session ends when it closes.
    #[tokio::test(start_paused = true)]
    async fn a_ring_peer_is_served_the_chunk_it_asks_for() {
        let owner = owner_of_one_file();
        let (ours, mut theirs) = connected();
        let client = async move {
            theirs.send(hello(Role::Peer, None)).await.unwrap();
            let welcome = theirs.recv("welcome", HANDSHAKE_TIMEOUT).await.unwrap();
            theirs.set_max_body(1000);
            theirs.send(Message::request(3)).await.unwrap();
            (
                welcome,
                theirs.recv("chunk", HANDSHAKE_TIMEOUT).await.unwrap(),
            )
        };
        let ((), (welcome, chunk)) = tokio::join!(
            dispatch(ours, permit(), owner, CancellationToken::new()),
            client
        );
        assert!(
            matches!(&welcome, Some(Message::Welcome { assigned, .. }) if !assigned.is_empty()),
            "{welcome:?}"
        );
        let Some(Message::Chunk { chunk: 3, data, .. }) = chunk else {
            panic!("{chunk:?}");
        };
        assert_eq!(data, vec![7u8; 1000]);
    }
}
