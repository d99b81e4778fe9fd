//! A publisher's connection (`peer share`): after `hello` (role `publisher`, with the port it
//! serves chunks on) it publishes files (`publish`, each answered `published` with the file's
//! id), withdraws them (`unpublish`), and sends keep-alives within the TTL. For each file it
//! publishes it is a complete member of that file's swarm while the connection lives; when a
//! file's last publisher is gone, the file is no longer offered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::member::Membership;
use super::state::Owner;
use crate::connection::{ConnWriter, Connection, Hello};
use crate::driver::{self, Flow, Reading, Writing};
use crate::hash::Hash;
use crate::manifest::{Manifest, check_name};
use crate::protocol::{MAX_MANIFEST_LEN, Message, ProtocolError, Role};
use crate::{Error, Result};

/// How often a publisher's memberships are marked heard from, at most.
const HEARD_EVERY: Duration = Duration::from_secs(1);

/// Files one publisher connection may publish at once.
pub const MAX_PUBLISHED: usize = 10_000;

/// Manifest bytes one publisher connection may publish in all (each at most
/// `MAX_MANIFEST_LEN`): what a publisher can make the directory hold is bounded.
pub const MAX_PUBLISHED_BYTES: usize = 256 << 20;

/// Serves one publisher until it leaves, fails, or `token` is cancelled.
///
/// # Errors
///
/// A bad `hello` (no port), a bad manifest, too many files, or what ended the connection.
pub(super) async fn run(
    mut conn: Connection,
    owner: &Owner,
    hello: &Hello,
    token: &CancellationToken,
) -> Result<()> {
    let ip = conn.remote().parse::<SocketAddr>().ok().map(|a| a.ip());
    let (Some(ip), Some(port)) = (ip, hello.port.filter(|&p| p != 0)) else {
        let msg = "a publisher must give the port it serves chunks on (hello.port)".to_string();
        conn.send_error(msg.clone()).await;
        return Err(Error::Refused(msg));
    };
    conn.set_max_body(MAX_MANIFEST_LEN);
    let addr = SocketAddr::new(ip, port);
    info!(publisher = %addr, "publisher connected");
    let reading = Publications {
        owner,
        addr,
        node: hello.node.clone(),
        members: BTreeMap::new(),
        by_hash: BTreeMap::new(),
        bytes: 0,
        heard: None,
    };
    let keepalive = owner.directory.ttl() / 3;
    driver::drive(conn, reading, Replies { keepalive }, 16, token).await
}

/// The reader's side: what the publisher publishes, and its memberships.
struct Publications<'a> {
    owner: &'a Owner,
    addr: SocketAddr,
    node: Option<String>,
    /// Its files, by directory index, each with its membership.
    members: BTreeMap<usize, Membership<'a>>,
    /// The same files' indices by content hash, for `unpublish`.
    by_hash: BTreeMap<Hash, usize>,
    /// Manifest bytes published on this connection.
    bytes: usize,
    /// When its memberships were last marked heard from.
    heard: Option<tokio::time::Instant>,
}

impl Drop for Publications<'_> {
    /// The publisher is gone: so are its memberships, and the files nobody else publishes.
    fn drop(&mut self) {
        let left: Vec<usize> = self.members.keys().copied().collect();
        for index in left {
            self.withdraw(index);
        }
    }
}

impl Publications<'_> {
    /// Ends this publisher's membership for file `index`; when it was the last publisher,
    /// the file is no longer offered (and freed, once no member is left in its swarm).
    fn withdraw(&mut self, index: usize) {
        let manifest = self.owner.directory.manifest(index);
        self.members.remove(&index);
        if self.owner.directory.publishers(index) == 0 {
            self.owner.files.orphaned(index);
            if let Some(m) = manifest {
                info!(
                    "every publisher of {} has left: no one serves it now (its ring, if any, goes on with the chunks its members hold)",
                    crate::manifest::display_name(&m.name)
                );
            }
        }
    }

    /// Adds the file of `manifest` (JSON) to the directory with this publisher as a source.
    fn publish(&mut self, manifest: &[u8]) -> Result<Message> {
        self.bytes = self.bytes.saturating_add(manifest.len());
        self.owner
            .config
            .metrics
            .received(Role::Publisher, manifest.len() as u64);
        if self.bytes > MAX_PUBLISHED_BYTES {
            return Err(Error::Refused(format!(
                "at most {} MiB of manifests per publisher connection",
                MAX_PUBLISHED_BYTES >> 20
            )));
        }
        let m = Manifest::from_json(manifest)?;
        check_name(&m.name)?;
        if self.members.len() >= MAX_PUBLISHED {
            return Err(Error::Refused(format!(
                "at most {MAX_PUBLISHED} files per publisher connection"
            )));
        }
        let hash = m.hash;
        let directory = &self.owner.directory;
        let known = self.by_hash.get(&hash).copied();
        let index = match known.filter(|i| self.members.contains_key(i)) {
            Some(index) => index,
            None => {
                let (index, id) =
                    self.owner
                        .files
                        .publish(directory, m, self.addr, self.node.clone());
                let Some(id) = id else {
                    return Err(Error::Refused(format!(
                        "{} already publishes this file through another connection",
                        self.addr
                    )));
                };
                let member = Membership {
                    owner: self.owner,
                    id,
                    addr: self.addr,
                };
                self.members.insert(index, member);
                self.by_hash.insert(hash, index);
                index
            }
        };
        info!(publisher = %self.addr, id = index + 1, "file published");
        let heartbeat = directory.ttl() / 3;
        Ok(Message::Published {
            id: u32::try_from(index + 1).unwrap_or(u32::MAX),
            hash: hash.to_string(),
            heartbeat_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Withdraws the file with `hash` from this publisher.
    fn unpublish(&mut self, hash: &str) -> Result<()> {
        let hash: Hash = hash
            .parse()
            .map_err(|_| ProtocolError::MalformedHeader(format!("unpublish: bad hash {hash:?}")))?;
        if let Some(index) = self.by_hash.remove(&hash) {
            self.withdraw(index);
        }
        Ok(())
    }
}

impl Reading for Publications<'_> {
    type Out = Message;

    fn limit(&self) -> (&'static str, Duration) {
        (
            "waiting for a heartbeat (past --peer-ttl)",
            self.owner.directory.ttl(),
        )
    }

    async fn on_message(&mut self, msg: Message, tx: &mpsc::Sender<Message>) -> Result<()> {
        // Any message is a heartbeat for every file it publishes: marked at most once a
        // second, so a burst of publications costs its size, not its square.
        let now = tokio::time::Instant::now();
        let every = HEARD_EVERY.min(self.owner.directory.ttl() / 10);
        if self.heard.is_none_or(|t| now - t >= every) {
            self.heard = Some(now);
            for m in self.members.values() {
                self.owner.directory.heartbeat(m.id);
            }
        }
        match msg {
            Message::Publish { manifest, .. } => {
                let reply = self.publish(&manifest)?;
                // The writer is gone only when the session ends anyway.
                let _ = tx.send(reply).await;
            }
            Message::Unpublish { hash } => self.unpublish(&hash)?,
            Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
            other => {
                return Err(ProtocolError::unexpected(Some(&other), "taking publications").into());
            }
        }
        Ok(())
    }
}

/// The writer's side: the replies.
struct Replies {
    keepalive: Duration,
}

impl Writing for Replies {
    type Out = Message;
    type Wake = ();

    fn keepalive(&self) -> Duration {
        self.keepalive
    }

    async fn on_out(&mut self, msg: Message, writer: &mut ConnWriter) -> Result<Flow> {
        writer.send(msg).await?;
        Ok(Flow::Sent)
    }
}
