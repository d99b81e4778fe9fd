//! One owner connection: `hello` → `welcome` (manifest + assigned chunks) → serve requests,
//! pushing the orphan list whenever it changes; or a directory query (`list`, `search`,
//! `locate`) → its answer. A client that says `hello` with a port is a directory member while
//! its connection lives.
//!
//! This is the driver; the steps are in `hello` (up to `welcome`), `session` (serving),
//! `answer` (directory queries) and `probe` (a source reported lost).

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::hello::{self, Opened};
use super::shared::Files;
use super::state::Ctx;
use super::{answer, publisher, session};
use crate::Result;
use crate::connection::Connection;
use crate::protocol::Role;

/// Serves one client on `conn` (over TCP, or any stream in tests); `permit` is its place
/// under the owner's `max_connections`, `None` when there is none left.
pub(super) async fn handle(
    mut conn: Connection,
    permit: Option<OwnedSemaphorePermit>,
    ctx: Arc<Ctx>,
    token: CancellationToken,
) {
    if permit.is_none() {
        warn!("too many connections; refusing");
        conn.send_error(format!(
            "owner is busy: at most {} connections at once; try again later",
            ctx.config.max_connections
        ))
        .await;
        return;
    }
    match serve(conn, &ctx.files, &ctx, &token).await {
        Ok(()) => debug!("connection closed"),
        Err(e) => warn!("connection closed: {e}"),
    }
}

/// The steps of one connection: the opening, the join checks, the hand-out and registration,
/// `welcome`, then the session.
async fn serve(
    mut conn: Connection,
    files: &Files,
    ctx: &Ctx,
    token: &CancellationToken,
) -> Result<()> {
    let hello = match hello::open(&mut conn, ctx).await? {
        Opened::Client(h) => h,
        Opened::Queries(first) => {
            return answer::answer_queries(conn, first, &ctx.directory).await;
        }
    };
    let metrics = &ctx.config.metrics;
    let _open = metrics.connection(hello.role);
    let res = if hello.role == Role::Publisher {
        publisher::run(conn, files, ctx, &hello, token).await
    } else {
        serve_client(conn, files, ctx, &hello, token).await
    };
    if matches!(res, Err(crate::Error::Refused(_))) {
        metrics.refused(hello.role);
    }
    res
}

/// A ring peer's or a getter's connection, after `hello`.
async fn serve_client(
    mut conn: Connection,
    files: &Files,
    ctx: &Ctx,
    hello: &crate::connection::Hello,
    token: &CancellationToken,
) -> Result<()> {
    let (shared, held) = hello::check_join(&mut conn, files, ctx, hello).await?;
    let assigned = hello::assign(&shared, &ctx.config, hello.role, &held);
    // A client with an upload server joins the directory for as long as this connection lives.
    let member = hello::register(
        conn.remote(),
        (&ctx.directory, files),
        &shared,
        hello,
        &held,
    );
    let label = &hello.label;
    info!(
        peer = %label,
        file = %crate::manifest::display_name(&shared.manifest.name),
        role = ?hello.role,
        assigned = assigned.len(),
        holds = held.count(),
        registered = member.is_some(),
        "peer joined"
    );
    let neighbour = match hello.role {
        Role::Joiner => {
            hello::join_ring(&mut conn, ctx, (&shared, hello.port), member.as_ref()).await?
        }
        _ => None,
    };
    let owner = hello::chunk_owner(ctx, &shared, hello.role);
    hello::welcome(
        &mut conn,
        &shared,
        ctx,
        (label, neighbour, owner),
        &assigned,
    )
    .await?;
    let client = session::Client {
        label,
        member: member.as_ref(),
        role: hello.role,
        neighbour,
        publisher: owner,
    };
    session::run(conn, &shared, ctx, &client, token).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::choke::Choker;
    use crate::chunkset::Ranges;
    use crate::connection::HANDSHAKE_TIMEOUT;
    use crate::owner::Config;
    use crate::owner::SharedFile;
    use crate::owner::spare::SpareGate;
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
        let directory = super::super::directory(&files, "127.0.0.1:5000".parse().unwrap(), ttl);
        let events = Arc::new(crate::events::EventSink::console("owner"));
        let ctx = Arc::new(Ctx {
            config: Arc::new(Config::new(events)),
            files: Arc::new(Files::new(files)),
            directory: directory.clone(),
            choker: Choker::new(4),
            spare: SpareGate::default(),
            net: None,
        });
        let (client, server) = tokio::io::duplex(1 << 20);
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .ok();
        let conn = Connection::over(server, "127.0.0.1:40000".into(), 0);
        let token = CancellationToken::new();
        tokio::spawn(handle(conn, permit, ctx, token.clone()));

        let mut client = Connection::over(client, "owner".into(), MAX_MANIFEST_LEN);
        client
            .send(Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Getter,
                file: None,
                have: Ranges::default(),
                port: Some(7001),
                nonce: None,
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
}
