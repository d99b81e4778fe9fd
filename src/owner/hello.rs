//! The start of an owner connection, up to `welcome`: the opening message (a `hello`, or a
//! directory query), the shared-secret check, which file the client wants and what it holds,
//! the chunks a ring peer is handed, and its directory registration.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::warn;

use super::config::Config;
use super::member::Member;
use super::shared::{Files, SharedFile};
use super::state::Ctx;
use crate::auth;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{Connection, Hello, Opening};
use crate::directory::Directory;
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message, Role};
use crate::{Error, Result};

/// What a connection opened with, once the secret is checked.
pub(super) enum Opened {
    /// A client that will fetch chunks (a ring peer or a getter).
    Client(Hello),
    /// A directory query connection, with its first query if it opened with one.
    Queries(Option<Message>),
}

/// Reads the opening message and checks the shared secret (a query that opens without a
/// `hello` is refused when the owner has one).
///
/// # Errors
///
/// A bad opening, a failed proof, or a refused query (answered with an `error`).
pub(super) async fn open(conn: &mut Connection, ctx: &Ctx) -> Result<Opened> {
    let secret = ctx.config.secret.as_deref();
    let hello = match conn.recv_opening(true).await? {
        Opening::Hello(h) => h,
        Opening::Query(_) if secret.is_some() => {
            let msg =
                "this owner needs the shared secret: query it with --secret or RINGSWARM_SECRET";
            conn.send_error(msg.into()).await;
            return Err(Error::Refused(format!(
                "query from {} without the shared secret",
                conn.remote()
            )));
        }
        Opening::Query(q) => return Ok(Opened::Queries(Some(q))),
    };
    auth::server(conn, secret, hello.nonce.as_deref(), &hello.label).await?;
    if hello.role == Role::Query {
        return Ok(Opened::Queries(None));
    }
    Ok(Opened::Client(hello))
}

/// The file `hello` asks for (by name, or by the directory's numeric id) and the chunks the
/// client holds; a refusal is sent to the client.
///
/// # Errors
///
/// No such file, a withdrawn one, a bad have list, or a ring neighbour at the owner.
pub(super) async fn check_join(
    conn: &mut Connection,
    files: &Files,
    ctx: &Ctx,
    hello: &Hello,
) -> Result<(Arc<SharedFile>, ChunkSet)> {
    let wanted = hello.file.as_deref();
    if let Some(msg) = wanted.and_then(|k| ctx.directory.ambiguous(k)) {
        return Err(refuse(conn, msg).await);
    }
    let found = wanted
        .and_then(|k| ctx.directory.find(k))
        .and_then(|i| files.get(i));
    let shared = match found.map_or_else(|| choose_file(files, ctx, wanted), Ok) {
        Ok(f) if f.is_withdrawn() => return Err(refuse(conn, f.changed_message()).await),
        Ok(f) => f,
        Err(msg) => return Err(refuse(conn, msg).await),
    };
    let held = match ChunkSet::try_from_ranges(&shared.manifest, &hello.have) {
        Ok(h) => h,
        Err(e) => {
            conn.send_error(format!("bad have list in hello: {e}"))
                .await;
            return Err(e.into());
        }
    };
    if hello.role == Role::Neighbour {
        let msg = "this is a file owner, not a ring peer: connect as a peer or a getter";
        return Err(refuse(conn, msg.to_string()).await);
    }
    Ok((shared, held))
}

/// Sends `msg` as an `error` and returns it as a refusal.
async fn refuse(conn: &mut Connection, msg: String) -> Error {
    conn.send_error(msg.clone()).await;
    Error::Refused(msg)
}

/// The file a `hello` asks for when the directory found none by that key (or none was
/// given), or an error to send back.
fn choose_file(files: &Files, ctx: &Ctx, wanted: Option<&str>) -> Result<Arc<SharedFile>, String> {
    let directory = &ctx.directory;
    if let Some(name) = wanted.and_then(|k| directory.gone(k)) {
        return Err(format!(
            "every publisher of {name:?} has left: no one serves it now (it is no longer listed)"
        ));
    }
    let names = || directory.offered_names(false);
    match wanted {
        Some(key) if key.parse::<crate::hash::Hash>().is_ok() => Err(format!(
            "owner shares no file with blake3 {key} (a ticket's file, withdrawn or never shared here); it shares: {}",
            names()
        )),
        Some(name) => Err(format!(
            "owner does not share {name:?}; it shares: {}",
            names()
        )),
        None => match files.only() {
            (_, Some(only)) => Ok(only),
            (n, None) => Err(format!(
                "owner shares {n} files; choose one with --file NAME: {}",
                names()
            )),
        },
    }
}

/// The chunks handed to a joining ring peer holding `held` (none for anyone else); a join
/// moves the orphan list's quiet period.
pub(super) fn assign(
    shared: &SharedFile,
    config: &Config,
    role: Role,
    held: &ChunkSet,
) -> Vec<ChunkId> {
    // A published file's ring is handed out by the publisher it is sent to (see `welcome`).
    if !role.is_ring() || shared.is_published() {
        return Vec::new();
    }
    let m = &shared.manifest;
    let assigned = match config.seed {
        // Reproducible per join: the n-th peer to join gets the same start every run.
        Some(seed) => {
            let joins = shared
                .joins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut rng =
                <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed.wrapping_add(joins));
            shared.dist().assign(m, held, &mut rng)
        }
        None => shared.dist().assign(m, held, &mut rand::rng()),
    };
    *shared.last_join.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    shared.dirty.notify_one();
    assigned
}

/// Registers a client with an upload server (`hello` with a port) in the directory of
/// `shared`, for as long as the returned [`Member`] lives; `None` for a client without one,
/// or whose address is already a member through another connection.
pub(super) fn register<'a>(
    remote: &str,
    (directory, files): (&'a Directory, &'a Files),
    shared: &SharedFile,
    hello: &Hello,
    held: &ChunkSet,
) -> Option<Member<'a>> {
    let port = hello.port?;
    let ip = remote.parse::<SocketAddr>().ok()?.ip();
    let file = directory.index_of(&shared.manifest)?;
    let addr = SocketAddr::new(ip, port);
    let Some(id) = directory.register(file, addr, hello.role, held.clone(), hello.node.clone())
    else {
        warn!(peer = %hello.label, "{addr} is already a member through another connection; serving this one unregistered");
        return None;
    };
    Some(Member {
        directory,
        files,
        id,
        addr,
    })
}

/// The address a client with `port` serves on, seen from `remote`; `None` without a port.
fn held_address(remote: &str, port: Option<u16>) -> Option<SocketAddr> {
    let ip = remote.parse::<SocketAddr>().ok()?.ip();
    Some(SocketAddr::new(ip, port.filter(|&p| p != 0)?))
}

/// Places a joiner (`peer join`) at the end of its file's ring; its download neighbour.
///
/// # Errors
///
/// A joiner that could not be registered (no port, or its address taken): answered.
pub(super) async fn join_ring(
    conn: &mut Connection,
    ctx: &Ctx,
    (shared, hello_port): (&SharedFile, Option<u16>),
    member: Option<&Member<'_>>,
) -> Result<Option<SocketAddr>> {
    let Some(member) = member else {
        let msg = match held_address(conn.remote(), hello_port) {
            Some(addr) => format!(
                "another node holds {addr}{} through another connection (the same address and port); \
                 retrying until it leaves or its entry expires (--peer-ttl)",
                crate::error::ADDRESS_HELD
            ),
            None => "peer join needs its own port (hello.port): a ring member must be reachable"
                .to_string(),
        };
        return Err(refuse(conn, msg).await);
    };
    let directory = &ctx.directory;
    let file = directory.index_of(&shared.manifest);
    Ok(file.and_then(|f| directory.join_ring(f, member.id)))
}

/// The publisher a ring peer of the published file `shared` takes its hand-out and chunks
/// from: the file's earliest publisher still registered, so one ring has one hand-out.
pub(super) fn chunk_owner(ctx: &Ctx, shared: &SharedFile, role: Role) -> Option<SocketAddr> {
    if !role.is_ring() || !shared.is_published() {
        return None;
    }
    let file = ctx.directory.index_of(&shared.manifest)?;
    ctx.directory.publisher(file)
}

/// Sends `welcome`: the manifest, the `assigned` chunks, and for a ring peer its download
/// neighbour (a joiner's) and the publisher that serves its chunks (a published file's).
///
/// # Errors
///
/// The send failed.
pub(super) async fn welcome(
    conn: &mut Connection,
    shared: &SharedFile,
    ctx: &Ctx,
    (label, neighbour, owner): (&str, Option<SocketAddr>, Option<SocketAddr>),
    assigned: &[ChunkId],
) -> Result<()> {
    // Assignments are contiguous runs (see `assign`), so this cut never bites in practice.
    let mut ranges = Ranges::from_sorted(assigned.iter().map(|c| c.get()));
    ranges.0.truncate(MAX_RANGES_PER_MESSAGE);
    let count = u32::try_from(assigned.len()).unwrap_or(u32::MAX);
    ctx.config
        .events
        .id_list(EventKind::IdListSent, count, label);
    let heartbeat = ctx.directory.ttl() / 3;
    conn.send(Message::Welcome {
        assigned: ranges,
        len: shared.manifest_json.len() as u64,
        heartbeat_ms: Some(u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX)),
        neighbour: neighbour.map(|a| a.to_string()),
        empty: shared.is_published(),
        publisher: owner.map(|a| a.to_string()),
        manifest: shared.manifest_json.clone(),
    })
    .await?;
    Ok(())
}
