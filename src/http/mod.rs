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
//! token derived from it ([`Secret::http_token`]): `Authorization: Bearer TOKEN`, or the cookie
//! `ringswarm_auth` that a successful `POST /login` sets (`HttpOnly`, `SameSite=Strict`). Without
//! it the answer is 401 with `WWW-Authenticate: Bearer`: a login form to a browser (`Accept:
//! text/html`), a JSON error to anything else; never a redirect. The secret travels only in
//! the login form's body, and neither it nor the token is logged, put in a URL or answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::accept::{Accepted, Admission, accept_loop};
use crate::auth::Secret;
use crate::dashboard::Dashboard;
use crate::directory::Directory;
use crate::net::{BoxStream, Listener};

pub mod limits;
mod node;
pub use limits::{Limits, MAX_CONNECTIONS_PER_ADDRESS, MAX_EVENT_STREAMS_PER_ADDRESS};
pub use node::{Node, node_router, serve_node};

/// The client's address, put in each request's extensions by the server (absent when a
/// router is driven without one, as in tests).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The most HTTP connections served at once; more are answered 503 and closed.
pub const MAX_HTTP_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's head (a silent or trickling client is
/// dropped after this).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may stay open (a client that wants more connects again).
pub const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

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

/// What the HTTP side serves besides the directory.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Required of every client (see the module's notes), if given.
    pub secret: Option<Arc<Secret>>,
    /// Served at `GET /metrics`, if given.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The directory as tickets name it (`HOST:PORT`): the dashboard shows each file's
    /// ticket, if given.
    pub ticket_host: Option<String>,
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
    let (app, dashboard, limits) = app(directory, options);
    tokio::spawn(dashboard.run(token.child_token()));
    serve_app(listener, app, limits, token).await
}

async fn serve_app(
    listener: impl Into<Listener>,
    app: Router,
    limits: Arc<Limits>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let admission = Admission {
        max_connections: MAX_HTTP_CONNECTIONS,
        what: "HTTP accept",
    };
    let tracker = TaskTracker::new();
    accept_loop(listener, &token, &tracker, admission, |a: Accepted| {
        serve_connection(app.clone(), limits.clone(), a)
    })
    .await;
    Ok(())
}

/// Serves one HTTP connection: a 429 when its address is over its cap, a 503 when the server
/// is, else requests until the client closes, the token is cancelled (graceful shutdown) or
/// the lifetime is up.
async fn serve_connection(app: Router, limits: Arc<Limits>, a: Accepted) {
    let Accepted {
        stream,
        addr,
        permit,
        token,
    } = a;
    let Some(place) = limits.connection(addr.ip()) else {
        drop(permit);
        tracing::debug!(client = %addr, "HTTP connection refused: its address is at its cap");
        let message = format!(
            "too many connections from {}: at most {MAX_CONNECTIONS_PER_ADDRESS} at once per address; close some and try again",
            addr.ip()
        );
        return refuse(stream, "429 Too Many Requests", &message).await;
    };
    if permit.is_none() {
        limits.refused(crate::metrics::HttpRefusal::Busy);
        let message =
            format!("busy: at most {MAX_HTTP_CONNECTIONS} connections at once; try again later");
        return refuse(stream, "503 Service Unavailable", &message).await;
    }
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(addr));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let res = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        () = token.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
            Ok(())
        }
        () = tokio::time::sleep(HTTP_CONNECTION_LIFETIME) => Ok(()),
    };
    if let Err(e) = res {
        tracing::debug!(client = %addr, "HTTP connection ended: {e}");
    }
    drop((permit, place));
}

/// Answers a connection that is refused with `status` and a JSON `{"error": message}`, and
/// closes it.
async fn refuse(mut stream: BoxStream, status: &str, message: &str) {
    use tokio::io::AsyncWriteExt;
    let body = json!({ "error": message }).to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
}

/// The API's routes, for serving or testing.
pub fn router(directory: Arc<Directory>) -> Router {
    router_with(directory, Options::default())
}

/// The API's routes with `options`: behind the secret, with `/metrics`.
pub fn router_with(directory: Arc<Directory>, options: Options) -> Router {
    app(directory, options).0
}

/// The routes, the dashboard whose feed [`Dashboard::run`] must drive, and the per-address
/// limits the routes and the server share.
fn app(directory: Arc<Directory>, options: Options) -> (Router, Arc<Dashboard>, Arc<Limits>) {
    let Options {
        secret,
        metrics,
        ticket_host,
    } = options;
    let limits = Limits::new(
        metrics
            .as_ref()
            .map(|m| m.http_refusals())
            .unwrap_or_default(),
    );
    let login_secret = secret.clone();
    let stream_limits = limits.clone();
    let dashboard = Dashboard::new(directory.clone(), ticket_host);
    let (d0, d1, d2) = (dashboard.clone(), dashboard.clone(), dashboard.clone());
    let router = Router::new()
        .route("/", get(move || async move { page(&d0) }))
        .route("/api", get(index))
        .route(
            "/api/swarm",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    d1.snapshot(),
                )
            }),
        )
        .route(
            "/api/events",
            get(
                move |client: Option<axum::Extension<ClientAddr>>| async move {
                    events(&d2, &stream_limits, client.map(|c| c.0.0))
                },
            ),
        )
        .route(
            "/metrics",
            get(
                move |State(d): State<Arc<Directory>>, headers: axum::http::HeaderMap| async move {
                    match metrics {
                        Some(m) => metrics_answer(&headers, m.render(Some(&d))),
                        None => not_found(axum::http::Uri::from_static("/metrics")).await,
                    }
                },
            ),
        )
        .route(
            "/login",
            axum::routing::post(move |form| login(login_secret.clone(), form)),
        )
        .route("/health", get(health))
        .route("/files", get(files))
        .route("/files/{id}", get(file))
        .route("/lookup", get(lookup))
        .route("/peers", get(peers))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(directory)
        .layer(axum::middleware::from_fn(move |req, next| {
            require_secret(secret.clone(), req, next)
        }));
    (router, dashboard, limits)
}

/// `GET /api/events`: the dashboard's feed, holding one of the client address's event-stream
/// places while it lasts; a 429 when its address holds all of them.
fn events(dashboard: &Arc<Dashboard>, limits: &Limits, client: Option<SocketAddr>) -> Response {
    let place = match client.map(|c| limits.event_stream(c.ip())) {
        Some(None) => {
            let ip = client.map(|c| c.ip().to_string()).unwrap_or_default();
            tracing::debug!(client = %ip, "event stream refused: its address is at its cap");
            let error = format!(
                "too many event streams from {ip}: at most {MAX_EVENT_STREAMS_PER_ADDRESS} at once per address; close another dashboard and try again"
            );
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (axum::http::header::CONNECTION, "close"),
                    (axum::http::header::RETRY_AFTER, "5"),
                ],
                Json(json!({ "error": error })),
            )
                .into_response();
        }
        Some(place) => place,
        None => None,
    };
    dashboard.events(place).into_response()
}

/// A `/metrics` answer of `openmetrics` text, in the format the request's `Accept` asks for.
pub(crate) fn metrics_answer(headers: &axum::http::HeaderMap, openmetrics: String) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    (
        [
            (axum::http::header::CONTENT_TYPE, format.content_type()),
            (axum::http::header::VARY, "accept"),
        ],
        format.encode(openmetrics),
    )
        .into_response()
}

/// `GET /`: the dashboard.
fn page(dashboard: &Dashboard) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        dashboard.page(),
    )
        .into_response()
}

/// The name of the session cookie `POST /login` sets.
pub const AUTH_COOKIE: &str = "ringswarm_auth";

/// Lets a request through if there is no secret, it is the login, or it carries the token.
async fn require_secret(
    secret: Option<Arc<Secret>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(secret) = secret else {
        return next.run(req).await;
    };
    let login = req.uri().path() == "/login" && req.method() == axum::http::Method::POST;
    if login || presents_token(&secret, req.headers()) {
        return next.run(req).await;
    }
    unauthorized(req.headers(), None)
}

/// Whether `headers` carry the HTTP token: as a bearer token, or in the session cookie.
fn presents_token(secret: &Secret, headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header::{AUTHORIZATION, COOKIE};
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|t| secret.accepts_http_token(t));
    let cookie = || {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(AUTH_COOKIE)?.strip_prefix('='))
            .any(|t| secret.accepts_http_token(t))
    };
    bearer || cookie()
}

/// The 401 answer: a login form for a browser, a JSON error for anything else; `note` says
/// why a login failed.
fn unauthorized(headers: &axum::http::HeaderMap, note: Option<&str>) -> Response {
    use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
    let html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let common = [
        (WWW_AUTHENTICATE, "Bearer realm=\"ringswarm\""),
        (CACHE_CONTROL, "no-store"),
    ];
    if html {
        let note = note.map_or(String::new(), |n| format!("<p class=\"note\">{n}</p>"));
        let page = LOGIN_PAGE.replace("{note}", &note);
        return (
            StatusCode::UNAUTHORIZED,
            common,
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            page,
        )
            .into_response();
    }
    let error = note.unwrap_or(
        "this swarm's HTTP side needs its shared secret: send Authorization: Bearer TOKEN (peer http-token prints it), or sign in with the form at /",
    );
    (
        StatusCode::UNAUTHORIZED,
        common,
        Json(json!({ "error": error })),
    )
        .into_response()
}

/// The login form, shown with a 401 to a browser without the token.
const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringswarm: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto;padding:0 1em}
input{font:inherit;padding:.4em;width:100%;box-sizing:border-box;margin:.5em 0}
.note{color:#b00020}</style></head>
<body><h1>ringswarm</h1><p>This swarm needs its shared secret.</p>{note}
<form method="post" action="/login"><label for="secret">Shared secret</label>
<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>
<input type="submit" value="Sign in"></form></body></html>
"#;

#[derive(Deserialize)]
struct LoginForm {
    secret: String,
}

/// `POST /login`: the right secret sets the session cookie and goes to `/`; a wrong one is a
/// 401 with the form again.
async fn login(secret: Option<Arc<Secret>>, req: axum::extract::Request) -> Response {
    use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
    let Some(secret) = secret else {
        return (StatusCode::SEE_OTHER, [(LOCATION, "/")]).into_response();
    };
    let headers = req.headers().clone();
    let form = axum::Form::<LoginForm>::from_request(req, &()).await;
    let given = form.ok().and_then(|f| Secret::new(&f.0.secret).ok());
    match given {
        Some(g) if secret.accepts_http_token(&g.http_token()) => {
            let cookie = format!(
                "{AUTH_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                secret.http_token()
            );
            (
                StatusCode::SEE_OTHER,
                [
                    (LOCATION, "/".to_string()),
                    (SET_COOKIE, cookie),
                    (CACHE_CONTROL, "no-store".into()),
                ],
            )
                .into_response()
        }
        _ => unauthorized(&headers, Some("That is not this swarm's secret.")),
    }
}

/// `GET /api`: what this server answers.
async fn index() -> Response {
    let page = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringswarm directory</title></head>
<body><h1>ringswarm directory</h1><ul>
<li><a href="/files">/files</a>: every file</li>
<li>/files/{id}: a file's sources</li>
<li>/lookup?name=TEXT: files whose name holds TEXT</li>
<li><a href="/peers">/peers</a>: every member</li>
<li><a href="/health">/health</a></li>
<li><a href="/metrics">/metrics</a>: counters and gauges, Prometheus text format (OpenMetrics if asked for)</li>
</ul></body></html>
"#;
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

async fn health(State(d): State<Arc<Directory>>) -> Response {
    Json(json!({"status": "ok", "files": d.file_count(), "peers": d.peers().len()})).into_response()
}

async fn files(State(d): State<Arc<Directory>>) -> Response {
    Json(d.list()).into_response()
}

async fn file(
    State(d): State<Arc<Directory>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return bad_request(e.body_text()),
    };
    let loc = d.locate(&id);
    if loc.file.is_none() {
        return (StatusCode::NOT_FOUND, Json(loc)).into_response();
    }
    Json(loc).into_response()
}

#[derive(Deserialize)]
struct Lookup {
    name: Option<String>,
}

async fn lookup(
    State(d): State<Arc<Directory>>,
    q: Result<Query<Lookup>, QueryRejection>,
) -> Response {
    match q {
        Ok(Query(Lookup { name: Some(name) })) => Json(d.search(&name)).into_response(),
        Ok(_) => bad_request("give the text to look for: /lookup?name=TEXT".into()),
        Err(e) => bad_request(format!("{}; use /lookup?name=TEXT", e.body_text())),
    }
}

/// A 400 with a JSON `{"error": message}`, like every other error of the API.
fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn peers(State(d): State<Arc<Directory>>) -> Response {
    Json(json!({ "peers": d.peers() })).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": format!("no such endpoint {}; try /files, /files/{{id}}, /lookup?name=TEXT, /peers, /health, /metrics", uri.path())
        })),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": "this API is read-only: use GET"})),
    )
        .into_response()
}
