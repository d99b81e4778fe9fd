//! The owner's read-only HTTP JSON API over the [`Directory`] (`file-owner --http PORT`).
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok","files":N,"peers":M}` |
//! | `GET /files` | a [`crate::directory::Listing`] of every file |
//! | `GET /files/{id}` | the file's [`crate::directory::Locations`] (404 with a message if unknown) |
//! | `GET /lookup?name=TEXT` | a listing of the files whose name contains TEXT, any case |
//! | `GET /peers` | every directory member ([`crate::directory::PeerInfo`]) |
//!
//! Anything else is a 404 (or 405 for another method) with a JSON `{"error": ...}`; a request
//! axum cannot take apart (a file id that is not UTF-8, a query string that does not parse) is
//! a 400 with the same JSON shape.

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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;

/// Serves the API on `listener` until `token` is cancelled.
///
/// # Errors
///
/// The server fails (accept errors are retried by axum).
pub async fn serve(
    listener: TcpListener,
    directory: Arc<Directory>,
    token: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(directory))
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
}

/// The API's routes, for serving or testing.
pub fn router(directory: Arc<Directory>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/files", get(files))
        .route("/files/{id}", get(file))
        .route("/lookup", get(lookup))
        .route("/peers", get(peers))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(directory)
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
            "error": format!("no such endpoint {}; try /files, /files/{{id}}, /lookup?name=TEXT, /peers, /health", uri.path())
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
