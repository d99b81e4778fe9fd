//! Where a ticket's file is fetched from: its directory while that answers with a source,
//! else the first node the DHT names that answers for the file. Each node named costs one
//! bounded ask ([`ASK_LIMIT`]), and at most [`MAX_CANDIDATES`] are asked: addresses that never
//! answer, or answer without the file, cost a bounded time.

use std::time::Duration;

use super::discovery::{Discovery, key_of};
use crate::directory::client::locate_file_pinned;
use crate::net::Endpoint;
use crate::secure::Identity;
use crate::ticket::Ticket;

/// The most nodes the DHT named that are asked for the file.
pub const MAX_CANDIDATES: usize = 16;
/// How long one ask (connect, handshake, answer) may take.
pub const ASK_LIMIT: Duration = Duration::from_secs(5);

/// Where to fetch from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The ticket's directory answered with a source.
    Directory,
    /// The directory did not (`why`); `source`, found in the DHT, serves the file.
    Source {
        source: Endpoint,
        why: String,
        /// Nodes the DHT named.
        named: usize,
        /// The source keeps a directory of its own (a publisher, a file owner): it answers
        /// `locate` and places joiners in a ring. Else a plain peer that holds the file.
        directory: bool,
    },
}

/// Where to fetch `ticket`'s file from, asking its `directory` (pinned by the ticket's key)
/// and then `dht` as `me`.
///
/// # Errors
///
/// Neither the directory nor any node the DHT named serves it: why, in words.
pub async fn resolve(
    ticket: &Ticket,
    directory: &Endpoint,
    me: &Identity,
    dht: &dyn Discovery,
) -> Result<Resolved, String> {
    let hash = ticket.hash.to_string();
    let pin = ticket.node.as_ref();
    let asked = tokio::time::timeout(
        ASK_LIMIT,
        locate_file_pinned(directory, hash.clone(), me, pin),
    )
    .await;
    let why = match asked {
        Ok(Ok(loc)) if loc.file.is_some() && !loc.sources.is_empty() => {
            return Ok(Resolved::Directory);
        }
        Ok(Ok(_)) => format!("the directory {directory} knows no source of it"),
        Ok(Err(e)) => format!("the directory {directory} did not answer ({e})"),
        Err(_) => format!("the directory {directory} did not answer within {ASK_LIMIT:?}"),
    };
    tracing::info!("{why}: looking in the DHT");
    let key = key_of(&ticket.hash);
    let mut tried: Vec<std::net::SocketAddr> = Vec::new();
    let mut named = 0;
    // The first answers are tried at once; the whole lookup only if none of them serves it.
    for full in [false, true] {
        let found = if full {
            dht.lookup(key).await
        } else {
            dht.lookup_first(key).await
        };
        named = named.max(found.len());
        for addr in found {
            if tried.contains(&addr) || tried.len() >= MAX_CANDIDATES {
                continue;
            }
            tried.push(addr);
            if let Some((source, directory)) = serves(directory, addr, &hash, me).await {
                return Ok(Resolved::Source {
                    source,
                    why,
                    named,
                    directory,
                });
            }
        }
    }
    let asked = tried.len();
    Err(format!(
        "{why}, and none of the {named} nodes the DHT named for it serves it (asked {asked})"
    ))
}

/// Whether `addr`, named in the DHT, serves the file whose hash is `hash`: it, as an
/// endpoint on the `directory`'s network, if it answers for it within [`ASK_LIMIT`], and
/// whether it keeps a directory (it answered `locate`).
async fn serves(
    directory: &Endpoint,
    addr: std::net::SocketAddr,
    hash: &str,
    me: &Identity,
) -> Option<(Endpoint, bool)> {
    let source = directory.sibling(&addr.to_string()).ok()?;
    let asked = tokio::time::timeout(
        ASK_LIMIT,
        locate_file_pinned(&source, hash.to_string(), me, None),
    )
    .await;
    match asked {
        Ok(Ok(loc)) if loc.file.as_ref().is_some_and(|f| f.hash == hash) => {
            return Some((source, true));
        }
        Ok(Ok(_)) => tracing::info!("{addr}, named in the DHT, does not serve it: skipped"),
        // No directory there: a plain peer answers `hello` for a file it holds.
        Ok(Err(_)) if offers(&source, hash, me).await => return Some((source, false)),
        Ok(Err(e)) => tracing::info!("{addr}, named in the DHT, does not serve it: {e}"),
        Err(_) => tracing::info!("{addr}, named in the DHT, did not answer in time"),
    }
    None
}

/// Whether the plain peer at `source` answers a getter's `hello` for `hash` with that
/// file's manifest, within [`ASK_LIMIT`].
async fn offers(source: &Endpoint, hash: &str, me: &Identity) -> bool {
    use crate::protocol::{MAX_MANIFEST_LEN, Message, PROTOCOL_VERSION, Role};
    let ask = async {
        let mut conn: crate::connection::Connection =
            crate::link::connect(source, me, None, MAX_MANIFEST_LEN).await?;
        conn.send(Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Getter,
            file: Some(hash.to_string()),
            have: crate::chunkset::Ranges::default(),
            port: None,
            node: Some(me.id().to_hex()),
        })
        .await?;
        let answer = conn.recv("waiting for welcome", ASK_LIMIT).await?;
        Ok::<bool, crate::Error>(match answer {
            Some(Message::Welcome { manifest, .. }) => {
                crate::manifest::Manifest::from_json(&manifest)
                    .is_ok_and(|m| m.hash.to_string() == hash)
            }
            _ => false,
        })
    };
    matches!(tokio::time::timeout(ASK_LIMIT, ask).await, Ok(Ok(true)))
}
