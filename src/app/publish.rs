//! Sharing and unsharing: one publisher ([`crate::share::run`]) for every share on the
//! app's `--port`, whose paths change as the person shares and unshares (an unshared file
//! is withdrawn from the directory at once).

use std::path::PathBuf;
use std::sync::Arc;

use super::shares::{Share, check_share_path};
use super::state::App;
use crate::net::Listener;
use crate::share::Report;

/// Shares `path` (checked first); the share.
pub(crate) fn add(app: &App, path: PathBuf) -> Result<Share, String> {
    check_share_path(&path)?;
    let mut list = app.shares.list.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = list.values().find(|s| s.path == path) {
        return Ok(s.clone());
    }
    if list.len() >= super::config::MAX_SHARES {
        return Err(format!(
            "{} paths are shared already: unshare one first",
            super::config::MAX_SHARES
        ));
    }
    let share = Share {
        id: app.next_id(),
        path: path.clone(),
    };
    list.insert(share.id, share.clone());
    drop(list);
    app.shares.paths.add(path);
    Ok(share)
}

/// Unshares share `id`: its files (unless another share holds them) leave the directory at
/// once. The share, if there was one.
pub(crate) fn remove(app: &App, id: u32) -> Option<Share> {
    let share = app
        .shares
        .list
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id)?;
    app.shares.paths.remove(&share.path);
    Some(share)
}

/// The publisher of every share, on `listener`, until the app stops.
pub(crate) async fn run(app: Arc<App>, listener: Listener) {
    let c = &app.config;
    let a = app.clone();
    let serve = crate::owner::OwnerConfig {
        upload_slots: c.upload_slots,
        upload_limit: app.limiter.clone(),
        identity: c.identity.clone(),
        ..crate::owner::OwnerConfig::new(Arc::new(
            crate::events::EventSink::console("shares").quiet(),
        ))
    };
    let config = crate::share::ShareConfig {
        directory: c.directory.clone(),
        paths: app.shares.paths.clone(),
        files: Vec::new(),
        chunk_size: c.chunk_size,
        peers: c.peers,
        serve,
        on_report: Arc::new(move |r: &Report| a.shares.report(r)),
        dht: c.dht.clone(),
    };
    if let Err(e) = crate::share::run(listener, config, app.stop.child_token()).await {
        *app.shares.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
            "the directory refused this app's shares: {}",
            super::words::words(&anyhow::Error::from(e))
        ));
    }
}
