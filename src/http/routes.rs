//! The owner's API routes ([`router_with`]): the directory's JSON answers, the dashboard and
//! its feed, `/metrics`, the index, and the JSON 400/404/405 answers; [`Options`], what it
//! serves besides the directory.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::limits::{Limits, MAX_EVENT_STREAMS_PER_ADDRESS};
use super::login::{login, require_secret};
use super::server::ClientAddr;
use crate::auth::Secret;
use crate::dashboard::Dashboard;
use crate::directory::Directory;

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
    /// The directory's key, which its tickets pin (`node=`).
    pub ticket_node: Option<crate::key::NodeId>,
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
pub(super) fn app(
    directory: Arc<Directory>,
    options: Options,
) -> (Router, Arc<Dashboard>, Arc<Limits>) {
    let Options {
        secret,
        metrics,
        ticket_host,
        ticket_node,
    } = options;
    let limits = Limits::new(
        metrics
            .as_ref()
            .map(|m| m.http_refusals())
            .unwrap_or_default(),
    );
    let login_secret = secret.clone();
    let stream_limits = limits.clone();
    let dashboard = Dashboard::new(directory.clone(), ticket_host, ticket_node);
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

pub(super) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": "this API is read-only: use GET"})),
    )
        .into_response()
}
