//! A ring peer's place in its file's ring: a joiner's download neighbour (it is placed at the
//! end of the ring) and, for a published file, the publisher that serves its chunks. Found
//! when it joins ([`neighbour`], [`publisher`]); told again when the rings change
//! ([`RingPlace`]).

use std::net::SocketAddr;

use tracing::info;

use super::shared::SharedFile;
use crate::directory::{Directory, MemberId};
use crate::protocol::{Message, Role};
use crate::watch;

/// Places the joiner `member` at the end of the ring of `shared`; its download neighbour
/// (`None`: it is the first).
pub(super) fn neighbour(
    directory: &Directory,
    shared: &SharedFile,
    member: MemberId,
) -> Option<SocketAddr> {
    let file = directory.index_of(&shared.manifest)?;
    directory.join_ring(file, member)
}

/// The publisher a ring peer (`role`) of the published file `shared` takes its hand-out and
/// chunks from: the file's earliest publisher still registered, so one ring has one hand-out.
/// `None` for anyone else, or a file the owner holds.
pub(super) fn publisher(
    directory: &Directory,
    shared: &SharedFile,
    role: Role,
) -> Option<SocketAddr> {
    if !role.is_ring() || !shared.is_published() {
        return None;
    }
    let file = directory.index_of(&shared.manifest)?;
    directory.publisher(file)
}

/// A ring peer's place, told again when the directory's rings change: a joiner's download
/// neighbour, a published file's publisher.
pub(super) struct RingPlace {
    changes: watch::Receiver<()>,
    /// A joiner's member id, and the neighbour it was last told.
    joiner: Option<(MemberId, Option<SocketAddr>)>,
    /// A published file's ring member: its index, and the publisher it was last told.
    publisher: Option<(usize, Option<SocketAddr>)>,
}

impl RingPlace {
    /// The place of a client of `shared` in `role`, registered as `member`, that was told
    /// `neighbour` and `publisher` in `welcome`; `None` if it has none to be told.
    pub(super) fn of(
        directory: &Directory,
        shared: &SharedFile,
        role: Role,
        member: Option<MemberId>,
        (neighbour, publisher): (Option<SocketAddr>, Option<SocketAddr>),
    ) -> Option<Self> {
        let joiner = (role == Role::Joiner)
            .then_some(member)
            .flatten()
            .map(|id| (id, neighbour));
        let publisher = (role.is_ring() && shared.is_published())
            .then(|| directory.index_of(&shared.manifest))
            .flatten()
            .map(|f| (f, publisher));
        if joiner.is_none() && publisher.is_none() {
            return None;
        }
        let mut changes = directory.ring_changes();
        // A change between `welcome` and now is looked at once.
        changes.mark_changed();
        Some(Self {
            changes,
            joiner,
            publisher,
        })
    }

    /// Resolves when the rings changed (or the directory is gone).
    pub(super) async fn changed(&mut self) {
        let _ = self.changes.changed().await;
    }

    /// What changed since the client was last told, as messages to send.
    pub(super) fn news(&mut self, directory: &Directory, label: &str) -> Vec<Message> {
        let mut news = Vec::new();
        if let Some((member, told)) = &mut self.joiner {
            let now = directory.neighbour_of(*member);
            if now != *told {
                *told = now;
                info!(peer = %label, neighbour = ?now, "told a new download neighbour");
                news.push(Message::Neighbour {
                    addr: now.map(|a| a.to_string()),
                });
            }
        }
        if let Some((file, told)) = &mut self.publisher {
            let now = directory.publisher(*file);
            if now != *told {
                *told = now;
                info!(peer = %label, publisher = ?now, "told the publisher that serves its chunks now");
                news.push(Message::Publisher {
                    addr: now.map(|a| a.to_string()),
                });
            }
        }
        news
    }
}
