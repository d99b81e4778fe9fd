//! The app in process: its guard (token, cookie, Host, Origin) and its refusals in words.
//! Two apps over a real tracker are `flow_tests`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::*;
use crate::net::Endpoint;
use crate::secure::Identity;

/// The `Host` of an idle app's requests.
const HOST: (&str, &str) = ("host", "127.0.0.1:8080");

/// How long a test waits for something to happen before calling it a failure.
pub(super) const WAIT: Duration = Duration::from_secs(60);

pub(super) fn config(directory: Endpoint, dir: &Path, http: SocketAddr) -> AppConfig {
    AppConfig {
        directory,
        directory_node: None,
        dir: dir.to_path_buf(),
        bind: "127.0.0.1".parse().unwrap(),
        identity: Arc::new(Identity::ephemeral()),
        token: new_token(),
        http,
        chunk_size: 16 * 1024,
        peers: 5,
        max_sources: 5,
        upload_slots: 4,
        upload_limit: None,
        sync: false,
        timeout: Duration::from_secs(60),
        dht: None,
    }
}

/// An app that is not running (its router only), its directory nowhere.
fn idle_app(dir: &Path) -> (Arc<App>, Router) {
    let app = App::new(
        config(Endpoint::local(9), dir, "127.0.0.1:8080".parse().unwrap()),
        CancellationToken::new(),
    );
    let limits = crate::http::Limits::new(crate::metrics::HttpRefusals::default());
    let router = router(app.clone(), limits);
    (app, router)
}

/// One request to `router`; the status, headers and body (the first chunk of it for a
/// stream).
pub(super) async fn call(
    router: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    use futures::StreamExt;
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let mut stream = body.into_data_stream();
    let first = tokio::time::timeout(WAIT, stream.next()).await.unwrap();
    let text = first
        .map(|b| String::from_utf8_lossy(&b.unwrap()).into_owned())
        .unwrap_or_default();
    let mut rest = String::new();
    if !parts
        .headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"))
    {
        while let Some(b) = stream.next().await {
            rest.push_str(&String::from_utf8_lossy(&b.unwrap()));
        }
    }
    (parts.status, parts.headers, text + &rest)
}

#[tokio::test]
async fn the_guard_lets_in_only_the_token_and_its_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let (app, r) = idle_app(dir.path());
    let token = app.config.token.clone();
    let bearer = format!("Bearer {token}");
    let host = ("host", "127.0.0.1:8080");

    // Nothing without the token; a browser is told what to do.
    let (s, _, body) = call(&r, "GET", "/api/shares", &[host], None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("Bearer TOKEN"), "{body}");
    let (s, _, body) = call(&r, "GET", "/", &[host, ("accept", "text/html")], None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("needs its token"), "{body}");
    let (s, _, _) = call(&r, "GET", "/?token=nope", &[host], None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The login link sets an HttpOnly, SameSite=Strict cookie (not the token) and sends the
    // browser on to /.
    let (s, h, _) = call(&r, "GET", &format!("/?token={token}"), &[host], None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h["location"], "/");
    let set = h["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("ringswarm_app_8080="), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(&token), "the cookie is not the token: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let (s, h, page) = call(&r, "GET", "/", &[host, ("cookie", &cookie)], None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<script src=\"/app.js\">"), "{page}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let (s, _, _) = call(
        &r,
        "GET",
        "/api/shares",
        &[host, ("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &r,
        "GET",
        "/api/shares",
        &[("host", "localhost:8080"), ("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "localhost names this machine too");
}

/// The session cookie of a login to `r`.
async fn login(r: &Router, token: &str) -> String {
    let (_, h, _) = call(
        r,
        "GET",
        &format!("/?token={token}"),
        &[("host", "127.0.0.1:8080")],
        None,
    )
    .await;
    h["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_guard_refuses_other_hosts_and_changes_from_other_sites() {
    let dir = tempfile::tempdir().unwrap();
    let (app, r) = idle_app(dir.path());
    let token = app.config.token.clone();
    let bearer = format!("Bearer {token}");
    let host = ("host", "127.0.0.1:8080");
    let cookie = login(&r, &token).await;

    // Another name for this address (DNS rebinding), or another port: refused before the
    // token is even looked at.
    for other in ["evil.example:8080", "127.0.0.1:9999", "127.0.0.1", ""] {
        let (s, _, body) = call(
            &r,
            "GET",
            "/api/shares",
            &[("host", other), ("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(s, StatusCode::MISDIRECTED_REQUEST, "Host {other:?}: {body}");
    }

    // A change with the cookie only: from this app's own page, and nowhere else.
    let json_type = ("content-type", "application/json");
    let share = Some(r#"{"path": "/nonexistent-path"}"#);
    let refused = [
        vec![("origin", "http://evil.example")],
        vec![("origin", "http://127.0.0.1:9999")],
        vec![("origin", "null")],
        vec![],
        vec![
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ],
    ];
    for extra in refused {
        let mut headers = vec![host, ("cookie", cookie.as_str()), json_type];
        headers.extend(extra.iter().copied());
        let (s, _, body) = call(&r, "POST", "/api/shares", &headers, share).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{extra:?}: {body}");
        assert!(body.contains("another web site"), "{body}");
    }
    // A script's bearer token without an Origin is let through; with a foreign one it is not.
    let post = |headers: Vec<(&'static str, String)>| {
        let r = r.clone();
        async move {
            let mut all = vec![
                ("host", host.1.to_string()),
                ("content-type", "application/json".into()),
            ];
            all.extend(headers);
            let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(&r, "POST", "/api/shares", &all, share).await
        }
    };
    let (s, _, body) = post(vec![("authorization", bearer.clone())]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "past the guard: {body}");
    let (s, _, _) = post(vec![
        ("authorization", bearer.clone()),
        ("origin", "http://evil.example".into()),
    ])
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let own = vec![
        ("cookie", cookie.clone()),
        ("origin", "http://127.0.0.1:8080".into()),
        ("sec-fetch-site", "same-origin".into()),
    ];
    let (s, _, body) = post(own).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("/nonexistent-path does not exist"), "{body}");
    assert!(app.shares.list().is_empty(), "nothing was shared");
}

#[test]
fn share_paths_that_cannot_be_shared_are_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let words = |p: &Path| check_share_path(p).unwrap_err();
    let missing = root.join("missing");
    assert_eq!(
        words(&missing),
        format!("{} does not exist", missing.display())
    );
    assert!(words(Path::new("relative/x")).contains("is not a full path"));
    let fifo = root.join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert!(
        words(&fifo)
            .ends_with("is a FIFO (named pipe): only regular files and folders can be shared")
    );
    assert!(
        words(Path::new("/dev/null"))
            .ends_with("is a device: only regular files and folders can be shared")
    );
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join(".hidden"), b"x").unwrap();
    assert!(
        words(&empty).contains("holds no regular file to share"),
        "{}",
        words(&empty)
    );
    let name = root.join("x\x1b[2Jy");
    assert!(
        words(&name).contains("\\u{1b}"),
        "escaped: {}",
        words(&name)
    );
    let file = root.join("ok.bin");
    std::fs::write(&file, b"hello").unwrap();
    assert_eq!(check_share_path(&file), Ok(()));
    assert_eq!(check_share_path(root), Ok(()));
}

#[tokio::test]
async fn bad_download_requests_are_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let (app, r) = idle_app(dir.path());
    let bearer = format!("Bearer {}", app.config.token);
    let h = [HOST, ("authorization", bearer.as_str())];
    let json_h = [h[0], h[1], ("content-type", "application/json")];
    let cases = [
        (
            &h[..],
            r#"{"file":"a"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (&json_h[..], "{", StatusCode::BAD_REQUEST, "send {\"file\""),
        (
            &json_h[..],
            r#"{"file":"a","mode":"fly"}"#,
            StatusCode::BAD_REQUEST,
            "mode",
        ),
        (
            &json_h[..],
            r#"{"file":"a","extra":1}"#,
            StatusCode::BAD_REQUEST,
            "extra",
        ),
        (
            &json_h[..],
            r#"{"file":"  "}"#,
            StatusCode::BAD_REQUEST,
            "name a file",
        ),
        (
            &json_h[..],
            r#"{"file":"ringswarm://x"}"#,
            StatusCode::BAD_REQUEST,
            "ticket",
        ),
        (
            &json_h[..],
            r#"{"file":"a.bin"}"#,
            StatusCode::SERVICE_UNAVAILABLE,
            "is not answering: nothing listens there",
        ),
    ];
    for (headers, body, want, says) in cases {
        let (s, _, text) = call(&r, "POST", "/api/downloads", headers, Some(body)).await;
        assert_eq!(s, want, "{body}: {text}");
        let error = serde_json::from_str::<Value>(&text).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(error.contains(says), "{body}: {error}");
    }
}

#[tokio::test]
async fn unknown_ids_and_a_directory_that_is_down_are_said_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let (app, r) = idle_app(dir.path());
    let bearer = format!("Bearer {}", app.config.token);
    let h = [HOST, ("authorization", bearer.as_str())];
    let (s, _, _) = call(&r, "DELETE", "/api/downloads/7", &h, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(&r, "DELETE", "/api/shares/x", &h, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, text) = call(&r, "GET", "/api/nothing", &h, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{text}");
    // The directory down: the page says so in words.
    app.poll_directory().await;
    let (_, _, text) = call(&r, "GET", "/api/files?q=", &h, None).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["directory"]["state"], "down");
    let error = v["directory"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "The directory 127.0.0.1:9 is not answering: nothing listens there (is it running?)"
        ),
        "{error}"
    );
    // The feed starts with the state now.
    let (s, _, first) = call(&r, "GET", "/api/events", &h, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(first.starts_with("event: state\n"), "{first}");
    assert!(first.contains("\"state\":\"down\""), "{first}");
}
