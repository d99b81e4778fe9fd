//! Starting, resuming and stopping the app's downloads: each one a [`crate::peer::run`] of
//! its own (a multi-source get, or a ring member the directory places), writing only in the
//! app's folder. A file from the list is pinned by its hash (the file the person saw); a
//! ticket pins its own. Cancelled, a download keeps what it has on disk; resumed, it starts
//! again from there (the store's summary). Complete, a get keeps serving the file (as
//! `peer get` does) until it is removed or the app stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::download::{Download, FetchMode, Phase, Run};
use super::state::App;
use crate::hash::Hash;
use crate::net::Endpoint;
use crate::peer::{self, Outcome, Status};
use crate::ticket::Ticket;

/// Starts fetching `file` (an id, a name or a ticket) as `mode` says, as
/// `POST /api/downloads` does; the download's id.
///
/// # Errors
///
/// Why it cannot start, in words.
pub fn download(app: &Arc<App>, file: &str, mode: FetchMode) -> Result<u32, String> {
    let req = Request {
        file: file.to_string(),
        mode,
    };
    start(app, req)
        .map(|(d, _)| d.id)
        .map_err(|(_, words)| words)
}

/// What a client asks for: `file` an id, a name or a ticket; `mode` how.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub file: String,
    #[serde(default)]
    pub mode: FetchMode,
}

/// Why a download cannot start: an HTTP status and words.
pub(crate) type Why = (axum::http::StatusCode, String);

/// Starts the download `req` asks for, or resumes the stopped one of the same file; the
/// download, and whether it is new.
pub(crate) fn start(app: &Arc<App>, req: Request) -> Result<(Arc<Download>, bool), Why> {
    use axum::http::StatusCode;
    let wanted = resolve(app, req.file.trim())?;
    let mut downloads = app.downloads.lock().unwrap_or_else(|p| p.into_inner());
    let same = downloads
        .values()
        .find(|d| d.owner == wanted.owner && same_file(d, &wanted))
        .cloned();
    if let Some(d) = same {
        if d.is_active() {
            let what = d.name.as_deref().unwrap_or(&d.asked);
            return Err((
                StatusCode::CONFLICT,
                format!(
                    "{} is already being fetched (download {})",
                    crate::manifest::display_name(what),
                    d.id
                ),
            ));
        }
        let d = Arc::new(Download {
            mode: req.mode,
            run: Mutex::new(fresh_run(&app.stop)),
            ..wanted.with_id(d.id, d.asked.clone())
        });
        downloads.insert(d.id, d.clone());
        drop(downloads);
        spawn(app, d.clone());
        return Ok((d, false));
    }
    if downloads.len() >= super::config::MAX_DOWNLOADS {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} downloads are listed already: remove a finished or cancelled one first",
                super::config::MAX_DOWNLOADS
            ),
        ));
    }
    let d = Arc::new(Download {
        mode: req.mode,
        run: Mutex::new(fresh_run(&app.stop)),
        ..wanted.with_id(app.next_id(), req.file.trim().to_string())
    });
    downloads.insert(d.id, d.clone());
    drop(downloads);
    spawn(app, d.clone());
    Ok((d, true))
}

fn same_file(d: &Download, w: &Wanted) -> bool {
    match (&d.hash, &w.hash) {
        (Some(a), Some(b)) => a == b,
        _ => d.file == w.file,
    }
}

fn fresh_run(stop: &CancellationToken) -> Run {
    Run {
        phase: Phase::Running,
        status: Arc::new(Status::new()),
        token: stop.child_token(),
        sample: None,
    }
}

/// A file asked for, resolved.
struct Wanted {
    owner: Endpoint,
    file: String,
    pin: Option<Ticket>,
    name: Option<String>,
    size: Option<u64>,
    hash: Option<Hash>,
}

impl Wanted {
    /// A download of it (still to be given its run and mode).
    fn with_id(self, id: u32, asked: String) -> Download {
        Download {
            id,
            asked,
            mode: FetchMode::Get,
            owner: self.owner,
            file: self.file,
            pin: self.pin,
            name: self.name,
            size: self.size,
            hash: self.hash,
            run: Mutex::new(Run {
                phase: Phase::Cancelled,
                status: Arc::default(),
                token: CancellationToken::new(),
                sample: None,
            }),
        }
    }
}

/// What `file` names: a ticket (its own directory and pin), or a file id or name the
/// directory lists.
fn resolve(app: &App, file: &str) -> Result<Wanted, Why> {
    use axum::http::StatusCode;
    if file.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "name a file: its id or name from the list, or a ticket (ringswarm://…)".into(),
        ));
    }
    if Ticket::looks_like(file) {
        let t: Ticket = file
            .parse()
            .map_err(|e: crate::ticket::TicketError| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let owner: Endpoint = t.directory.parse().map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the ticket's directory: {e}"),
            )
        })?;
        return Ok(Wanted {
            owner,
            file: t.hash.to_string(),
            name: Some(t.name.clone()),
            size: Some(t.size),
            hash: Some(t.hash),
            pin: Some(t),
        });
    }
    let state = app.directory_state();
    let Some(listing) = state.listing.filter(|_| state.error.is_none()) else {
        let why = state
            .error
            .unwrap_or_else(|| "the directory has not answered yet".into());
        return Err((StatusCode::SERVICE_UNAVAILABLE, why));
    };
    let found = listing
        .files
        .iter()
        .find(|f| f.id.to_string() == file || f.name == file || f.hash == file);
    let Some(f) = found else {
        if listing.more > 0 {
            // Beyond the part of the list the directory answered with: it knows the name.
            return Ok(Wanted {
                owner: app.config.directory.clone(),
                file: file.to_string(),
                pin: None,
                name: Some(file.to_string()),
                size: None,
                hash: None,
            });
        }
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "the directory lists no file {}",
                crate::manifest::display_name(file)
            ),
        ));
    };
    let hash: Option<Hash> = f.hash.parse().ok();
    // Pinned by its hash: the file the person saw, even if ids change meanwhile.
    let pin = hash.map(|hash| Ticket {
        directory: app.config.directory.to_string(),
        hash,
        name: f.name.clone(),
        size: f.size,
        node: app.config.directory_node,
    });
    Ok(Wanted {
        owner: app.config.directory.clone(),
        file: if pin.is_some() {
            f.hash.clone()
        } else {
            f.id.to_string()
        },
        pin,
        name: Some(f.name.clone()),
        size: Some(f.size),
        hash,
    })
}

/// Runs `d` until it ends, is cancelled or the app stops.
fn spawn(app: &Arc<App>, d: Arc<Download>) {
    let app = app.clone();
    crate::task::spawn_named("app-download", async move {
        let end = match run_once(&app, &d).await {
            Ok(Outcome::Complete(c)) => Phase::Complete {
                path: c.path,
                serving: false,
            },
            Ok(Outcome::Interrupted) => match d.run().phase.clone() {
                Phase::Complete { path, .. } => Phase::Complete {
                    path,
                    serving: false,
                },
                _ => Phase::Cancelled,
            },
            Err(e) => Phase::Failed(super::words::words(&e)),
        };
        d.run().phase = end;
    });
}

/// One run of `d`: a listener on a free port, then the engine.
async fn run_once(app: &App, d: &Download) -> anyhow::Result<Outcome> {
    let c = &app.config;
    let listener = crate::net::listen(std::net::SocketAddr::new(c.bind, 0))?;
    let (status, token) = {
        let run = d.run();
        (run.status.clone(), run.token.clone())
    };
    let join = d.mode == FetchMode::Join;
    let (owner, pin, join) = match (&c.dht, &d.pin) {
        (Some(dht), Some(ticket)) => via_dht(app, dht.as_ref(), &d.owner, ticket, join).await?,
        _ => (d.owner.clone(), d.pin.clone(), join),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<peer::Completion>();
    let label = listener.local_addr()?.to_string();
    let config = peer::Config {
        get: (!join).then_some(peer::GetConfig {
            max_sources: c.max_sources,
        }),
        join,
        file: Some(d.file.clone()),
        pin,
        identity: c.identity.clone(),
        upload_slots: c.upload_slots,
        shared_limiter: app.limiter.clone(),
        sync: c.sync,
        timeout: c.timeout,
        events: Arc::new(crate::events::EventSink::console(label).quiet()),
        on_complete: Some(tx),
        status: Some(status),
        dht: c.dht.clone(),
        ..peer::Config::ring(owner.clone(), owner, c.dir.clone())
    };
    let watch = async {
        if let Ok(done) = rx.await {
            d.run().phase = Phase::Complete {
                path: done.path,
                serving: true,
            };
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        r = peer::run(listener, config, token) => Ok(r?),
        () = watch => unreachable!("pending"),
    }
}

/// `--dht`: the directory while it answers with a source, else a node the DHT names that
/// serves the file (pinned by the ticket's hash and size: the ticket's key is its directory's).
/// The last value: whether to `join` a ring still (a ring needs a directory: a plain peer
/// found in the DHT keeps none, and is fetched from as a getter fetches).
async fn via_dht(
    app: &App,
    dht: &dyn crate::dht::Discovery,
    owner: &Endpoint,
    ticket: &Ticket,
    join: bool,
) -> anyhow::Result<(Endpoint, Option<Ticket>, bool)> {
    let me = &app.config.identity;
    match crate::dht::resolve(ticket, owner, me, dht).await {
        Ok(crate::dht::Resolved::Directory) => Ok((owner.clone(), Some(ticket.clone()), join)),
        Ok(crate::dht::Resolved::Source {
            source, directory, ..
        }) => {
            let unpinned = Ticket {
                node: None,
                ..ticket.clone()
            };
            Ok((source, Some(unpinned), join && directory))
        }
        Err(why) => Err(anyhow::Error::msg(why)),
    }
}

/// Removes download `id`: stops it first if it runs. Returns whether there was one.
pub(crate) fn remove(app: &App, id: u32) -> Option<Arc<Download>> {
    let d = app
        .downloads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()?;
    if d.is_active() {
        d.cancel();
    } else {
        app.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
    Some(d)
}

/// Stops every download and waits (a little) for them to let go of their files.
pub(crate) async fn stop_all(app: &App) {
    let all = app.downloads_now();
    for d in &all {
        d.cancel();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while all.iter().any(|d| d.is_active()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
