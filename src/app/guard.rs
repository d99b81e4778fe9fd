//! Who may use the app's HTTP side, checked for every request before any handler runs:
//!
//! 1. **`Host`** must name this machine as the app listens: an IP address or `localhost`,
//!    with the app's port. A web page whose own name was made to point here (DNS
//!    rebinding) sends its name and is refused (421).
//! 2. **The token**: `Authorization: Bearer TOKEN`, or the session cookie. `GET /?token=TOKEN`
//!    (the link the app prints) sets the cookie (`HttpOnly`, `SameSite=Strict`) and sends
//!    the browser on to `/`, so the token leaves the address bar. Without either: 401.
//! 3. **A state-changing request** (anything but `GET` and `HEAD`) must come from this app's
//!    own page: an `Origin` naming this app exactly, and not a `Sec-Fetch-Site` of another
//!    site. One without `Origin` must carry the bearer token (a script), not only the
//!    cookie a browser would attach to another site's request. Refused: 403 (CSRF).
//!
//! The cookie is named per port ([`COOKIE_PREFIX`] and the port): browsers do not keep
//! cookies apart by port, and two apps on one machine must not sign each other out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE,
};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The session cookie's name, before the app's port.
pub const COOKIE_PREFIX: &str = "ringswarm_app_";

/// A new random token (256 bits, hex).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the guard checks against.
#[derive(Debug)]
pub(crate) struct Guard {
    /// Where the app listens.
    pub(crate) addr: SocketAddr,
    /// The run's token.
    pub(crate) token: String,
    /// The session cookie's value (another random value: the token is never a cookie).
    pub(crate) session: String,
}

impl Guard {
    pub(crate) fn new(addr: SocketAddr, token: String) -> Arc<Self> {
        Arc::new(Self {
            addr,
            token,
            session: new_token(),
        })
    }

    fn cookie_name(&self) -> String {
        format!("{COOKIE_PREFIX}{}", self.addr.port())
    }

    /// Whether `host` (a `Host` header) names this app: an IP address or `localhost`, and
    /// its port.
    fn host_ok(&self, host: &str) -> bool {
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        if port.parse::<u16>().ok() != Some(self.addr.port()) {
            return false;
        }
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
    }

    fn bearer(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| same(t.trim(), &self.token))
    }

    fn cookie(&self, headers: &HeaderMap) -> bool {
        let name = self.cookie_name();
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(name.as_str())?.strip_prefix('='))
            .any(|v| same(v, &self.session))
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The middleware: see the module's notes.
pub(crate) async fn check(
    guard: Arc<Guard>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = req.headers();
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !guard.host_ok(host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this app answers only under its own address (127.0.0.1:PORT or localhost:PORT)",
        );
    }
    if req.method() == Method::GET
        && req.uri().path() == "/"
        && let Some(given) = login_token(req.uri().query())
    {
        return login(&guard, &given);
    }
    let bearer = guard.bearer(headers);
    if !bearer && !guard.cookie(headers) {
        return unauthorized(headers);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
        let own = format!("http://{host}");
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok = match origin {
            Some(o) => o == own && site != "cross-site" && site != "same-site",
            None => bearer,
        };
        if !ok {
            tracing::warn!(
                "refused a {} {} from another origin ({})",
                req.method(),
                req.uri().path(),
                crate::manifest::display_name(origin.unwrap_or("no Origin, cookie only"))
            );
            return refuse(
                StatusCode::FORBIDDEN,
                "refused: this request came from another web site (its Origin is not this app's); only the app's own page, or a script with Authorization: Bearer TOKEN, may change anything",
            );
        }
    }
    next.run(req).await
}

/// The `token` of a query string, if any.
fn login_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(|t| {
            percent_encoding::percent_decode_str(t)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// `GET /?token=…`: the right token sets the cookie and goes to `/`.
fn login(guard: &Guard, given: &str) -> Response {
    if !same(given, &guard.token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-store")],
            page("That link's token is not this app's: open the link the app printed when it started (tokens change each start)."),
        )
            .into_response();
    }
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        guard.cookie_name(),
        guard.session
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

/// A 401: a page saying what to do for a browser, a JSON error for anything else.
fn unauthorized(headers: &HeaderMap) -> Response {
    let html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let words = "open the link the app printed when it started (…/?token=…), or send Authorization: Bearer TOKEN";
    if html {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CACHE_CONTROL, "no-store"),
            ],
            page(&format!("This app needs its token: {words}.")),
        )
            .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            axum::http::header::WWW_AUTHENTICATE,
            "Bearer realm=\"ringswarm app\"",
        )],
        Json(json!({ "error": format!("this app needs its token: {words}") })),
    )
        .into_response()
}

fn refuse(status: StatusCode, words: &str) -> Response {
    (status, Json(json!({ "error": words }))).into_response()
}

/// A small page with one message (fixed text only).
fn page(message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ringswarm</title></head><body style=\"font:16px system-ui,sans-serif;max-width:36em;margin:4em auto\"><h1>ringswarm</h1><p>{message}</p></body></html>"
    )
}
