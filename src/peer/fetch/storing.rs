//! Chunks being checked and stored on other workers. On a runtime of more than one worker, a
//! download connection claims each chunk it receives, hands the hashing and the write to
//! another worker, and reads on: up to two chunks per worker at once, so one connection's
//! chunks are hashed and written on every core. On a one-thread runtime they are checked and
//! stored in place, as before: there a hand-off costs more than it saves.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::FutureExt;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;

use super::super::swarm::Swarm;
use crate::Result;
use crate::manifest::ChunkId;
use crate::storage::check_and_store;
use crate::store::StoreError;

/// What a job gives back: its outcome, and the chunk (for the forwarding cache).
type Done = (Bytes, Result<(), StoreError>);

/// The chunks one connection has being checked and stored, oldest first.
pub(super) struct Storing<'a> {
    swarm: &'a Swarm,
    /// At most this many at once (twice the runtime's workers); 0: in place.
    most: usize,
    jobs: VecDeque<(ChunkId, JoinHandle<Done>)>,
}

impl<'a> Storing<'a> {
    pub(super) fn new(swarm: &'a Swarm) -> Self {
        let workers = match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => h.metrics().num_workers(),
            _ => 0,
        };
        // Two per worker: tokio runs a task spawned from a worker next on that same worker
        // (its LIFO slot, which no other worker may take), so only the chunks beyond the first
        // wait where idle workers can take them. Measured with `benches/forward.rs` on 2
        // cores: one per worker 718–738 MB/s, two 803–828.
        let most = if workers <= 1 { 0 } else { 2 * workers };
        Self {
            swarm,
            most,
            jobs: VecDeque::new(),
        }
    }

    /// Chunks are checked and stored in place (a one-thread runtime).
    pub(super) fn in_place(&self) -> bool {
        self.most <= 1
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// As many chunks are being stored as allowed.
    pub(super) fn full(&self) -> bool {
        self.jobs.len() >= self.most
    }

    /// Starts checking and storing `data` as chunk `id`, which the caller claimed.
    pub(super) fn start(&mut self, id: ChunkId, data: Bytes) {
        let (manifest, store) = (self.swarm.manifest.clone(), self.swarm.store.clone());
        let job = crate::task::spawn_named("store chunk", async move {
            let res = check_and_store(&manifest, &*store, id, &data);
            (data, res)
        });
        self.jobs.push_back((id, job));
    }

    /// Waits for the oldest chunk to be checked and stored and settles it: its id, its
    /// length, and the outcome. Cancel-safe: a chunk leaves the queue only once settled.
    pub(super) async fn next(&mut self) -> Option<(ChunkId, u64, Result<()>)> {
        let (_, job) = self.jobs.front_mut()?;
        let done = job.await;
        let (id, _) = self.jobs.pop_front()?;
        Some(self.settle(id, done.ok()))
    }

    fn settle(&self, id: ChunkId, done: Option<Done>) -> (ChunkId, u64, Result<()>) {
        match done {
            Some((data, res)) => {
                let len = data.len() as u64;
                (id, len, self.swarm.settle(id, data, res))
            }
            None => {
                // The job panicked or was cancelled: the chunk is asked for again.
                self.swarm.unclaim(id);
                (
                    id,
                    0,
                    Err(StoreError::Bug("a chunk's check ended early").into()),
                )
            }
        }
    }
}

impl Drop for Storing<'_> {
    /// The session ended: chunks already stored are settled, the rest asked for again.
    fn drop(&mut self) {
        for (id, mut job) in std::mem::take(&mut self.jobs) {
            match (&mut job).now_or_never() {
                Some(Ok((data, res))) => {
                    if self.swarm.settle(id, data.clone(), res).is_ok() {
                        self.swarm.status.stored(id, data.len() as u64);
                    }
                }
                _ => {
                    job.abort();
                    self.swarm.unclaim(id);
                }
            }
        }
    }
}
