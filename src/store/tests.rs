//! The chunk store's tests: both layouts, resume, refusals, links never followed.

use std::path::{Path, PathBuf};

use super::*;
use crate::chunkset::ChunkSet;
use crate::hash::Hash;
use crate::manifest::DEFAULT_CHUNK_SIZE;
use crate::manifest::{Manifest, disk_name};
use std::fs;

fn setup(size: usize) -> (tempfile::TempDir, Manifest, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
    let src = dir.path().join("f.bin");
    fs::write(&src, &data).unwrap();
    let m = Manifest::from_file(&src, DEFAULT_CHUNK_SIZE).unwrap();
    (dir, m, data)
}

fn fill(store: &ChunkStore, m: &Manifest, data: &[u8], ids: impl Iterator<Item = u32>) {
    for n in ids {
        let id = m.chunk_id(n).unwrap();
        let off = m.chunk_offset(id) as usize;
        let chunk = &data[off..off + m.chunk_len(id)];
        crate::storage::verify(m, id, chunk).unwrap();
        store.write_chunk(id, chunk).unwrap();
    }
}

#[test]
fn both_layouts_assemble_byte_identical_and_resume() {
    for layout in [Layout::PartFile, Layout::ChunkFiles] {
        let (dir, m, data) = setup(1234);
        let peer = dir.path().join("peer");
        let (store, mut have) = ChunkStore::open(&peer, &m, layout).unwrap();
        assert_eq!(have.count(), 0);
        fill(&store, &m, &data, 0..3);
        for n in 0..3 {
            have.insert(m.chunk_id(n).unwrap());
        }
        store.write_summary(&have).unwrap();
        drop(store);
        let (store, have) = ChunkStore::open(&peer, &m, layout).unwrap();
        assert_eq!(have.count(), 3, "{layout:?} resumes");
        fill(&store, &m, &data, 3..m.chunk_count());
        let out = store.assemble().unwrap();
        assert_eq!(fs::read(&out).unwrap(), data);
        let (_, have) = ChunkStore::open(&peer, &m, layout).unwrap();
        assert!(have.is_full(), "{layout:?} reopens complete");
    }
}

#[test]
fn tampered_chunk_is_dropped_on_open() {
    let (dir, m, data) = setup(5000);
    let peer = dir.path().join("peer");
    let (store, _) = ChunkStore::open(&peer, &m, Layout::ChunkFiles).unwrap();
    fill(&store, &m, &data, 0..2);
    store.write_summary(&ChunkSet::full(2)).ok();
    let mut have = ChunkSet::new(m.chunk_count());
    have.insert(m.chunk_id(0).unwrap());
    have.insert(m.chunk_id(1).unwrap());
    store.write_summary(&have).unwrap();
    fs::write(store.chunk_path(m.chunk_id(1).unwrap()), b"evil").unwrap();
    let (_, have) = ChunkStore::open(&peer, &m, Layout::ChunkFiles).unwrap();
    assert_eq!(have.indices().collect::<Vec<_>>(), vec![0]);
}

#[test]
fn verify_refuses_wrong_bytes() {
    let (_dir, m, _) = setup(1000);
    let id = m.chunk_id(0).unwrap();
    assert!(matches!(
        crate::storage::verify(&m, id, &[0u8; 200]),
        Err(StoreError::ChunkHashMismatch { chunk: 0, .. })
    ));
    assert!(matches!(
        crate::storage::verify(&m, id, &[0u8; 10]),
        Err(StoreError::ChunkLength { .. })
    ));
}

/// Every auxiliary name a store writes, for file `f.bin`, planted as a symlink to a file
/// outside the folder: none is followed, and each target keeps its bytes.
#[test]
fn planted_symlinks_are_never_followed() {
    for layout in [Layout::PartFile, Layout::ChunkFiles] {
        let (dir, m, data) = setup(1234);
        let peer = dir.path().join("peer");
        fs::create_dir_all(peer.join("chunks")).unwrap();
        let victims = dir.path().join("victims");
        fs::create_dir(&victims).unwrap();
        let names = [
            "f.bin.part",
            "f.bin.summary.tmp",
            "f.bin.manifest.json.tmp",
            "f.bin.tmp",
            "chunks/f.bin.0.tmp",
        ];
        for (i, name) in names.iter().enumerate() {
            let target = victims.join(i.to_string());
            fs::write(&target, b"precious").unwrap();
            std::os::unix::fs::symlink(&target, peer.join(name)).unwrap();
        }
        let (store, mut have) = ChunkStore::open(&peer, &m, layout).unwrap();
        fill(&store, &m, &data, 0..m.chunk_count());
        for id in m.chunk_ids() {
            have.insert(id);
        }
        store.write_summary(&have).unwrap();
        let out = store.assemble().unwrap();
        assert_eq!(fs::read(&out).unwrap(), data, "{layout:?}");
        for (i, name) in names.iter().enumerate() {
            let target = victims.join(i.to_string());
            assert_eq!(fs::read(&target).unwrap(), b"precious", "{layout:?} {name}");
        }
    }
}

/// `peer get FAKE movie.mkv` in a home folder must not replace `.bashrc`: a file at
/// `DIR/NAME` that is not this file, verified, is refused on open, before anything is
/// written, and one planted after the open is refused by `assemble`.
#[test]
fn a_file_the_store_did_not_create_is_never_replaced() {
    for layout in [Layout::PartFile, Layout::ChunkFiles] {
        let (dir, m, data) = setup(1234);
        let peer = dir.path().join("peer");
        fs::create_dir(&peer).unwrap();
        let out = peer.join(&m.name);
        fs::write(&out, b"precious").unwrap();
        let err = ChunkStore::open(&peer, &m, layout).unwrap_err();
        assert!(
            matches!(&err, StoreError::WouldReplace(p) if *p == out),
            "{err}"
        );
        assert!(
            err.to_string().contains(&out.display().to_string()),
            "{err}"
        );
        let left: Vec<_> = fs::read_dir(&peer)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            [m.name.as_str()],
            "{layout:?}: nothing else is created"
        );

        // Planted (as a file or as a symlink) between open and assemble.
        for symlink in [false, true] {
            fs::remove_file(&out).unwrap();
            let (store, _) = ChunkStore::open(&peer, &m, layout).unwrap();
            fill(&store, &m, &data, 0..m.chunk_count());
            let target = dir.path().join("target");
            fs::write(&target, b"precious").unwrap();
            if symlink {
                std::os::unix::fs::symlink(&target, &out).unwrap();
            } else {
                fs::copy(&target, &out).unwrap();
            }
            let err = store.assemble().unwrap_err();
            assert!(matches!(err, StoreError::WouldReplace(_)), "{err}");
            assert_eq!(fs::read(&out).unwrap(), b"precious");
            assert_eq!(fs::read(&target).unwrap(), b"precious");
            assert!(
                !peer.join("f.bin.tmp").exists(),
                "{layout:?}: no temp file left"
            );
        }
    }
}

/// A file of `size` bytes named `name`, and its manifest.
fn setup_named(name: &str, size: usize) -> (tempfile::TempDir, Manifest, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let src = dir.path().join(name);
    fs::write(&src, &data).unwrap();
    let m = Manifest::from_file(&src, DEFAULT_CHUNK_SIZE).unwrap();
    (dir, m, data)
}

/// Fills a fresh store, writes its summary, assembles, and reopens it complete.
fn round_trip(dir: &Path, m: &Manifest, data: &[u8], layout: Layout) {
    let (store, mut have) = ChunkStore::open(dir, m, layout).unwrap();
    fill(&store, m, data, 0..m.chunk_count());
    for id in m.chunk_ids() {
        have.insert(id);
    }
    store.write_summary(&have).unwrap();
    let out = store.assemble().unwrap();
    assert_eq!(out, dir.join(&*disk_name(&m.name)));
    assert_eq!(fs::read(&out).unwrap(), data, "{layout:?}");
    drop(store);
    let (_, have) = ChunkStore::open(dir, m, layout).unwrap();
    assert!(have.is_full(), "{layout:?} reopens complete");
}

/// A 250-byte name is legal: its auxiliary files use a short hashed stem.
#[test]
fn a_250_byte_name_round_trips_in_both_layouts() {
    let name = format!("{}.bin", "n".repeat(246));
    assert_eq!(name.len(), 250);
    for layout in [Layout::PartFile, Layout::ChunkFiles] {
        let (dir, m, data) = setup_named(&name, 1234);
        let peer = dir.path().join("peer");
        round_trip(&peer, &m, &data, layout);
        let stem = aux_stem(&name);
        assert!(stem.starts_with(".rs-") && stem.len() == 20, "{stem}");
        assert!(ChunkStore::manifest_path_for(&peer, &name).exists());
        assert!(peer.join(format!("{stem}.summary")).exists());
    }
    assert_eq!(aux_stem("f.bin"), "f.bin", "ordinary names keep their stem");
}

/// A name with control and bidirectional characters (another node's choice) is stored
/// under its `%XX` form: the part file, summary, chunk files and finished file, from the
/// first chunk through a restart to the end; nothing on disk carries the raw name.
#[test]
fn a_hostile_name_is_stored_under_its_safe_form() {
    let name = "ev\x1b]0;t\x07il\r\nfake\u{202e}gpj.exe";
    let safe = "ev%1B]0;t%07il%0D%0Afake%E2%80%AEgpj.exe";
    for layout in [Layout::PartFile, Layout::ChunkFiles] {
        let (dir, m, data) = setup_named(name, 1234);
        let peer = dir.path().join("peer");
        let (store, mut have) = ChunkStore::open(&peer, &m, layout).unwrap();
        fill(&store, &m, &data, 0..2);
        for id in m.chunk_ids().take(2) {
            have.insert(id);
        }
        store.write_summary(&have).unwrap();
        drop(store);
        let (_, again) = ChunkStore::open(&peer, &m, layout).unwrap();
        assert_eq!(again.count(), 2, "{layout:?}: resumed under the same names");
        round_trip(&peer, &m, &data, layout);
        assert!(ChunkStore::manifest_path_for(&peer, name).exists());
        assert_eq!(fs::read(peer.join(safe)).unwrap(), data);
        let mut names = Vec::new();
        for e in walkdir(&peer) {
            let n = e.file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                !n.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{layout:?}: {n:?}"
            );
            names.push(n);
        }
        assert!(names.iter().any(|n| n == safe), "{layout:?}: {names:?}");
    }
}

/// Every path under `dir`, folders included.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        }
        out.push(p);
    }
    out
}

/// `--chunk-files` for a file named `chunks`: its chunk folder moves aside, and the
/// finished file is put in place, with no `chunks.tmp` left.
#[test]
fn a_file_named_chunks_round_trips_with_chunk_files() {
    let (dir, m, data) = setup_named("chunks", 1234);
    let peer = dir.path().join("peer");
    round_trip(&peer, &m, &data, Layout::ChunkFiles);
    assert!(peer.join(".rs-chunks").is_dir());
    assert!(!peer.join("chunks.tmp").exists());
}

/// A manifest declaring 16 TiB is refused before anything is created or preallocated:
/// no part file (sparse, on tmpfs), no chunk folder, no 70 MB manifest copy.
#[test]
fn a_file_larger_than_the_free_space_is_refused_and_leaves_nothing() {
    let size = u64::from(crate::manifest::MAX_CHUNKS) * crate::manifest::MAX_CHUNK_SIZE;
    let m = Manifest {
        name: "huge.bin".into(),
        size,
        chunk_size: crate::manifest::MAX_CHUNK_SIZE,
        hash: Hash::of(b""),
        chunks: vec![Hash::of(b""); crate::manifest::MAX_CHUNKS as usize],
    };
    m.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vfs = rustix::fs::statvfs(dir.path()).unwrap();
    if vfs.f_bavail * vfs.f_frsize >= 2 * size {
        eprintln!(
            "skipped: {} has more than 32 TiB free",
            dir.path().display()
        );
        return;
    }
    for layout in [Layout::PartFile, Layout::ChunkFiles] {
        let err = ChunkStore::open(dir.path(), &m, layout).unwrap_err();
        assert!(
            matches!(err, StoreError::NoSpace { .. }),
            "{layout:?}: {err}"
        );
        let msg = err.to_string();
        let copies = if layout == Layout::PartFile { 1 } else { 2 }; // chunks, joined file
        let want = format!(
            "huge.bin needs {} bytes ({}.0 TiB) more, {} has ",
            copies * size,
            copies * 16,
            dir.path().display()
        );
        assert!(
            msg.starts_with(&want) && msg.contains(" available ("),
            "{msg}"
        );
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{layout:?} left {left:?}");
    }
}

#[test]
fn a_symlinked_chunk_folder_is_refused() {
    let (dir, m, _) = setup(1234);
    let peer = dir.path().join("peer");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir_all(&peer).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, peer.join("chunks")).unwrap();
    let err = ChunkStore::open(&peer, &m, Layout::ChunkFiles).unwrap_err();
    assert!(matches!(err, StoreError::NotAFolder(_)), "{err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn empty_file_assembles() {
    let (dir, m, _) = setup(0);
    let (store, have) = ChunkStore::open(&dir.path().join("p"), &m, Layout::PartFile).unwrap();
    assert!(have.is_full());
    let out = store.assemble().unwrap();
    assert_eq!(fs::read(out).unwrap().len(), 0);
}

#[test]
fn the_part_files_hash_is_built_as_chunks_arrive_and_after_a_resume() {
    // 100 KiB chunks: the whole-file hash is merged from each chunk's share (`tree.rs`).
    let (dir, m, data) = setup(7 * 102_400 + 5);
    let peer = dir.path().join("peer");
    let (store, mut have) = ChunkStore::open(&peer, &m, Layout::PartFile).unwrap();
    fill(&store, &m, &data, [6, 2, 0].into_iter());
    for n in [6, 2, 0] {
        have.insert(m.chunk_id(n).unwrap());
    }
    store.write_summary(&have).unwrap();
    drop(store);
    // Reopened: the three held chunks are read back for the hash at the end.
    let (store, have) = ChunkStore::open(&peer, &m, Layout::PartFile).unwrap();
    assert_eq!(have.count(), 3);
    for n in [7, 1, 5, 3, 4] {
        let id = m.chunk_id(n).unwrap();
        let off = m.chunk_offset(id) as usize;
        let chunk = bytes::Bytes::copy_from_slice(&data[off..off + m.chunk_len(id)]);
        crate::storage::check_and_store(&m, &store, id, &chunk).unwrap();
    }
    // The chunks that arrived were hashed behind; the rest are read back.
    let tree = store
        .tree
        .as_ref()
        .expect("100 KiB chunks use the tree")
        .finish();
    assert!(tree.has(m.chunk_offset(m.chunk_id(7).unwrap())));
    assert!(!tree.has(0));
    let out = store.assemble().unwrap();
    assert_eq!(fs::read(&out).unwrap(), data);

    // A manifest whose file hash its chunks do not give is refused, as before.
    let (dir, mut m, data) = setup(6 * 102_400);
    m.hash = Hash::of(b"another file");
    let (store, _) = ChunkStore::open(&dir.path().join("peer"), &m, Layout::PartFile).unwrap();
    fill(&store, &m, &data, 0..m.chunk_count());
    assert!(matches!(
        store.assemble(),
        Err(StoreError::FileHashMismatch { .. })
    ));
    assert!(!store.output_path().exists());
}
