//! What a peer writes in its folder, against a hostile or careless owner: only the name it
//! asked for, never over a file it did not create, and names of any legal length or shape.
//! In-process owner (real or fake) and peer on 127.0.0.1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringswarm::chunkset::Ranges;
use ringswarm::manifest::{DEFAULT_CHUNK_SIZE, Manifest};
use ringswarm::net::TcpListener;
use ringswarm::peer::{self, Outcome};
use ringswarm::protocol::{MAX_MANIFEST_LEN, Message};
use ringswarm::store::Layout;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::util::{dead_port, random_file};

/// The longest any test here may take.
const TEST_WAIT: Duration = Duration::from_secs(60);

/// File size for the owners: 5 chunks of 20 KiB.
const SIZE: usize = 102_400;

/// An in-process owner, stopped when dropped.
struct Owner {
    port: u16,
    _stop: DropGuard,
}

/// Starts a real owner sharing `path`.
async fn start_owner(path: &Path) -> Owner {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    Owner {
        port,
        _stop: crate::util::spawn_owner(listener, path, DEFAULT_CHUNK_SIZE),
    }
}

/// Starts a fake owner that answers every `hello`, whatever file it asks for, with a
/// `welcome` carrying `manifest`, and then says nothing more.
async fn start_fake_owner(manifest: &Manifest) -> Owner {
    let json = bytes::Bytes::from(serde_json::to_vec(manifest).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                s = listener.accept() => s.unwrap().0,
                () = stop.cancelled() => return,
            };
            let json = json.clone();
            tokio::spawn(async move {
                let me = ringswarm::secure::Identity::ephemeral();
                let (stream, addr) = (Box::new(stream), "peer".to_string());
                let Ok(mut conn) =
                    ringswarm::link::accept(stream, addr, &me, MAX_MANIFEST_LEN).await
                else {
                    return;
                };
                if conn.recv_hello().await.is_ok() {
                    let _ = conn.send(Message::welcome(Ranges::default(), json)).await;
                    while let Ok(Some(_)) = conn.recv("fake owner", TEST_WAIT).await {}
                }
            });
        }
    });
    Owner {
        port,
        _stop: token.drop_guard(),
    }
}

/// A ring peer (or, with `get`, a getter) of the owner on `owner_port`, storing in `dir`.
fn peer_config(owner_port: u16, dir: &Path, file: Option<&str>, get: bool) -> peer::Config {
    let (_socket, neighbour) = dead_port();
    peer::Config {
        get: get.then_some(peer::GetConfig { max_sources: 5 }),
        file: file.map(str::to_string),
        linger: Some(Duration::ZERO),
        timeout: Duration::from_secs(5),
        seed: Some(7),
        ..crate::util::ring_peer(owner_port, neighbour, dir.to_path_buf())
    }
}

/// Runs a peer to its end, within [`TEST_WAIT`].
async fn run_peer(config: peer::Config) -> ringswarm::Result<Outcome> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = peer::run(listener, config, CancellationToken::new());
    tokio::time::timeout(TEST_WAIT, run)
        .await
        .expect("the peer neither finished nor failed in time")
}

/// The names in `dir`.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A folder holding `names`, each with the bytes `precious`.
fn folder_with(root: &Path, names: &[&str]) -> PathBuf {
    let dir = root.join("peer");
    std::fs::create_dir(&dir).unwrap();
    for name in names {
        std::fs::write(dir.join(name), b"precious").unwrap();
    }
    dir
}

/// `peer get FAKE movie.mkv` in a home folder, and a ring peer with `--file movie.mkv`: a
/// manifest for another name (`.bashrc`, `victim.txt`) is refused, and nothing is written.
#[tokio::test]
async fn peer_writes_only_the_name_it_asked_for() {
    for (get, offered) in [(true, ".bashrc"), (false, "victim.txt")] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join(offered);
        random_file(&src, SIZE, 1);
        let manifest = Manifest::from_file(&src, DEFAULT_CHUNK_SIZE).unwrap();
        let owner = start_fake_owner(&manifest).await;
        let dir = folder_with(tmp.path(), &[".bashrc", "victim.txt"]);
        let before = listing(&dir);

        let config = peer_config(owner.port, &dir, Some("movie.mkv"), get);
        let err = run_peer(config)
            .await
            .expect_err("the peer took the manifest");
        let msg = err.to_string();
        assert!(
            msg.contains("movie.mkv") && msg.contains(offered),
            "get={get}: {msg}"
        );
        assert_eq!(listing(&dir), before, "get={get}: nothing written");
        for name in [".bashrc", "victim.txt"] {
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), b"precious");
        }
    }
}

/// Asked for the only file, or by directory id, a peer takes the manifest's name, but never
/// replaces a file of that name it did not create: it refuses, naming the path.
#[tokio::test]
async fn peer_never_replaces_a_file_it_did_not_create() {
    for (get, asked) in [(false, None), (true, Some("1"))] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("victim.txt");
        random_file(&src, SIZE, 2);
        let owner = start_owner(&src).await;
        let dir = folder_with(tmp.path(), &["victim.txt"]);

        let config = peer_config(owner.port, &dir, asked, get);
        let err = run_peer(config)
            .await
            .expect_err("the peer replaced victim.txt");
        let msg = err.to_string();
        let path = dir.join("victim.txt").display().to_string();
        assert!(
            msg.contains(&path) && msg.contains("refusing to replace"),
            "get={get}: {msg}"
        );
        assert_eq!(std::fs::read(dir.join("victim.txt")).unwrap(), b"precious");
        assert_eq!(listing(&dir), BTreeSet::from(["victim.txt".to_string()]));
    }
}

/// A 250-byte name (legal, and shared by the owner) downloads, by a ring peer with a part
/// file and by a getter with chunk files; so does a file named `chunks` with chunk files.
#[tokio::test]
async fn long_and_awkward_names_download() {
    let long = format!("{}.bin", "n".repeat(246));
    let cases = [
        (long.as_str(), false, Layout::PartFile),
        (long.as_str(), true, Layout::ChunkFiles),
        ("chunks", false, Layout::ChunkFiles),
    ];
    for (name, get, layout) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join(name);
        random_file(&src, SIZE, 3);
        let owner = start_owner(&src).await;
        let dir = tmp.path().join("peer");
        let mut config = peer_config(owner.port, &dir, Some(name), get);
        config.layout = layout;
        let outcome = run_peer(config).await;
        let what = format!("{} bytes, get={get}, {layout:?}", name.len());
        match outcome {
            Ok(Outcome::Complete(c)) => assert_eq!(c.path, dir.join(name), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            std::fs::read(&src).unwrap()
        );
        let left = listing(&dir);
        assert!(left.iter().all(|n| n.len() <= 255), "{what}: {left:?}");
        assert!(
            !left.iter().any(|n| n.ends_with(".tmp")),
            "{what}: {left:?}"
        );
    }
}
