//! The owner's read-only HTTP JSON API over the [`Directory`] (`file-owner --http PORT`); a
//! peer's own, smaller HTTP side is [`serve_node`] (`peer --http PORT`).
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok","files":N,"peers":M}` |
//! | `GET /files` | a [`crate::directory::Listing`] of every file |
//! | `GET /files/{id}` | the file's [`crate::directory::Locations`] (404 with a message if unknown) |
//! | `GET /lookup?name=TEXT` | a listing of the files whose name contains TEXT, any case |
//! | `GET /peers` | every directory member ([`crate::directory::PeerInfo`]) |
//!
//! | `GET /` | the live dashboard ([`crate::dashboard`]): an HTML page, its data below |
//! | `GET /api/swarm` | the swarm now (JSON): members in ring order, progress, piece map, rates |
//! | `GET /api/events` | the same, pushed every second (Server-Sent Events, event `swarm`) |
//! | `GET /metrics` | the owner's [`crate::metrics`]: the Prometheus text format 0.0.4, or OpenMetrics if the `Accept` header asks for it ([`crate::metrics::Format`]) |
//! | `GET /api` | an index of these endpoints (HTML) |
//! | `POST /login` | with a shared secret: the form field `secret`; sets the session cookie |
//!
//! Anything else is a 404 (or 405 for another method) with a JSON `{"error": ...}`; a request
//! axum cannot take apart (a file id that is not UTF-8, a query string that does not parse) is
//! a 400 with the same JSON shape.
//!
//! **Connections** are capped at [`MAX_HTTP_CONNECTIONS`] (more are answered 503 and closed),
//! and per client address at [`MAX_CONNECTIONS_PER_ADDRESS`], of which at most
//! [`MAX_EVENT_STREAMS_PER_ADDRESS`] event streams (more are answered 429): one client cannot
//! lock the others out ([`limits`]).
//!
//! **Under a shared secret** (`--secret`) every endpoint but `POST /login` needs the HTTP
//! token derived from it ([`crate::auth::Secret::http_token`]): `Authorization: Bearer
//! TOKEN`, or the cookie `ringswarm_auth` that a successful `POST /login` sets (`HttpOnly`,
//! `SameSite=Strict`). Without
//! it the answer is 401 with `WWW-Authenticate: Bearer`: a login form to a browser (`Accept:
//! text/html`), a JSON error to anything else; never a redirect. The secret travels only in
//! the login form's body, and neither it nor the token is logged, put in a URL or answered.

//! Here: the module map. `server` (the accept loop, caps and timeouts), `routes` (the owner's
//! API), `login` (the secret's guard and `POST /login`), `limits` (per-address caps), `node`
//! (a peer's own HTTP side).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::directory::Directory;
use crate::net::Listener;

pub mod feed;
pub mod limits;
mod login;
mod node;
mod routes;
mod server;

pub use limits::{Limits, MAX_CONNECTIONS_PER_ADDRESS, MAX_EVENT_STREAMS_PER_ADDRESS};
pub use login::AUTH_COOKIE;
pub use node::{Node, node_router, serve_node};
pub use routes::{Options, router, router_with};
pub use server::{
    ClientAddr, HEADER_TIMEOUT, HTTP_CONNECTION_LIFETIME, MAX_HTTP_CONNECTIONS, serve_app,
};

/// Serves the API on `listener` until `token` is cancelled: HTTP/1.1 (hyper) with at most
/// [`MAX_HTTP_CONNECTIONS`] connections, [`HEADER_TIMEOUT`] for a request head and
/// [`HTTP_CONNECTION_LIFETIME`] for a connection. Returns at once when cancelled: the
/// connections under way shut down gracefully on their own (1 s at most).
///
/// # Errors
///
/// None today: accept errors are logged and retried.
pub async fn serve(
    listener: impl Into<Listener>,
    directory: Arc<Directory>,
    token: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, directory, Options::default(), token).await
}

/// [`serve`] with `options`.
///
/// # Errors
///
/// None today: accept errors are logged and retried.
pub async fn serve_with(
    listener: impl Into<Listener>,
    directory: Arc<Directory>,
    options: Options,
    token: CancellationToken,
) -> std::io::Result<()> {
    let (app, dashboard, limits) = routes::app(directory, options);
    crate::task::spawn_named("dashboard-sampler", dashboard.run(token.child_token()));
    server::serve_app(listener, app, limits, token).await
}
