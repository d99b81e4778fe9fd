//! The live dashboard (`file-owner --http`): its snapshot and feed in process, and the page
//! in a real headless Chromium over a running, throttled ring.

use std::path::Path;

use crate::args;
use crate::util::browser::Browser;
use crate::util::*;

/// What the open dashboard shows now, read in the page itself.
#[derive(Debug, Default)]
struct Shown {
    /// `(addr, percent)` of each member drawn in the ring.
    ring: Vec<(String, f64)>,
    /// The addresses the piece map has rows for.
    piece_rows: Vec<String>,
    /// The member table: `(addr, progress, downloads from, rate, completed in)` per row.
    table: Vec<[String; 5]>,
    /// How many snapshots the page has drawn since it loaded (`data-updates`).
    updates: u64,
    /// The feed's state as the header shows it (`live`, `reconnecting…`).
    state: String,
}

/// Reads [`Shown`] from the page.
fn shown(page: &mut Browser) -> Result<Shown, String> {
    const READ: &str = r##"(() => ({
        ring: [...document.querySelectorAll("g.member")].map(g => [g.dataset.addr, Number(g.dataset.pct)]),
        rows: (document.querySelector("canvas.pieces")?.dataset.rows || "").split(" ").filter(Boolean),
        table: [...document.querySelectorAll("table.members tbody tr")].map(r => {
            const c = [...r.cells].map(td => td.textContent.trim());
            return [r.dataset.addr, c[2], c[5], c[6], c[7]];
        }),
        updates: Number(document.body.dataset.updates || 0),
        state: document.querySelector("#state").textContent,
    }))()"##;
    let v = page.eval(READ)?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Ok(Shown {
        ring: v["ring"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (text(&m[0]), m[1].as_f64().unwrap_or(-1.0)))
            .collect(),
        piece_rows: v["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect(),
        table: v["table"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| std::array::from_fn(|i| text(&r[i])))
            .collect(),
        updates: v["updates"].as_u64().unwrap_or(0),
        state: text(&v["state"]),
    })
}

/// Waits until what the page shows satisfies `ok`; that view.
fn shown_until(page: &mut Browser, what: &str, ok: impl Fn(&Shown) -> bool) -> Shown {
    let mut last = Err(String::from("not read yet"));
    let found = wait_until(WAIT, || {
        last = shown(page);
        last.as_ref().is_ok_and(&ok)
    });
    assert!(found, "{what}; the page showed {last:?}");
    last.unwrap()
}

/// Where the dashboard screenshot `name` goes: `target/tmp/dashboard/NAME.png`.
fn screenshot_path(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

/// The issue's browser test: a ring of four joiners, throttled by the owner (256 KiB/s: 12 s
/// for one copy), shown by the owner's dashboard in one headless Chromium page that stays open
/// (driven over the DevTools protocol), so every change the test sees came down the live feed.
/// The ring is drawn with the four members and the piece map has a row for each; a member
/// shows the link it downloads from and its throughput; the progress numbers change while the
/// page stays loaded; once every member completed (and left), each is listed at 100.0 % with
/// its completion time. Screenshots mid-transfer and complete are saved under the test's
/// target folder (`target/tmp/dashboard/`).
#[test]
fn the_dashboard_shows_a_live_ring_in_chromium() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let mut page = match Browser::launch(&bin, 1400, 1000) {
        Ok(page) => page,
        Err(why) if !in_ci() => return skip(&format!("chromium does not start: {why}")),
        Err(why) => panic!("chromium does not start: {why}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("share").join("data.bin");
    std::fs::create_dir_all(original.parent().unwrap()).unwrap();
    random_file(&original, 3 << 20, 81);
    let extra = args!["--http", 0, "--peers", 4, "--upload-limit", "256KiB"];
    let (mut owner, port) = start_owner(root, &original, &extra);
    let line = owner.wait_line("dashboard on http://");
    let url = line["dashboard on ".len()..].trim().to_string();
    page.goto(&url).unwrap();
    let loaded = shown(&mut page).unwrap();
    assert!(loaded.table.is_empty(), "no one yet: {loaded:?}");
    let mut ring = Vec::new();
    for i in 0..4 {
        let name = format!("d{i}");
        let dir = root.join(&name);
        let a = args![
            "join",
            port,
            "data.bin",
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.display()
        ];
        let mut p = Proc::spawn(&name, PEER, &a, &dir, root);
        let listen = p.listening_port();
        ring.push((name, p, format!("127.0.0.1:{listen}")));
    }
    let addrs: Vec<String> = ring.iter().map(|r| r.2.clone()).collect();
    let first = shown_until(
        &mut page,
        "the ring and piece map show the four members, one downloading over a link at KiB/s",
        |s| {
            addrs.iter().all(|a| s.ring.iter().any(|(d, _)| d == a))
                && addrs.iter().all(|a| s.piece_rows.contains(a))
                && s.table
                    .iter()
                    .any(|r| r[2].starts_with("← 127.0.0.1:") && r[3].ends_with("iB/s"))
        },
    );
    assert_eq!(first.state, "live", "{first:?}");
    assert!(
        first.ring.iter().all(|(_, p)| *p < 100.0),
        "mid-transfer (the owner needs 12 s for one copy): {first:?}"
    );
    let mid = screenshot_path("mid-transfer");
    page.screenshot(&mid).unwrap();
    let moved = shown_until(&mut page, "the progress numbers change", |now| {
        now.ring
            .iter()
            .any(|(a, p)| first.ring.iter().any(|(b, q)| a == b && p > q))
    });
    assert!(moved.updates > first.updates, "redrawn from the feed");
    for (name, p, _) in &mut ring {
        p.wait_line("complete: ");
        assert_eq!(
            std::fs::read(root.join(&*name).join("data.bin")).unwrap(),
            std::fs::read(&original).unwrap()
        );
    }
    shown_until(
        &mut page,
        "every member at 100 % with its completion time",
        |s| {
            addrs.iter().all(|a| {
                s.table
                    .iter()
                    .any(|r| &r[0] == a && r[1] == "100.0 %" && r[4].ends_with(" s"))
            })
        },
    );
    let complete = screenshot_path("complete");
    page.screenshot(&complete).unwrap();
    let loads = page
        .eval("performance.getEntriesByType('navigation').length")
        .unwrap();
    assert_eq!(loads, 1, "the page was loaded once and updated in place");
    eprintln!(
        "dashboard screenshots: {} and {}",
        mid.display(),
        complete.display()
    );
    for (_, p, _) in &mut ring {
        p.interrupt();
        p.wait_exit(WAIT);
    }
}

/// The snapshot in process: a file with no one downloading has no members, its ticket names
/// the host given, and the feed's first event is the same snapshot.
#[tokio::test]
async fn the_snapshot_and_its_feed() {
    use std::sync::Arc;
    use tower::ServiceExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.bin");
    random_file(&path, 50_000, 3);
    let m = ringswarm::manifest::Manifest::from_file(&path, 10_000).unwrap();
    let directory = Arc::new(ringswarm::directory::Directory::new(
        vec![Arc::new(m)],
        "127.0.0.1:1".parse().unwrap(),
        ringswarm::directory::DEFAULT_PEER_TTL,
    ));
    let options = ringswarm::http::Options {
        ticket_host: Some("example.test:5000".into()),
        ..Default::default()
    };
    let app = ringswarm::http::router_with(directory, options);
    let get = |path: &str| {
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let resp = app.clone().oneshot(get("/api/swarm")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["files"][0]["file"]["name"], "a.bin");
    assert_eq!(v["files"][0]["members"].as_array().unwrap().len(), 0);
    assert!(
        v["tickets"]["1"]
            .as_str()
            .unwrap()
            .starts_with("ringswarm://example.test:5000/"),
        "{v}"
    );
    let resp = app.clone().oneshot(get("/api/events")).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    let first = futures::StreamExt::next(&mut body).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(text.starts_with("event: swarm\n"), "{text}");
    assert!(text.contains("\"name\":\"a.bin\""), "{text}");
    let resp = app.oneshot(get("/")).await.unwrap();
    let page = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("new EventSource(\"/api/events\")"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN: everything is embedded"
    );
}

/// Issue 19: the first visitor's page, loaded mid-transfer, draws each downloading member's
/// real rate at once. Three members gain two 1 KiB chunks every 50 ms (about 40 KiB/s) while
/// no one watches; the page loaded then shows a non-zero KiB/s rate for each in its first
/// paint (the snapshot inlined in the page), where it used to show "0 B/s" until the feed's
/// next update.
#[test]
fn a_page_loaded_mid_transfer_draws_rates_at_once() {
    use ringswarm::chunkset::ChunkSet;
    use ringswarm::manifest::Manifest;
    use std::sync::Arc;
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let mut page = match Browser::launch(&bin, 1400, 1000) {
        Ok(page) => page,
        Err(why) if !in_ci() => return skip(&format!("chromium does not start: {why}")),
        Err(why) => panic!("chromium does not start: {why}"),
    };
    let m = Manifest::from_bytes("steady.bin", &vec![3u8; 4000 * 1024], 1024).unwrap();
    let directory = Arc::new(ringswarm::directory::Directory::new(
        vec![Arc::new(m.clone())],
        "127.0.0.1:1".parse().unwrap(),
        ringswarm::directory::DEFAULT_PEER_TTL,
    ));
    let ids: Vec<u64> = (0..3u16)
        .map(|i| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 21_000 + i));
            let id = directory
                .register(
                    0,
                    addr,
                    ringswarm::protocol::Role::Joiner,
                    ChunkSet::new(4000),
                    None,
                )
                .unwrap();
            directory.join_ring(0, id);
            id
        })
        .collect();
    let token = tokio_util::sync::CancellationToken::new();
    // The members gain chunks steadily until the test ends.
    let (feeder_dir, feeder_stop) = (directory.clone(), token.clone());
    let feeder = std::thread::spawn(move || {
        let mut next = 0u32;
        while !feeder_stop.is_cancelled() && next + 2 <= 4000 {
            for &id in &ids {
                let mut gained = ChunkSet::new(4000);
                for c in next..next + 2 {
                    gained.insert(m.chunk_id(c).unwrap());
                }
                feeder_dir.add_chunks(id, &gained);
            }
            next += 2;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = token.clone();
    let server_dir = directory.clone();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let options = ringswarm::http::Options::default();
            ringswarm::http::serve_with(listener, server_dir, options, stop)
                .await
                .unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    // Mid-transfer, with no page open: wait until the owner has sampled every member twice
    // (each has a rate in the snapshot), then load the page.
    let every_rate = || {
        ureq::get(&format!("http://{addr}/api/swarm"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v["rates"]
                    .as_object()
                    .map(|r| r.len() == 3 && r.values().all(|x| x.as_f64() > Some(0.0)))
            })
            .unwrap_or(false)
    };
    assert!(
        wait_until(WAIT, every_rate),
        "the owner never sampled the three members twice"
    );
    page.goto(&format!("http://{addr}/")).unwrap();
    let first = shown(&mut page).unwrap();
    let initial = page
        .eval("JSON.parse(document.getElementById('initial').textContent).rates")
        .unwrap();
    token.cancel();
    assert_eq!(first.table.len(), 3, "{first:?}");
    for row in &first.table {
        assert!(
            row[3].ends_with("KiB/s") && !row[3].starts_with("0 "),
            "each member's rate in the first paint: {first:?}"
        );
    }
    let rates = initial.as_object().expect("rates in the inlined snapshot");
    assert_eq!(rates.len(), 3, "{initial}");
    assert!(
        rates
            .values()
            .all(|r| r.as_f64().is_some_and(|r| r > 1000.0)),
        "the inlined snapshot's rates are measured: {initial}"
    );
    drop(page);
    feeder.join().unwrap();
    server.join().unwrap();
}

/// CPU time (user and system) thread `tid` of this process has used so far, from
/// `/proc/self/task/TID/stat` (in clock ticks of 10 ms).
fn thread_cpu(tid: &str) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // After the command's `(name)`: the state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10)
}

/// How many snapshots the open page has drawn.
fn updates(page: &mut Browser) -> u64 {
    page.eval("Number(document.body.dataset.updates || 0)")
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// The dashboard holds 1,000 members: a ring of 1,000 on a 4,000-chunk file, each holding a
/// different half, served by the owner's HTTP side on a thread of its own and shown live in
/// Chromium: every member in the ring and a piece-map row each, redrawn from the feed at each
/// update. Prints the snapshot's size, how long the page takes to draw it, and the share of a
/// core the owner's HTTP thread used while the page was open.
#[test]
fn the_dashboard_holds_a_thousand_members_live() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let mut page = match Browser::launch(&bin, 1400, 1000) {
        Ok(page) => page,
        Err(why) if !in_ci() => return skip(&format!("chromium does not start: {why}")),
        Err(why) => panic!("chromium does not start: {why}"),
    };
    let directory = crate::util::fixtures::big_ring(1000);
    let size = ringswarm::dashboard::Dashboard::new(directory.clone(), None, None)
        .snapshot()
        .len();
    let token = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = token.clone();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = me.file_name().unwrap().to_string_lossy().into_owned();
            tx.send((listener.local_addr().unwrap(), tid)).unwrap();
            let options = ringswarm::http::Options::default();
            ringswarm::http::serve_with(listener, directory, options, stop)
                .await
                .unwrap();
        });
    });
    let (addr, tid) = rx.recv().unwrap();
    page.goto(&format!("http://{addr}/")).unwrap();
    let mut at = 0;
    assert!(
        wait_until(WAIT, || {
            at = updates(&mut page);
            at >= 2
        }),
        "no update came down the feed"
    );
    let (cpu0, t0) = (thread_cpu(&tid), std::time::Instant::now());
    let mut now = at;
    assert!(
        wait_until(WAIT, || {
            now = updates(&mut page);
            now >= at + 5
        }),
        "the feed stalled at {now} updates"
    );
    let (cpu, wall) = (thread_cpu(&tid) - cpu0, t0.elapsed());
    let shown = shown(&mut page).unwrap();
    assert_eq!(shown.ring.len(), 1000, "ring members drawn");
    assert!(
        shown.ring.iter().all(|(_, p)| (*p - 50.0).abs() < 0.01),
        "each holds half"
    );
    assert_eq!(shown.piece_rows.len(), 1000, "piece-map rows");
    assert_eq!(shown.table.len(), 1000, "member rows");
    assert_eq!(shown.state, "live");
    let ms = page
        .eval("Number(document.body.dataset.renderMs)")
        .unwrap()
        .as_f64()
        .expect("the page timed its drawing");
    eprintln!(
        "dashboard of 1000 members: {} KiB snapshots, {} drawn in {:.1} s ({:.2} s apart), each \
         in {ms} ms; the owner's HTTP thread used {:.1} % of a core",
        size / 1024,
        now - at,
        wall.as_secs_f64(),
        wall.as_secs_f64() / (now - at) as f64,
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    drop(page);
    token.cancel();
    server.join().unwrap();
}

/// `demo --report` writes `dashboard.html` beside its charts: the same page, replaying the
/// recorded run. Its snapshots run from the start (no one complete) to the end (everyone
/// complete, with completion times), and Chromium draws the ring of all ten peers from it.
#[test]
fn a_recorded_demo_replays_in_the_same_page() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let a = args![
        "--sim",
        "--peers",
        10,
        "--size",
        "4MiB",
        "--rate",
        "4MiB/s",
        "--seed",
        5,
        "--report",
        report.display()
    ];
    let mut demo = Proc::spawn(
        "demo",
        env!("CARGO_BIN_EXE_demo"),
        &a,
        tmp.path(),
        tmp.path(),
    );
    assert!(demo.wait_exit(WAIT).success(), "{}", demo.describe());
    assert!(
        demo.stdout_text().contains("dashboard replay: "),
        "{}",
        demo.describe()
    );
    let page = std::fs::read_to_string(report.join("dashboard.html")).unwrap();
    let start = page
        .find(r#"<script id="replay" type="application/json">"#)
        .unwrap()
        + r#"<script id="replay" type="application/json">"#.len();
    let end = start + page[start..].find("</script>").unwrap();
    let rec: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
    let frames = rec["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 40);
    let members = |f: &serde_json::Value| f["files"][0]["members"].as_array().unwrap().clone();
    let chunks = frames[0]["files"][0]["file"]["chunks"].as_u64().unwrap();
    assert_eq!(members(&frames[0]).len(), 10);
    assert!(
        members(&frames[0])
            .iter()
            .all(|m| m["count"].as_u64().unwrap() < chunks),
        "no one complete at the start"
    );
    let last = members(frames.last().unwrap());
    assert!(
        last.iter()
            .all(|m| m["count"].as_u64() == Some(chunks) && m["completed_unix_ms"].is_u64()),
        "everyone complete at the end: {last:?}"
    );
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let mut page = Browser::launch(&bin, 1400, 1000).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("file://{}", report.join("dashboard.html").display());
    page.goto(&url).unwrap();
    let first = shown(&mut page).unwrap();
    assert_eq!(first.ring.len(), 10, "{first:?}");
    assert_eq!(first.state, "replay of a recorded run");
    assert!(
        first.table.iter().all(|r| r[1] != "100.0 %"),
        "no one complete at the start: {first:?}"
    );
    shown_until(&mut page, "the replay plays by itself", |s| {
        s.updates >= first.updates + 2
    });
    // The slider goes to any moment: the last one has everyone complete.
    page.eval(
        "(() => { const f = document.querySelector('#frame'); f.value = f.max; \
         f.dispatchEvent(new Event('input')); })()",
    )
    .unwrap();
    let end = shown(&mut page).unwrap();
    assert!(
        end.table.len() == 10
            && end
                .table
                .iter()
                .all(|r| r[1] == "100.0 %" && r[4].ends_with(" s")),
        "everyone complete, with a completion time, at the end: {end:?}"
    );
}
