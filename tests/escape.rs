//! Names, tickets and addresses chosen by someone else never reach a terminal raw (issue 19,
//! items 3 and 4): every log line of a tracker, a publisher, a ring and a getter shows a
//! hostile file name escaped, the file is stored under its `%XX` form, and a long ticket with
//! escape sequences gives a short, escaped error.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::args;
use crate::util::{OWNER, PEER, Proc, Ring, WAIT, random_file, start_owner, start_peers};

/// A name with a window-title OSC sequence (ESC … BEL), a clear-screen CSI, a carriage
/// return and a newline that would start a fake log line, and right-to-left overrides.
const NAME: &str = "ev\x1b]0;pwned\x07\x1b[2Jil\r\nINFO complete: fake\u{202e}gpj\u{2066}.exe";
/// Its stored form (README, "Names on disk").
const SAFE: &str = "ev%1B]0;pwned%07%1B[2Jil%0D%0AINFO complete: fake%E2%80%AEgpj%E2%81%A6.exe";

/// The first character of `text` a terminal would act on or reorder: a control character
/// (C0 but the line's own `\n`, DEL, C1) or a bidirectional control.
fn first_raw_control(text: &str) -> Option<(usize, char)> {
    text.char_indices().find(|&(_, c)| {
        c != '\n'
            && (c.is_control()
                || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    })
}

/// Fails, naming the file and line, if any line of `root/*.out` or `root/*.err` carries a raw
/// control or bidirectional character; returns how many lines were read.
fn assert_no_raw_controls(root: &Path) -> usize {
    let mut lines = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("out" | "err")
        ) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()));
        for (n, line) in text.lines().enumerate() {
            lines += 1;
            if let Some((at, c)) = first_raw_control(line) {
                panic!(
                    "{} line {}: raw {c:?} at byte {at}: {line:?}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
    lines
}

/// Fails if any file or folder under `dir` has a control or bidirectional character in its
/// name.
fn assert_safe_names_under(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            first_raw_control(&name).is_none(),
            "{}: stored under a raw name {name:?}",
            dir.display()
        );
        if entry.file_type().unwrap().is_dir() {
            assert_safe_names_under(&entry.path());
        }
    }
}

/// Waits for `p` to print its `complete:` line, and checks it names the safe form.
fn assert_completes_safely(p: &mut Proc) {
    let line = p.wait_line("complete: ");
    assert!(line.contains(SAFE), "{line:?}\n{}", p.describe());
}

/// Checks `dir/SAFE` against `original`.
fn assert_stored(dir: &Path, original: &Path, who: &Proc) {
    let got = std::fs::read(dir.join(SAFE))
        .unwrap_or_else(|e| panic!("no {SAFE:?} in {} ({e})\n{}", dir.display(), who.describe()));
    assert!(
        got == std::fs::read(original).unwrap(),
        "{} differs\n{}",
        dir.display(),
        who.describe()
    );
    assert_safe_names_under(dir);
}

/// A publisher shares a file with a hostile name through a tracker; two peers join its ring
/// (one by id, one by ticket) and a getter fetches it by ticket. Then a file owner shares the
/// same file with a ring of two plain `peer OWNER PORT NEIGHBOUR` members. Every line any of
/// them prints, on stdout and stderr, start to shutdown, shows the name escaped, and every
/// copy is stored byte-identical under the `%XX` form.
#[test]
fn a_hostile_file_name_is_escaped_in_every_log_line_and_stored_safely() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let original = share.join(NAME);
    random_file(&original, 300_000, 19);

    let args = args!["0", "--tracker", "--bind", "127.0.0.1"];
    let mut tracker = Proc::spawn("tracker", OWNER, &args, &root.join("tracker"), root);
    let port = tracker.listening_port();
    let args = args!["share", port, original.display(), "--bind", "127.0.0.1"];
    let mut publisher = Proc::spawn("publisher", PEER, &args, &root.join("publisher"), root);
    let ticket = publisher.wait_line("ticket: ")["ticket: ".len()..].to_string();

    let in_dir = |name: &str| -> (PathBuf, Vec<String>) {
        let dir = root.join(name);
        (
            dir.clone(),
            args!["--bind", "127.0.0.1", "--dir", dir.display()],
        )
    };
    let (dir_a, extra) = in_dir("joiner-a");
    let mut a = Proc::spawn(
        "joiner-a",
        PEER,
        &[args!["join", port, "1"], extra].concat(),
        &dir_a,
        root,
    );
    let (dir_b, extra) = in_dir("joiner-b");
    let mut b = Proc::spawn(
        "joiner-b",
        PEER,
        &[args!["join", &ticket], extra].concat(),
        &dir_b,
        root,
    );
    let (dir_g, extra) = in_dir("getter");
    let mut getter = Proc::spawn(
        "getter",
        PEER,
        &[args!["get", &ticket], extra].concat(),
        &dir_g,
        root,
    );
    for p in [&mut a, &mut b, &mut getter] {
        assert_completes_safely(p);
    }
    for (p, dir) in [(&mut a, &dir_a), (&mut b, &dir_b)] {
        assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
        assert_stored(dir, &original, p);
    }
    getter.interrupt();
    assert_eq!(
        getter.wait_exit(WAIT).code(),
        Some(130),
        "{}",
        getter.describe()
    );
    assert_stored(&dir_g, &original, &getter);

    // The publisher leaves: the tracker says the file has no publisher left, naming it.
    publisher.interrupt();
    assert_eq!(
        publisher.wait_exit(WAIT).code(),
        Some(130),
        "{}",
        publisher.describe()
    );
    assert!(tracker.wait_log("has left"), "{}", tracker.describe());
    tracker.interrupt();
    assert_eq!(
        tracker.wait_exit(WAIT).code(),
        Some(130),
        "{}",
        tracker.describe()
    );

    // A file owner of its own, and a ring of plain peers.
    let (mut owner, owner_port) = start_owner(root, &original, &[]);
    let mut ring = start_peers(root, owner_port, &Ring::new(2));
    for p in &mut ring {
        assert_completes_safely(&mut p.proc);
        assert!(p.proc.wait_exit(WAIT).success(), "{}", p.proc.describe());
        assert_stored(&p.dir, &original, &p.proc);
    }
    owner.interrupt();
    assert_eq!(
        owner.wait_exit(WAIT).code(),
        Some(130),
        "{}",
        owner.describe()
    );

    // The lines that carry the name were printed, escaped; then no line anywhere is raw.
    let tracker_log = tracker.stderr_text();
    let shown = "ev\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jil\\u{d}\\u{a}INFO complete: fake\\u{202e}gpj\\u{2066}.exe";
    assert!(
        tracker_log.contains(&format!("file={shown}")),
        "the tracker's 'peer joined' line names the file escaped\n{}",
        tracker.describe()
    );
    assert!(
        owner.stderr_text().contains(&format!("file={shown}")),
        "{}",
        owner.describe()
    );
    let lines = assert_no_raw_controls(root);
    assert!(lines > 100, "only {lines} lines: were the logs written?");
}

/// A pasted ticket of 130 kB carrying a window-title sequence and a clear-screen gives a
/// short error that shows them escaped, on a terminal too (clap writes raw escape sequences
/// there, which `CLICOLOR_FORCE` stands in for), and exits 2 as before; so does an owner
/// address that is no address.
#[test]
fn a_long_hostile_ticket_gives_a_short_escaped_error() {
    let attack = "\x1b]0;pwned\x07\x1b[2J\x1b[3J";
    let ticket = format!("ringswarm://{attack}{}", "a".repeat(130_000));
    let hash = "ab".repeat(32);
    let bad_hash = format!("ringswarm://h:1/{attack}{}?name=x&size=1", "f".repeat(3000));
    let address = format!("{attack}{}:1", "h".repeat(130_000));
    let tmp = tempfile::tempdir().unwrap();
    for (args, echoed) in [
        (
            args!["get", ticket],
            "ringswarm://\\u{1b}]0;pwned\\u{7}\\u{1b}[2J",
        ),
        (
            args!["join", ticket],
            "ringswarm://\\u{1b}]0;pwned\\u{7}\\u{1b}[2J",
        ),
        (args!["get", bad_hash], "\"\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
        (
            args![
                "get",
                format!("ringswarm://h:1/{hash}?name=x&size={attack}")
            ],
            "size \"\\u{1b}]0;",
        ),
        (args!["list", address], "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
    ] {
        for terminal in [false, true] {
            let mut cmd = Command::new(PEER);
            cmd.args(&args).current_dir(tmp.path());
            if terminal {
                cmd.env("CLICOLOR_FORCE", "1");
            } else {
                cmd.env_remove("CLICOLOR_FORCE");
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let what = format!("peer {} (terminal: {terminal})", args[0]);
            assert_eq!(out.status.code(), Some(2), "{what}: {err}");
            assert!(
                out.stderr.len() < 1000,
                "{what}: {} bytes of error",
                out.stderr.len()
            );
            assert!(err.contains(echoed), "{what}: {err}");
            // clap colours a terminal's error itself (SGR: ESC [ … m); nothing else escapes.
            for raw in ["\x1b]", "\x07", "\x1b[2J", "\x1b[3J"] {
                assert!(!err.contains(raw), "{what}: raw {raw:?} in {err:?}");
            }
            assert!(out.stdout.is_empty(), "{what}");
        }
    }
}
