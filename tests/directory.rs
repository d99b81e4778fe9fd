//! The owner's directory end to end: `peer list|search|locate` (table and `--json`), the
//! `--http` JSON API with a real HTTP client, ring peers and raw clients as sources, and the
//! `--peer-ttl` rule for silent members.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringswarm::cli::human_size;
use ringswarm::manifest::{DEFAULT_CHUNK_SIZE, chunk_layout};
use ringswarm::protocol::{MAX_MANIFEST_LEN, Message, MessageCodec, PROTOCOL_VERSION};
use serde_json::{Value, json};
use tokio_util::codec::Decoder;

use crate::args;
use crate::util::*;

/// A shared file as the test expects the directory to describe it.
#[derive(Debug)]
struct Want {
    id: u64,
    name: String,
    size: u64,
    chunk_size: u64,
    chunks: u64,
    hash: String,
}

impl Want {
    /// The `files` entry the directory should give, with `complete`/`partial` sources.
    fn json(&self, complete: u64, partial: u64) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": self.chunks,
            "hash": self.hash,
            "complete_sources": complete,
            "partial_sources": partial,
        })
    }

    /// The words of this file's row in the `list`/`search` table.
    fn row(&self) -> Vec<String> {
        let mut words = vec![self.id.to_string(), self.name.clone()];
        words.extend(human_size(self.size).split(' ').map(str::to_string));
        words.extend([
            self.chunks.to_string(),
            "1".into(),
            "0".into(),
            self.hash.clone(),
        ]);
        words
    }
}

/// Writes four files of different sizes (one name with upper case, one empty) to `dir` and
/// returns what the directory should say about them, by id: names in byte order.
fn share_four_files(dir: &Path) -> Vec<Want> {
    fs::create_dir_all(dir).unwrap();
    let files = [
        ("alpha.bin", 1_234_567),
        ("Beta-Image.iso", 300_000),
        ("notes.txt", 7),
        ("empty.dat", 0),
    ];
    let mut names: Vec<&str> = files.iter().map(|f| f.0).collect();
    names.sort_unstable();
    let mut want: Vec<Want> = files
        .iter()
        .enumerate()
        .map(|(i, &(name, size))| {
            let path = dir.join(name);
            random_file(&path, size, i as u64 + 40);
            let (chunk_size, chunks) = chunk_layout(size as u64, DEFAULT_CHUNK_SIZE).unwrap();
            Want {
                id: names.iter().position(|n| *n == name).unwrap() as u64 + 1,
                name: name.into(),
                size: size as u64,
                chunk_size,
                chunks: chunks.into(),
                hash: blake3::hash(&fs::read(&path).unwrap()).to_hex().to_string(),
            }
        })
        .collect();
    want.sort_by_key(|w| w.id);
    // Upper case sorts first in byte order.
    assert_eq!(want[0].name, "Beta-Image.iso");
    want
}

/// Runs `peer ARGS` (a query), asserts it exits 0, and returns its stdout.
fn peer(args: &[String]) -> String {
    let (p, _tmp) = run_to_exit("query", PEER, args);
    assert_eq!(
        p.status.and_then(|s| s.code()),
        Some(0),
        "peer query failed\n{}",
        p.describe()
    );
    p.stdout_text()
}

/// `peer ARGS --json`, parsed.
fn peer_json(args: &[String]) -> Value {
    let mut args = args.to_vec();
    args.push("--json".into());
    let out = peer(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("peer {args:?}: not JSON ({e}):\n{out}"))
}

/// The words of each line of a table, header and all.
fn words(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

const LIST_HEADER: [&str; 7] = [
    "ID", "NAME", "SIZE", "CHUNKS", "COMPLETE", "PARTIAL", "BLAKE3",
];

/// The `listing` of a search or list: its files must be `want`'s, in order, with no sources
/// but the owner.
fn assert_listing(listing: &Value, want: &[&Want]) {
    let expected: Vec<Value> = want.iter().map(|w| w.json(1, 0)).collect();
    assert_eq!(listing["files"], Value::Array(expected), "{listing:#}");
}

#[test]
fn list_search_and_locate_describe_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let want = share_four_files(&share);
    let (_owner, port) = start_owner(tmp.path(), &share, &[]);

    // list: a table of every file, and the same as JSON.
    let table = words(&peer(&args!["list", port]));
    assert_eq!(table[0], LIST_HEADER, "{table:?}");
    let rows: Vec<Vec<String>> = want.iter().map(Want::row).collect();
    assert_eq!(table[1..], rows[..]);
    let listing = peer_json(&args!["list", port]);
    assert_listing(&listing, &want.iter().collect::<Vec<_>>());
    assert!(listing.get("query").is_none(), "{listing:#}");

    // search: a substring of the name, any case.
    let beta = &want[0];
    for text in ["beta", "IMAGE", "a-image.I"] {
        let table = words(&peer(&args!["search", port, text]));
        assert_eq!(
            table,
            vec![LIST_HEADER.map(String::from).to_vec(), beta.row()]
        );
        let listing = peer_json(&args!["search", port, text]);
        assert_eq!(listing["query"], text);
        assert_listing(&listing, &[beta]);
    }
    // "a" is in three names, not in notes.txt.
    let listing = peer_json(&args!["search", port, "A"]);
    assert_listing(&listing, &[&want[0], &want[1], &want[2]]);

    // locate, by id and by name: the file, then the owner holding every chunk.
    for w in &want {
        let by_id = peer(&args!["locate", port, w.id]);
        let by_name = peer(&args!["locate", port, w.name]);
        assert_eq!(by_id, by_name);
        let lines: Vec<&str> = by_id.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "file {} {} ({}, {} chunks, blake3 {}): 1 complete and 0 partial sources",
                w.id,
                w.name,
                human_size(w.size),
                w.chunks,
                w.hash
            )
        );
        assert_eq!(
            words(lines[1]),
            [["SOURCE", "ROLE", "CHUNKS", "CHUNK", "IDS"]
                .map(String::from)
                .to_vec()]
        );
        let ids = match w.chunks {
            0 => "none".to_string(),
            n => format!("0-{}", n - 1),
        };
        assert_eq!(
            words(lines[2])[0],
            args![
                format!("127.0.0.1:{port}"),
                "owner",
                format!("{}/{}", w.chunks, w.chunks),
                ids
            ]
        );
        assert_eq!(lines.len(), 3, "{by_id}");

        let loc = peer_json(&args!["locate", port, w.id]);
        assert_eq!(loc["file"], w.json(1, 0));
        let ranges = match w.chunks {
            0 => json!([]),
            n => json!([[0, n - 1]]),
        };
        assert_eq!(
            loc["sources"],
            json!([{
                "addr": format!("127.0.0.1:{port}"),
                "owner": true,
                "role": "owner",
                "count": w.chunks,
                "complete": true,
                "chunks": ranges,
            }])
        );
        assert!(loc.get("message").is_none(), "{loc:#}");
    }
}

#[test]
fn unknown_search_and_file_get_clear_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    share_four_files(&share);
    let (_owner, port) = start_owner(tmp.path(), &share, &[]);
    let shares = "the owner shares: 1 Beta-Image.iso, 2 alpha.bin, 3 empty.dat, 4 notes.txt";

    assert_eq!(
        peer(&args!["search", port, "zzz"]),
        format!("no file name contains \"zzz\" (`peer list 127.0.0.1:{port}` shows every file)\n")
    );
    let mut answer = peer_json(&args!["search", port, "zzz"]);
    // With the key the owner's handshake proved.
    let node = answer.as_object_mut().unwrap().remove("node");
    let node = node.as_ref().and_then(Value::as_str).unwrap_or_default();
    assert!(node.parse::<ringswarm::key::NodeId>().is_ok(), "{node:?}");
    assert_eq!(answer, json!({"query": "zzz", "files": []}));

    for (key, answer) in [
        ("9", format!("no file with id 9; {shares}")),
        ("0", format!("no file with id 0; {shares}")),
        ("nope.iso", format!("no file named \"nope.iso\"; {shares}")),
    ] {
        assert_eq!(peer(&args!["locate", port, key]), format!("{answer}\n"));
        assert_eq!(
            peer_json(&args!["locate", port, key]),
            json!({"file": null, "message": answer, "sources": []})
        );
    }
}

/// A client speaking the wire protocol by hand: it says `hello` as a getter with a `port`
/// (so the owner registers it as a directory member), then sends only what the test says.
/// Everything the owner sends is collected by a reader thread; dropping it closes the socket.
struct RawMember {
    addr: String,
    stream: TcpStream,
    received: Arc<Mutex<Received>>,
    reader: Option<JoinHandle<()>>,
}

/// What the owner sent a [`RawMember`], and how the connection ended.
#[derive(Debug, Default)]
struct Received {
    messages: Vec<Message>,
    /// When the owner closed the connection, and the read error if it was not a clean EOF.
    closed: Option<(Instant, Option<String>)>,
}

impl RawMember {
    /// Joins the swarm of `file` at the owner on `owner` as a getter serving on `port` and
    /// holding `have`; returns once `welcome` arrived.
    fn join(owner: u16, file: &str, port: u16, have: Value) -> Self {
        let stream = TcpStream::connect(crate::util::seal::sealed_port(owner)).unwrap();
        let hello = json!({
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "role": "getter",
            "file": file,
            "have": have,
            "port": port,
        });
        (&stream).write_all(&json_frame(hello)).unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let reader = {
            let (stream, received) = (stream.try_clone().unwrap(), received.clone());
            std::thread::spawn(move || read_messages(stream, &received))
        };
        let member = Self {
            addr: format!("127.0.0.1:{port}"),
            stream,
            received,
            reader: Some(reader),
        };
        let welcomed = wait_until(WAIT, || {
            let r = member.received();
            r.closed.is_some()
                || r.messages
                    .iter()
                    .any(|m| matches!(m, Message::Welcome { .. }))
        });
        let r = member.received();
        assert!(
            welcomed && matches!(r.messages.first(), Some(Message::Welcome { .. })),
            "no welcome for {}: {r:?}",
            member.addr
        );
        drop(r);
        member
    }

    fn received(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one message given as its JSON header.
    fn send(&self, header: Value) {
        (&self.stream).write_all(&json_frame(header)).unwrap();
    }
}

impl Drop for RawMember {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Decodes messages from `stream` into `received` until the connection ends.
fn read_messages(mut stream: TcpStream, received: &Mutex<Received>) {
    let mut codec = MessageCodec::new(MAX_MANIFEST_LEN);
    let mut buf = BytesMut::new();
    let mut bytes = [0u8; 16 * 1024];
    let end = loop {
        match codec.decode(&mut buf) {
            Ok(Some(m)) => {
                received.lock().unwrap().messages.push(m);
                continue;
            }
            Ok(None) => {}
            Err(e) => break Some(e.to_string()),
        }
        match stream.read(&mut bytes) {
            Ok(0) if buf.is_empty() => break None,
            Ok(0) => break Some(format!("closed mid-frame ({} bytes buffered)", buf.len())),
            Ok(n) => buf.extend_from_slice(&bytes[..n]),
            Err(e) => break Some(e.to_string()),
        }
    };
    received.lock().unwrap().closed = Some((Instant::now(), end));
}

/// A blocking HTTP client that returns 4xx/5xx responses instead of failing on them.
fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Status and JSON body of a response, checking it is JSON.
fn json_response(url: &str, resp: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.into_body().read_to_string().unwrap();
    assert_eq!(kind, "application/json", "{url}: {status} {text}");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url}: {status}, body not JSON ({e}): {text}"));
    (status, body)
}

/// `GET http://API PATH`: status and JSON body.
fn get(api: &str, path: &str) -> (u16, Value) {
    let url = format!("http://{api}{path}");
    let resp = http()
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    json_response(&url, resp)
}

/// The addresses `GET /peers` lists.
fn listed(api: &str) -> Vec<String> {
    let (status, body) = get(api, "/peers");
    assert_eq!(status, 200, "{body}");
    body["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["addr"].as_str().unwrap().to_string())
        .collect()
}

/// Starts an owner with `--http 0` (and `extra`); returns it, its port and the API's address.
fn start_owner_with_api(root: &Path, share: &Path, extra: &[String]) -> (Proc, u16, String) {
    let mut args = args!["--http", "0"];
    args.extend_from_slice(extra);
    let (mut owner, port) = start_owner(root, share, &args);
    let line = owner.wait_line("directory API on http://");
    let api = line["directory API on http://".len()..]
        .trim_end_matches("/files")
        .to_string();
    (owner, port, api)
}

/// `answer` without the `node` of each source, after checking that each a member has is its
/// key: 64 hex digits (the member's key is a fresh one, made by the test's sealing relay).
fn keyless((status, mut answer): (u16, Value)) -> (u16, Value) {
    if let Some(sources) = answer["sources"].as_array_mut() {
        for s in sources.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(node) = s.remove("node") {
                let hex = node.as_str().unwrap_or_default();
                assert!(
                    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{node}"
                );
            }
        }
    }
    (status, answer)
}

#[test]
fn http_api_answers_every_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let want = share_four_files(&share);
    let (_owner, port, api) = start_owner_with_api(tmp.path(), &share, &[]);
    let alpha = &want[1];
    assert_eq!(alpha.name, "alpha.bin");
    let owner_source = |w: &Want| {
        json!({
            "addr": format!("127.0.0.1:{port}"),
            "owner": true,
            "role": "owner",
            "count": w.chunks,
            "complete": true,
            "chunks": [[0, w.chunks - 1]],
        })
    };

    // Before anyone joined.
    assert_eq!(
        get(&api, "/health"),
        (200, json!({"status": "ok", "files": 4, "peers": 0}))
    );
    assert_eq!(get(&api, "/peers"), (200, json!({"peers": []})));

    // A member holding chunks 0-2 of alpha.bin that then gains 5 and 6.
    let (_member_socket, member_port) = dead_port();
    let joined = std::time::SystemTime::now();
    let member = RawMember::join(port, "alpha.bin", member_port, json!([[0, 2]]));
    member.send(json!({"type": "have", "chunks": [[5, 6]]}));
    let member_source = json!({
        "addr": member.addr,
        "owner": false,
        "role": "getter",
        "count": 5,
        "complete": false,
        "chunks": [[0, 2], [5, 6]],
    });
    let mut file = Value::Null;
    let gained = wait_until(WAIT, || {
        file = get(&api, "/files/2").1;
        file["sources"][1]["count"] == 5
    });
    assert!(gained, "the member's have was not recorded: {file:#}");

    // /files: every file, alpha.bin with one partial source.
    let (status, files) = get(&api, "/files");
    assert_eq!(status, 200);
    let expected: Vec<Value> = want
        .iter()
        .map(|w| w.json(1, u64::from(w.id == alpha.id)))
        .collect();
    assert_eq!(files, json!({ "files": expected }));

    // /files/{id} (or a name): the file and where each chunk is.
    let located = json!({
        "file": alpha.json(1, 1),
        "sources": [owner_source(alpha), member_source],
    });
    assert_eq!(keyless(get(&api, "/files/2")), (200, located.clone()));
    assert_eq!(keyless(get(&api, "/files/alpha.bin")), (200, located));
    assert_eq!(
        get(&api, "/files/1"),
        (
            200,
            json!({"file": want[0].json(1, 0), "sources": [owner_source(&want[0])]})
        )
    );
    let shares = "the owner shares: 1 Beta-Image.iso, 2 alpha.bin, 3 empty.dat, 4 notes.txt";
    assert_eq!(
        get(&api, "/files/99"),
        (
            404,
            json!({"file": null, "message": format!("no file with id 99; {shares}"), "sources": []})
        )
    );

    // /lookup: a substring of the name, any case; no match is an empty list, not an error.
    assert_eq!(
        get(&api, "/lookup?name=BETA"),
        (200, json!({"query": "BETA", "files": [want[0].json(1, 0)]}))
    );
    assert_eq!(
        get(&api, "/lookup?name=.BIN"),
        (200, json!({"query": ".BIN", "files": [alpha.json(1, 1)]}))
    );
    assert_eq!(
        get(&api, "/lookup?name=zzz"),
        (200, json!({"query": "zzz", "files": []}))
    );
    let (status, body) = get(&api, "/lookup");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("/lookup?name=TEXT"),
        "{body}"
    );

    // Requests that do not parse get the same JSON errors.
    for (path, needle) in [
        ("/files/%FF", "Invalid UTF-8"),
        ("/lookup?name=a&name=b", "duplicate field `name`"),
    ] {
        let (status, body) = get(&api, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(needle)),
            "{path}: {body}"
        );
    }

    // /peers and /health: the member, with its file and chunk count.
    let (status, peers) = get(&api, "/peers");
    assert_eq!(status, 200);
    let listed_peer = &peers["peers"][0];
    assert_eq!(peers["peers"].as_array().unwrap().len(), 1, "{peers:#}");
    for (field, value) in [
        ("addr", json!(member.addr)),
        ("role", json!("getter")),
        ("file_id", json!(2)),
        ("file", json!("alpha.bin")),
        ("count", json!(5)),
        ("complete", json!(false)),
    ] {
        assert_eq!(listed_peer[field], value, "{field} in {peers:#}");
    }
    let joined_ms = joined
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let joined_unix_ms = listed_peer["joined_unix_ms"].as_u64().unwrap();
    assert!(
        joined_unix_ms + 1000 >= joined_ms && joined_unix_ms <= joined_ms + 60_000,
        "joined_unix_ms {joined_unix_ms}, test joined at {joined_ms}"
    );
    assert!(listed_peer["last_seen_ms"].as_u64().unwrap() < 60_000);
    assert_eq!(
        get(&api, "/health"),
        (200, json!({"status": "ok", "files": 4, "peers": 1}))
    );

    // Anything else: 404 for an unknown path, 405 for another method.
    let (status, body) = get(&api, "/nope");
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no such endpoint /nope"),
        "{body}"
    );
    for path in ["/files", "/nope"] {
        let url = format!("http://{api}{path}");
        let resp = http().post(&url).send_empty().unwrap();
        let (status, body) = json_response(&url, resp);
        let want_status = if path == "/files" { 405 } else { 404 };
        assert_eq!(status, want_status, "POST {path}: {body}");
    }
    let url = format!("http://{api}/files");
    let (_, body) = json_response(&url, http().post(&url).send_empty().unwrap());
    assert_eq!(body, json!({"error": "this API is read-only: use GET"}));

    // A member that disconnects leaves the directory at once.
    drop(member);
    assert!(
        wait_until(WAIT, || listed(&api).is_empty()),
        "still listed after disconnecting: {:?}",
        listed(&api)
    );
    assert_eq!(
        get(&api, "/files/2").1["sources"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn locate_shows_ring_peers_as_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("data.bin");
    random_file(&original, 1_000_000, 7);
    let (mut owner, port) = start_owner(tmp.path(), &original, &args!["--peers", "2"]);
    // Two peers of a three-peer ring: peer 0 downloads from peer 1, peer 1 from a port nobody
    // listens on (it fetches what it lacks from the owner). Peer 1 stops once peer 0, its
    // upload neighbour, is complete; peer 0 has no upload neighbour, so it keeps serving (for
    // 30 s), registered in the directory.
    // Peer 1 starts first, on a port of its choosing, so peer 0 can be told it.
    let (_dead, nobody) = dead_port();
    let mut ports = vec![0, 0, nobody];
    let mut peers: Vec<Proc> = Vec::new();
    for i in [1, 0] {
        let dir = tmp.path().join(format!("peer-{i}"));
        let events = tmp.path().join(format!("events-{i}.jsonl"));
        let args = peer_args(port, &ports, i, &dir, &events, &[]);
        let mut p = Proc::spawn(&format!("peer-{i}"), PEER, &args, tmp.path(), tmp.path());
        ports[i] = p.listening_port();
        peers.insert(0, p);
    }
    for p in &mut peers {
        p.wait_line("complete: ");
    }
    let status = peers[1].wait_exit(WAIT);
    assert!(status.success(), "{}", peers[1].describe());

    // Only peer 0 is left: the owner dropped peer 1 when its connection closed.
    let (p0, p1) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let sources = json!([
        {"addr": format!("127.0.0.1:{port}"), "owner": true, "role": "owner", "count": 10, "complete": true, "chunks": [[0, 9]]},
        {"addr": p0, "owner": false, "role": "peer", "count": 10, "complete": true, "chunks": [[0, 9]]},
    ]);
    let mut loc = Value::Null;
    let settled = wait_until(WAIT, || {
        loc = peer_json(&args!["locate", port, "data.bin"]);
        // A peer's entry carries its node id (its key, 64 hex digits): checked apart.
        let mut listed = loc["sources"].clone();
        if let Some(peer) = listed.get_mut(1).and_then(Value::as_object_mut) {
            let node = peer.remove("node");
            let is_id = node
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
            if !is_id {
                return false;
            }
        }
        listed == sources
    });
    assert!(
        settled,
        "expected the owner and peer 0, complete: {loc:#}\n{}\n{}",
        tail(&owner.describe(), 30),
        peers[0].describe()
    );
    assert!(peers[0].try_status().is_none(), "peer 0 stopped too soon");
    assert_eq!(loc["file"]["complete_sources"], 2);
    assert_eq!(loc["file"]["partial_sources"], 0);

    let table = peer(&args!["locate", port, "1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].ends_with("): 2 complete and 0 partial sources"),
        "{table}"
    );
    assert_eq!(
        words(&lines[2..].join("\n")),
        vec![
            args![format!("127.0.0.1:{port}"), "owner", "10/10", "0-9"],
            args![p0, "peer", "10/10", "0-9"],
        ],
        "{table}"
    );
    assert!(!table.contains(&p1), "{table}");
    let listing = peer_json(&args!["list", port]);
    assert_eq!(listing["files"][0]["complete_sources"], 2);
    owner.kill();
}

/// A directory member speaking the wire protocol by hand, in the test's runtime: what the
/// owner sent after `welcome` and when it closed, in (paused) tokio time.
#[derive(Debug, Default)]
struct Heard {
    messages: Vec<Message>,
    /// The close, and the read error if it was not a clean EOF.
    closed: Option<(tokio::time::Instant, Option<String>)>,
}

impl Heard {
    fn error(&self) -> Option<&str> {
        self.messages.iter().find_map(|m| match m {
            Message::Error { message } => Some(message.as_str()),
            _ => None,
        })
    }
}

/// Joins `data.bin`'s swarm at `owner` as a getter claiming to serve on `port`; returns, once
/// `welcome` arrived, the write half and what the owner says from then on.
async fn join_member(
    owner: std::net::SocketAddr,
    port: u16,
) -> (
    tokio::io::WriteHalf<ringswarm::secure::SecureStream>,
    Arc<Mutex<Heard>>,
    tokio::task::JoinHandle<()>,
) {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let stream = crate::util::seal::sealed_stream(owner).await;
    let (read, mut write) = tokio::io::split(stream);
    let hello = json!({
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "role": "getter",
        "file": "data.bin",
        "have": [],
        "port": port,
    });
    write.write_all(&json_frame(hello)).await.unwrap();
    let mut frames = tokio_util::codec::FramedRead::new(read, MessageCodec::new(MAX_MANIFEST_LEN));
    let first = frames.next().await;
    assert!(
        matches!(first, Some(Ok(Message::Welcome { .. }))),
        "no welcome for port {port}: {first:?}"
    );
    let heard = Arc::new(Mutex::new(Heard::default()));
    let reader = {
        let heard = heard.clone();
        tokio::spawn(async move {
            let end = loop {
                match frames.next().await {
                    Some(Ok(m)) => heard.lock().unwrap().messages.push(m),
                    Some(Err(e)) => break Some(e.to_string()),
                    None => break None,
                }
            };
            heard.lock().unwrap().closed = Some((tokio::time::Instant::now(), end));
        })
    };
    (write, heard, reader)
}

/// Waits (in tokio time, 10 ms steps) at most `limit` for `cond`; returns whether it held.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The `--peer-ttl` rule under tokio's paused clock, with an in-process owner: no wait here
/// depends on how busy the machine is. Time only moves when every task waits, and a message
/// written to a socket is read before the clock passes the writer's next timer, so the owner
/// sees each keep-alive at most one keep-alive interval late.
#[tokio::test(start_paused = true)]
async fn silent_member_is_dropped_after_the_ttl() {
    use tokio::io::AsyncWriteExt;
    const TTL: Duration = Duration::from_secs(1);
    const KEEP_ALIVE: Duration = Duration::from_millis(300);
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("data.bin");
    random_file(&original, 200_000, 8);
    let shared =
        Arc::new(ringswarm::owner::SharedFile::open(&original, DEFAULT_CHUNK_SIZE, 5).unwrap());
    let listener = ringswarm::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let owner = listener.local_addr().unwrap();
    let files = vec![shared];
    let directory = ringswarm::owner::directory(&files, owner, TTL);
    let token = tokio_util::sync::CancellationToken::new();
    let _stop = token.clone().drop_guard();
    let config = ringswarm::owner::OwnerConfig::new(Arc::new(
        ringswarm::events::EventSink::console("owner"),
    ));
    tokio::spawn(ringswarm::owner::run(
        listener,
        files,
        directory.clone(),
        config,
        token,
    ));
    let listed = || -> Vec<String> { directory.peers().into_iter().map(|p| p.addr).collect() };
    // Addresses the members claim to serve on: held, so no two runs share one.
    let (_s, silent_port) = dead_port();
    let (_c, chatty_port) = dead_port();
    let (silent_addr, chatty_addr) = (
        format!("127.0.0.1:{silent_port}"),
        format!("127.0.0.1:{chatty_port}"),
    );

    let start = tokio::time::Instant::now();
    let (_silent_write, silent, _) = join_member(owner, silent_port).await;
    let (mut chatty_write, chatty, _) = join_member(owner, chatty_port).await;
    let last_keep_alive = Arc::new(Mutex::new(tokio::time::Instant::now()));
    // Stopped by `stop`, it hands the write half back: dropping it would close the socket.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let keep_alive = {
        let last = last_keep_alive.clone();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => return chatty_write,
                    () = tokio::time::sleep(KEEP_ALIVE) => {}
                }
                let frame = json_frame(json!({"type": "have", "chunks": []}));
                chatty_write.write_all(&frame).await.unwrap();
                *last.lock().unwrap() = tokio::time::Instant::now();
            }
        })
    };
    let both = listed();
    assert!(
        both.contains(&silent_addr) && both.contains(&chatty_addr),
        "not both listed once welcomed: {both:?}"
    );

    // The silent one is closed once the TTL has passed, told why, and no longer listed.
    assert!(
        until(TTL * 3, || silent.lock().unwrap().closed.is_some()).await,
        "silent member still connected after {:?}: {:?}",
        TTL * 3,
        silent.lock().unwrap()
    );
    {
        let heard = silent.lock().unwrap();
        let (closed_at, end) = heard.closed.as_ref().unwrap();
        let after = closed_at.duration_since(start);
        assert!(
            after >= TTL && after <= TTL + KEEP_ALIVE,
            "dropped after {after:?}, not just after the {TTL:?} TTL"
        );
        let err = heard
            .error()
            .unwrap_or_else(|| panic!("no error message: {heard:?}"));
        assert!(err.contains("--peer-ttl"), "{err}");
        assert!(
            matches!(heard.messages.last(), Some(Message::Error { .. })),
            "{heard:?}"
        );
        assert!(end.is_none(), "not a clean close: {end:?}");
    }
    assert!(
        until(Duration::from_millis(100), || !listed()
            .contains(&silent_addr))
        .await,
        "silent member still listed after its connection closed: {:?}",
        listed()
    );

    // The one sending keep-alives stays listed for well past the TTL.
    while start.elapsed() < TTL * 3 {
        assert!(
            listed().contains(&chatty_addr),
            "member sending keep-alives dropped after {:?}: {:?}",
            start.elapsed(),
            chatty.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        chatty.lock().unwrap().closed.is_none(),
        "{:?}",
        chatty.lock().unwrap()
    );
    assert!(chatty.lock().unwrap().error().is_none());

    // Once it falls silent too, it goes the same way.
    stop.send(()).unwrap();
    let _chatty_write = keep_alive.await.unwrap();
    let last = *last_keep_alive.lock().unwrap();
    assert!(
        last > start,
        "no keep-alive was sent in {:?}",
        start.elapsed()
    );
    assert!(
        until(TTL * 3, || chatty.lock().unwrap().closed.is_some()).await,
        "member still connected {:?} after it fell silent",
        last.elapsed()
    );
    let (closed_at, _) = chatty.lock().unwrap().closed.clone().unwrap();
    let silent_for = closed_at.duration_since(last);
    assert!(
        silent_for >= TTL && silent_for <= TTL + KEEP_ALIVE,
        "dropped {silent_for:?} after its last keep-alive"
    );
    let err = chatty.lock().unwrap().error().map(str::to_string);
    assert!(
        err.as_deref().is_some_and(|e| e.contains("--peer-ttl")),
        "{err:?}"
    );
    assert!(
        until(Duration::from_millis(100), || !listed()
            .contains(&chatty_addr))
        .await,
        "member still listed after it fell silent: {:?}",
        listed()
    );
}

/// Reads until the server closes (at most 30 s of tokio time).
async fn read_to_close(mut s: tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection to `to` from the loopback address `from` (any of 127.0.0.0/8).
async fn connect_from(from: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `GET path` on `s` (kept open) and reads its answer's head: the status code and the
/// head's text.
async fn ask_head(s: &mut tokio::net::TcpStream, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// Issue 19's dashboard lockout: event-stream clients from one address (more than the
/// server's whole connection cap) get at most their address's share of event streams (the
/// rest a 429 saying why) and connections (idle ones past the cap a 429 at once), while a
/// visitor from another address is served the page, the API and a feed of its own; every
/// refusal is counted in `/metrics`. Before the per-address caps, 256 of them held every
/// connection and the visitor got a 503 for up to a minute.
#[tokio::test]
async fn http_one_address_cannot_lock_others_out() {
    use ringswarm::http::{
        MAX_CONNECTIONS_PER_ADDRESS, MAX_EVENT_STREAMS_PER_ADDRESS, MAX_HTTP_CONNECTIONS,
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.bin");
    random_file(&path, 1000, 1);
    let manifest = ringswarm::manifest::Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).unwrap();
    let directory = Arc::new(ringswarm::directory::Directory::new(
        vec![Arc::new(manifest)],
        "127.0.0.1:1".parse().unwrap(),
        ringswarm::directory::DEFAULT_PEER_TTL,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let _stop = token.clone().drop_guard();
    let options = ringswarm::http::Options {
        metrics: Some(Arc::new(ringswarm::metrics::Metrics::new())),
        ..Default::default()
    };
    tokio::spawn(ringswarm::http::serve_with(
        listener, directory, options, token,
    ));

    // More event streams from 127.0.0.1 than the server has connections.
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..MAX_HTTP_CONNECTIONS + 10 {
        let mut s = connect_from("127.0.0.1", api).await;
        let (code, head) = ask_head(&mut s, "/api/events").await;
        match code {
            200 => streams.push(s),
            429 => {
                refused += 1;
                assert!(
                    head.contains("too many event streams from 127.0.0.1")
                        || head.contains("too many connections from 127.0.0.1"),
                    "{head}"
                );
            }
            _ => panic!("stream {}: {head}", streams.len() + refused),
        }
    }
    assert_eq!(streams.len(), MAX_EVENT_STREAMS_PER_ADDRESS);
    // Idle connections from one address: past its cap, a 429 at once.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_ADDRESS - MAX_EVENT_STREAMS_PER_ADDRESS {
        idle.push(connect_from("127.0.0.1", api).await);
    }
    let text = read_to_close(connect_from("127.0.0.1", api).await).await;
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(
        text.contains(&format!(
            "too many connections from 127.0.0.1: at most {MAX_CONNECTIONS_PER_ADDRESS} at once per address"
        )),
        "{text}"
    );
    // Another address is served at once: the page, the API and a feed of its own.
    for path in ["/", "/health", "/api/events"] {
        let mut s = connect_from("127.0.0.2", api).await;
        let (code, head) = ask_head(&mut s, path).await;
        assert_eq!(code, 200, "{path} from 127.0.0.2: {head}");
    }
    // Every refusal was counted.
    let mut s = connect_from("127.0.0.3", api).await;
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_to_close(s).await;
    let count = |reason: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "ringswarm_http_refused_total{{reason=\"{reason}\"}} "
                ))
            })
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no {reason} count in:\n{text}"))
    };
    assert_eq!(
        count("address_event_streams") + count("address_connections"),
        refused + 1,
        "{text}"
    );
    assert!(count("address_connections") >= 1, "{text}");
    assert_eq!(count("busy"), 0, "{text}");
    drop((streams, idle));
}

/// The HTTP API in-process under tokio's paused clock, so the header timeout is checked
/// exactly, however busy the machine.
#[tokio::test(start_paused = true)]
async fn http_api_survives_garbage_silence_and_a_flood() {
    use ringswarm::http::{HEADER_TIMEOUT, MAX_HTTP_CONNECTIONS};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.bin");
    random_file(&path, 1000, 1);
    let manifest = ringswarm::manifest::Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).unwrap();
    let directory = Arc::new(ringswarm::directory::Directory::new(
        vec![Arc::new(manifest)],
        "127.0.0.1:1".parse().unwrap(),
        ringswarm::directory::DEFAULT_PEER_TTL,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let _stop = token.clone().drop_guard();
    tokio::spawn(ringswarm::http::serve(listener, directory, token));

    // Random bytes: a 400 and a close.
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(&[0xab; 300]).await.unwrap();
    let text = read_to_close(s).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // A client that never finishes its request head is dropped after the header timeout.
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(b"GET /files HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let text = read_to_close(s).await;
    let waited = start.elapsed();
    assert!(
        waited >= HEADER_TIMEOUT && waited <= HEADER_TIMEOUT + Duration::from_secs(1),
        "closed after {waited:?}, not at the {HEADER_TIMEOUT:?} header timeout: {text}"
    );
    // More connections than the cap (from as many addresses as it takes: each may hold only
    // its share): the excess get a 503, and the API serves on after.
    let mut held = Vec::new();
    for i in 0..MAX_HTTP_CONNECTIONS {
        let from = 1 + i / ringswarm::http::MAX_CONNECTIONS_PER_ADDRESS;
        held.push(connect_from(&format!("127.0.0.{from}"), api).await);
    }
    let text = read_to_close(connect_from("127.0.0.200", api).await).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("busy"), "{text}");
    drop(held);
    let mut served = false;
    for _ in 0..100 {
        let mut s = TcpStream::connect(api).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        if read_to_close(s).await.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served, "the API did not serve again after the flood");
}

/// `GET /metrics` of a running owner, in the OpenMetrics text format: after a getter fetched
/// the whole file from the owner alone, the owner counts the file's bytes and chunks sent to
/// a getter, and the getter, still serving, as a member holding every chunk and an open
/// connection.
#[test]
fn http_metrics_count_what_the_owner_served() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share").join("m.bin");
    fs::create_dir_all(share.parent().unwrap()).unwrap();
    let size = 600_000;
    random_file(&share, size, 9);
    let (_owner, port, api) = start_owner_with_api(root, &share, &[]);
    let dir = root.join("g");
    let mut g = Proc::spawn(
        "g",
        PEER,
        &args![
            "get",
            port,
            "m.bin",
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.display()
        ],
        &dir,
        root,
    );
    g.wait_line("complete: ");
    let chunks = chunk_count(size);
    let metrics = || {
        // As Prometheus asks for it (tests/metrics.rs checks the classic format too).
        let resp = http()
            .get(&format!("http://{api}/metrics"))
            .header("accept", "application/openmetrics-text; version=1.0.0")
            .call()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        resp.into_body().read_to_string().unwrap()
    };
    let want = [
        format!("ringswarm_sent_bytes_total{{role=\"getter\"}} {size}"),
        format!("ringswarm_sent_chunks_total{{role=\"getter\"}} {chunks}"),
        "ringswarm_connections{role=\"getter\"} 1".to_string(),
        "ringswarm_members{role=\"getter\"} 1".to_string(),
        format!("ringswarm_member_chunks{{role=\"getter\"}} {chunks}"),
        "ringswarm_files 1".to_string(),
    ];
    // The last `have` may reach the directory a moment after the getter printed its line.
    let mut text = String::new();
    let all_there = wait_until(WAIT, || {
        text = metrics();
        want.iter().all(|w| text.lines().any(|l| l == w))
    });
    assert!(all_there, "want {want:#?} in:\n{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    // The one getter connection is choked or unchoked (the rechoker may have choked it,
    // complete and not interested, by now).
    let state = |s: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ringswarm_choke_connections{{state=\"{s}\"}} ")))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no {s} count in:\n{text}"))
    };
    assert_eq!(state("choked") + state("unchoked"), 1, "{text}");
    g.interrupt();
    g.wait_exit(WAIT);
}

/// `peer get --http 0`: the getter says where its status and metrics are; once complete (and
/// still serving) `/api/status` shows every chunk held at 100 % and `/metrics` counts every
/// chunk verified, none refused, and the file's bytes received.
#[test]
fn a_peers_http_side_shows_its_progress_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share").join("m.bin");
    fs::create_dir_all(share.parent().unwrap()).unwrap();
    let size = 600_000;
    random_file(&share, size, 19);
    let (_owner, port) = start_owner(root, &share, &[]);
    let dir = root.join("g");
    let a = args![
        "get",
        port,
        "m.bin",
        "--bind",
        "127.0.0.1",
        "--http",
        0,
        "--dir",
        dir.display()
    ];
    let mut g = Proc::spawn("g", PEER, &a, &dir, root);
    let line = g.wait_line("status on http://");
    let base = line["status on http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        line.ends_with(&format!("metrics on http://{base}/metrics")),
        "{line}"
    );
    g.wait_line("complete: ");
    let chunks = chunk_count(size);
    let (status, body) = get(&base, "/api/status");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held"], chunks, "{body}");
    assert_eq!(body["total"], chunks, "{body}");
    assert_eq!(body["percent"], 100.0, "{body}");
    assert_eq!(body["refused"], 0, "{body}");
    let resp = http()
        .get(&format!("http://{base}/metrics"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.into_body().read_to_string().unwrap();
    for want in [
        format!("ringswarm_verified_chunks_total {chunks}"),
        format!("ringswarm_held_chunks {chunks}"),
        format!("ringswarm_received_bytes_total {size}"),
        "ringswarm_refused_chunks_total 0".to_string(),
        "ringswarm_sent_chunks_total{role=\"getter\"} 0".to_string(),
        // The classic text format (no Accept asked for OpenMetrics).
        "# TYPE ringswarm_verified_chunks_total counter".to_string(),
    ] {
        assert!(text.lines().any(|l| l == want), "{want} not in:\n{text}");
    }
    let (status, body) = get(&base, "/nope");
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("/api/status"),
        "{body}"
    );
    g.interrupt();
    g.wait_exit(WAIT);
}
