//! Two apps over a real tracker on loopback, in process: one shares, the other lists,
//! downloads (cancelled and resumed on the way), and sees the file leave when it is
//! unshared; the sharer counts what it uploaded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::tests::{WAIT, call, config};
use super::*;
use crate::net::Endpoint;

/// A tracker on loopback, in process, until `stop` is cancelled.
async fn tracker(stop: &CancellationToken) -> Endpoint {
    let listener = crate::net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let directory = crate::owner::directory(&[], addr, crate::directory::DEFAULT_PEER_TTL);
    let config = crate::owner::OwnerConfig::new(Arc::new(
        crate::events::EventSink::console("tracker").quiet(),
    ));
    tokio::spawn(crate::owner::run(
        listener,
        Vec::new(),
        directory,
        config,
        stop.child_token(),
    ));
    Endpoint::local(addr.port())
}

/// A running app of `directory` writing to `dir`, serving at `upload_limit`; its router for
/// requests.
async fn running_app(
    directory: Endpoint,
    dir: &Path,
    upload_limit: Option<u64>,
    stop: &CancellationToken,
) -> (Arc<App>, Router) {
    running_app_with(directory, dir, upload_limit, None, stop).await
}

/// [`running_app`] with `dht`.
async fn running_app_with(
    directory: Endpoint,
    dir: &Path,
    upload_limit: Option<u64>,
    dht: Option<Arc<dyn crate::dht::Discovery>>,
    stop: &CancellationToken,
) -> (Arc<App>, Router) {
    let http = crate::net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let shares = crate::net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut c = config(directory, dir, http.local_addr().unwrap());
    c.upload_limit = upload_limit;
    c.dht = dht;
    let app = App::new(c, stop.child_token());
    tokio::spawn(run(app.clone(), http.into(), shares.into()));
    let limits = crate::http::Limits::new(crate::metrics::HttpRefusals::default());
    (app.clone(), router(app, limits))
}

/// Sends `method path` with `body` to `app` as a script would; the status and JSON answer.
async fn api(
    app: &App,
    r: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let host = app.config.http.to_string();
    let bearer = format!("Bearer {}", app.config.token);
    let body = body.map(|b| b.to_string());
    let headers = [
        ("host", host.as_str()),
        ("authorization", &bearer),
        ("content-type", "application/json"),
    ];
    let (s, _, text) = call(r, method, path, &headers, body.as_deref()).await;
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits until `ok` holds of `GET path`'s answer; that answer.
async fn until(
    app: &App,
    r: &Router,
    path: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = api(app, r, "GET", path, None).await;
        if ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shares `path`; B's list (filtered by `q`) shows one file. The share's id.
async fn share_and_list(a: &App, ra: &Router, b: &App, rb: &Router, path: &Path, q: &str) -> u64 {
    let (s, v) = api(a, ra, "POST", "/api/shares", Some(json!({ "path": path }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    until(b, rb, &format!("/api/files?q={q}"), "B lists it", |v| {
        v["files"].as_array().is_some_and(|f| f.len() == 1)
    })
    .await;
    v["id"].as_u64().unwrap()
}

fn download_of(v: &Value, id: u64) -> Value {
    v["downloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_app_shares_another_downloads_cancels_resumes_and_sees_it_unshared() {
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    std::fs::write(shared.join("big.bin"), &data).unwrap();
    let directory = tracker(&stop).await;
    // A serves at 512 KiB/s: slow enough to cancel mid-way.
    let (a, ra) = running_app(
        directory.clone(),
        &root.path().join("a"),
        Some(512 * 1024),
        &stop,
    )
    .await;
    let (b, rb) = running_app(directory, &root.path().join("b"), None, &stop).await;

    let share_id = share_and_list(&a, &ra, &b, &rb, &shared, "BIG").await;
    let listed = until(&b, &rb, "/api/files?q=BIG", "B lists A's file", |v| {
        v["files"].as_array().is_some_and(|f| f.len() == 1)
    })
    .await;
    assert_eq!(listed["files"][0]["name"], "big.bin");
    assert_eq!(listed["directory"]["state"], "connected");

    let total = cancel_resume_complete(&b, &rb, root.path(), &data).await;

    let shares = until(&a, &ra, "/api/shares", "A's upload count", |v| {
        v["list"][0]["files"][0]["uploaded_chunks"]
            .as_u64()
            .unwrap_or(0)
            >= total
    })
    .await;
    let ticket = shares["list"][0]["files"][0]["ticket"].as_str().unwrap();
    assert!(ticket.starts_with("ringswarm://127.0.0.1:"), "{ticket}");

    let (s, _) = api(&a, &ra, "DELETE", &format!("/api/shares/{share_id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    until(&b, &rb, "/api/files", "B's list drops it", |v| {
        v["files"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let (s, _) = api(&a, &ra, "DELETE", &format!("/api/shares/{share_id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// B downloads big.bin, cancels it once some chunks are in, resumes it, and sees it complete
/// and byte-identical to `data`; the file's chunk count.
async fn cancel_resume_complete(b: &App, rb: &Router, root: &Path, data: &[u8]) -> u64 {
    let file = Some(json!({ "file": "big.bin" }));
    let (s, v) = api(b, rb, "POST", "/api/downloads", file.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_u64().unwrap();
    let (s, v) = api(b, rb, "POST", "/api/downloads", file.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    until(b, rb, "/api/downloads", "some chunks", |v| {
        download_of(v, id)["held"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let (s, _) = api(b, rb, "DELETE", &format!("/api/downloads/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let stopped = until(b, rb, "/api/downloads", "cancelled", |v| {
        download_of(v, id)["state"] == "cancelled"
    })
    .await;
    let had = download_of(&stopped, id)["held"].as_u64().unwrap();
    assert!(!root.join("b/big.bin").exists(), "not finished");

    let (s, v) = api(b, rb, "POST", "/api/downloads", file).await;
    assert_eq!(s, StatusCode::OK, "a resume: {v}");
    assert_eq!(v["id"], id);
    let done = until(b, rb, "/api/downloads", "complete", |v| {
        download_of(v, id)["state"] == "complete"
    })
    .await;
    let d = download_of(&done, id);
    assert_eq!(d["percent"], 100.0);
    assert!(
        d["pieces"].as_array().unwrap().iter().all(|p| p == 100),
        "{d}"
    );
    assert_eq!(std::fs::read(root.join("b/big.bin")).unwrap(), data);
    let path = d["path"].as_str().unwrap();
    assert!(path.ends_with("/b/big.bin"), "{path}");
    let total = d["total"].as_u64().unwrap();
    assert!(had > 0 && had < total, "cancelled with {had} of {total}");
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_join_from_the_app_completes_byte_identical() {
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("one.bin");
    let data: Vec<u8> = (0..400_000u32)
        .map(|i| i.wrapping_mul(40_503).to_le_bytes()[2])
        .collect();
    std::fs::write(&shared, &data).unwrap();
    let directory = tracker(&stop).await;
    let (a, ra) = running_app(directory.clone(), &root.path().join("a"), None, &stop).await;
    let (b, rb) = running_app(directory, &root.path().join("b"), None, &stop).await;
    share_and_list(&a, &ra, &b, &rb, &shared, "").await;
    let ask = json!({ "file": "one.bin", "mode": "join" });
    let (s, v) = api(&b, &rb, "POST", "/api/downloads", Some(ask)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["mode"], "join");
    let id = v["id"].as_u64().unwrap();
    until(&b, &rb, "/api/downloads", "the ring member complete", |v| {
        download_of(v, id)["state"] == "complete"
    })
    .await;
    assert_eq!(std::fs::read(root.path().join("b/one.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_dht_a_ticket_is_fetched_when_its_tracker_is_gone() {
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("kept.bin");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| i.wrapping_mul(7_919).to_le_bytes()[1])
        .collect();
    std::fs::write(&shared, &data).unwrap();
    let tracker_stop = CancellationToken::new();
    let directory = tracker(&tracker_stop).await;
    let dht = crate::dht::MemoryDht::new("127.0.0.1".parse().unwrap());
    let on = |d: &crate::dht::MemoryDht| -> Option<Arc<dyn crate::dht::Discovery>> {
        Some(Arc::new(d.handle("127.0.0.1".parse().unwrap())))
    };
    let dir_a = root.path().join("a");
    let (a, ra) = running_app_with(directory.clone(), &dir_a, None, on(&dht), &stop).await;
    let dir_b = root.path().join("b");
    let (b, rb) = running_app_with(directory, &dir_b, None, on(&dht), &stop).await;
    share_and_list(&a, &ra, &b, &rb, &shared, "kept").await;
    let shares = until(&a, &ra, "/api/shares", "the ticket", |v| {
        v["list"][0]["files"][0]["ticket"].is_string()
    })
    .await;
    let ticket = shares["list"][0]["files"][0]["ticket"].as_str().unwrap();
    let key = crate::dht::key_of(&crate::hash::Hash::of(&data));
    let deadline = tokio::time::Instant::now() + WAIT;
    while dht.get(&key).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never announced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracker_stop.cancel();
    let (s, v) = api(
        &b,
        &rb,
        "POST",
        "/api/downloads",
        Some(json!({ "file": ticket })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_u64().unwrap();
    let done = until(&b, &rb, "/api/downloads", "complete through the DHT", |v| {
        let d = download_of(v, id);
        d["state"] == "complete" || d["state"] == "failed"
    })
    .await;
    assert_eq!(download_of(&done, id)["state"], "complete", "{done}");
    assert_eq!(std::fs::read(dir_b.join("kept.bin")).unwrap(), data);
}
