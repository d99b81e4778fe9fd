//! The app's HTTP side: the page (`/`, `/app.js`) and the JSON API under it, the same one
//! the page uses and scripts can use. Every route is behind [`super::guard`].
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /api/files?q=TEXT` | the directory's state, and its files whose name, id or hash holds TEXT |
//! | `GET /api/downloads` | every download: progress, rate, ETA, piece map, path or error |
//! | `POST /api/downloads` | `{"file": ID|NAME|TICKET, "mode": "get"|"join"}`: starts it (201), or resumes a stopped download of that file (200) |
//! | `DELETE /api/downloads/{id}` | stops it (what it has stays on disk), or removes a stopped one from the list |
//! | `GET /api/shares` | every share path, its published files, tickets and upload counts |
//! | `POST /api/shares` | `{"path": "/full/path"}`: shares a file or a folder's files (201) |
//! | `DELETE /api/shares/{id}` | unshares: its files leave the directory at once |
//! | `GET /api/events` | the state (downloads, shares, the directory's) every 500 ms, Server-Sent Events `state` |
//!
//! Errors are JSON `{"error": words}`, with 400 (a bad request), 404, 409 (already
//! fetching), 415 (not JSON), 429 or 503 (the directory is down).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::fetch::{self as downloads, Request};
use super::guard::{Guard, check};
use super::publish as shares;
use super::state::App;
use super::view;
use crate::http::{ClientAddr, Limits, MAX_EVENT_STREAMS_PER_ADDRESS};

/// The page, its script: embedded, no CDN, no build step.
const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
/// The page may run only its own script and talk only to its own app.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// The largest request body taken.
const MAX_BODY: usize = 64 * 1024;

/// The app's routes behind its guard, sharing `limits` (per-address event streams) with the
/// server.
pub fn router(app: Arc<App>, limits: Arc<Limits>) -> Router {
    let guard = Guard::new(app.config.http, app.config.token.clone());
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/api/files", get(files))
        .route("/api/downloads", get(list_downloads).post(add_download))
        .route("/api/downloads/{id}", delete(remove_download))
        .route("/api/shares", get(list_shares).post(add_share))
        .route("/api/shares/{id}", delete(remove_share))
        .route(
            "/api/events",
            get(
                move |State(app): State<Arc<App>>, client: Option<axum::Extension<ClientAddr>>| async move {
                    events(&app, &limits, client.map(|c| c.0.0))
                },
            ),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(move |req, next| {
            check(guard.clone(), req, next)
        }))
        .with_state(app)
}

fn error(status: StatusCode, words: impl Into<String>) -> Response {
    (status, Json(json!({ "error": words.into() }))).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint {}; the app answers /, /api/files, /api/downloads, /api/shares, /api/events",
            crate::manifest::display_name(uri.path())
        ),
    )
}

async fn page() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (axum::http::header::CONTENT_SECURITY_POLICY, CSP),
        ],
        PAGE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Filter {
    #[serde(default)]
    q: String,
}

async fn files(State(app): State<Arc<App>>, q: Result<Query<Filter>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(f)) => f.q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{}; use /api/files?q=TEXT", e.body_text()),
            );
        }
    };
    app.poll_if_older(super::config::POLL_EVERY).await;
    let mut files = view::files(&app, &q);
    let more = app.directory_state().listing.map_or(0, |l| l.more);
    if more > 0 && !q.trim().is_empty() {
        // The list was cut: the directory searches all of it.
        if let Ok(found) = app.search(q.trim()).await {
            let known: Vec<u32> = files.iter().map(|f| f.id).collect();
            files.extend(found.files.into_iter().filter(|f| !known.contains(&f.id)));
        }
    }
    Json(json!({
        "directory": view::directory(&app),
        "files": files,
        // Files the directory left out of its answer (filter to find them).
        "more": if q.trim().is_empty() { more } else { 0 },
    }))
    .into_response()
}

async fn list_downloads(State(app): State<Arc<App>>) -> Response {
    Json(json!({ "downloads": view::state(&app).downloads })).into_response()
}

async fn add_download(
    State(app): State<Arc<App>>,
    body: Result<Json<Request>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return json_refusal(&e, r#"{"file": ID|NAME|TICKET, "mode": "get"|"join"}"#),
    };
    app.poll_if_older(super::config::POLL_EVERY).await;
    match downloads::start(&app, req) {
        Ok((d, new)) => {
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(view::download(&d))).into_response()
        }
        Err((status, words)) => error(status, words),
    }
}

/// A body that is not the JSON asked for: what was wrong, and the shape wanted.
fn json_refusal(e: &JsonRejection, shape: &str) -> Response {
    let status = match e {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, format!("{}; send {shape}", e.body_text()))
}

fn id_of(id: Result<Path<u32>, PathRejection>) -> Option<u32> {
    id.ok().map(|Path(id)| id)
}

fn no_such_id() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such id: ids are the numbers the app gave",
    )
}

async fn remove_download(
    State(app): State<Arc<App>>,
    id: Result<Path<u32>, PathRejection>,
) -> Response {
    let Some(id) = id_of(id) else {
        return no_such_id();
    };
    match downloads::remove(&app, id) {
        Some(d) => Json(view::download(&d)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no download {id}")),
    }
}

async fn list_shares(State(app): State<Arc<App>>) -> Response {
    Json(view::state(&app).shares).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareRequest {
    path: PathBuf,
}

async fn add_share(
    State(app): State<Arc<App>>,
    body: Result<Json<ShareRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return json_refusal(&e, r#"{"path": "/full/path"}"#),
    };
    let a = app.clone();
    let checked = tokio::task::spawn_blocking(move || shares::add(&a, req.path)).await;
    match checked {
        Ok(Ok(s)) => (
            StatusCode::CREATED,
            Json(json!({ "id": s.id, "path": s.path.display().to_string() })),
        )
            .into_response(),
        Ok(Err(words)) => error(StatusCode::BAD_REQUEST, words),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn remove_share(
    State(app): State<Arc<App>>,
    id: Result<Path<u32>, PathRejection>,
) -> Response {
    let Some(id) = id_of(id) else {
        return no_such_id();
    };
    match shares::remove(&app, id) {
        Some(s) => {
            Json(json!({ "id": s.id, "path": s.path.display().to_string() })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no share {id}")),
    }
}

/// `GET /api/events`: the state now, then every [`super::config::UPDATE_EVERY`]; a client more than
/// [`super::config::CLIENT_QUEUE`] states behind is dropped (its browser reconnects). Holds one of
/// the client address's event-stream places while it lasts.
fn events(app: &Arc<App>, limits: &Limits, client: Option<std::net::SocketAddr>) -> Response {
    let place = match client.map(|c| limits.event_stream(c.ip())) {
        Some(None) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many event streams from this address: at most {MAX_EVENT_STREAMS_PER_ADDRESS} at once; close another tab of the app"
                ),
            );
        }
        Some(place) => place,
        None => None,
    };
    crate::http::feed::sse(view::state_json(app), app.subscribe(), "state", place).into_response()
}
