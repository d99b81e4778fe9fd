//! Node keys and pinned tickets with the real binaries: the owner says its id and keeps it,
//! its tickets pin it, a ticket pinning another key is refused, a bad key file is an error
//! that leaves the file alone, and a plaintext (version 1) client is told what it needs.

use std::io::{Read, Write};

use crate::args;
use crate::util::*;

/// A temporary folder holding `data.bin` of `size` random bytes.
fn data(size: usize, seed: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("data.bin");
    random_file(&original, size, seed);
    (tmp, original)
}

/// Runs `bin args` in `dir` until it exits; checks its exit code and that stderr holds
/// `needle`; returns stderr.
fn expect_exit(
    bin: &str,
    args: &[String],
    dir: &std::path::Path,
    code: i32,
    needle: &str,
) -> String {
    let mut p = Proc::spawn("cmd", bin, args, dir, dir);
    assert_eq!(p.wait_exit(WAIT).code(), Some(code), "{}", p.describe());
    let err = p.stderr_text();
    assert!(err.contains(needle), "{needle}: {}", p.describe());
    err
}

/// The id after `node id: ` in `line`.
fn id_of(line: &str) -> String {
    line["node id: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_owner_keeps_its_key_and_its_tickets_pin_it() {
    let (tmp, original) = data(300_000, 31);
    let root = tmp.path();
    let (mut owner, port) = start_owner(root, &original, &[]);
    let first = owner.wait_line("node id: ");
    assert!(first.contains("a new key, kept in"), "{first}");
    let id = id_of(&first);
    assert!(id.starts_with("rsw1") && id.len() == 56, "{id}");
    let ticket = owner.wait_line("ticket: ")["ticket: ".len()..].to_string();
    assert!(ticket.ends_with(&format!("&node={id}")), "{ticket}");
    let key = root.join("config/ringswarm/node.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // The pinned ticket works.
    let dir = root.join("g");
    let args = args![
        "get",
        ticket,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display(),
        "--linger",
        0
    ];
    expect_exit(PEER, &args, &dir, 0, "verified");
    assert!(std::fs::read(dir.join("data.bin")).unwrap() == std::fs::read(&original).unwrap());
    let peer_key = dir.join(".node.key");
    assert!(peer_key.exists(), "the getter keeps its key in its folder");

    // `peer list --json` shows the key the directory proved.
    let (q, _t) = run_to_exit("list", PEER, &args!["list", port, "--json"]);
    let listing: serde_json::Value = serde_json::from_str(&q.stdout_text()).unwrap();
    assert_eq!(listing["node"], id.as_str(), "{}", q.describe());

    // Restarted, the owner is the same node.
    owner.kill();
    let (mut again, _) = start_owner(root, &original, &[]);
    let line = again.wait_line("node id: ");
    assert_eq!(id_of(&line), id, "{line}");
    assert!(!line.contains("new key"), "{line}");
}

#[test]
fn a_ticket_pinning_another_key_is_refused() {
    let (tmp, original) = data(300_000, 32);
    let root = tmp.path();
    let (mut owner, _) = start_owner(root, &original, &[]);
    let ticket = owner.wait_line("ticket: ")["ticket: ".len()..].to_string();
    let other = ringswarm::key::NodeKey::generate().id().to_string();
    let (head, _) = ticket.rsplit_once("&node=").unwrap();
    let forged = format!("{head}&node={other}");
    let dir = root.join("g");
    let args = args![
        "get",
        forged,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display(),
        "--timeout",
        5
    ];
    let err = expect_exit(PEER, &args, &dir, 1, "proved node key");
    assert!(err.contains(&other), "{err}");
    assert!(!dir.join("data.bin").exists() && !dir.join("data.bin.manifest").exists());
    // A ticket that is not an id at all is a usage error.
    let bad = format!("{head}&node=rsw1nothing");
    expect_exit(
        PEER,
        &args!["get", bad, "--dir", dir.display()],
        &dir,
        2,
        "invalid node id",
    );
}

#[test]
fn a_bad_key_file_is_an_error_that_leaves_it_alone() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, original) = data(10_000, 33);
    let root = tmp.path();
    let key = root.join("config/ringswarm/node.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    for (content, mode, says) in [
        (&b""[..], 0o600, "it is empty"),
        (&b"\x00\xffgarbage"[..], 0o600, "is not a node key"),
        (
            &b"ringswarm node key v1\n0000\n"[..],
            0o600,
            "64 hex digits",
        ),
        (
            &b"ringswarm node key v1\n"[..],
            0o644,
            "readable by others (mode 0644)",
        ),
    ] {
        std::fs::write(&key, content).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let args = args![0, original.display(), "--bind", "127.0.0.1"];
        let err = expect_exit(OWNER, &args, root, 1, says);
        assert!(err.contains("node.key"), "{err}");
        let kept = std::fs::read(&key).unwrap();
        assert_eq!(kept, content, "the key file was replaced");
    }
    // A peer's --key too.
    let dir = root.join("p");
    let args = args![
        "get",
        1,
        "x",
        "--key",
        key.display(),
        "--dir",
        dir.display()
    ];
    expect_exit(PEER, &args, root, 1, "readable by others");
}

/// A version-1 node speaks plaintext frames; it gets one plaintext `error` frame naming the
/// version it needs, then the close — not a hang.
#[test]
fn a_plaintext_node_is_told_the_version_it_needs() {
    let (tmp, original) = data(10_000, 34);
    let root = tmp.path();
    let (_owner, port) = start_owner(root, &original, &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&json_frame(
        serde_json::json!({"type": "hello", "version": 1, "role": "getter"}),
    ))
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("\"error\"") && text.contains("speaks ringswarm protocol 2"),
        "{text}"
    );
}
