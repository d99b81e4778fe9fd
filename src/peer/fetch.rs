//! The one download handler: a session with a source that holds chunks this peer wants (a
//! ring peer's owner, publisher or download neighbour, or one of a getter's sources). The
//! reconnecting is the caller's.
//!
//! The reader ([`Fetch`]) keeps up to `in_flight` requests waiting, chosen by its [`Pick`]
//! policy, and takes in chunks and the source's lists; the writer ([`Announcer`]) sends the
//! requests, tells the source this peer's new chunks, and does the owner duties
//! ([`owner_duties`]) on the connection to the owner. Requests still waiting when the
//! session ends are released for other connections to make.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use tracing::warn;

use self::in_flight::InFlight;
use self::rarest::{Heard, Rarest};
use self::storing::Storing;
use super::bootstrap::Handshake;
use super::clock::AnswerClock;
use super::config::{MAX_BAD_CHUNKS, STALL_AFTER, SourceKind};
use super::getter::Getter;
use super::state::is_bad_chunk;
use super::swarm::Swarm;
use crate::chunkset::ChunkSet;
use crate::connection::IDLE_TIMEOUT;
use crate::driver::{self, Reading};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::protocol::{Message, ProtocolError};
use crate::watch;
use crate::{Error, Result};
use announcer::Announcer;
use owner_duties::Duties;
pub(super) use owner_duties::{LOCATE_EVERY, OwnerDuties};

mod announcer;
mod in_flight;
mod owner_duties;
mod rarest;
mod storing;

/// Runs a ring peer's session with its source of `kind` on `hs`, `told` being what its
/// hello said this peer holds, until the connection ends or `token` is cancelled.
pub(super) async fn ring(
    swarm: &Swarm,
    kind: SourceKind,
    hs: Handshake,
    told: ChunkSet,
    token: &CancellationToken,
) -> Result<()> {
    let label = hs.conn.remote().to_string();
    if kind.serves_as_owner() {
        let assigned = ChunkSet::try_from_ranges(&swarm.manifest, &hs.assigned)?;
        swarm
            .events
            .id_list(EventKind::IdListReceived, assigned.count(), &label);
        // The owner holds every chunk.
        swarm.owner_connected(&assigned);
    }
    // One random stream per source kind, so the two connections do not mirror each other.
    let rng = swarm.rng(kind as u64 + 1);
    let fetch = Fetch::new(swarm, Pick::Ring(kind), &label, rng);
    let duties = matches!(kind, SourceKind::Owner | SourceKind::Directory);
    let duties = duties.then_some(Duties::Ring(None));
    let announcer = Announcer::new(swarm, &label, Some(kind), Some(told), hs.heartbeat, duties);
    let queue = swarm.config.in_flight + 4;
    driver::drive(hs.conn, fetch, announcer, queue, token).await
}

/// Runs a getter's session with the source at `label` on `hs`, holding `theirs` as far as
/// known, until this getter is complete; with `owner`, its owner connection, until `token`
/// is cancelled.
pub(super) async fn getter(
    getter: &Getter,
    hs: Handshake,
    label: &str,
    theirs: ChunkSet,
    owner: Option<OwnerDuties<'_>>,
    token: &CancellationToken,
) -> Result<()> {
    let swarm = &*getter.swarm;
    let source = Rarest::new(getter, theirs, owner.is_some());
    let fetch = Fetch::new(
        swarm,
        Pick::Rarest(source),
        label,
        swarm.rng(u64::from(swarm.port)),
    );
    let (told, duties) = match owner {
        Some(o) => (Some(o.registered), Some(Duties::getter(o.lost_rx))),
        None => (None, None),
    };
    let announcer = Announcer::new(swarm, label, None, told, hs.heartbeat, duties);
    let queue = 2 * swarm.config.in_flight + 4;
    driver::drive(hs.conn, fetch, announcer, queue, token).await
}

/// How a session chooses its requests, and which of the source's messages it takes.
enum Pick<'a> {
    /// A ring peer's source of this kind: the picker's choice (see [`super::picker`]).
    Ring(SourceKind),
    /// One of a getter's sources: rarest first (see [`Getter::pick`]).
    Rarest(Rarest<'a>),
}

/// The reader's side of a session: the source's messages, and the requests to make of it.
struct Fetch<'a> {
    swarm: &'a Swarm,
    pick: Pick<'a>,
    label: &'a str,
    in_flight: InFlight<'a>,
    rng: StdRng,
    /// Bad chunks received on this connection.
    bad: u32,
    /// Requests cancelled at the owner: their chunk may still be on its way.
    cancelled: BTreeSet<ChunkId>,
    clock: AnswerClock,
    changed: watch::Receiver<()>,
    /// Chunks being checked and stored on other workers.
    storing: Storing<'a>,
}

impl Reading for Fetch<'_> {
    type Out = Message;

    fn limit(&self) -> (&'static str, Duration) {
        ("waiting for chunks", IDLE_TIMEOUT)
    }

    async fn prepare(&mut self, tx: &mpsc::Sender<Message>) -> Result<bool> {
        if !self.fill(tx).await {
            return Ok(false);
        }
        if self.swarm.is_complete() {
            match &self.pick {
                // The writer ends the connection once it announced the last chunk.
                Pick::Ring(SourceKind::Neighbour) => std::future::pending::<()>().await,
                Pick::Rarest(r) if !r.owner => return Ok(false),
                _ => {}
            }
        }
        let waiting = !self.in_flight.ids.is_empty()
            && match &self.pick {
                // Only for a neighbour: spare requests wait at the owner on purpose.
                Pick::Ring(kind) => *kind == SourceKind::Neighbour,
                Pick::Rarest(r) => !r.peer_choking,
            };
        self.clock.waiting(waiting);
        Ok(true)
    }

    async fn interrupt(&mut self) -> Result<()> {
        let stall = matches!(self.pick, Pick::Ring(kind) if kind.serves_as_owner());
        let busy = !self.storing.is_empty();
        let stored = tokio::select! {
            biased;
            () = self.clock.expired() => None,
            done = self.storing.next(), if busy => Some(done),
            () = tokio::time::sleep(STALL_AFTER), if stall => Some(None),
            _ = self.changed.changed() => Some(None),
        };
        match stored {
            None => Err(self.held_hostage()),
            Some(Some((id, len, res))) => self.took(id, len, res.map(|()| true)),
            Some(None) => Ok(()),
        }
    }

    async fn on_message(&mut self, msg: Message, _tx: &mpsc::Sender<Message>) -> Result<()> {
        if matches!(msg, Message::Chunk { .. } | Message::Unchoke) {
            self.clock.answered();
        }
        match msg {
            Message::Chunk { chunk, data, .. } => self.on_chunk(chunk, data).await,
            Message::Have { chunks } if chunks.is_empty() => Ok(()), // keep-alive
            msg => match &mut self.pick {
                Pick::Ring(kind) => ring_message(self.swarm, *kind, self.label, msg),
                Pick::Rarest(r) => {
                    if r.on_message(msg, self.label)? == Heard::Choked {
                        // The source dropped what it had queued.
                        self.in_flight.release_all();
                        self.swarm.notify();
                    }
                    Ok(())
                }
            },
        }
    }

    fn on_close(&mut self) -> Result<()> {
        match &self.pick {
            Pick::Rarest(r) if !r.owner && !self.swarm.is_complete() => {
                Err(Error::Refused("the source closed the connection".into()))
            }
            _ => Ok(()),
        }
    }
}

impl<'a> Fetch<'a> {
    fn new(swarm: &'a Swarm, pick: Pick<'a>, label: &'a str, rng: StdRng) -> Self {
        let getter = match &pick {
            Pick::Ring(_) => None,
            Pick::Rarest(r) => Some(r.getter),
        };
        Self {
            swarm,
            pick,
            label,
            in_flight: InFlight {
                swarm,
                getter,
                ids: BTreeSet::new(),
            },
            rng,
            bad: 0,
            cancelled: BTreeSet::new(),
            clock: AnswerClock::new(swarm.manifest.chunk_size),
            changed: swarm.changed.subscribe(),
            storing: Storing::new(swarm),
        }
    }

    /// Queues cancels of requests no longer worth waiting for, interest changes, and
    /// requests to fill the pipeline. False once the writer is gone.
    async fn fill(&mut self, tx: &mpsc::Sender<Message>) -> bool {
        let have = match &self.pick {
            Pick::Ring(_) => None,
            Pick::Rarest(_) => Some(self.swarm.have_snapshot()),
        };
        for id in self.to_cancel(have.as_ref()) {
            if !self.in_flight.cancel(id) {
                continue;
            }
            if matches!(self.pick, Pick::Ring(_)) {
                self.cancelled.insert(id);
            }
            if tx.send(Message::Cancel { chunk: id.get() }).await.is_err() {
                return false;
            }
        }
        if let (Pick::Rarest(r), Some(have)) = (&mut self.pick, &have)
            && !r.update_interest(have, self.label, tx).await
        {
            return false;
        }
        while self.in_flight.ids.len() < self.swarm.config.in_flight {
            let Some((id, spare)) = self.next() else {
                break;
            };
            self.in_flight.ids.insert(id);
            let (chunk, label) = (id.get(), self.label);
            self.swarm
                .events
                .chunk(EventKind::ChunkRequested, chunk, label, None);
            if tx.send(Message::Request { chunk, spare }).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The requests to cancel: at the owner, those the neighbour can now serve; at a
    /// getter's source, those for chunks another connection delivered (`have`).
    fn to_cancel(&self, have: Option<&ChunkSet>) -> Vec<ChunkId> {
        let m = &self.swarm.manifest;
        match (&self.pick, have) {
            (Pick::Ring(kind), _) if kind.serves_as_owner() => {
                let cancel = self.swarm.take_owner_cancel();
                cancel
                    .into_iter()
                    .filter_map(|c| m.chunk_id(c).ok())
                    .collect()
            }
            (Pick::Rarest(_), Some(have)) => {
                let ids = self.in_flight.ids.iter().copied();
                ids.filter(|&id| have.contains(id)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The next chunk to request, and whether it is a spare request to the owner.
    fn next(&mut self) -> Option<(ChunkId, bool)> {
        match &self.pick {
            Pick::Ring(kind) => self.swarm.pick(*kind, &mut self.rng),
            Pick::Rarest(r) if r.may_request() => {
                let id = r
                    .getter
                    .pick(&r.theirs, &self.in_flight.ids, &mut self.rng)?;
                Some((id, false))
            }
            Pick::Rarest(_) => None,
        }
    }

    /// Requests unanswered past the deadline: a source that announces chunks but does not
    /// send them (keep-alives do not count) must not hold them hostage. It is dropped, its
    /// requests go elsewhere (a neighbour's to the owner).
    fn held_hostage(&self) -> Error {
        let held: Vec<ChunkId> = self.in_flight.ids.iter().copied().collect();
        let elsewhere = match self.pick {
            Pick::Ring(kind) => {
                if kind == SourceKind::Neighbour {
                    self.swarm.suspect(&held);
                }
                "; fetching them elsewhere"
            }
            Pick::Rarest(_) => "",
        };
        Error::Refused(format!(
            "{} answered none of {} requests for {}s{elsewhere}",
            self.label,
            held.len(),
            self.clock.deadline().as_secs()
        ))
    }

    async fn on_chunk(&mut self, chunk: u32, data: Bytes) -> Result<()> {
        let id = self.swarm.manifest.chunk_id(chunk)?;
        // A cancelled chunk may already have been on its way: it is as good as any other, if
        // still missing. A getter takes any chunk a source sends.
        if !self.in_flight.answered(id)
            && !self.cancelled.remove(&id)
            && matches!(self.pick, Pick::Ring(_))
        {
            return Err(ProtocolError::Unexpected {
                got: "unrequested chunk",
                doing: "downloading",
            }
            .into());
        }
        if self.swarm.holds(id) {
            // Another connection delivered it first (a cancelled spare request, a fall-back
            // source, the end-game's losing copy): nothing to do.
            return Ok(());
        }
        self.take_chunk(id, data).await
    }

    /// Accepts chunk `id` and reports it received; a bad chunk is counted against this
    /// connection.
    ///
    /// # Errors
    ///
    /// [`Error::BadChunks`] at the [`MAX_BAD_CHUNKS`]th bad chunk, or a store error.
    async fn take_chunk(&mut self, id: ChunkId, data: Bytes) -> Result<()> {
        if self.storing.in_place() {
            let len = data.len() as u64;
            let res = self.swarm.accept_chunk(id, data).await;
            return self.took(id, len, res);
        }
        if !self.swarm.claim(id) {
            return Ok(()); // Held, or being stored from another connection.
        }
        while self.storing.full() {
            if let Some((id, len, res)) = self.storing.next().await {
                self.took(id, len, res.map(|()| true))?;
            }
        }
        self.storing.start(id, data);
        Ok(())
    }

    /// Reports chunk `id` (`len` bytes) received once `res` says it was stored; a bad chunk
    /// is counted against this connection.
    fn took(&mut self, id: ChunkId, len: u64, res: Result<bool>) -> Result<()> {
        let (swarm, label, chunk) = (self.swarm, self.label, id.get());
        match res {
            Ok(true) => {
                swarm.status.stored(id, len);
                swarm
                    .events
                    .chunk(EventKind::ChunkReceived, chunk, label, Some(len));
            }
            Ok(false) => {}
            Err(Error::Store(e)) if is_bad_chunk(&e) => {
                self.bad += 1;
                swarm.status.refused();
                warn!(from = %label, "refused chunk {chunk}: {e}; fetching it again");
                if self.bad >= MAX_BAD_CHUNKS {
                    let bad = self.bad;
                    return Err(Error::BadChunks(format!(
                        "{bad} bad chunks from {label}; disconnecting"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// Takes in one message from a ring peer's source of `kind` (`label`), chunks aside.
fn ring_message(swarm: &Swarm, kind: SourceKind, label: &str, msg: Message) -> Result<()> {
    match msg {
        Message::Have { chunks } if kind == SourceKind::Neighbour => {
            swarm.neighbour_announced(&chunks, label)?;
        }
        Message::Neighbour { addr } if kind.places_in_ring() => {
            swarm.set_neighbour(addr.as_deref());
        }
        Message::Publisher { addr } if kind == SourceKind::Directory => {
            swarm.set_publisher(addr.as_deref());
        }
        Message::Orphans { chunks } if kind.serves_as_owner() => {
            let set = ChunkSet::try_from_ranges(&swarm.manifest, &chunks)?;
            swarm
                .events
                .id_list(EventKind::IdListReceived, set.count(), label);
            swarm.set_orphans(set);
        }
        other => {
            return Err(ProtocolError::unexpected(Some(&other), "downloading").into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
