//! One download session of a ring peer, with the owner or the download neighbour (the
//! reconnecting is in [`super::links`]). It keeps several requests in flight, picked by the
//! [`super::picker`], and announces this peer's new chunks.
//!
//! Each connection runs a reader and a writer `select!`ed together: the reader takes chunks
//! and ID lists and queues requests; the writer drains the bounded queue and announces.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bootstrap::Handshake;
use super::clock::AnswerClock;
use super::config::{STALL_AFTER, SourceKind};
use super::swarm::Swarm;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnReader, ConnWriter, IDLE_TIMEOUT};
use crate::driver::{self, Flow, Reading, Writing};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message, ProtocolError};
use crate::watch;
use crate::{Error, Result};
use tracing::info;

/// The chunks this connection requested and has not received; released when it ends.
struct InFlight<'a> {
    swarm: &'a Swarm,
    ids: BTreeSet<ChunkId>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.swarm.release(std::mem::take(&mut self.ids));
    }
}

/// Runs one session on `hs` with a source of `kind`, `announced` being what its hello said
/// this peer holds, until the connection ends or `token` is cancelled.
pub(super) async fn drive(
    swarm: &Arc<Swarm>,
    kind: SourceKind,
    hs: Handshake,
    announced: ChunkSet,
    token: &CancellationToken,
) -> Result<()> {
    let label = hs.conn.remote().to_string();
    let m = &swarm.manifest;
    if kind.serves_as_owner() {
        let assigned = ChunkSet::try_from_ranges(m, &hs.assigned)?;
        swarm
            .events
            .id_list(EventKind::IdListReceived, assigned.count(), &label);
        swarm.lock().picker.assign(&assigned);
        swarm.notify();
    }
    let reading = Reader {
        swarm,
        kind,
        label: &label,
        in_flight: InFlight {
            swarm,
            ids: BTreeSet::new(),
        },
        // One stream per source kind, so the two connections do not mirror each other.
        rng: swarm.rng(kind as u64 + 1),
        bad: 0,
        cancelled: BTreeSet::new(),
        clock: AnswerClock::new(swarm.manifest.chunk_size),
        changed: swarm.changed.subscribe(),
    };
    if kind.serves_as_owner() {
        // The owner holds every chunk.
        swarm.lock().owner.mark_connected();
    }
    let writing = Announcer {
        swarm,
        kind,
        label: &label,
        announced,
        heartbeat: hs.heartbeat,
        changed: swarm.changed.subscribe(),
        lost: None,
    };
    let queue = swarm.config.in_flight + 4;
    driver::drive(hs.conn, reading, writing, queue, token).await
}

/// What the reader of one download connection keeps.
struct Reader<'a> {
    swarm: &'a Swarm,
    kind: SourceKind,
    label: &'a str,
    in_flight: InFlight<'a>,
    rng: StdRng,
    /// Bad chunks received on this connection.
    bad: u32,
    /// Requests cancelled at the owner: their chunk may still be on its way.
    cancelled: BTreeSet<ChunkId>,
    clock: AnswerClock,
    changed: watch::Receiver<()>,
}

impl Reading for Reader<'_> {
    type Out = Message;

    fn limit(&self) -> (&'static str, Duration) {
        ("waiting for chunks", IDLE_TIMEOUT)
    }

    async fn prepare(&mut self, tx: &mpsc::Sender<Message>) -> Result<bool> {
        if !self.fill(tx).await {
            return Ok(false);
        }
        if self.swarm.is_complete() && self.kind == SourceKind::Neighbour {
            // The writer ends the connection once it announced the last chunk.
            std::future::pending::<()>().await;
        }
        // Only for a neighbour: spare requests wait at the owner on purpose.
        self.clock
            .waiting(!self.in_flight.ids.is_empty() && self.kind == SourceKind::Neighbour);
        Ok(true)
    }

    async fn interrupt(&mut self) -> Result<()> {
        tokio::select! {
            biased;
            () = self.clock.expired() => Err(self.held_hostage()),
            () = tokio::time::sleep(STALL_AFTER), if self.kind.serves_as_owner() => Ok(()),
            _ = self.changed.changed() => Ok(()),
        }
    }

    async fn on_message(&mut self, msg: Message, _tx: &mpsc::Sender<Message>) -> Result<()> {
        self.handle(msg).await
    }
}

impl Reader<'_> {
    /// Fills the pipeline: cancels owner requests the neighbour can now serve (owner only),
    /// then requests up to `in_flight` chunks. False once the writer is gone.
    async fn fill(&mut self, tx: &mpsc::Sender<Message>) -> bool {
        let swarm = self.swarm;
        if self.kind.serves_as_owner() {
            let cancel = swarm.lock().picker.take_owner_cancel();
            for c in cancel {
                let Ok(id) = swarm.manifest.chunk_id(c) else {
                    continue;
                };
                if self.in_flight.ids.remove(&id) {
                    swarm.release([id]);
                    self.cancelled.insert(id);
                    if tx.send(Message::Cancel { chunk: c }).await.is_err() {
                        return false;
                    }
                }
            }
        }
        while self.in_flight.ids.len() < swarm.config.in_flight {
            let Some((id, spare)) = swarm.pick(self.kind, &mut self.rng) else {
                break;
            };
            self.in_flight.ids.insert(id);
            swarm
                .events
                .chunk(EventKind::ChunkRequested, id.get(), self.label, None);
            let msg = Message::Request {
                chunk: id.get(),
                spare,
            };
            if tx.send(msg).await.is_err() {
                return false;
            }
        }
        true
    }

    /// A source that announces chunks but does not send them (keep-alives do not count)
    /// must not hold them hostage: they go to the owner, and this connection is dropped.
    fn held_hostage(&self) -> Error {
        let held: Vec<ChunkId> = self.in_flight.ids.iter().copied().collect();
        if self.kind == SourceKind::Neighbour {
            let mut st = self.swarm.lock();
            for id in &held {
                st.picker.suspect(*id);
            }
        }
        Error::Refused(format!(
            "{} answered none of {} requests for {}s; fetching them elsewhere",
            self.label,
            held.len(),
            self.clock.deadline().as_secs()
        ))
    }

    async fn handle(&mut self, msg: Message) -> Result<()> {
        let (swarm, label) = (self.swarm, self.label);
        let m = &swarm.manifest;
        match msg {
            Message::Chunk { chunk, data, .. } => self.on_chunk(chunk, data).await?,
            Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
            Message::Have { chunks } if self.kind == SourceKind::Neighbour => {
                let mut st = swarm.lock();
                let added = st.ring.announced(m, &chunks)?;
                st.picker.neighbour_announced(&added);
                drop(st);
                let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
                swarm.events.id_list(EventKind::IdListReceived, n, label);
                swarm.notify();
            }
            Message::Neighbour { addr } if self.kind.places_in_ring() => {
                swarm.set_neighbour(addr.as_deref());
            }
            Message::Publisher { addr } if self.kind == SourceKind::Directory => {
                swarm.set_publisher(addr.as_deref());
            }
            Message::Orphans { chunks } if self.kind.serves_as_owner() => {
                let set = ChunkSet::try_from_ranges(m, &chunks)?;
                swarm
                    .events
                    .id_list(EventKind::IdListReceived, set.count(), label);
                swarm.lock().picker.set_orphans(set);
                swarm.notify();
            }
            other => {
                return Err(ProtocolError::unexpected(Some(&other), "downloading").into());
            }
        }
        Ok(())
    }

    async fn on_chunk(&mut self, chunk: u32, data: Bytes) -> Result<()> {
        self.clock.answered();
        let id = self.swarm.manifest.chunk_id(chunk)?;
        // A cancelled chunk may already have been on its way: it is as good as any
        // other, if still missing.
        if !self.in_flight.ids.remove(&id) && !self.cancelled.remove(&id) {
            return Err(ProtocolError::Unexpected {
                got: "unrequested chunk",
                doing: "downloading",
            }
            .into());
        }
        if self.swarm.holds(id) {
            // Another connection delivered it first (a cancelled spare request, or a
            // fall-back source): nothing to do.
            return Ok(());
        }
        self.swarm
            .take_chunk(id, data, self.label, &mut self.bad)
            .await
    }
}

/// Sends `have` for the chunks this peer gained since `announced` (split to keep each header
/// small), and records them as announced.
pub(super) async fn announce(
    swarm: &Swarm,
    writer: &mut ConnWriter,
    label: &str,
    announced: &mut ChunkSet,
) -> Result<bool> {
    let have = swarm.have_snapshot();
    let new = have.difference(announced);
    if new.is_empty() {
        return Ok(false);
    }
    let ranges = Ranges::from_sorted(new.iter().copied());
    for part in ranges.0.chunks(MAX_RANGES_PER_MESSAGE) {
        let chunks = Ranges(part.to_vec());
        writer.send(Message::Have { chunks }).await?;
    }
    let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
    swarm.events.id_list(EventKind::IdListSent, n, label);
    *announced = have;
    Ok(true)
}

/// How long a ring peer's download neighbour may not serve (unreachable, or silent after
/// connecting) before the peer reports it to the directory (`source_lost`), which probes it
/// and drops it from the ring if it does not answer.
pub const REPORT_LOST_AFTER: Duration = Duration::from_secs(2);

/// The writer's side: sends queued requests and announces newly held chunks; ends a
/// neighbour connection once everything is held and announced. On the directory's
/// connection it also reports a download neighbour that does not serve.
struct Announcer<'a> {
    swarm: &'a Swarm,
    kind: SourceKind,
    label: &'a str,
    /// What the source has been told this peer holds.
    announced: ChunkSet,
    heartbeat: Duration,
    changed: watch::Receiver<()>,
    /// The download neighbour seen down: its address, since when (as seen here), and when
    /// it was last reported.
    lost: Option<(String, Instant, Option<Instant>)>,
}

impl Announcer<'_> {
    /// On the directory's connection, while the download neighbour does not serve: its
    /// address and when to report it (after [`REPORT_LOST_AFTER`], then at most every
    /// [`crate::directory::PROBE_EVERY`], when the directory may probe it again).
    fn lost_neighbour(&mut self) -> Option<(String, Instant)> {
        // Only the directory's connection reports; the others' writers (the data path) skip
        // this before taking any lock.
        if !matches!(self.kind, SourceKind::Owner | SourceKind::Directory) {
            return None;
        }
        let down = self.swarm.lock().ring.down_since();
        let addr = self
            .swarm
            .neighbour
            .borrow()
            .as_ref()
            .map(ToString::to_string);
        let (Some(addr), Some(down), false) = (addr, down, self.swarm.is_complete()) else {
            self.lost = None;
            return None;
        };
        if self.lost.as_ref().is_none_or(|(a, _, _)| *a != addr) {
            self.lost = Some((addr, down.max(Instant::now()), None));
        }
        let (addr, since, told) = self.lost.as_ref()?;
        let due = match told {
            Some(t) => *t + crate::directory::PROBE_EVERY,
            None => *since + REPORT_LOST_AFTER,
        };
        Some((addr.clone(), due))
    }
}

impl Writing for Announcer<'_> {
    type Out = Message;
    type Wake = ();

    fn keepalive(&self) -> Duration {
        self.heartbeat
    }

    async fn flush(&mut self, writer: &mut ConnWriter) -> Result<Flow> {
        if let Some((addr, due)) = self.lost_neighbour()
            && due <= Instant::now()
        {
            info!(
                "download neighbour {addr} has not served for {}s; reported to the directory",
                REPORT_LOST_AFTER.as_secs()
            );
            let bad_chunks = false;
            writer
                .send(Message::SourceLost { addr, bad_chunks })
                .await?;
            if let Some((_, _, told)) = &mut self.lost {
                *told = Some(Instant::now());
            }
        }
        if matches!(self.kind, SourceKind::Owner | SourceKind::Directory) {
            for addr in self.swarm.take_bad_sources() {
                info!("publisher {addr} sent bad chunks; reported to the directory");
                let bad_chunks = true;
                writer
                    .send(Message::SourceLost { addr, bad_chunks })
                    .await?;
            }
        }
        let sent = announce(self.swarm, writer, self.label, &mut self.announced).await?;
        // A complete peer ends its neighbour connection; the owner connection stays, as
        // the directory registration, with heartbeats.
        if self.announced.is_full() && self.kind == SourceKind::Neighbour {
            return Ok(Flow::Done);
        }
        Ok(sent.into())
    }

    async fn wake(&mut self) {
        let report = self.lost_neighbour().map(|(_, due)| due);
        tokio::select! {
            // Closed only with the swarm, which outlives the session.
            _ = self.changed.changed() => {}
            () = tokio::time::sleep_until(report.unwrap_or_else(Instant::now)), if report.is_some() => {}
        }
    }

    async fn on_out(&mut self, msg: Message, writer: &mut ConnWriter) -> Result<Flow> {
        writer.send(msg).await?;
        Ok(Flow::Sent)
    }

    async fn close(
        &mut self,
        res: &Result<()>,
        cancelled: bool,
        writer: &mut ConnWriter,
        reader: &mut ConnReader,
    ) {
        let swarm = self.swarm;
        let moved = || {
            swarm.neighbour.borrow().as_ref().map(ToString::to_string)
                != Some(self.label.to_string())
        };
        if cancelled && self.kind == SourceKind::Neighbour && !swarm.is_complete() && moved() {
            // The directory named another download neighbour: this one is left for good.
            let bye = writer.send(Message::NotInterested);
            let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
        }
        if cancelled && swarm.is_complete() {
            // Shutting down complete: make sure the server heard so (its `have` may not have
            // gone out yet), or it would wait for us in vain. Duplicates are harmless.
            let all = Ranges::from_sorted(0..swarm.manifest.chunk_count());
            for part in all.0.chunks(MAX_RANGES_PER_MESSAGE) {
                let msg = Message::Have {
                    chunks: Ranges(part.to_vec()),
                };
                if tokio::time::timeout(Duration::from_secs(1), writer.send(msg))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        if res.is_ok() && swarm.is_complete() && self.kind == SourceKind::Neighbour {
            // Everything announced: half-close, and read until the server closes too, so
            // that unread data never turns the close into a reset that destroys the last
            // `have` before the server read it.
            writer.close().await;
            reader.drain(Duration::from_secs(2)).await;
        }
    }
}
