//! A peer: fetch the manifest and a subset from the owner, then at the same time serve an
//! upload neighbour ([`upload`]) and download, until every chunk is held; then reassemble and
//! verify ([`assemble`]), and keep serving until the upload neighbour is complete.
//!
//! A node runs in one of two modes ([`Mode`]): a ring member downloads from its download
//! neighbour and the owner; a getter (`peer get`) from many sources the owner's directory
//! lists ([`sources`]).
//!
//! This file only starts the parts ([`run`]); nothing in `peer/` imports it.
//!
//! # Layout
//!
//! - [`config`] — how a peer runs, the kinds of source, the shared limits.
//! - [`bootstrap`] — handshake, bootstrap from the owner or a saved manifest, node id.
//! - [`swarm`] — what the tasks share: [`Swarm`], its state split by concern ([`picker`],
//!   [`ring_link`], [`owner_link`], [`downstream`]) and the steps every connection takes on a
//!   chunk; [`recent`] keeps the newest chunks for forwarding.
//! - [`links`] — the owner, neighbour and publisher links, each kept connected by one
//!   reconnect loop under one backoff rule ([`retry`]); [`fetch`] is the one download handler,
//!   a session with any source; [`clock`] is the request deadline.
//! - [`sources`] — the source pool of a getter and of a ring peer whose neighbour is down;
//!   [`getter`] is its state.
//! - [`upload`] — the upload server; [`finish`] — completion and serving until done.

mod assemble;
mod bootstrap;
mod clock;
mod config;
mod discover;
pub use config::{
    Completion, Config, DEFAULT_IN_FLIGHT, DEFAULT_MAX_SOURCES, DOWNSTREAM_GRACE, GetConfig,
    MAX_BAD_CHUNKS, MAX_UPLOAD_CONNECTIONS, NO_DOWNSTREAM_WAIT, RECENT_BYTES, RECENT_CHUNKS,
    SPARE_IN_FLIGHT, STALL_AFTER, TELL_NEIGHBOUR_WAIT,
};
mod downstream;
mod fetch;
mod finish;
#[doc(hidden)]
pub mod forward;
pub use finish::Outcome;
mod getter;
mod links;
mod owner_link;
mod picker;
mod recent;
mod retry;
mod ring_link;
mod sources;
mod state;
mod status;
pub use status::{Snapshot, Status};
mod swarm;
mod upload;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span};

use crate::net::Listener;
use crate::task::spawn_tracked;
use crate::{Error, Result};
use bootstrap::Handshake;
use config::{Mode, SourceKind};
use links::SourceLink;
use swarm::Swarm;

/// Runs a peer on `listener` until its file is complete and its upload neighbour served, or
/// `token` is cancelled.
///
/// # Errors
///
/// The owner unreachable at start (with no saved manifest), a refusal by the owner (unknown
/// file, version), no progress for `config.timeout`, or a store error.
pub async fn run(
    listener: impl Into<Listener>,
    mut config: Config,
    token: CancellationToken,
) -> Result<Outcome> {
    let started = Instant::now();
    let listener = listener.into();
    let port = listener
        .local_addr()
        .map_err(|e| Error::Bug(e.to_string()))?
        .port();
    let on_complete = config.on_complete.take();
    let node = config.identity.id().to_hex();
    let mode = config.mode();

    let boot = tokio::select! {
        biased;
        () = token.cancelled() => return Ok(Outcome::Interrupted),
        b = bootstrap::bootstrap(&config, &mode, port, &node) => b?,
    };
    let swarm = Arc::new(Swarm::open(config, mode, boot.manifest, port, node).await?);

    let tasks = TaskTracker::new();
    let child = token.child_token();
    let _cancel_on_drop = child.clone().drop_guard();
    let _stop_rechoker = spawn_tasks(&swarm, &tasks, listener, boot.owner_conn, &child);
    finish::serve_until_done(&swarm, &tasks, &child, &token, started, on_complete).await
}

/// Starts the upload server, the summary writer, the rechoker (stopped when the returned
/// guard drops) and the download side of the peer's mode.
fn spawn_tasks(
    swarm: &Arc<Swarm>,
    tasks: &TaskTracker,
    listener: Listener,
    owner_conn: Option<Handshake>,
    child: &CancellationToken,
) -> AbortOnDrop {
    spawn_tracked(
        tasks,
        "upload-server",
        upload::serve(listener, swarm.clone(), child.clone()),
    );
    if !swarm.store.is_in_memory() {
        spawn_tracked(
            tasks,
            "summary-writer",
            finish::summary_writer(swarm.clone(), child.clone()),
        );
    }
    let rechoker = AbortOnDrop(crate::choke::spawn_rechoker(&swarm.choker));
    match &swarm.mode {
        Mode::Getter(get) => spawn_getter(swarm, tasks, owner_conn, get.max_sources, child),
        Mode::Ring { .. } => spawn_ring(swarm, tasks, owner_conn, child),
    }
    rechoker
}

/// A ring peer's download side: the owner link, the neighbour and publisher links that
/// follow the directory, and the fall-back.
fn spawn_ring(
    swarm: &Arc<Swarm>,
    tasks: &TaskTracker,
    owner_conn: Option<Handshake>,
    child: &CancellationToken,
) {
    let owner = swarm.config.owner.clone();
    let owner_span = info_span!("owner", addr = %owner);
    let link = SourceLink::ring(swarm.clone(), SourceKind::Owner, owner);
    spawn_tracked(
        tasks,
        "owner-link",
        link.run(owner_conn, child.clone()).instrument(owner_span),
    );
    let follow = |kind| links::follow(swarm.clone(), kind, child.clone());
    spawn_tracked(tasks, "neighbour-link", follow(SourceKind::Neighbour));
    spawn_tracked(tasks, "publisher-link", follow(SourceKind::Publisher));
    spawn_tracked(
        tasks,
        "fallback",
        sources::fallback(swarm.clone(), child.clone()),
    );
}

/// A getter's download side (`peer get`): the owner link, kept for as long as the peer
/// runs, and the source pool, until the file is complete.
fn spawn_getter(
    swarm: &Arc<Swarm>,
    tasks: &TaskTracker,
    owner_conn: Option<Handshake>,
    max_sources: usize,
    child: &CancellationToken,
) {
    let (lost_tx, lost_rx) = mpsc::unbounded_channel();
    let getter = getter::new_getter(swarm, lost_tx);
    let owner_span = info_span!("owner", addr = %swarm.config.owner);
    let link = SourceLink::getter_owner(getter.clone(), lost_rx);
    spawn_tracked(
        tasks,
        "owner-link",
        link.run(owner_conn, child.clone()).instrument(owner_span),
    );
    // The owner's connection counts as one source.
    let max = max_sources.saturating_sub(1);
    spawn_tracked(
        tasks,
        "dht-sources",
        discover::getter_sources(getter.clone(), child.clone()),
    );
    spawn_tracked(
        tasks,
        "source-pool",
        sources::pool(getter, max, child.clone()),
    );
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod testing;
