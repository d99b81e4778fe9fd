//! `--dht`: the BitTorrent mainline DHT on a private network of `peer dht-node`s on loopback
//! (never the public DHT: every node is given `--dht-bootstrap` on 127.0.0.1). Two publishers
//! announce a file; one of them and then the tracker are killed (SIGKILL); a `peer get` of
//! the tracker's ticket finds the living publisher through the DHT, skipping the dead one,
//! and completes byte-identical.

use std::path::Path;

use crate::args;
use crate::util::*;

/// Starts `peer dht-node 0` on loopback, joining `bootstrap` if given; it and its address.
fn dht_node(root: &Path, name: &str, bootstrap: Option<&str>) -> (Proc, String) {
    let mut args = args!["dht-node", 0, "--bind", "127.0.0.1"];
    if let Some(b) = bootstrap {
        args.extend(args!["--dht-bootstrap", b]);
    }
    let mut p = Proc::spawn(name, PEER, &args, &root.join(name), root);
    let line = p.wait_line("listening on ");
    let addr = line.split_whitespace().nth(2).unwrap().to_string();
    (p, addr)
}

/// Starts `peer share TRACKER FILE --dht --dht-bootstrap BOOT` in `root/NAME`.
fn spawn_dht_share(root: &Path, name: &str, tracker: u16, file: &Path, boot: &str) -> Proc {
    let args = args![
        "share",
        tracker,
        file.display(),
        "--bind",
        "127.0.0.1",
        "--dht",
        "--dht-bootstrap",
        boot
    ];
    Proc::spawn(name, PEER, &args, &root.join(name), root)
}

/// `peer share TRACKER FILE --dht` in `root/NAME`; it and its ticket, once it announced.
fn dht_share(root: &Path, name: &str, tracker: u16, file: &Path, boot: &str) -> (Proc, String) {
    let mut p = spawn_dht_share(root, name, tracker, file, boot);
    let ticket = p.wait_line("ticket: ")["ticket: ".len()..].to_string();
    assert!(p.wait_log("in the DHT (port "), "{}", p.describe());
    (p, ticket)
}

/// `peer get TICKET --dht` into `root/NAME`, to its end; the file must be `original`.
fn dht_get(root: &Path, name: &str, ticket: &str, boot: &str, original: &Path) -> Proc {
    dht_fetch("get", root, name, ticket, boot, original)
}

/// `peer CMD TICKET --dht` (get or join) into `root/NAME`, to its end; the file must be
/// `original`.
fn dht_fetch(
    cmd: &str,
    root: &Path,
    name: &str,
    ticket: &str,
    boot: &str,
    original: &Path,
) -> Proc {
    let dir = root.join(name);
    let args = args![
        cmd,
        ticket,
        "--dir",
        dir.display(),
        "--bind",
        "127.0.0.1",
        "--linger",
        0,
        "--dht",
        "--dht-bootstrap",
        boot
    ];
    let mut get = Proc::spawn(name, PEER, &args, root, root);
    assert!(get.wait_exit(WAIT).success(), "{}", get.describe());
    let name = original.file_name().unwrap();
    assert_eq!(
        std::fs::read(dir.join(name)).unwrap(),
        std::fs::read(original).unwrap()
    );
    get
}

/// Asserts that `p` printed `text` on stdout.
fn says(p: &Proc, text: &str) {
    let out = p.stdout_text();
    assert!(out.contains(text), "no {text:?} in:\n{out}");
}

#[test]
fn a_ticket_resolves_through_the_dht_when_its_tracker_is_killed() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (mut first, boot) = dht_node(root, "dht1", None);
    let mut others: Vec<Proc> = (2..=4)
        .map(|i| dht_node(root, &format!("dht{i}"), Some(&boot)).0)
        .collect();
    assert!(
        first.wait_log("nodes in the routing table"),
        "{}",
        first.describe()
    );
    let file = root.join("wanted.bin");
    random_file(&file, 600_000, 24);
    let (mut tracker, port) = {
        let args = args!["0", "--tracker", "--bind", "127.0.0.1"];
        let mut p = Proc::spawn("tracker", OWNER, &args, &root.join("tracker"), root);
        let port = p.listening_port();
        (p, port)
    };
    let (mut dead, _) = dht_share(root, "dead", port, &file, &boot);
    let (mut alive, ticket) = dht_share(root, "alive", port, &file, &boot);
    dead.kill();
    tracker.kill();

    let get = dht_get(root, "got", &ticket, &boot, &file);
    let out = get.stdout_text();
    assert!(
        out.contains(&format!("the directory 127.0.0.1:{port} did not answer")),
        "{out}"
    );
    // The living publisher, wherever the dead one was in the DHT's answers.
    let alive_port = alive.listening_port();
    let from_alive = format!("node(s): fetching from 127.0.0.1:{alive_port}\n");
    assert!(out.contains(&from_alive), "{out}");
    // A ring member finds it the same way; the publisher keeps a directory of its own, which
    // places it in a ring.
    let join = dht_fetch("join", root, "joined", &ticket, &boot, &file);
    let in_ring = format!(
        "node(s): fetching from 127.0.0.1:{alive_port} (its directory places this peer in a ring)\n"
    );
    says(&join, &in_ring);
    assert!(alive.wait_log("role=Joiner"), "{}", alive.describe());

    // The tracker, restarted on its port (with its key), is used again once the publisher
    // has published to it again.
    let mut held = Reserved::again(port);
    let args = args![held.release(), "--tracker", "--bind", "127.0.0.1"];
    let mut tracker = Proc::spawn("tracker2", OWNER, &args, &root.join("tracker"), root);
    tracker.listening_port();
    let republished = wait_until(WAIT, || {
        alive
            .stderr_text()
            .matches("published 1 file(s) at")
            .count()
            >= 2
    });
    assert!(republished, "{}", alive.describe());
    let get = dht_get(root, "again", &ticket, &boot, &file);
    assert!(
        !get.stdout_text().contains("DHT named"),
        "{}",
        get.stdout_text()
    );
    alive.kill();
    for p in &mut others {
        p.kill();
    }
}

/// A bootstrap node that does not answer: the publisher says so in one line and keeps
/// trying, with the backoff.
#[test]
fn an_unreachable_bootstrap_is_said_and_tried_again() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let file = root.join("f.bin");
    random_file(&file, 10_000, 5);
    let (_socket, dead) = dead_port();
    let (mut tracker, port) = {
        let args = args!["0", "--tracker", "--bind", "127.0.0.1"];
        let mut p = Proc::spawn("tracker", OWNER, &args, &root.join("tracker"), root);
        let port = p.listening_port();
        (p, port)
    };
    let boot = format!("127.0.0.1:{dead}");
    let mut share = spawn_dht_share(root, "share", port, &file, &boot);
    let said = "in the DHT failed";
    let twice = wait_until(WAIT, || share.stderr_text().matches(said).count() >= 2);
    assert!(twice, "{}", share.describe());
    let line = share
        .stderr_text()
        .lines()
        .find(|l| l.contains(said))
        .unwrap()
        .to_string();
    assert!(
        line.contains("is a bootstrap node reachable? trying again in"),
        "{line}"
    );
    share.kill();
    tracker.kill();
}

/// `--dht` on a get needs a ticket (exit 2); `--dht-bootstrap` needs `--dht`.
#[test]
fn dht_options_are_checked() {
    let root = tempfile::tempdir().unwrap();
    for bad in [
        args!["get", 9, "x.bin", "--dht", "--dht-bootstrap", "127.0.0.1:9"],
        args!["get", 9, "x.bin", "--dht-bootstrap", "127.0.0.1:9"],
    ] {
        let mut p = Proc::spawn("bad", PEER, &bad, root.path(), root.path());
        assert_eq!(p.wait_exit(WAIT).code(), Some(2), "{}", p.describe());
    }
}

/// `file-owner --dht` announces its files: a ticket whose directory is gone (here: a ticket
/// naming a port nobody listens on, with the owner's hash) resolves to the owner.
#[test]
fn an_owner_announces_its_files() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (_first, boot) = dht_node(root, "dht1", None);
    let (_second, _) = dht_node(root, "dht2", Some(&boot));
    let file = root.join("owned.bin");
    random_file(&file, 300_000, 8);
    let extra = args!["--dht", "--dht-bootstrap", boot];
    let (mut owner, port) = start_owner(root, &file, &extra);
    assert!(owner.wait_log("in the DHT (port "), "{}", owner.describe());
    let ticket = owner.wait_line("ticket: ")["ticket: ".len()..].to_string();
    let (_socket, dead) = dead_port();
    // The same file, named by a directory that is gone (and pinning no key).
    let moved = ticket.replacen(&format!(":{port}/"), &format!(":{dead}/"), 1);
    let moved = moved.split("&node=").next().unwrap().to_string();
    let get = dht_get(root, "got", &moved, &boot, &file);
    let from_owner = format!("node(s): fetching from 127.0.0.1:{port}\n");
    says(&get, &from_owner);
}

/// A getter that completes with `--dht` announces itself. With the tracker killed, a second
/// getter completes byte-identical from both the publisher and that complete getter, found
/// through the DHT (both capped at 256 KiB/s: one alone would take 4.7 s, and the second
/// source comes from the DHT's first answers, in about 0.1 s); with the publisher killed too, a
/// third completes from the first getter alone.
#[test]
fn a_complete_getter_found_in_the_dht_serves_beside_and_after_the_publisher() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (_first, boot) = dht_node(root, "dht1", None);
    let (_second, _) = dht_node(root, "dht2", Some(&boot));
    let file = root.join("passed-on.bin");
    random_file(&file, 1_200_000, 31);
    let (mut tracker, port) = {
        let args = args!["0", "--tracker", "--bind", "127.0.0.1"];
        let mut p = Proc::spawn("tracker", OWNER, &args, &root.join("tracker"), root);
        let port = p.listening_port();
        (p, port)
    };
    let (mut publisher, ticket) = {
        let args = args![
            "share",
            port,
            file.display(),
            "--bind",
            "127.0.0.1",
            "--upload-limit",
            "256KiB",
            "--dht",
            "--dht-bootstrap",
            boot
        ];
        let mut p = Proc::spawn("publisher", PEER, &args, &root.join("publisher"), root);
        let ticket = p.wait_line("ticket: ")["ticket: ".len()..].to_string();
        assert!(p.wait_log("in the DHT (port "), "{}", p.describe());
        (p, ticket)
    };
    let publisher_port = publisher.listening_port();
    let dir = root.join("first");
    let args = args![
        "get",
        ticket,
        "--dir",
        dir.display(),
        "--bind",
        "127.0.0.1",
        "--upload-limit",
        "256KiB",
        "--dht",
        "--dht-bootstrap",
        boot
    ];
    let mut first = Proc::spawn("first", PEER, &args, root, root);
    first.wait_line("complete: ");
    assert!(first.wait_log("in the DHT (port "), "{}", first.describe());
    let first_port = first.listening_port();
    tracker.kill();

    // From both: the events say which source each chunk came from.
    let events = root.join("second.jsonl");
    let dir = root.join("second");
    let args = args![
        "get",
        ticket,
        "--dir",
        dir.display(),
        "--bind",
        "127.0.0.1",
        "--linger",
        0,
        "--events",
        events.display(),
        "--dht",
        "--dht-bootstrap",
        boot
    ];
    let mut second = Proc::spawn("second", PEER, &args, root, root);
    assert!(second.wait_exit(WAIT).success(), "{}", second.describe());
    assert_eq!(
        std::fs::read(dir.join("passed-on.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    let log = std::fs::read_to_string(&events).unwrap();
    let from = |port: u16| {
        log.lines()
            .filter(|l| l.contains("\"chunk_received\"") && l.contains(&format!(":{port}\"")))
            .count()
    };
    let (a, b) = (from(publisher_port), from(first_port));
    assert!(
        a > 0 && b > 0,
        "chunks from the publisher: {a}, from the first getter: {b}\n{}",
        second.describe()
    );

    // The publisher gone too: the first getter alone. A joiner fetches from it as a getter:
    // a plain peer keeps no directory to form a ring.
    publisher.kill();
    let third = dht_fetch("join", root, "third", &ticket, &boot, &file);
    let from_first = format!(
        "node(s): fetching from 127.0.0.1:{first_port} as a getter (it keeps no directory to form a ring)\n"
    );
    says(&third, &from_first);
    first.kill();
}
