//! Getting started: the handshake every client connection begins with (the encrypted link,
//! `hello`, `welcome`), the bootstrap that fetches the manifest from the owner or
//! falls back on a saved one, and this node's id.

use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use super::config::{Config, Mode};
use crate::chunkset::Ranges;
use crate::connection::{Connection, KEEPALIVE_INTERVAL};
use crate::key::NodeId;
use crate::manifest::{Manifest, check_offered_name, display_name};
use crate::net::Backoff;
use crate::net::Endpoint;
use crate::protocol::{
    MAX_MANIFEST_LEN, MAX_RANGES_PER_MESSAGE, Message, PROTOCOL_VERSION, ProtocolError, Role,
};
use crate::secure::Identity;
use crate::store::ChunkStore;
use crate::{Error, Result};

/// How often a waiting client logs that it is still retrying.
pub(super) const RETRY_LOG_EVERY: Duration = Duration::from_secs(10);

/// A connection that finished its handshake.
#[derive(Debug)]
pub(super) struct Handshake {
    pub conn: Connection,
    pub assigned: Ranges,
    /// How often the owner wants to hear from this peer (its directory TTL / 3).
    pub heartbeat: Duration,
    /// The server holds none of the file's chunks (a directory of a published file).
    pub empty: bool,
    /// To a joiner: its download neighbour, as the owner placed it.
    pub neighbour: Option<String>,
    /// To a ring peer of a published file: the publisher that serves its chunks.
    pub publisher: Option<String>,
    /// The server keeps no directory: a plain peer's upload server (its `welcome` names no
    /// heartbeat), as a source found in the DHT may be. It answers no `locate`.
    pub plain: bool,
}

/// What bootstrapping yields: the manifest, and the owner connection if one was made.
#[derive(Debug)]
pub(super) struct Boot {
    pub manifest: Manifest,
    pub owner_conn: Option<Handshake>,
}

/// Connects to `endpoint` as `me` (the encrypted link, with the shared secret if there is
/// one; with `pin`, only to a server proving that key), says `hello`, and reads `welcome`.
pub(super) async fn handshake(
    endpoint: &Endpoint,
    role: Role,
    file: Option<String>,
    have: Ranges,
    (port, node): (u16, &str),
    (me, pin): (&Identity, Option<&NodeId>),
) -> Result<(Handshake, Manifest)> {
    let mut conn = crate::link::connect(endpoint, me, pin, MAX_MANIFEST_LEN).await?;
    // A long have list continues in `have` messages, so every header stays small.
    let mut parts = have.0.chunks(MAX_RANGES_PER_MESSAGE);
    let first = Ranges(parts.next().map(<[_]>::to_vec).unwrap_or_default());
    conn.send(Message::Hello {
        version: PROTOCOL_VERSION,
        role,
        file,
        have: first,
        port: Some(port),
        node: Some(node.to_string()),
    })
    .await?;
    let answer = conn
        .recv("waiting for welcome", crate::connection::HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| match e {
            ProtocolError::Remote(msg) => Error::Refused(msg),
            e => e.into(),
        });
    if answer.is_ok() {
        for part in parts {
            conn.send(Message::Have {
                chunks: Ranges(part.to_vec()),
            })
            .await?;
        }
    }
    match answer {
        Err(e) => Err(e),
        Ok(Some(Message::Welcome {
            assigned,
            manifest,
            heartbeat_ms,
            empty,
            neighbour,
            publisher,
            ..
        })) => {
            let manifest = Manifest::from_json(&manifest)?;
            conn.set_max_body(usize::try_from(manifest.chunk_size).unwrap_or(usize::MAX));
            if role != Role::Neighbour {
                // The owner answers `locate` on this connection.
                conn.accept_answers();
            }
            let plain = heartbeat_ms.is_none();
            let heartbeat = heartbeat_ms
                .map_or(KEEPALIVE_INTERVAL, Duration::from_millis)
                .clamp(Duration::from_millis(100), KEEPALIVE_INTERVAL);
            Ok((
                Handshake {
                    conn,
                    assigned,
                    heartbeat,
                    empty,
                    neighbour,
                    publisher,
                    plain,
                },
                manifest,
            ))
        }
        Ok(Some(other)) => {
            Err(ProtocolError::unexpected(Some(&other), "waiting for welcome").into())
        }
        Ok(None) => Err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before welcome",
        ))
        .into()),
    }
}

/// A saved manifest in the peer's folder, for resuming without the owner.
fn saved_manifest(config: &Config) -> Option<Manifest> {
    if config.in_memory.is_some() {
        return None;
    }
    let name = config
        .pin
        .as_ref()
        .map(|t| &t.name)
        .or(config.file.as_ref());
    let path = match name {
        Some(name) => ChunkStore::manifest_path_for(&config.dir, name),
        None => {
            let mut found = std::fs::read_dir(&config.dir)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".manifest.json")));
            let first = found.next()?;
            if found.next().is_some() {
                return None;
            }
            first
        }
    };
    Manifest::from_json(&crate::store::read_nofollow(&path).ok()?)
        .ok()
        .filter(|m| check_manifest(config, m).is_ok())
}

/// Whether `m` is the file asked for: the ticket's content, or the name asked for.
fn check_manifest(config: &Config, m: &Manifest) -> Result<()> {
    match &config.pin {
        Some(ticket) => {
            crate::manifest::check_name(&m.name)?;
            ticket.check(m).map_err(Error::Refused)
        }
        None => Ok(check_offered_name(config.file.as_deref(), &m.name)?),
    }
}

/// Gets the manifest: from the owner (retrying until `config.timeout`), or, if the owner is
/// not up at once and the folder holds a saved manifest, from there.
pub(super) async fn bootstrap(config: &Config, mode: &Mode, port: u16, node: &str) -> Result<Boot> {
    let saved = saved_manifest(config);
    let started = Instant::now();
    let mut backoff = Backoff::default();
    let mut last_log = None::<Instant>;
    let role = match mode {
        Mode::Getter(_) => Role::Getter,
        Mode::Ring { neighbour: None } => Role::Joiner,
        Mode::Ring { .. } => Role::Peer,
    };
    loop {
        let have = Ranges::default();
        match handshake(
            &config.owner,
            role,
            config.file.clone(),
            have,
            (port, node),
            (
                &config.identity,
                config.pin.as_ref().and_then(|t| t.node.as_ref()),
            ),
        )
        .await
        {
            Ok((hs, manifest)) => {
                check_manifest(config, &manifest)?;
                info!(
                    file = %display_name(&manifest.name),
                    size = manifest.size,
                    chunks = manifest.chunk_count(),
                    "got manifest from owner {}",
                    config.owner
                );
                return Ok(Boot {
                    manifest,
                    owner_conn: Some(hs),
                });
            }
            Err(e @ (Error::Refused(_) | Error::Manifest(_))) if !e.is_busy() => return Err(e),
            Err(e) => {
                let held = e.is_address_held();
                if !held && let Some(m) = saved {
                    info!(
                        "owner {} unreachable ({e}); resuming from the saved manifest of {}",
                        config.owner,
                        display_name(&m.name)
                    );
                    return Ok(Boot {
                        manifest: m,
                        owner_conn: None,
                    });
                }
                if started.elapsed() >= config.timeout && held {
                    return Err(Error::Refused(format!(
                        "gave up after {}s (--timeout): {e}",
                        config.timeout.as_secs()
                    )));
                }
                if started.elapsed() >= config.timeout {
                    return Err(Error::OwnerUnreachable {
                        owner: config.owner.to_string(),
                        secs: config.timeout.as_secs(),
                        last: e.to_string(),
                    });
                }
                if last_log.is_none_or(|t| t.elapsed() >= RETRY_LOG_EVERY) {
                    info!("waiting for owner {} ({e}); retrying", config.owner);
                    last_log = Some(Instant::now());
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
