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
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
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
use crate::directory::Directory;
use crate::net::{BoxStream, Listener};

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
    let app = router(directory);
    let admission = Admission {
        max_connections: MAX_HTTP_CONNECTIONS,
        what: "HTTP accept",
    };
    let tracker = TaskTracker::new();
    accept_loop(listener, &token, &tracker, admission, |a: Accepted| {
        serve_connection(app.clone(), a)
    })
    .await;
    Ok(())
}

/// Serves one HTTP connection: a 503 when over the cap, else requests until the client
/// closes, the token is cancelled (graceful shutdown) or the lifetime is up.
async fn serve_connection(app: Router, a: Accepted) {
    let Accepted {
        stream,
        addr,
        permit,
        token,
    } = a;
    if permit.is_none() {
        return refuse_busy(stream).await;
    }
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
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
    drop(permit);
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse_busy(mut stream: BoxStream) {
    use tokio::io::AsyncWriteExt;
    let body = format!(
        "{{\"error\":\"busy: at most {MAX_HTTP_CONNECTIONS} connections at once; try again later\"}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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
