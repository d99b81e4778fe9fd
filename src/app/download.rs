//! A download as the app keeps it ([`Download`]): what was asked, how it is fetched
//! ([`FetchMode`]), and its current run (a resume starts another), with the run's own
//! [`Status`] for the page.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hash::Hash;
use crate::net::Endpoint;
use crate::peer::Status;
use crate::ticket::Ticket;

/// How a file is fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchMode {
    /// From up to `max_sources` sources at once, rarest chunk first (`peer get`): the default,
    /// fastest alone and with publishers.
    #[default]
    Get,
    /// As a member of the file's ring, placed by the directory (`peer join`).
    Join,
}

/// Where a download is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Running: connecting, then fetching.
    Running,
    /// Asked to stop; not stopped yet.
    Cancelling,
    /// Stopped before the end; what it has stays on disk for a resume.
    Cancelled,
    /// The file is whole and verified at `path`; `serving` while it still serves others.
    Complete { path: PathBuf, serving: bool },
    /// Stopped by an error, in words.
    Failed(String),
}

/// One download.
#[derive(Debug)]
pub struct Download {
    /// Its id in the app.
    pub id: u32,
    /// What was asked for: a file id, a name, or a ticket.
    pub asked: String,
    /// How it is fetched.
    pub mode: FetchMode,
    /// The directory asked for it.
    pub(crate) owner: Endpoint,
    /// The file as the directory is asked for it: an id, a name or a hash.
    pub(crate) file: String,
    /// The ticket that pins it, if it came from one.
    pub(crate) pin: Option<Ticket>,
    /// Its name, size and hash, when known before it starts (the listing, a ticket).
    pub(crate) name: Option<String>,
    pub(crate) size: Option<u64>,
    pub(crate) hash: Option<Hash>,
    pub(crate) run: Mutex<Run>,
}

/// One run of a download (a resume starts another).
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) phase: Phase,
    pub(crate) status: Arc<Status>,
    pub(crate) token: CancellationToken,
    /// The last sample of its bytes fetched: when, how many, and the rate then.
    pub(crate) sample: Option<(Instant, u64, Option<f64>)>,
}

impl Download {
    pub(crate) fn run(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it runs now (or is stopping).
    pub fn is_active(&self) -> bool {
        matches!(
            self.run().phase,
            Phase::Running | Phase::Cancelling | Phase::Complete { serving: true, .. }
        )
    }

    /// Stops it; what it has stays on disk.
    pub fn cancel(&self) {
        let mut run = self.run();
        if run.phase == Phase::Running {
            run.phase = Phase::Cancelling;
        }
        run.token.cancel();
    }
}
