//! The chunk server every serving role shares: the file owner's sessions and a peer's upload
//! server. One [`ChunkServer`] per connection keeps what its reader and writer share (the
//! requests the client cancelled, its place in the choker) and sends each chunk the same way:
//! skip it if cancelled or choked, read it, wait for the upload rate limit, send it, count it
//! for choking, and report `chunk_sent`. Where the bytes come from is the caller's: the owner
//! reads its shared file, a peer its store or recent chunks.
//!
//! The writer's side of choking is a [`ChokeGate`]: whether the client may be served now, and
//! the `choke`/`unchoke` messages that say so.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::Result;
use crate::choke::{ChokeSlot, Choker};
use crate::connection::ConnWriter;
use crate::events::{EventKind, EventSink};
use crate::manifest::{ChunkId, Manifest};
use crate::protocol::Message;
use crate::rate::RateLimiter;
use crate::watch;

/// Requests queued per connection beyond which the reader waits (a client keeps at most its
/// configured number in flight, so this is only reached by a misbehaving one).
pub(crate) const MAX_QUEUED_REQUESTS: usize = 64;

/// Serves the chunks of one connection (see the module docs).
#[derive(Debug)]
pub(crate) struct ChunkServer<'a> {
    /// Who the client is, for events.
    label: &'a str,
    events: &'a EventSink,
    /// The upload rate limit, shared by every connection of the node.
    limiter: Option<&'a RateLimiter>,
    /// A getter's place in the choker; `None` for a client that is never choked.
    slot: Option<ChokeSlot>,
    /// Requests the client cancelled (end-game) before they were served.
    cancelled: Mutex<HashSet<ChunkId>>,
}

impl<'a> ChunkServer<'a> {
    /// A server for the client `label`, under `choker` when it is served under choking (a
    /// getter), else always; with the gate its writer keeps.
    pub(crate) fn new(
        label: &'a str,
        events: &'a EventSink,
        limiter: Option<&'a RateLimiter>,
        choker: Option<&Arc<Choker>>,
    ) -> (Self, ChokeGate) {
        let (slot, rx) = choker.map(Choker::join).unzip();
        let server = Self {
            label,
            events,
            limiter,
            slot,
            cancelled: Mutex::new(HashSet::new()),
        };
        let gate = ChokeGate {
            unchoked: rx.is_none(),
            rx,
        };
        (server, gate)
    }

    /// The reader's part: takes in `cancel`, and `interested`/`not_interested` from a client
    /// under choking. Returns whether `msg` was one of those (anything else is the caller's).
    ///
    /// # Errors
    ///
    /// A `cancel` for a chunk the file does not have.
    pub(crate) fn take_control(&self, m: &Manifest, msg: &Message) -> Result<bool> {
        match msg {
            Message::Interested | Message::NotInterested => match &self.slot {
                Some(slot) => slot.set_interested(matches!(msg, Message::Interested)),
                None => return Ok(false),
            },
            Message::Cancel { chunk } => {
                let id = m.chunk_id(*chunk)?;
                self.cancelled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The writer's part: sends chunk `id`, its bytes from `read`, unless the client
    /// cancelled it or is choked (`!unchoked`; it asks again once unchoked). Returns the bytes
    /// sent, `None` when skipped.
    ///
    /// # Errors
    ///
    /// `read` failed, or the send did.
    pub(crate) async fn send<F, Fut>(
        &self,
        writer: &mut ConnWriter,
        id: ChunkId,
        unchoked: bool,
        read: F,
    ) -> Result<Option<u64>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        let cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if cancelled || !unchoked {
            return Ok(None);
        }
        let data = read().await?;
        let len = data.len() as u64;
        if let Some(limiter) = self.limiter {
            limiter.acquire(len).await;
        }
        writer.send(Message::chunk(id.get(), data)).await?;
        if let Some(slot) = &self.slot {
            slot.sent(len);
        }
        self.events
            .chunk(EventKind::ChunkSent, id.get(), self.label, Some(len));
        Ok(Some(len))
    }
}

/// The writer's view of the choker: whether its client may be served now.
#[derive(Debug)]
pub(crate) struct ChokeGate {
    /// The choker's decisions for this client; `None` when it is never choked.
    rx: Option<watch::Receiver<bool>>,
    unchoked: bool,
}

impl ChokeGate {
    /// Whether a choker decides for this client (else [`ChokeGate::changed`] must not be
    /// awaited: use this as the `select!` branch's condition).
    pub(crate) fn is_choking(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether the client may be served now.
    pub(crate) fn unchoked(&self) -> bool {
        self.unchoked
    }

    /// Waits until the choker's decision changes; false when the choker is gone. Only waits,
    /// so it is safe as a `select!` branch; then call [`ChokeGate::update`].
    ///
    /// # Panics
    ///
    /// When not [`ChokeGate::is_choking`].
    pub(crate) async fn changed(&mut self) -> bool {
        let rx = self.rx.as_mut().expect("guarded by is_choking");
        rx.changed().await.is_ok()
    }

    /// Takes the choker's new decision and tells the client (`choke` or `unchoke`).
    ///
    /// # Errors
    ///
    /// The send failed.
    pub(crate) async fn update(
        &mut self,
        writer: &mut ConnWriter,
        events: &EventSink,
        label: &str,
    ) -> Result<()> {
        if let Some(rx) = self.rx.as_mut() {
            self.unchoked = *rx.borrow_and_update();
        }
        send_choke(writer, events, label, self.unchoked).await
    }
}

/// Sends `choke` or `unchoke` and reports it.
async fn send_choke(
    writer: &mut ConnWriter,
    events: &EventSink,
    label: &str,
    unchoked: bool,
) -> Result<()> {
    let (msg, kind) = if unchoked {
        (Message::Unchoke, EventKind::Unchoke)
    } else {
        (Message::Choke, EventKind::Choke)
    };
    writer.send(msg).await?;
    events.swarm(kind, label, "");
    Ok(())
}
