//! `peer app`: two apps and a tracker, real binaries, each app's page open in its own headless
//! Chromium (driven over the DevTools protocol), clicked and typed into like a person would.
//! App A shares a folder; B's list shows its files; B filters, downloads, cancels and resumes,
//! pastes a ticket; a hostile name shows as text; A unshares and B's list drops the files; a
//! page of another origin cannot make B share anything; a bad share path and a directory
//! that is down are said in words. Screenshots of each step go to `target/tmp/app/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::args;
use crate::util::browser::Browser;
use crate::util::*;

/// A name a web page must never run: shown as text, it is harmless.
const HOSTILE: &str = "<img src=x onerror=window.pwned=1>.bin";

/// One app: its process, its address (`http://127.0.0.1:PORT`) and its token.
struct App {
    proc: Proc,
    base: String,
    token: String,
}

/// Starts `peer app TRACKER` in `root/NAME` with `extra` options.
fn start_app(root: &Path, name: &str, tracker: u16, extra: &[String]) -> App {
    let dir = root.join(name);
    let mut args = args![
        "app",
        tracker,
        "--http",
        0,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display(),
        "--no-sync"
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(name, PEER, &args, &dir, root);
    let line = proc.wait_line("open http://");
    let url = line.split_whitespace().nth(1).unwrap().to_string();
    let (base, token) = url.split_once("/?token=").unwrap();
    App {
        proc,
        base: base.to_string(),
        token: token.to_string(),
    }
}

/// Where screenshot `name` goes: `target/tmp/app/NAME.png`.
fn shot(page: &mut Browser, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("app");
    std::fs::create_dir_all(&dir).unwrap();
    page.screenshot(&dir.join(format!("{name}.png"))).unwrap();
}

/// Waits until the expression `js` is true in `page`.
fn until(page: &mut Browser, what: &str, js: &str) {
    let mut last = Err(String::new());
    let ok = wait_until(WAIT, || {
        last = page.eval(js);
        last.as_ref().is_ok_and(|v| v == true)
    });
    let text = page.eval("document.body.innerText").unwrap_or_default();
    assert!(ok, "{what}: {last:?}; the page shows:\n{text}");
}

/// Types `text` into the input `#id` as a person would: focus it, select what is there,
/// type over it.
fn type_into(page: &mut Browser, id: &str, text: &str) {
    let focus =
        format!("(e => {{ e.focus(); e.select(); return true }})(document.getElementById({id:?}))");
    assert_eq!(page.eval(&focus).unwrap(), true);
    page.call("Input.insertText", json!({ "text": text }))
        .unwrap();
}

/// Clicks the element `js` finds.
fn click(page: &mut Browser, js: &str) {
    let clicked = page.eval(&format!(
        "(e => {{ if (!e) return false; e.click(); return true }})({js})"
    ));
    if clicked != Ok(serde_json::Value::Bool(true)) {
        let rows = page.eval("[...document.querySelectorAll('#files tr')].map(r => r.innerText).join('|') + ' filter=' + document.getElementById('filter').value");
        panic!("nothing to click at {js}: {clicked:?}; rows {rows:?}");
    }
}

/// The JavaScript expression of the file row named `name` in the file list.
fn file_row(name: &str) -> String {
    let name = serde_json::to_string(name).unwrap();
    format!(
        "[...document.querySelectorAll('#files tr')].find(r => r.cells[1].textContent === {name})"
    )
}

/// The JavaScript expression of the download named `name`.
fn download_card(name: &str) -> String {
    let name = serde_json::to_string(name).unwrap();
    format!(
        "[...document.querySelectorAll('.dl')].find(d => d.querySelector('strong').textContent === {name})"
    )
}

fn random_named(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    random_file(&path, size, seed);
    path
}

/// The browser test; see the module's notes. Prints how long each step took.
#[test]
fn two_apps_share_list_download_and_unshare_in_chromium() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let small = random_named(&shared, "notes.bin", 300_000, 1);
    let slow = random_named(&shared, "slow.bin", 3_000_000, 2);
    let hostile = random_named(&shared, HOSTILE, 50_000, 3);
    let (mut tracker, port) = {
        let args = args!["0", "--tracker", "--bind", "127.0.0.1"];
        let mut p = Proc::spawn("tracker", OWNER, &args, &root.join("tracker"), root);
        let port = p.listening_port();
        (p, port)
    };
    // A serves at 1 MiB/s: slow.bin takes 3 s, time to cancel it mid-way.
    let a = start_app(root, "a", port, &args!["--upload-limit", "1MiB"]);
    let mut b = start_app(root, "b", port, &[]);
    let mut pa = Browser::launch(&bin, 1280, 900).unwrap();
    let mut pb = Browser::launch(&bin, 1280, 900).unwrap();
    let mut times = Vec::new();

    // Each page opens with the link its app printed; the token leaves the address bar.
    for (page, app) in [(&mut pa, &a), (&mut pb, &b)] {
        page.goto(&format!("{}/?token={}", app.base, app.token))
            .unwrap();
        until(
            page,
            "the page is live",
            "document.getElementById('conn').className === 'connected'",
        );
        assert_eq!(page.eval("location.search").unwrap(), "");
    }

    // A bad path is said in words.
    type_into(&mut pa, "share-path", "/no/such/folder");
    click(&mut pa, "document.getElementById('share-go')");
    until(
        &mut pa,
        "the bad path's message",
        "document.getElementById('share-msg').textContent === '/no/such/folder does not exist'",
    );
    shot(&mut pa, "01-bad-share-path");

    // A shares the folder; B's list shows its files.
    let t = Instant::now();
    type_into(&mut pa, "share-path", &shared.display().to_string());
    click(&mut pa, "document.getElementById('share-go')");
    until(
        &mut pa,
        "A shares three files",
        "document.querySelectorAll('.share[data-state=shared] tr[data-hash]').length === 3",
    );
    times.push(("A: share clicked → its 3 files published", t.elapsed()));
    let t = Instant::now();
    until(
        &mut pb,
        "B lists A's files",
        "document.querySelectorAll('#files tr').length === 3",
    );
    times.push(("A published → B's list shows them", t.elapsed()));
    shot(&mut pa, "02-a-shares");
    shot(&mut pb, "03-b-lists");

    // The hostile name is text, never markup.
    until(
        &mut pb,
        "the hostile name as text",
        &format!("!!{}", file_row(HOSTILE)),
    );
    assert_eq!(
        pb.eval("document.querySelectorAll('img').length").unwrap(),
        0
    );
    assert_eq!(pb.eval("window.pwned === undefined").unwrap(), true);

    // B filters as it types, then downloads.
    type_into(&mut pb, "filter", "NOTES");
    let only = format!(
        "document.querySelectorAll('#files tr').length === 1 && !!{}",
        file_row("notes.bin")
    );
    until(&mut pb, "the filter keeps notes.bin", &only);
    let t = Instant::now();
    click(
        &mut pb,
        &format!("{}.querySelector('button')", file_row("notes.bin")),
    );
    until(
        &mut pb,
        "notes.bin complete",
        &format!(
            "{}?.dataset.state === 'complete'",
            download_card("notes.bin")
        ),
    );
    times.push((
        "B: download clicked → notes.bin complete (300 kB)",
        t.elapsed(),
    ));
    assert_eq!(
        std::fs::read(root.join("b/notes.bin")).unwrap(),
        std::fs::read(&small).unwrap()
    );
    assert_eq!(
        pb.eval(&format!("{}.dataset.percent", download_card("notes.bin")))
            .unwrap(),
        "100"
    );
    shot(&mut pb, "04-b-downloaded");

    cancel_and_resume(&mut pb, root, &slow, &mut times);
    paste_ticket(&mut pa, &mut pb, root, &hostile, &mut times);

    // A unshares; B's list drops the files.
    let t = Instant::now();
    click(
        &mut pa,
        "document.querySelector('.share [data-act=unshare]')",
    );
    type_into(&mut pb, "filter", "");
    until(
        &mut pb,
        "B's list drops them",
        "document.querySelectorAll('#files tr').length === 0",
    );
    times.push(("A: unshare clicked → B's list empty", t.elapsed()));
    shot(&mut pa, "08-a-unshared");
    shot(&mut pb, "09-b-list-empty");

    cross_origin_is_refused(&mut pb, &a, &mut b);

    // The directory goes down: B says so in words.
    tracker.kill();
    let t = Instant::now();
    pb.goto(&format!("{}/?token={}", b.base, b.token)).unwrap();
    until(
        &mut pb,
        "the directory shown down",
        "document.getElementById('dir-banner').textContent.includes('is not answering: nothing listens there (is it running?)')",
    );
    times.push(("tracker killed → B shows it down", t.elapsed()));
    shot(&mut pb, "11-b-directory-down");
    for (step, took) in &times {
        eprintln!("{took:>10.3?}  {step}");
    }
}

/// B starts slow.bin, cancels it mid-way, resumes it, and it completes byte-identical.
fn cancel_and_resume(
    pb: &mut Browser,
    root: &Path,
    slow: &Path,
    times: &mut Vec<(&str, Duration)>,
) {
    type_into(pb, "filter", "slow");
    let only = format!(
        "document.querySelectorAll('#files tr').length === 1 && !!{}",
        file_row("slow.bin")
    );
    until(pb, "the filter keeps slow.bin", &only);
    click(
        pb,
        &format!("{}.querySelector('button')", file_row("slow.bin")),
    );
    let card = download_card("slow.bin");
    until(
        pb,
        "slow.bin under way",
        &format!("Number({card}?.dataset.percent) > 0"),
    );
    shot(pb, "05-b-slow-under-way");
    click(pb, &format!("{card}.querySelector('[data-act=cancel]')"));
    until(
        pb,
        "slow.bin cancelled",
        &format!("{card}?.dataset.state === 'cancelled'"),
    );
    let had: f64 = pb
        .eval(&format!("Number({card}.dataset.percent)"))
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(had > 0.0 && had < 100.0, "cancelled at {had} %");
    assert!(!root.join("b/slow.bin").exists());
    shot(pb, "06-b-slow-cancelled");
    let t = Instant::now();
    click(pb, &format!("{card}.querySelector('[data-act=resume]')"));
    until(
        pb,
        "slow.bin complete",
        &format!("{card}?.dataset.state === 'complete'"),
    );
    times.push((
        "B: resume clicked → slow.bin complete (3 MB at 1 MiB/s)",
        t.elapsed(),
    ));
    assert_eq!(
        std::fs::read(root.join("b/slow.bin")).unwrap(),
        std::fs::read(slow).unwrap()
    );
    let path = pb
        .eval(&format!("{card}.querySelector('.path').textContent"))
        .unwrap();
    assert_eq!(
        path,
        format!("saved as {}", root.join("b/slow.bin").display())
    );
}

/// B pastes the ticket A shows for the hostile-named file; it completes byte-identical.
fn paste_ticket(
    pa: &mut Browser,
    pb: &mut Browser,
    root: &Path,
    hostile: &Path,
    times: &mut Vec<(&str, Duration)>,
) {
    let name = serde_json::to_string(HOSTILE).unwrap();
    let ticket = pa
        .eval(&format!("[...document.querySelectorAll('.share tr[data-hash]')].find(r => r.querySelector('.name').firstChild.textContent === {name}).querySelector('.ticket').textContent"))
        .unwrap();
    let ticket = ticket.as_str().unwrap().to_string();
    assert!(ticket.starts_with("ringswarm://127.0.0.1:"), "{ticket}");
    let t = Instant::now();
    type_into(pb, "ticket", &ticket);
    click(pb, "document.getElementById('ticket-go')");
    until(
        pb,
        "the ticket's file complete",
        &format!("{}?.dataset.state === 'complete'", download_card(HOSTILE)),
    );
    times.push(("B: ticket pasted → its file complete (50 kB)", t.elapsed()));
    assert_eq!(
        std::fs::read(root.join("b").join(HOSTILE)).unwrap(),
        std::fs::read(hostile).unwrap()
    );
    assert_eq!(
        pb.eval("document.querySelectorAll('img').length").unwrap(),
        0
    );
    assert_eq!(pb.eval("window.pwned === undefined").unwrap(), true);
    shot(pb, "07-b-ticket-done");
}

/// A page of another origin (A's address, in B's browser, which holds B's cookie) posts a
/// share to B: refused, nothing shared.
fn cross_origin_is_refused(pb: &mut Browser, a: &App, b: &mut App) {
    pb.goto(&format!("{}/", a.base)).unwrap();
    let post = format!(
        "fetch({:?}, {{method: 'POST', mode: 'no-cors', credentials: 'include', headers: {{'Content-Type': 'text/plain'}}, body: JSON.stringify({{path: '/etc'}})}}).then(() => true, () => true)",
        format!("{}/api/shares", b.base)
    );
    let params = json!({ "expression": post, "awaitPromise": true, "returnByValue": true });
    pb.call("Runtime.evaluate", params).unwrap();
    assert!(
        b.proc
            .wait_log("refused a POST /api/shares from another origin (http://127.0.0.1:"),
        "{}",
        b.proc.describe()
    );
    let text = ureq::get(format!("{}/api/shares", b.base))
        .header("authorization", format!("Bearer {}", b.token))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let shares: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shares["list"], json!([]), "nothing was shared: {shares}");
    shot(pb, "10-another-origin");
}

/// `peer app TICKET` uses the ticket's directory and fetches its file at once; a missing or
/// malformed argument is a usage error (exit 2).
#[test]
fn an_app_started_with_a_ticket_fetches_its_file() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let original = random_named(root, "given.bin", 200_000, 9);
    let (mut owner, _) = start_owner(root, &original, &[]);
    let ticket = owner.wait_line("ticket: ")["ticket: ".len()..].to_string();
    let dir = root.join("got");
    let args = args![
        "app",
        ticket,
        "--http",
        0,
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.display()
    ];
    let mut app = Proc::spawn("app", PEER, &args, root, root);
    app.wait_line("open http://127.0.0.1:");
    let got = dir.join("given.bin");
    assert!(
        wait_until(WAIT, || std::fs::read(&got).ok().as_deref()
            == std::fs::read(&original).ok().as_deref()),
        "{}",
        app.describe()
    );
    for bad in [args!["app"], args!["app", "ringswarm://nowhere"]] {
        let mut p = Proc::spawn("bad", PEER, &bad, root, root);
        assert_eq!(p.wait_exit(WAIT).code(), Some(2), "{}", p.describe());
    }
}
