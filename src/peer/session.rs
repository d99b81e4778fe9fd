//! One getter connection to a source (the owner's included): the four choking flags, the
//! requests in flight, and what each message means (see [`super::multi`]).

use std::collections::BTreeSet;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Swarm;
use super::bootstrap::Handshake;
use super::clock::AnswerClock;
use super::download::announce;
use super::getter::Getter;
use super::multi::LOCATE_EVERY;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnWriter, IDLE_TIMEOUT};
use crate::directory::Locations;
use crate::events::EventKind;
use crate::protocol::{Message, ProtocolError};
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

/// What only the owner connection does: report lost sources, register chunks.
pub(super) struct OwnerDuties<'a> {
    pub(super) lost_rx: &'a mut mpsc::UnboundedReceiver<String>,
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
    let (mut lost_rx, mut registered) = match owner {
        Some(o) => (Some(o.lost_rx), o.registered),
        None => (None, ChunkSet::new(swarm.manifest.chunk_count())),
    };
    let heartbeat = hs.heartbeat;
    let (mut reader, mut writer) = hs.conn.split();
    let mut link = Link::new(getter, label, theirs);
    let mut changed = swarm.changed.subscribe();
    let mut rng = swarm.rng(u64::from(swarm.port));
    let mut next_locate = Instant::now();
    let mut clock = AnswerClock::new(swarm.manifest.chunk_size);
    loop {
        if is_owner {
            register(swarm, &mut writer, label, &mut registered).await?;
        }
        step(&mut link, &mut writer, &mut rng).await?;
        if swarm.is_complete() && !is_owner {
            writer.close().await;
            return Ok(());
        }
        clock.waiting(!link.in_flight.is_empty() && !link.peer_choking);
        let locate_due = is_owner && !swarm.is_complete();
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            () = clock.expired() => {
                // Announced chunks that never come are not held hostage: the source is
                // dropped (and avoided), its requests go elsewhere.
                return Err(Error::Refused(format!(
                    "{label} answered none of {} requests for {}s",
                    link.in_flight.len(),
                    clock.deadline().as_secs()
                )));
            }
            msg = reader.recv("waiting for chunks", IDLE_TIMEOUT) => {
                let Some(msg) = msg? else {
                    return if is_owner || swarm.is_complete() {
                        Ok(())
                    } else {
                        Err(Error::Refused("the source closed the connection".into()))
                    };
                };
                if matches!(msg, Message::Chunk { .. } | Message::Unchoke) {
                    clock.answered();
                }
                handle(&mut link, msg).await?;
            }
            _ = changed.changed() => {}
            Some(addr) = async { lost_rx.as_mut().expect("guarded").recv().await }, if lost_rx.is_some() => {
                writer.send(Message::SourceLost { addr }).await?;
            }
            () = tokio::time::sleep_until(next_locate), if locate_due => {
                let file = swarm.manifest.name.clone();
                writer.send(Message::Locate { file }).await?;
                next_locate = Instant::now() + LOCATE_EVERY;
            }
            () = tokio::time::sleep(heartbeat), if is_owner => {
                writer.send(Message::Have { chunks: Ranges::default() }).await?;
            }
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
            return Err(ProtocolError::unexpected(Some(&other), "downloading")
            .into());
        }
    }
    Ok(())
}

/// Cancels requests for chunks now held, updates interest, and fills the request pipeline.
async fn step(link: &mut Link<'_>, writer: &mut ConnWriter, rng: &mut impl Rng) -> Result<()> {
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
        writer.send(Message::Cancel { chunk: c }).await?;
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
        writer.send(msg).await?;
        swarm.events.swarm(kind, link.label, "");
    }
    if !link.am_interested || link.peer_choking {
        return Ok(());
    }
    while link.in_flight.len() < swarm.config.in_flight {
        let Some(id) = getter.pick(&link.theirs, &link.in_flight, rng) else {
            break;
        };
        link.in_flight.insert(id.get());
        swarm
            .events
            .chunk(EventKind::ChunkRequested, id.get(), link.label, None);
        writer.send(Message::request(id.get())).await?;
    }
    Ok(())
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
) -> Result<()> {
    let before = registered.clone();
    announce(swarm, writer, label, registered).await?;
    let new = registered.difference(&before);
    if let Some(&first) = new.first() {
        let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
        swarm.events.registered(first, n, label);
    }
    Ok(())
}
