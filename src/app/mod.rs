//! `peer app`: one long-lived peer with a web app on this machine, the seeds' client (seed
//! 003's menu: list and search the network's files, download one, share and unshare folders).
//! It is another face on the same engine: a download is a [`crate::peer::run`] (a getter, or
//! a ring member placed by the directory), the shares are one [`crate::share::run`] whose
//! paths change as the person shares and unshares, and the file list is the directory's
//! answer to `list` ([`crate::directory::client`]), asked again every [`POLL_EVERY`] while a
//! page watches (every [`IDLE_POLL_EVERY`] otherwise, and afresh for a request that needs it).
//!
//! The HTTP side ([`routes`]) answers only a client holding the run's token (in
//! `Authorization: Bearer TOKEN`, or the cookie the token's login link sets), only under a
//! `Host` that names this machine by address or as `localhost` (DNS rebinding), and a
//! state-changing request only from this app's own page (`Origin`, CSRF) or with the bearer
//! token ([`guard`]).
//!
//! Here: [`run`] (the publisher, the directory's poller, the feed and the HTTP side). Below
//! it: `config` ([`AppConfig`]), `download` and `shares` (the types), `state` ([`App`]:
//! what the app knows), `fetch` (starting, resuming and stopping downloads), `publish`
//! (sharing and unsharing), `view` (the JSON the page and scripts read), `words` (troubles
//! in words), `guard` and `routes` (the HTTP side).

use std::sync::Arc;

use crate::net::Listener;

mod config;
mod download;
mod fetch;
mod guard;
mod publish;
mod routes;
mod shares;
mod state;
mod view;
mod words;

pub use config::{
    AppConfig, CLIENT_QUEUE, IDLE_POLL_EVERY, MAX_DOWNLOADS, MAX_SHARES, POLL_EVERY, UPDATE_EVERY,
};
pub use download::{Download, FetchMode};
pub use fetch::download;
pub use guard::{COOKIE_PREFIX, new_token};
pub use routes::router;
pub use shares::{Share, check_share_path};
pub use state::App;
pub use view::state_json;

/// Runs the app until `app.stop` is cancelled: the shares on `shares` (`--port`), the
/// directory's poller, the feed, and the HTTP side on `http`.
///
/// # Errors
///
/// None today: the parts log their own troubles and keep going.
pub async fn run(app: Arc<App>, http: Listener, shares: Listener) -> anyhow::Result<()> {
    let stop = app.stop.clone();
    let publisher = crate::task::spawn_named("app-shares", publish::run(app.clone(), shares));
    let a = app.clone();
    let poller = crate::task::spawn_named(
        "app-directory",
        every(config::POLL_EVERY, stop.clone(), move || {
            let a = a.clone();
            async move {
                // Often while a page watches; now and then for scripts (which ask afresh).
                let watched = a.feed.receiver_count() > 0;
                let age = if watched {
                    std::time::Duration::ZERO
                } else {
                    config::IDLE_POLL_EVERY
                };
                a.poll_if_older(age).await;
            }
        }),
    );
    let a = app.clone();
    // Built every tick, watched or not: a download's rate needs its samples.
    let feeder = crate::task::spawn_named(
        "app-feed",
        every(config::UPDATE_EVERY, stop.clone(), move || {
            let _ = a.feed.send(Arc::from(view::state_json(&a)));
            std::future::ready(())
        }),
    );
    let limits = crate::http::Limits::new(crate::metrics::HttpRefusals::default());
    let router = routes::router(app.clone(), limits.clone());
    crate::http::serve_app(http, router, limits, stop.clone()).await?;
    stop.cancel();
    let _ = tokio::join!(publisher, poller, feeder);
    fetch::stop_all(&app).await;
    Ok(())
}

/// Runs `step` every `period` (a late tick is not made up for) until `stop`.
async fn every<F: std::future::Future<Output = ()>>(
    period: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
    mut step: impl FnMut() -> F,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        step().await;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod flow_tests;
