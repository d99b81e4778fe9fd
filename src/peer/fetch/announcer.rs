//! The writer's side of a fetch session ([`Announcer`]): it sends the requests the reader
//! queues, tells the source this peer's new chunks, does the owner duties on the owner's
//! connection, and ends a ring peer's session the way the source needs to hear it.

use std::time::Duration;

use super::owner_duties::{Duties, FetchWake};
use crate::Result;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnReader, ConnWriter};
use crate::driver::{Flow, Writing};
use crate::peer::config::SourceKind;
use crate::peer::swarm::Swarm;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message};
use crate::watch;

/// The writer's side of a session: sends the requests, tells the source this peer's new
/// chunks (on a ring, ending a neighbour's session once it heard of the last), and does the
/// owner duties.
pub(super) struct Announcer<'a> {
    swarm: &'a Swarm,
    label: &'a str,
    /// The kind of a ring peer's source (`None`: a getter's).
    ring: Option<SourceKind>,
    /// What the source has been told this peer holds (`None`: it is told nothing, one of a
    /// getter's sources).
    told: Option<ChunkSet>,
    heartbeat: Duration,
    changed: watch::Receiver<()>,
    duties: Option<Duties<'a>>,
}

impl<'a> Announcer<'a> {
    /// The writer of a session with the source `label`: a ring peer's source of kind `ring`
    /// (`None`: a getter's), told `told` so far, heard from every `heartbeat`.
    pub(super) fn new(
        swarm: &'a Swarm,
        label: &'a str,
        ring: Option<SourceKind>,
        told: Option<ChunkSet>,
        heartbeat: Duration,
        duties: Option<Duties<'a>>,
    ) -> Self {
        Self {
            swarm,
            label,
            ring,
            told,
            heartbeat,
            changed: swarm.changed.subscribe(),
            duties,
        }
    }
}

impl Writing for Announcer<'_> {
    type Out = Message;
    type Wake = FetchWake;

    fn keepalive(&self) -> Duration {
        self.heartbeat
    }

    async fn flush(&mut self, writer: &mut ConnWriter) -> Result<Flow> {
        let swarm = self.swarm;
        if let Some(d) = &mut self.duties {
            d.flush(swarm, writer).await?;
        }
        let Some(told) = &mut self.told else {
            return Ok(Flow::Idle);
        };
        // A getter's `have` to the owner registers its chunks with the directory.
        let before = (self.ring.is_none()).then(|| told.clone());
        let sent = swarm.announce(writer, self.label, told).await?;
        if let Some(before) = before
            && let new = told.difference(&before)
            && let Some(&first) = new.first()
        {
            let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
            swarm.events.registered(first, n, self.label);
        }
        // A complete peer ends its neighbour connection; the owner connection stays, as
        // the directory registration, with heartbeats.
        if told.is_full() && self.ring == Some(SourceKind::Neighbour) {
            return Ok(Flow::Done);
        }
        Ok(sent.into())
    }

    async fn wake(&mut self) -> FetchWake {
        let swarm = self.swarm;
        let duties = self.duties.as_mut();
        tokio::select! {
            biased;
            w = async { duties.expect("guarded").wake(swarm).await }, if duties.is_some() => w,
            // Closed only with the swarm, which outlives the session.
            _ = self.changed.changed() => FetchWake::Changed,
        }
    }

    async fn on_wake(&mut self, wake: FetchWake, writer: &mut ConnWriter) -> Result<Flow> {
        match &mut self.duties {
            Some(d) => d.on_wake(wake, self.swarm, writer).await,
            None => Ok(Flow::Idle),
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
        let complete = self.swarm.is_complete();
        match self.ring {
            Some(kind) => self.farewell(kind, res, cancelled, writer, reader).await,
            None if res.is_ok() && self.duties.is_none() && complete => writer.close().await,
            None => {}
        }
    }
}

impl Announcer<'_> {
    /// How a ring peer's session ends: a neighbour left for another is told so; a complete
    /// peer makes sure the source heard it; a neighbour that heard of the last chunk is
    /// half-closed.
    async fn farewell(
        &self,
        kind: SourceKind,
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
        let neighbour = kind == SourceKind::Neighbour;
        if cancelled && neighbour && !swarm.is_complete() && moved() {
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
                let send = tokio::time::timeout(Duration::from_secs(1), writer.send(msg));
                if send.await.is_err() {
                    break;
                }
            }
        }
        if res.is_ok() && swarm.is_complete() && neighbour {
            // Everything announced: half-close, and read until the server closes too, so
            // that unread data never turns the close into a reset that destroys the last
            // `have` before the server read it.
            writer.close().await;
            reader.drain(Duration::from_secs(2)).await;
        }
    }
}
