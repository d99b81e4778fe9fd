//! What the app knows and runs ([`App`]): the directory's last answer (or why there is
//! none), the downloads, the shares, and the feed's sender.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::config::{AppConfig, CLIENT_QUEUE};
use super::download::Download;
use super::shares::Shares;
use crate::directory::Listing;

/// The directory as the poller last saw it.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirectoryState {
    /// Its files, when it last answered.
    pub(crate) listing: Option<Listing>,
    /// Why the last ask failed, in words; `None` when it answered.
    pub(crate) error: Option<String>,
    /// Whether it was ever asked.
    pub(crate) asked: bool,
    /// When it was last asked.
    pub(crate) at: Option<tokio::time::Instant>,
}

/// What the app knows and runs.
pub struct App {
    pub(crate) config: AppConfig,
    pub(crate) directory: Mutex<DirectoryState>,
    /// Bumped whenever the directory's listing changes, so a page asks for it again.
    pub(crate) files_rev: AtomicU64,
    pub(crate) downloads: Mutex<BTreeMap<u32, Arc<Download>>>,
    pub(crate) shares: Shares,
    next_id: AtomicU32,
    pub(crate) feed: broadcast::Sender<Arc<str>>,
    /// The cap on the whole app's uploads (`--upload-limit`), shared by the shares and every
    /// download.
    pub(crate) limiter: Option<Arc<crate::rate::RateLimiter>>,
    /// Cancelled when the app stops: every download and the shares stop with it.
    pub(crate) stop: CancellationToken,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("directory", &self.config.directory)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app of `config`, stopping with `stop`; nothing runs until [`run`].
    pub fn new(config: AppConfig, stop: CancellationToken) -> Arc<Self> {
        let (feed, _) = broadcast::channel(CLIENT_QUEUE);
        let limiter = config
            .upload_limit
            .map(|r| Arc::new(crate::rate::RateLimiter::new(r, config.chunk_size)));
        Arc::new(Self {
            config,
            directory: Mutex::new(DirectoryState::default()),
            files_rev: AtomicU64::new(0),
            downloads: Mutex::new(BTreeMap::new()),
            shares: Shares::default(),
            next_id: AtomicU32::new(1),
            feed,
            limiter,
            stop,
        })
    }

    /// A new download or share id.
    pub(crate) fn next_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Every download now.
    pub(crate) fn downloads_now(&self) -> Vec<Arc<Download>> {
        self.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn directory_state(&self) -> DirectoryState {
        self.directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the directory for its files once, and keeps the answer (or why there is none).
    pub async fn poll_directory(&self) {
        let me = &self.config.identity;
        let pin = self.config.directory_node.as_ref();
        let answer =
            crate::directory::client::find_files_pinned(&self.config.directory, None, me, pin)
                .await;
        let mut state = self.directory.lock().unwrap_or_else(|p| p.into_inner());
        state.asked = true;
        state.at = Some(tokio::time::Instant::now());
        match answer {
            Ok(listing) => {
                if state.listing.as_ref() != Some(&listing) {
                    self.files_rev.fetch_add(1, Ordering::Relaxed);
                }
                state.listing = Some(listing);
                state.error = None;
            }
            Err(e) => {
                let words = super::words::directory_trouble(&self.config.directory, &e);
                if state.error.as_ref() != Some(&words) {
                    self.files_rev.fetch_add(1, Ordering::Relaxed);
                }
                state.error = Some(words);
            }
        }
    }

    /// Asks the directory again if its last answer is older than `age` (or there is none).
    pub async fn poll_if_older(&self, age: std::time::Duration) {
        let at = self.directory_state().at;
        if at.is_none_or(|t| t.elapsed() >= age) {
            self.poll_directory().await;
        }
    }

    /// The directory's files whose name contains `text` (any case), asked now: for a list
    /// too long for one answer, whose filter cannot be applied here.
    ///
    /// # Errors
    ///
    /// The directory did not answer.
    pub async fn search(&self, text: &str) -> anyhow::Result<Listing> {
        let me = &self.config.identity;
        let pin = self.config.directory_node.as_ref();
        let d = &self.config.directory;
        crate::directory::client::find_files_pinned(d, Some(text.to_string()), me, pin).await
    }

    /// The live feed for one client (see `routes`).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.feed.subscribe()
    }
}
