//! Shared-secret swarms and encrypted links: who knows the secret is served, who does not
//! gets nothing, and neither the secret nor the file crosses the wire in the clear; a
//! tampered link is closed and the download goes on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::args;
use crate::util::*;

const SECRET: &str = "correct horse battery staple";

#[test]
fn a_ring_and_a_getter_with_the_secret_complete() {
    let mut ring = Ring::new(3);
    ring.owner_args = args!["--secret", SECRET];
    ring.peer_args = args!["--secret", SECRET];
    run_ring(1_000_000, &ring);
}

/// Runs `peer get` against `owner` with `extra`, expecting it to fail; returns its stderr.
fn refused_getter(root: &std::path::Path, name: &str, owner: u16, extra: &[String]) -> String {
    let dir = root.join(name);
    let mut args = get_args(owner, "data.bin", &dir, &args!["--timeout", 5]);
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(name, PEER, &args, &dir, root);
    let status = p.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "{}", p.describe());
    // Nothing of the file reached the folder: no manifest, no part file, no chunk.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("data.bin"))
        .collect();
    assert!(left.is_empty(), "{name} wrote {left:?}");
    p.stderr_text()
}

#[test]
fn without_the_secret_a_peer_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("data.bin");
    random_file(&original, 500_000, 7);
    let (mut owner, port) = start_owner(root, &original, &args!["--secret", SECRET]);

    let err = refused_getter(root, "none", port, &[]);
    assert!(err.contains("this swarm needs its shared secret"), "{err}");
    let err = refused_getter(root, "wrong", port, &args!["--secret", "incorrect horse"]);
    assert!(err.contains("wrong shared secret"), "{err}");
    // The owner logged both, with the client's address.
    assert!(
        wait_until(WAIT, || {
            let log = owner.stderr_text();
            log.contains("needs its shared secret") && log.contains("wrong shared secret")
        }),
        "{}",
        owner.describe()
    );
    // Directory queries need it too.
    let (q, _tmp) = run_to_exit("list", PEER, &args!["list", port]);
    assert!(
        q.stderr_text().contains("needs its shared secret"),
        "{}",
        q.describe()
    );
    let (q, _tmp) = run_to_exit("list", PEER, &args!["list", port, "--secret", SECRET]);
    assert!(q.stdout_text().contains("data.bin"), "{}", q.describe());

    // With it, the file comes.
    let dir = root.join("ok");
    let mut g = Proc::spawn(
        "ok",
        PEER,
        &get_args(
            port,
            "data.bin",
            &dir,
            &args!["--linger", 0, "--secret", SECRET],
        ),
        &dir,
        root,
    );
    assert!(g.wait_exit(WAIT).success(), "{}", g.describe());
    assert_eq!(
        std::fs::read(dir.join("data.bin")).unwrap(),
        std::fs::read(&original).unwrap()
    );
    owner.kill();
}

#[test]
fn a_peer_with_a_secret_refuses_an_owner_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("data.bin");
    random_file(&original, 500_000, 8);
    let (_owner, port) = start_owner(root, &original, &[]);
    let err = refused_getter(root, "g", port, &args!["--secret", SECRET]);
    assert!(err.contains("has no shared secret"), "{err}");
}

/// A relay between two real processes: it records every byte both ways and, if `flip` is
/// given, flips one bit at that offset of the first connection's server-to-client bytes.
struct Relay {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
}

impl Relay {
    fn start(target: u16, flip: Option<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    return;
                };
                let first = c.fetch_add(1, Ordering::SeqCst) == 0;
                let flip = flip.filter(|_| first);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (seen_up, seen_down) = (s.clone(), s.clone());
                std::thread::spawn(move || pump(client, server, None, &seen_up));
                std::thread::spawn(move || pump(s2, c2, flip, &seen_down));
            }
        });
        Self {
            port,
            seen,
            connections,
        }
    }
}

/// Copies `from` to `to`, recording, flipping a bit at offset `flip`; closes both at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, flip: Option<usize>, seen: &Mutex<Vec<u8>>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(f) = flip
            && (at..at + n).contains(&f)
        {
            buf[f - at] ^= 0x04;
        }
        at += n;
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A file whose content is a recognisable pattern, under a recognisable name.
fn patterned_file(root: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let pattern = b"RINGSWARM-PLAINTEXT-PATTERN-0123456789-";
    let content: Vec<u8> = pattern.iter().copied().cycle().take(700_000).collect();
    let path = root.join("secret-plans-4242.bin");
    std::fs::write(&path, &content).unwrap();
    (path, content)
}

/// Every byte between a getter and the owner, recorded by a relay: the file's content, its
/// name and the secret never appear; the download is byte-identical.
#[test]
fn a_relay_sees_neither_the_file_nor_its_name_nor_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (original, content) = patterned_file(root);
    let (_owner, port) = start_owner(root, &original, &args!["--secret", SECRET]);
    let relay = Relay::start(port, None);
    let dir = root.join("g");
    let args = get_args(
        relay.port,
        "secret-plans-4242.bin",
        &dir,
        &args!["--linger", 0, "--secret", SECRET],
    );
    let mut g = Proc::spawn("g", PEER, &args, &dir, root);
    assert!(g.wait_exit(WAIT).success(), "{}", g.describe());
    assert!(std::fs::read(dir.join("secret-plans-4242.bin")).unwrap() == content);
    let seen = relay.seen.lock().unwrap().clone();
    assert!(
        seen.len() > content.len(),
        "the relay saw {} bytes",
        seen.len()
    );
    let has = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
    assert!(
        !has(b"PLAINTEXT-PATTERN"),
        "the file's content crossed in the clear"
    );
    assert!(
        !has(b"secret-plans"),
        "the file's name crossed in the clear"
    );
    assert!(!has(SECRET.as_bytes()), "the secret crossed the wire");
}

/// One bit flipped on the way: the getter closes that connection with the error that says
/// so, stores nothing from it, reconnects, and ends byte-identical.
#[test]
fn a_flipped_bit_closes_the_link_and_the_download_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (original, content) = patterned_file(root);
    let (_owner, port) = start_owner(root, &original, &[]);
    let relay = Relay::start(port, Some(300_000));
    let dir = root.join("g");
    let args = get_args(
        relay.port,
        "secret-plans-4242.bin",
        &dir,
        &args!["--linger", 0, "--max-sources", 1],
    );
    let mut g = Proc::spawn("g", PEER, &args, &dir, root);
    assert!(g.wait_exit(WAIT).success(), "{}", g.describe());
    assert!(std::fs::read(dir.join("secret-plans-4242.bin")).unwrap() == content);
    assert!(
        g.stderr_text().contains("a sealed frame failed to open"),
        "{}",
        g.describe()
    );
    assert!(
        relay.connections.load(Ordering::SeqCst) >= 2,
        "no reconnect"
    );
}

/// One request to the API's router in process; status, headers and body text.
async fn ask(
    app: &axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> (u16, axum::http::HeaderMap, String) {
    use tower::ServiceExt;
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str, headers: &[(&str, &str)]) -> axum::http::Request<axum::body::Body> {
    let mut b = axum::http::Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(axum::body::Body::empty()).unwrap()
}

fn login(secret: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(axum::body::Body::from(format!("secret={secret}")))
        .unwrap()
}

/// Under a secret, every endpoint answers 401 without the HTTP token (a login form to a
/// browser, JSON to anything else; never a redirect), and serves with it, as a bearer token
/// or as the cookie a right login sets. A wrong login is refused. No answer holds the secret.
#[tokio::test]
async fn the_http_side_needs_the_secret() {
    use std::sync::Arc;
    let secret_text = "correct horse battery staple";
    let secret = Arc::new(ringswarm::auth::Secret::new(secret_text).unwrap());
    let token = secret.http_token();
    let directory = Arc::new(ringswarm::directory::Directory::new(
        Vec::new(),
        "127.0.0.1:1".parse().unwrap(),
        ringswarm::directory::DEFAULT_PEER_TTL,
    ));
    let options = ringswarm::http::Options {
        secret: Some(secret),
        ..Default::default()
    };
    let app = ringswarm::http::router_with(directory, options);
    let mut seen = String::new();
    let mut record = |(status, headers, body): (u16, axum::http::HeaderMap, String)| {
        seen.push_str(&format!("{headers:?}{body}"));
        (status, headers, body)
    };

    for path in [
        "/",
        "/files",
        "/files/1",
        "/peers",
        "/health",
        "/lookup?name=a",
    ] {
        let (status, headers, body) = record(ask(&app, get(path, &[])).await);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"ringswarm\"");
        assert!(headers.get("location").is_none(), "not a redirect");
        assert!(body.contains("peer http-token"), "{path}: {body}");
    }
    let (status, headers, body) = record(ask(&app, get("/", &[("accept", "text/html")])).await);
    assert_eq!(status, 401);
    assert!(headers.get("location").is_none(), "not a redirect");
    assert!(
        body.contains("<form method=\"post\" action=\"/login\"")
            && body.contains("type=\"password\""),
        "{body}"
    );
    let wrong = format!("Bearer {}", "0".repeat(64));
    let (status, _, _) = record(ask(&app, get("/files", &[("authorization", &wrong)])).await);
    assert_eq!(status, 401, "a wrong token");
    let (status, _, _) = record(
        ask(
            &app,
            get(
                "/files",
                &[("authorization", &format!("Bearer {secret_text}"))],
            ),
        )
        .await,
    );
    assert_eq!(status, 401, "the secret itself is not the token");
    let bearer = format!("Bearer {token}");
    let (status, _, body) = record(ask(&app, get("/files", &[("authorization", &bearer)])).await);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"files\""), "{body}");

    let (status, headers, body) = record(ask(&app, login("guess")).await);
    assert_eq!(status, 401);
    assert!(headers.get("set-cookie").is_none());
    assert!(body.contains("not this swarm's secret"), "{body}");
    let (status, headers, _) = ask(&app, login(&secret_text.replace(' ', "+"))).await;
    assert_eq!(status, 303, "signed in: on to the page");
    let cookie = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("ringswarm_auth={token};"))
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = format!("theme=dark; ringswarm_auth={token}");
    let (status, _, body) = record(ask(&app, get("/peers", &[("cookie", &session)])).await);
    assert_eq!(status, 200, "{body}");
    assert!(
        !seen.contains(secret_text) && !seen.contains("correct+horse"),
        "the secret was answered"
    );
}

/// With the real binaries: `file-owner --http --secret` says its API is guarded, `peer
/// http-token` prints the token that opens it, and neither the secret nor the token shows in
/// the owner's output.
#[test]
fn the_owners_http_api_opens_with_the_printed_token() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("data.bin");
    random_file(&share, 50_000, 5);
    let secret = "an http secret";
    let extra = args!["--http", 0, "--secret", secret];
    let (mut owner, _) = start_owner(root, &share, &extra);
    let line = owner.wait_line("directory API on http://");
    assert!(line.contains("under the shared secret"), "{line}");
    let base = line["directory API on ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches("/files")
        .to_string();
    let mut p = Proc::spawn(
        "token",
        PEER,
        &args!["http-token", "--secret", secret],
        root,
        root,
    );
    assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
    let token = p.stdout_text().trim().to_string();
    assert_eq!(token.len(), 64, "{token}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("{base}/health");
    let denied = agent.get(&url).call().unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let ok = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let mut none = Proc::spawn("token2", PEER, &args!["http-token"], root, root);
    assert_eq!(none.wait_exit(WAIT).code(), Some(1), "{}", none.describe());
    assert!(
        none.stderr_text().contains("no shared secret"),
        "{}",
        none.describe()
    );
    owner.interrupt();
    owner.wait_exit(WAIT);
    let out = format!("{}{}", owner.stdout_text(), owner.stderr_text());
    assert!(!out.contains(secret) && !out.contains(&token), "{out}");
}

/// A peer's own HTTP side (`peer --http`) under a secret: its status and metrics answer 401
/// without the HTTP token and serve with it.
#[tokio::test]
async fn a_peers_http_side_needs_the_secret_too() {
    use std::sync::Arc;
    let secret = Arc::new(ringswarm::auth::Secret::new("a peer secret").unwrap());
    let bearer = format!("Bearer {}", secret.http_token());
    let node = ringswarm::http::Node::Peer(Arc::new(ringswarm::peer::Status::new()));
    let app = ringswarm::http::node_router(node, Some(secret));
    for path in ["/", "/metrics", "/api/status", "/health"] {
        let (status, headers, body) = ask(&app, get(path, &[])).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(headers.get("location").is_none(), "not a redirect");
        let (status, _, body) = ask(&app, get(path, &[("authorization", &bearer)])).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, _, body) = ask(&app, get("/metrics", &[("authorization", &bearer)])).await;
    assert!(body.contains("ringswarm_verified_chunks_total 0"), "{body}");
}
