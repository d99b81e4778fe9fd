//! The HTTP server under the owner's API and a node's own: the accept loop with its
//! connection caps (all together and per address), one hyper connection per client with its
//! timeouts, and the answer to a connection refused.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::limits::{Limits, MAX_CONNECTIONS_PER_ADDRESS};
use crate::accept::{Accepted, Admission, accept_loop};
use crate::net::{BoxStream, Listener};

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

/// Serves `app` on `listener` until `token` is cancelled, under the connection caps (and
/// `limits`, per address): the owner's API, a node's own, and the app's (`peer app`).
///
/// # Errors
///
/// None today: accept errors are logged and retried.
pub async fn serve_app(
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
