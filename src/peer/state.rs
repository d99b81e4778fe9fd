//! The node's state behind [`super::swarm::Swarm::lock`] ([`State`]): the picker, the two
//! links, why the peer must stop, and the bad sources to report; and the steps that change
//! several of them at once. No locks, no sockets, no notifying here: the swarm does those.

use std::path::Path;

use tokio::time::Instant;

use super::config::SourceKind;
use super::owner_link::OwnerLink;
use super::picker::Picker;
use super::ring_link::RingLink;
use crate::chunkset::ChunkSet;
use crate::manifest::{ChunkId, Manifest};
use crate::net::Endpoint;
use crate::store::StoreError;
use crate::{Error, Result};

/// Bad-source reports waiting for the directory connection, at most.
const MAX_BAD_REPORTS: usize = 16;

/// The picker and the two links, and what only the swarm as a whole knows.
#[derive(Debug)]
pub(super) struct State {
    pub(super) picker: Picker,
    pub(super) ring: RingLink,
    pub(super) owner: OwnerLink,
    /// Why this peer must stop: an error no retry can mend (a full disk, say).
    pub(super) fatal: Option<String>,
    /// Sources left for sending bad chunks, to be reported to the directory (at most
    /// [`MAX_BAD_REPORTS`] waiting).
    pub(super) bad_sources: Vec<String>,
}

impl State {
    /// A peer holding `have`, nothing connected yet, as of `now`.
    pub(super) fn new(have: ChunkSet, now: Instant) -> Self {
        Self {
            picker: Picker::new(have, now),
            ring: RingLink::new(now),
            owner: OwnerLink::default(),
            fatal: None,
            bad_sources: Vec::new(),
        }
    }

    /// Picks a chunk of `m` to request from a source of `kind`, and marks it pending; true
    /// with it for a spare request to the owner.
    pub(super) fn pick(
        &mut self,
        m: &Manifest,
        kind: SourceKind,
        rng: &mut impl rand::Rng,
    ) -> Option<(ChunkId, bool)> {
        let owner_connected = self.owner.connected();
        let (c, spare) = self
            .picker
            .pick(kind, &mut self.ring, owner_connected, rng)?;
        let id = m.chunk_id(c).ok()?;
        self.picker.requested(id, kind, spare);
        Some((id, spare))
    }

    /// Queues the source at `addr`, left for sending bad chunks, for reporting.
    pub(super) fn report_bad_source(&mut self, addr: String) {
        if self.bad_sources.len() < MAX_BAD_REPORTS && !self.bad_sources.contains(&addr) {
            self.bad_sources.push(addr);
        }
    }

    /// The connection to a source of `kind` came up (`e` is `None`) or went down, and why;
    /// false for a source nothing waits on (a directory serves no chunks).
    pub(super) fn set_link_error(
        &mut self,
        kind: SourceKind,
        e: Option<String>,
        chunk_count: u32,
    ) -> bool {
        match kind {
            SourceKind::Owner | SourceKind::Publisher => self.owner.set_error(e),
            SourceKind::Neighbour => self.ring.set_error(e, chunk_count),
            SourceKind::Directory => return false,
        }
        true
    }

    /// Books the end of storing chunk `id` (claimed before): stored, or `res`'s error. A bad
    /// chunk is fetched again, from the owner; any other error is fatal, the chunks so far
    /// being kept in `dir`.
    pub(super) fn settle(&mut self, id: ChunkId, res: &Result<(), StoreError>, dir: &Path) {
        self.picker.unclaim(id);
        self.picker.release(id);
        let Err(e) = res else {
            self.picker.stored(id);
            return;
        };
        if !is_bad_chunk(e) && self.fatal.is_none() {
            // Not the chunk's fault (the disk is full, say): fetching again cannot help.
            self.fatal = Some(format!(
                "cannot store chunk {id}: {e}; the {} verified chunks so far are kept in {}",
                self.picker.have().count(),
                dir.display()
            ));
        }
        self.picker.suspect(id);
    }
}

impl State {
    /// Fails if this peer must stop: a fatal error, or no new chunk for `timeout`; else says
    /// when it stalls if no chunk arrives before (`None`: never). The error
    /// says how the `owner` link and, on a ring (`neighbour`: its address, or why none), the
    /// neighbour link are.
    pub(super) fn check_progress(
        &self,
        timeout: std::time::Duration,
        owner: &Endpoint,
        neighbour: Option<&str>,
    ) -> Result<Option<Instant>> {
        if let Some(why) = &self.fatal {
            return Err(Error::Fatal(why.clone()));
        }
        let last = self.picker.last_progress();
        if last.elapsed() < timeout {
            return Ok(last.checked_add(timeout));
        }
        let owner = format!(
            "owner {owner}: {}",
            self.owner.error().unwrap_or("connected")
        );
        let detail = match neighbour {
            None => owner,
            Some(n) => format!(
                "neighbour {n}: {}; {owner}",
                self.ring.error().unwrap_or("connected")
            ),
        };
        let have = self.picker.have();
        Err(Error::Stalled {
            secs: timeout.as_secs(),
            have: have.count(),
            total: have.capacity(),
            detail,
        })
    }
}

/// Whether a store error is the chunk's fault (fetching it again may help).
pub(super) fn is_bad_chunk(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ChunkHashMismatch { .. } | StoreError::ChunkLength { .. }
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A chunk that fails its hash is fetched again from the owner; a store that fails for
    /// any other reason stops the peer, and the stall check says why.
    #[tokio::test(start_paused = true)]
    async fn a_bad_chunk_is_suspect_and_a_store_failure_is_fatal() {
        let m = Manifest::for_tests(4);
        let id = |c| m.chunk_id(c).unwrap();
        let mut st = State::new(ChunkSet::new(4), Instant::now());
        let owner: Endpoint = "10.0.0.1:5000".parse().unwrap();
        let dir = Path::new("/d");
        let bad = StoreError::ChunkLength {
            chunk: 1,
            expected: 1,
            actual: 2,
        };
        assert!(st.picker.claim(id(1)));
        st.settle(id(1), &Err(bad), dir);
        assert!(st.fatal.is_none());
        assert!(!st.picker.have().contains(id(1)));
        assert!(st.picker.claim(id(1)), "claimable again");
        st.settle(id(1), &Ok(()), dir);
        assert!(st.picker.have().contains(id(1)));
        let timeout = Duration::from_secs(30);
        assert!(st.check_progress(timeout, &owner, None).is_ok());

        tokio::time::advance(timeout).await;
        let stalled = st.check_progress(timeout, &owner, Some("10.0.0.2:7000"));
        assert_eq!(
            stalled.unwrap_err().to_string(),
            "no progress for 30s with 1/4 chunks: neighbour 10.0.0.2:7000: connected; \
             owner 10.0.0.1:5000: connected"
        );
        let full = StoreError::Bug("disk full");
        assert!(st.picker.claim(id(2)));
        st.settle(id(2), &Err(full), dir);
        let fatal = st.check_progress(timeout, &owner, None).unwrap_err();
        assert!(
            fatal.to_string().starts_with("cannot store chunk 2: "),
            "{fatal}"
        );
        assert!(
            fatal
                .to_string()
                .ends_with("the 1 verified chunks so far are kept in /d")
        );
    }
}
