//! One of a getter's sources as its fetch session sees it: what the source holds, and the
//! two choking flags of this side (see [`crate::choke`]); the chunk itself is chosen by
//! [`Getter::pick`], rarest first.

use tokio::sync::mpsc;

use super::super::getter::Getter;
use crate::Result;
use crate::chunkset::ChunkSet;
use crate::directory::Locations;
use crate::events::EventKind;
use crate::protocol::{Message, ProtocolError};

/// A getter's source, as its connection sees it.
pub(super) struct Rarest<'a> {
    pub(super) getter: &'a Getter,
    /// What the source holds, as far as it said.
    pub(super) theirs: ChunkSet,
    pub(super) am_interested: bool,
    pub(super) peer_choking: bool,
    /// The owner's connection: it stays when this getter is complete.
    pub(super) owner: bool,
}

/// What a source's message asks of its session.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Heard {
    /// Nothing more.
    Noted,
    /// The source choked this getter and dropped its queued requests: they are to be released
    /// (and asked again once unchoked, or elsewhere).
    Choked,
}

impl<'a> Rarest<'a> {
    /// A new connection to a source holding `theirs`: not interested, choked.
    pub(super) fn new(getter: &'a Getter, theirs: ChunkSet, owner: bool) -> Self {
        Self {
            getter,
            theirs,
            am_interested: false,
            peer_choking: true,
            owner,
        }
    }

    /// Whether requests may be made now.
    pub(super) fn may_request(&self) -> bool {
        self.am_interested && !self.peer_choking
    }

    /// Takes in one message from the source `label`, chunks aside.
    pub(super) fn on_message(&mut self, msg: Message, label: &str) -> Result<Heard> {
        let swarm = &self.getter.swarm;
        match msg {
            Message::Have { chunks } => {
                let added = self.theirs.extend_from_ranges(&swarm.manifest, &chunks)?;
                let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
                swarm.events.id_list(EventKind::IdListReceived, n, label);
            }
            Message::Choke => {
                self.peer_choking = true;
                return Ok(Heard::Choked);
            }
            Message::Unchoke => self.peer_choking = false,
            Message::Locations { body, .. } => {
                let loc: Locations = serde_json::from_slice(&body)
                    .map_err(|e| ProtocolError::MalformedHeader(format!("locations: {e}")))?;
                self.getter.located(loc);
            }
            Message::Orphans { .. } => {} // for ring peers
            other => {
                return Err(ProtocolError::unexpected(Some(&other), "downloading").into());
            }
        }
        Ok(Heard::Noted)
    }

    /// Says `interested` when the source holds a chunk this getter lacks (`have`), and
    /// `not_interested` when not, on a change. False once the writer is gone.
    pub(super) async fn update_interest(
        &mut self,
        have: &ChunkSet,
        label: &str,
        tx: &mpsc::Sender<Message>,
    ) -> bool {
        let words = self.theirs.words().iter().zip(have.words());
        let wanted = words.into_iter().any(|(&t, &h)| t & !h != 0);
        if wanted == self.am_interested {
            return true;
        }
        self.am_interested = wanted;
        let (msg, kind) = if wanted {
            (Message::Interested, EventKind::Interested)
        } else {
            (Message::NotInterested, EventKind::NotInterested)
        };
        if tx.send(msg).await.is_err() {
            return false;
        }
        self.getter.swarm.events.swarm(kind, label, "");
        true
    }
}
