//! Writes the committed seed inputs of both fuzz targets to `fuzz/seeds/<target>/`:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```
//!
//! `frame_decoder`: one valid frame of every message type (encoded by `MessageCodec`), a
//! stream of several fed in pieces, and malformed frames, one per decoding error.
//! `manifest_parser`: manifests of small files from `Manifest::from_file`, and invalid ones
//! (unsafe names, inconsistent chunk counts, bad sizes and hashes, broken JSON).
//! Each file is written whole, so running it again only rewrites the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use ringswarm::chunkset::Ranges;
use ringswarm::manifest::{DEFAULT_CHUNK_SIZE, Manifest};
use ringswarm::protocol::{Message, MessageCodec, PROTOCOL_VERSION, Role};
use serde_json::{Value, json};
use tokio_util::codec::Encoder;

fn main() -> std::io::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let manifests = manifest_seeds()?;
    write_all(&seeds.join("manifest_parser"), &manifests)?;
    let welcome_body = manifests[1].1.clone();
    write_all(&seeds.join("frame_decoder"), &frame_seeds(welcome_body))?;
    Ok(())
}

fn write_all(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes)?;
    }
    println!("{}: {} seeds", dir.display(), files.len());
    Ok(())
}

/// The frame of `msg` as the codec writes it.
fn frame(msg: Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    MessageCodec::new(usize::MAX / 2)
        .encode(msg, &mut buf)
        .expect("encodes");
    buf.to_vec()
}

/// A frame built by hand: frame length, header length, header, body.
fn raw(frame_len: u32, header_len: u32, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u32(frame_len);
    buf.put_u32(header_len);
    buf.put_slice(header);
    buf.put_slice(body);
    buf.to_vec()
}

/// A well-formed frame around any header and body.
fn framed(header: &[u8], body: &[u8]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).expect("small");
    raw(
        len(4 + header.len() + body.len()),
        len(header.len()),
        header,
        body,
    )
}

/// A seed fed whole: no piece lengths (byte 0 is 0), then the stream.
fn whole(stream: &[u8]) -> Vec<u8> {
    let mut seed = vec![0];
    seed.extend_from_slice(stream);
    seed
}

/// A seed fed in pieces of the given lengths, in turn.
fn in_pieces(pieces: &[u8], stream: &[u8]) -> Vec<u8> {
    assert!(pieces.len() < 8);
    let mut seed = vec![u8::try_from(pieces.len()).expect("< 8")];
    seed.extend_from_slice(pieces);
    seed.extend_from_slice(stream);
    seed
}

fn frame_seeds(manifest: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Neighbour,
        file: Some("data.bin".into()),
        have: Ranges(vec![[0, 2], [7, 7]]),
        port: Some(5001),
        nonce: Some("ab".repeat(32)),
        node: Some("0123456789abcdef".into()),
    };
    let bare_hello = Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Getter,
        file: None,
        have: Ranges::default(),
        port: None,
        nonce: None,
        node: None,
    };
    let mut welcome = Message::welcome(Ranges(vec![[1, 2], [4, 4]]), Bytes::from(manifest));
    if let Message::Welcome { heartbeat_ms, .. } = &mut welcome {
        *heartbeat_ms = Some(10_000);
    }
    let valid = vec![
        ("hello", hello.clone()),
        ("hello-bare", bare_hello),
        (
            "challenge",
            Message::Challenge {
                nonce: "cd".repeat(32),
                proof: "ef".repeat(32),
            },
        ),
        (
            "proof",
            Message::Proof {
                proof: "01".repeat(32),
            },
        ),
        ("welcome", welcome),
        (
            "have",
            Message::Have {
                chunks: Ranges(vec![[0, 9], [12, 12], [20, 30]]),
            },
        ),
        (
            "orphans",
            Message::Orphans {
                chunks: Ranges(vec![[3, 3], [5, 10]]),
            },
        ),
        ("request", Message::request(7)),
        (
            "request-spare",
            Message::Request {
                chunk: 4_294_967_295,
                spare: true,
            },
        ),
        (
            "chunk",
            Message::chunk(7, Bytes::from_static(b"0123456789abcdef")),
        ),
        ("chunk-empty", Message::chunk(0, Bytes::new())),
        (
            "chunk-over-small",
            Message::chunk(1, Bytes::from(vec![0xa5; 100])),
        ),
        ("list", Message::List),
        (
            "search",
            Message::Search {
                text: "ünï \"q\" \\ ☃".into(),
            },
        ),
        ("locate", Message::Locate { file: "42".into() }),
        (
            "files",
            Message::files(Bytes::from_static(b"{\"files\":[]}")),
        ),
        (
            "locations",
            Message::locations(Bytes::from_static(b"{\"file\":{},\"sources\":[]}")),
        ),
        (
            "source-lost",
            Message::SourceLost {
                addr: "127.0.0.1:5002".into(),
            },
        ),
        ("choke", Message::Choke),
        ("unchoke", Message::Unchoke),
        ("interested", Message::Interested),
        ("not-interested", Message::NotInterested),
        ("cancel", Message::Cancel { chunk: 3 }),
        (
            "error",
            Message::Error {
                message: "chunk 99 is out of range: the file has 11 chunks".into(),
            },
        ),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = valid
        .iter()
        .map(|(name, msg)| (format!("ok-{name}"), whole(&frame(msg.clone()))))
        .collect();

    // A conversation's worth of frames, fed in odd pieces and one byte at a time.
    let stream: Vec<u8> = [
        hello,
        Message::Have {
            chunks: Ranges(vec![[0, 4]]),
        },
        Message::request(3),
        Message::chunk(3, Bytes::from_static(b"xyz")),
        Message::Choke,
    ]
    .into_iter()
    .flat_map(frame)
    .collect();
    seeds.push((
        "ok-stream-pieces".into(),
        in_pieces(&[1, 7, 3, 50], &stream),
    ));
    seeds.push(("ok-stream-bytewise".into(), in_pieces(&[1], &stream)));
    // The input that found the codec checking a length past the prefix: a 2-byte frame whose
    // next bytes arrive in a second piece (must fail as too short, as when read whole).
    seeds.push((
        "bad-split-after-prefix".into(),
        in_pieces(&[4], &[0, 0, 0, 2, 0x66, 0x25, 0x6e, 0]),
    ));

    let request = frame(Message::request(1));
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("frame-too-large", vec![0xff, 0xff, 0xff, 0xff]),
        ("frame-too-short", vec![0, 0, 0, 2, 0, 0]),
        ("frame-empty", vec![0, 0, 0, 0]),
        ("header-past-frame", raw(8, 100, &[0, 0, 0, 0], b"")),
        (
            "header-too-large",
            raw(8, 256 * 1024 + 1, &[0, 0, 0, 0], b""),
        ),
        ("not-json", framed(b"not json", b"")),
        (
            "not-utf8",
            framed(b"{\"type\":\"error\",\"message\":\"\xff\"}", b""),
        ),
        ("unknown-type", framed(br#"{"type":"gossip"}"#, b"")),
        ("no-type", framed(br#"{"chunk":1}"#, b"")),
        (
            "wrong-field-type",
            framed(br#"{"type":"request","chunk":"7"}"#, b""),
        ),
        (
            "negative-chunk",
            framed(br#"{"type":"cancel","chunk":-1}"#, b""),
        ),
        (
            "chunk-len-mismatch",
            framed(br#"{"type":"chunk","chunk":1,"len":10}"#, b"short"),
        ),
        (
            "welcome-len-mismatch",
            framed(br#"{"type":"welcome","assigned":[],"len":1}"#, b""),
        ),
        (
            "request-with-body",
            framed(br#"{"type":"request","chunk":1}"#, b"extra"),
        ),
        (
            "unknown-fields",
            framed(
                br#"{"type":"have","chunks":[[5,3]],"extra":{"a":[1]}}"#,
                b"",
            ),
        ),
        ("truncated", request[..request.len() - 3].to_vec()),
        ("truncated-prefix", request[..2].to_vec()),
        (
            "good-then-garbage",
            [request.clone(), b"\x00\x00\x01garbage".to_vec()].concat(),
        ),
    ];
    seeds.extend(
        bad.into_iter()
            .map(|(name, stream)| (format!("bad-{name}"), whole(&stream))),
    );
    seeds
}

fn manifest_seeds() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let dir = std::env::temp_dir().join(format!("ringswarm-seeds-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let mut seeds = Vec::new();
    // (file name, size, seed name): seed names stay ASCII.
    let files: [(&str, usize, &str); 5] = [
        ("empty", 0, "empty"),
        ("data.bin", 1000, "data.bin"),
        ("tiny.txt", 3, "tiny.txt"),
        ("seven bytes", 7, "seven-bytes"),
        ("ünïcode ☃.bin", 12_345, "unicode-name"),
    ];
    for (name, size, seed) in files {
        let path: PathBuf = dir.join(name);
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, &data)?;
        let m = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).expect("a manifest");
        seeds.push((format!("ok-{seed}"), serde_json::to_vec(&m)?));
    }
    // A nominal chunk size of 64 bytes: 16 chunks of 64 and a last one of 40.
    let m = Manifest::from_file(&dir.join("data.bin"), 64).expect("a manifest");
    seeds.push(("ok-chunk-size-64".into(), serde_json::to_vec_pretty(&m)?));
    fs::remove_dir_all(&dir)?;

    let base: Value = serde_json::from_slice(&seeds[1].1)?;
    let with = |field: &str, value: Value| {
        let mut v = base.clone();
        v[field] = value;
        serde_json::to_vec(&v).expect("serializes")
    };
    let mut hashes = base["chunks"].as_array().expect("chunks").clone();
    let upper = with(
        "hash",
        Value::String(base["hash"].as_str().expect("hash").to_uppercase()),
    );
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("name-dotdot-x", with("name", json!("../x"))),
        ("name-absolute", with("name", json!("/etc/passwd"))),
        ("name-separator", with("name", json!("a/b"))),
        ("name-backslash", with("name", json!("a\\b"))),
        ("name-nul", with("name", json!("a\u{0}b"))),
        ("name-dot", with("name", json!("."))),
        ("name-dotdot", with("name", json!(".."))),
        ("name-empty", with("name", json!(""))),
        ("name-too-long", with("name", json!("n".repeat(256)))),
        ("chunk-size-zero", with("chunk_size", json!(0))),
        (
            "chunk-size-too-large",
            with("chunk_size", json!(16 * 1024 * 1024 + 1)),
        ),
        ("size-max", with("size", json!(u64::MAX))),
        ("size-negative", with("size", json!(-1))),
        ("hash-not-hex", with("hash", json!("xyz"))),
        ("too-few-chunks", {
            hashes.pop();
            with("chunks", json!(hashes))
        }),
        ("missing-field", {
            let mut v = base.clone();
            v.as_object_mut().expect("object").remove("size");
            serde_json::to_vec(&v)?
        }),
        ("truncated", seeds[1].1[..seeds[1].1.len() / 2].to_vec()),
        ("not-an-object", b"[1,2,3]".to_vec()),
    ];
    seeds.push(("ok-uppercase-hash".into(), upper));
    seeds.extend(
        bad.into_iter()
            .map(|(name, json)| (format!("bad-{name}"), json)),
    );
    Ok(seeds)
}
