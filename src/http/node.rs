//! A node's own HTTP side (`peer … --http PORT`): its progress and metrics, for a scraper or a
//! look from a browser, on every peer form (`peer`, `peer join`, `peer get`, `peer share`).
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /metrics` | the node's [`crate::metrics`]: the Prometheus text format 0.0.4, or OpenMetrics if the `Accept` header asks for it |
//! | `GET /api/status` | its progress now (JSON): a peer's [`crate::peer::Snapshot`] with `percent`; a publisher's bytes sent and connections open |
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /` | an index of these endpoints (HTML) |
//! | `POST /login` | with a shared secret: the form field `secret`; sets the session cookie |
//!
//! Served like the owner's API (the same connection caps, per address too, timeouts and
//! 404/405 answers; its refusals are counted in its `/metrics`), and
//! under a shared secret guarded the same way: the HTTP token as a bearer token or the session
//! cookie, else a 401.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::limits::Limits;
use super::login::{login, require_secret};
use super::routes::{method_not_allowed, metrics_answer};
use super::server::serve_app;
use crate::auth::Secret;
use crate::metrics::{HttpRefusals, Metrics};
use crate::net::Listener;
use crate::peer::Status;

/// Whose HTTP side it is.
#[derive(Clone, Debug)]
pub enum Node {
    /// A ring peer, joiner or getter: its progress and transfer counters.
    Peer(Arc<Status>),
    /// A publisher (`peer share`): the counters of its serving side.
    Publisher(Arc<Metrics>),
}

/// Serves `node`'s HTTP side on `listener` until `token` is cancelled; with `secret`, every
/// endpoint but `POST /login` needs the HTTP token.
///
/// # Errors
///
/// None today: accept errors are logged and retried.
pub async fn serve_node(
    listener: impl Into<Listener>,
    node: Node,
    secret: Option<Arc<Secret>>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let (router, limits) = node_app(node, secret);
    serve_app(listener, router, limits, token).await
}

/// The routes of `node`'s HTTP side, for serving or testing.
pub fn node_router(node: Node, secret: Option<Arc<Secret>>) -> Router {
    node_app(node, secret).0
}

/// The routes, and the per-address limits whose refusals its `/metrics` shows.
fn node_app(node: Node, secret: Option<Arc<Secret>>) -> (Router, Arc<Limits>) {
    let refused = match &node {
        Node::Peer(_) => HttpRefusals::default(),
        Node::Publisher(m) => m.http_refusals(),
    };
    let limits = Limits::new(refused.clone());
    let login_secret = secret.clone();
    let (n0, n1) = (node.clone(), node);
    let router = Router::new()
        .route("/", get(index))
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| async move {
                metrics_answer(&headers, metrics(&n0, &refused))
            }),
        )
        .route("/api/status", get(move || async move { status(&n1) }))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/login",
            axum::routing::post(move |form| login(login_secret.clone(), form)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |req, next| {
            require_secret(secret.clone(), req, next)
        }));
    (router, limits)
}

/// The node's metrics now (OpenMetrics), with what its HTTP side refused.
fn metrics(node: &Node, refused: &HttpRefusals) -> String {
    match node {
        Node::Peer(status) => status.render_metrics(Some(refused)),
        Node::Publisher(m) => m.render(None),
    }
}

fn status(node: &Node) -> Response {
    match node {
        Node::Peer(status) => {
            let s = status.snapshot();
            let percent = if s.total == 0 {
                0.0
            } else {
                f64::from(s.held) * 100.0 / f64::from(s.total)
            };
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["percent"] = json!(percent);
            Json(v).into_response()
        }
        Node::Publisher(m) => {
            let (sent_bytes, connections) = m.totals();
            Json(json!({"sent_bytes": sent_bytes, "connections": connections})).into_response()
        }
    }
}

async fn index() -> Response {
    let page = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringswarm node</title></head>
<body><h1>ringswarm node</h1><ul>
<li><a href="/api/status">/api/status</a>: progress now (JSON)</li>
<li><a href="/metrics">/metrics</a>: counters and gauges, Prometheus text format (OpenMetrics if asked for)</li>
<li><a href="/health">/health</a></li>
</ul></body></html>
"#;
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": format!("no such endpoint {}; try /api/status, /metrics, /health", uri.path())
        })),
    )
        .into_response()
}
