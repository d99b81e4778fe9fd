//! One getter connection to a source (the owner's included): the four choking flags, the
//! requests in flight, and what each message means (see [`super::sources`]).

use std::collections::BTreeSet;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bootstrap::Handshake;
use super::clock::AnswerClock;
use super::download::announce;
use super::getter::Getter;
use super::swarm::Swarm;
use crate::chunkset::ChunkSet;
use std::time::Duration;

use crate::connection::{ConnReader, ConnWriter, IDLE_TIMEOUT};
use crate::directory::Locations;
use crate::driver::{self, Flow, Reading, Writing};
use crate::events::EventKind;
use crate::protocol::{Message, ProtocolError};
use crate::watch;
use crate::{Error, Result};

/// Per-connection flags and requests (see [`crate::choke`] for the four flags).
struct Link<'a> {
    getter: &'a Getter,
    label: &'a str,
    theirs: ChunkSet,
    am_interested: bool,
    peer_choking: bool,
    in_flight: BTreeSet<u32>,
    /// Bad chunks received on this connection.
    bad: u32,
}

impl<'a> Link<'a> {
    /// A new connection to a source holding `theirs`: not interested, choked.
    fn new(getter: &'a Getter, label: &'a str, theirs: ChunkSet) -> Self {
        Self {
            getter,
            label,
            theirs,
            am_interested: false,
            peer_choking: true,
            in_flight: BTreeSet::new(),
            bad: 0,
        }
    }
}

impl Drop for Link<'_> {
    fn drop(&mut self) {
        for c in std::mem::take(&mut self.in_flight) {
            self.getter.release(c);
        }
    }
}

/// How often a getter asks the directory where chunks are, while it lacks some (the owner
/// connection's writer asks).
pub const LOCATE_EVERY: Duration = Duration::from_secs(1);

/// What only the owner connection does: report lost sources, register chunks.
pub(super) struct OwnerDuties<'a> {
    /// `None` once the sender is gone.
    pub(super) lost_rx: Option<&'a mut mpsc::UnboundedReceiver<String>>,
    /// The chunks the owner has been told of.
    pub(super) registered: ChunkSet,
}

/// Talks to one source (the owner when `owner` is given) until this getter is complete
/// (the owner: until `token` is cancelled).
pub(super) async fn session(
    getter: &Getter,
    hs: Handshake,
    label: &str,
    theirs: ChunkSet,
    owner: Option<OwnerDuties<'_>>,
    token: &CancellationToken,
) -> Result<()> {
    let swarm = &getter.swarm;
    let is_owner = owner.is_some();
    let reading = Source {
        link: Link::new(getter, label, theirs),
        is_owner,
        rng: swarm.rng(u64::from(swarm.port)),
        clock: AnswerClock::new(swarm.manifest.chunk_size),
        changed: swarm.changed.subscribe(),
    };
    let writing = SourceWriter {
        swarm,
        label,
        owner,
        heartbeat: hs.heartbeat,
        next_locate: Instant::now(),
        changed: swarm.changed.subscribe(),
    };
    let queue = 2 * swarm.config.in_flight + 4;
    driver::drive(hs.conn, reading, writing, queue, token).await
}

/// The reader's side of a source: its messages, and the requests to make of it.
struct Source<'a, R> {
    link: Link<'a>,
    is_owner: bool,
    rng: R,
    clock: AnswerClock,
    changed: watch::Receiver<()>,
}

impl<R: Rng + Send> Reading for Source<'_, R> {
    type Out = Message;

    fn limit(&self) -> (&'static str, Duration) {
        ("waiting for chunks", IDLE_TIMEOUT)
    }

    async fn prepare(&mut self, tx: &mpsc::Sender<Message>) -> Result<bool> {
        step(&mut self.link, tx, &mut self.rng).await;
        if self.link.getter.swarm.is_complete() && !self.is_owner {
            return Ok(false);
        }
        let link = &self.link;
        self.clock
            .waiting(!link.in_flight.is_empty() && !link.peer_choking);
        Ok(true)
    }

    async fn interrupt(&mut self) -> Result<()> {
        tokio::select! {
            biased;
            () = self.clock.expired() => {
                // Announced chunks that never come are not held hostage: the source is
                // dropped (and avoided), its requests go elsewhere.
                Err(Error::Refused(format!(
                    "{} answered none of {} requests for {}s",
                    self.link.label,
                    self.link.in_flight.len(),
                    self.clock.deadline().as_secs()
                )))
            }
            _ = self.changed.changed() => Ok(()),
        }
    }

    async fn on_message(&mut self, msg: Message, _tx: &mpsc::Sender<Message>) -> Result<()> {
        if matches!(msg, Message::Chunk { .. } | Message::Unchoke) {
            self.clock.answered();
        }
        handle(&mut self.link, msg).await
    }

    fn on_close(&mut self) -> Result<()> {
        if self.is_owner || self.link.getter.swarm.is_complete() {
            Ok(())
        } else {
            Err(Error::Refused("the source closed the connection".into()))
        }
    }
}

/// The writer's side of a source: requests, and the owner's duties (registering chunks,
/// reporting lost sources, asking where the file is).
struct SourceWriter<'a, 'o> {
    swarm: &'a Swarm,
    label: &'a str,
    owner: Option<OwnerDuties<'o>>,
    heartbeat: Duration,
    next_locate: Instant,
    changed: watch::Receiver<()>,
}

/// What woke the writer besides a request.
enum Woken {
    /// A source was lost (`None`: no more will be reported).
    Lost(Option<String>),
    /// Time to ask the owner where the file is.
    Locate,
    /// This getter's chunks changed.
    Chunks,
}

impl Writing for SourceWriter<'_, '_> {
    type Out = Message;
    type Wake = Woken;

    fn keepalive(&self) -> Duration {
        self.heartbeat
    }

    async fn flush(&mut self, writer: &mut ConnWriter) -> Result<Flow> {
        match &mut self.owner {
            Some(o) => Ok(register(self.swarm, writer, self.label, &mut o.registered)
                .await?
                .into()),
            None => Ok(Flow::Idle),
        }
    }

    async fn wake(&mut self) -> Woken {
        let locate_due = self.owner.is_some() && !self.swarm.is_complete();
        let lost = self.owner.as_mut().and_then(|o| o.lost_rx.as_deref_mut());
        tokio::select! {
            biased;
            addr = async { lost.expect("guarded").recv().await }, if lost.is_some() => Woken::Lost(addr),
            () = tokio::time::sleep_until(self.next_locate), if locate_due => Woken::Locate,
            _ = self.changed.changed() => Woken::Chunks,
        }
    }

    async fn on_wake(&mut self, wake: Woken, writer: &mut ConnWriter) -> Result<Flow> {
        match wake {
            Woken::Lost(Some(addr)) => {
                let bad_chunks = false;
                writer
                    .send(Message::SourceLost { addr, bad_chunks })
                    .await?;
            }
            Woken::Lost(None) => {
                if let Some(o) = &mut self.owner {
                    o.lost_rx = None;
                }
                return Ok(Flow::Idle);
            }
            Woken::Locate => {
                let file = self.swarm.manifest.name.clone();
                writer.send(Message::Locate { file }).await?;
                self.next_locate = Instant::now() + LOCATE_EVERY;
            }
            Woken::Chunks => return Ok(Flow::Idle),
        }
        Ok(Flow::Sent)
    }

    async fn on_out(&mut self, msg: Message, writer: &mut ConnWriter) -> Result<Flow> {
        writer.send(msg).await?;
        Ok(Flow::Sent)
    }

    async fn close(
        &mut self,
        res: &Result<()>,
        _cancelled: bool,
        writer: &mut ConnWriter,
        _reader: &mut ConnReader,
    ) {
        if res.is_ok() && self.owner.is_none() && self.swarm.is_complete() {
            writer.close().await;
        }
    }
}

/// Takes in one message.
async fn handle(link: &mut Link<'_>, msg: Message) -> Result<()> {
    let getter = link.getter;
    let swarm = &getter.swarm;
    let m = &swarm.manifest;
    match msg {
        Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
        Message::Have { chunks } => {
            let added = link.theirs.extend_from_ranges(m, &chunks)?;
            let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
            swarm
                .events
                .id_list(EventKind::IdListReceived, n, link.label);
        }
        Message::Choke => {
            // The source drops what it had queued; ask again once unchoked (or elsewhere).
            link.peer_choking = true;
            for c in std::mem::take(&mut link.in_flight) {
                getter.release(c);
            }
            swarm.notify();
        }
        Message::Unchoke => link.peer_choking = false,
        Message::Chunk { chunk, data, .. } => {
            let id = m.chunk_id(chunk)?;
            if link.in_flight.remove(&chunk) {
                getter.release(chunk);
            }
            if swarm.holds(id) {
                return Ok(()); // the end-game's losing copy
            }
            swarm
                .take_chunk(id, data, link.label, &mut link.bad)
                .await?;
        }
        Message::Locations { body, .. } => {
            let loc: Locations = serde_json::from_slice(&body)
                .map_err(|e| ProtocolError::MalformedHeader(format!("locations: {e}")))?;
            getter.located(loc);
        }
        Message::Orphans { .. } => {} // for ring peers
        other => {
            return Err(ProtocolError::unexpected(Some(&other), "downloading").into());
        }
    }
    Ok(())
}

/// Queues cancels of requests for chunks now held, interest changes, and requests to fill
/// the pipeline.
async fn step(link: &mut Link<'_>, tx: &mpsc::Sender<Message>, rng: &mut impl Rng) {
    let getter = link.getter;
    let swarm = &getter.swarm;
    let have = swarm.have_snapshot();
    let done: Vec<u32> = link
        .in_flight
        .iter()
        .copied()
        .filter(|&c| m_contains(&have, c))
        .collect();
    for c in done {
        link.in_flight.remove(&c);
        getter.release(c);
        if tx.send(Message::Cancel { chunk: c }).await.is_err() {
            return; // the writer is gone: the session is ending
        }
    }
    let wanted = link
        .theirs
        .words()
        .iter()
        .zip(have.words())
        .any(|(&t, &h)| t & !h != 0);
    if wanted != link.am_interested {
        link.am_interested = wanted;
        let (msg, kind) = if wanted {
            (Message::Interested, EventKind::Interested)
        } else {
            (Message::NotInterested, EventKind::NotInterested)
        };
        if tx.send(msg).await.is_err() {
            return;
        }
        swarm.events.swarm(kind, link.label, "");
    }
    if !link.am_interested || link.peer_choking {
        return;
    }
    while link.in_flight.len() < swarm.config.in_flight {
        let Some(id) = getter.pick(&link.theirs, &link.in_flight, rng) else {
            break;
        };
        link.in_flight.insert(id.get());
        swarm
            .events
            .chunk(EventKind::ChunkRequested, id.get(), link.label, None);
        if tx.send(Message::request(id.get())).await.is_err() {
            return;
        }
    }
}

fn m_contains(set: &ChunkSet, c: u32) -> bool {
    set.words()
        .get((c / 64) as usize)
        .is_some_and(|w| w & (1 << (c % 64)) != 0)
}

/// Registers the chunks gained since `registered` with the directory (`have` to the owner).
async fn register(
    swarm: &Swarm,
    writer: &mut ConnWriter,
    label: &str,
    registered: &mut ChunkSet,
) -> Result<bool> {
    let before = registered.clone();
    let sent = announce(swarm, writer, label, registered).await?;
    let new = registered.difference(&before);
    if let Some(&first) = new.first() {
        let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
        swarm.events.registered(first, n, label);
    }
    Ok(sent)
}
