//! Shared-secret swarms: who knows the secret is served, who does not gets nothing, and the
//! secret never crosses the wire.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

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
    assert!(err.contains("this swarm needs the shared secret"), "{err}");
    let err = refused_getter(root, "wrong", port, &args!["--secret", "incorrect horse"]);
    assert!(err.contains("holds a different shared secret"), "{err}");
    // The owner logged both, with the client's address.
    assert!(
        wait_until(WAIT, || {
            let log = owner.stderr_text();
            log.contains("did not offer the shared secret") && log.contains("wrong shared secret")
        }),
        "{}",
        owner.describe()
    );
    // Directory queries need it too.
    let (q, _tmp) = run_to_exit("list", PEER, &args!["list", port]);
    assert!(
        q.stderr_text().contains("needs the shared secret"),
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
    assert!(
        err.contains("asked for no proof of the shared secret"),
        "{err}"
    );
}

#[test]
fn the_secret_never_crosses_the_wire() {
    // What a client with the secret sends: recorded by a fake owner that answers with a
    // bogus challenge.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    let mut g = Proc::spawn(
        "g",
        PEER,
        &get_args(
            port,
            "data.bin",
            &dir,
            &args!["--timeout", 5, "--secret", SECRET],
        ),
        &dir,
        tmp.path(),
    );
    let (mut sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).unwrap();
    let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
    sock.read_exact(&mut hello).unwrap();
    let text = String::from_utf8_lossy(&hello).into_owned();
    assert!(text.contains("\"nonce\""), "{text}");
    assert!(!text.contains(SECRET), "the secret is in the hello: {text}");
    let bogus = serde_json::json!({"type": "challenge", "nonce": "00".repeat(32), "proof": "11".repeat(32)});
    sock.write_all(&json_frame(bogus)).unwrap();
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains(SECRET));
    assert_eq!(g.wait_exit(WAIT).code(), Some(1), "{}", g.describe());
    assert!(
        g.stderr_text().contains("holds a different shared secret"),
        "{}",
        g.describe()
    );

    // What an owner with the secret sends back to a client: a nonce and a proof, no secret.
    let original = tmp.path().join("data.bin");
    random_file(&original, 100_000, 9);
    let (_owner, port) = start_owner(tmp.path(), &original, &args!["--secret", SECRET]);
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let hello = serde_json::json!({"type": "hello", "version": 1, "role": "getter", "nonce": "ab".repeat(32)});
    sock.write_all(&json_frame(hello)).unwrap();
    sock.write_all(&json_frame(
        serde_json::json!({"type": "proof", "proof": "cd".repeat(32)}),
    ))
    .unwrap();
    let mut all = Vec::new();
    let _ = sock.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all).into_owned();
    assert!(text.contains("\"challenge\""), "{text}");
    assert!(text.contains("wrong shared secret"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        !text.contains("welcome"),
        "a wrong proof got a welcome: {text}"
    );
}
