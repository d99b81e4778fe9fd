//! The app's state as the page and scripts read it (JSON), and troubles in words a person
//! understands. Names other nodes chose are data here; the page shows them as text.

use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::time::Instant;

use super::download::{Download, Phase};
use super::shares::{Published, holds};
use super::state::App;
use crate::directory::FileInfo;
use crate::ticket::Ticket;

/// Cells in a download's piece map.
pub const PIECE_CELLS: usize = 64;
/// The least time between two samples of a download's bytes for its rate.
const RATE_SAMPLE: std::time::Duration = std::time::Duration::from_millis(400);

/// Everything the page shows but the file list (which it asks for with its filter).
#[derive(Serialize)]
pub(crate) struct StateView {
    pub(crate) directory: DirectoryView,
    /// Changes whenever the directory's listing does: the page asks for `/api/files` again.
    pub(crate) files_rev: u64,
    pub(crate) downloads: Vec<DownloadView>,
    pub(crate) shares: SharesView,
}

#[derive(Serialize)]
pub(crate) struct DirectoryView {
    /// `HOST:PORT`.
    pub(crate) endpoint: String,
    /// `connecting` (not answered yet), `connected`, or `down`.
    pub(crate) state: &'static str,
    /// Why it is down, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Its key as its handshake proved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    /// This node's key.
    pub(crate) me: String,
    /// Where downloads go.
    pub(crate) dir: String,
}

#[derive(Serialize)]
pub(crate) struct DownloadView {
    pub(crate) id: u32,
    pub(crate) asked: String,
    pub(crate) name: Option<String>,
    pub(crate) size: Option<u64>,
    pub(crate) mode: super::download::FetchMode,
    /// `downloading`, `cancelling`, `cancelled`, `complete`, `failed`.
    pub(crate) state: &'static str,
    /// While complete: whether it still serves the file to others.
    pub(crate) serving: bool,
    pub(crate) held: u32,
    pub(crate) total: u32,
    pub(crate) percent: f64,
    /// Bytes per second over the last samples; `None` until sampled twice.
    pub(crate) rate: Option<f64>,
    /// Seconds left at that rate.
    pub(crate) eta: Option<f64>,
    /// Where chunks come from: the download neighbour, or the number of sources.
    pub(crate) via: String,
    /// The piece map: per cell of the file, the percentage held.
    pub(crate) pieces: Vec<u8>,
    pub(crate) uploaded_bytes: u64,
    pub(crate) refused: u64,
    pub(crate) path: Option<String>,
    pub(crate) error: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SharesView {
    pub(crate) list: Vec<ShareView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct ShareView {
    pub(crate) id: u32,
    pub(crate) path: String,
    /// `publishing` until the directory lists one of its files, then `shared`.
    pub(crate) state: &'static str,
    pub(crate) files: Vec<SharedView>,
}

#[derive(Serialize)]
pub(crate) struct SharedView {
    /// The directory's id of the file.
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) hash: String,
    pub(crate) ticket: String,
    pub(crate) uploaded_chunks: u64,
    pub(crate) uploaded_bytes: u64,
}

/// The app's state now.
pub(crate) fn state(app: &App) -> StateView {
    StateView {
        directory: directory(app),
        files_rev: app.files_rev.load(Ordering::Relaxed),
        downloads: downloads(app),
        shares: shares(app),
    }
}

pub(crate) fn directory(app: &App) -> DirectoryView {
    let d = app.directory_state();
    let state = match (&d.error, d.asked) {
        (Some(_), _) => "down",
        (None, true) => "connected",
        (None, false) => "connecting",
    };
    DirectoryView {
        endpoint: app.config.directory.to_string(),
        state,
        node: d.listing.and_then(|l| l.node),
        error: d.error,
        me: app.config.identity.id().to_string(),
        dir: app.config.dir.display().to_string(),
    }
}

/// The files the directory listed last whose name, id or hash contains `q` (any case).
pub(crate) fn files(app: &App, q: &str) -> Vec<FileInfo> {
    let q = q.trim().to_lowercase();
    app.directory_state()
        .listing
        .map(|l| l.files)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| {
            q.is_empty()
                || f.name.to_lowercase().contains(&q)
                || f.id.to_string() == q
                || f.hash.starts_with(&q)
        })
        .collect()
}

fn downloads(app: &App) -> Vec<DownloadView> {
    app.downloads_now().iter().map(|d| download(d)).collect()
}

pub(crate) fn download(d: &Download) -> DownloadView {
    let mut run = d.run();
    let s = run.status.snapshot();
    let now = Instant::now();
    let rate = match run.sample {
        Some((t, _, rate)) if now.duration_since(t) < RATE_SAMPLE => rate,
        Some((t, bytes, _)) => {
            let dt = now.duration_since(t).as_secs_f64();
            let rate = s.fetched_bytes.saturating_sub(bytes) as f64 / dt;
            run.sample = Some((now, s.fetched_bytes, Some(rate)));
            Some(rate)
        }
        None => {
            run.sample = Some((now, s.fetched_bytes, None));
            None
        }
    };
    let (state, serving, path, error) = match &run.phase {
        Phase::Running => ("downloading", false, None, None),
        Phase::Cancelling => ("cancelling", false, None, None),
        Phase::Cancelled => ("cancelled", false, None, None),
        Phase::Complete { path, serving } => (
            "complete",
            *serving,
            Some(crate::manifest::display_name(&path.to_string_lossy()).to_string()),
            None,
        ),
        Phase::Failed(e) => ("failed", false, None, Some(e.clone())),
    };
    let percent = if s.total == 0 {
        0.0
    } else {
        f64::from(s.held) * 100.0 / f64::from(s.total)
    };
    let left = d
        .size
        .filter(|_| s.total > 0)
        .map(|size| size as f64 * f64::from(s.total - s.held.min(s.total)) / f64::from(s.total));
    let running = state == "downloading";
    DownloadView {
        id: d.id,
        asked: d.asked.clone(),
        name: d.name.clone(),
        size: d.size,
        mode: d.mode,
        state,
        serving,
        held: s.held,
        total: s.total,
        percent,
        rate: rate.filter(|_| running),
        eta: match (left, rate) {
            (Some(left), Some(r)) if running && r > 0.0 => Some(left / r),
            _ => None,
        },
        via: s.via,
        pieces: run.status.piece_map(PIECE_CELLS),
        uploaded_bytes: s.sent_bytes,
        refused: s.refused,
        path,
        error,
    }
}

fn shares(app: &App) -> SharesView {
    let published = app.shares.published();
    let list = app
        .shares
        .list()
        .into_iter()
        .map(|s| {
            let files: Vec<SharedView> = published
                .iter()
                .filter(|p| holds(&s, p.file.path()))
                .map(|p| shared(app, p))
                .collect();
            ShareView {
                id: s.id,
                path: s.path.display().to_string(),
                state: if files.is_empty() {
                    "publishing"
                } else {
                    "shared"
                },
                files,
            }
        })
        .collect();
    SharesView {
        list,
        error: app
            .shares
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

fn shared(app: &App, p: &Published) -> SharedView {
    let m = &p.file.manifest;
    let (chunks, bytes) = p.file.uploaded();
    SharedView {
        id: p.id,
        name: m.name.clone(),
        size: m.size,
        hash: m.hash.to_string(),
        ticket: Ticket::new(app.config.directory.to_string(), m, p.node).to_string(),
        uploaded_chunks: chunks,
        uploaded_bytes: bytes,
    }
}

/// The app's state now, as the feed sends it (JSON).
pub fn state_json(app: &App) -> String {
    serde_json::to_string(&state(app)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
