//! File operations of the store that never follow a link: `O_NOFOLLOW` opens, fresh
//! `O_EXCL` creation, atomic writes through a temporary name, and placing the finished file
//! without replacing anything.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::{StoreError, io_err};
use crate::hash::Hash;
use crate::manifest::{MAX_NAME_LEN, disk_name};

/// The longest suffix added to a stem: `NAME.manifest.json.tmp`. (Chunk files add at most
/// `.<7 digits>.tmp`, 12 bytes.)
const LONGEST_AUX_SUFFIX: &str = ".manifest.json.tmp";

/// The stem of the auxiliary file names of `name` (part file, summary, saved manifest, chunk
/// files, temporary files): its stored form ([`disk_name`]) when every stem + suffix fits in
/// [`MAX_NAME_LEN`] bytes, else `.rs-` and 16 hex digits of `blake3(name)`.
pub fn aux_stem(name: &str) -> String {
    let stored = disk_name(name);
    if stored.len() + LONGEST_AUX_SUFFIX.len() <= MAX_NAME_LEN {
        stored.into_owned()
    } else {
        format!(".rs-{}", &blake3::hash(name.as_bytes()).to_hex()[..16])
    }
}

/// `O_NOFOLLOW`: opening a symlink fails (`ELOOP`) instead of following it.
pub(super) fn nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits().cast_signed()
}

/// Opens `path` for reading; a symlink is refused, not followed.
pub(super) fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nofollow())
        .open(path)
}

/// Reads the whole of `path`; a symlink is refused, not followed.
///
/// # Errors
///
/// Any I/O error (`ELOOP` for a symlink).
pub fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_read(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates `path` afresh for writing. A stale file or symlink of that name is removed first
/// (never followed); the new file is made with `O_EXCL | O_NOFOLLOW`, so a link planted in
/// between makes this fail instead of writing through it.
pub(super) fn create_fresh(path: &Path) -> io::Result<File> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a folder is in the way",
            ));
        }
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nofollow())
        .open(path)
}

/// Writes `bytes` to `path` through `path.tmp` and a rename, so `path` is never half-written:
/// with `sync`, the temporary file's bytes reach the disk before the rename, and the rename
/// before this returns (the folder is synced), so not even a power cut leaves a half-written
/// `path`.
///
/// # Errors
///
/// Any I/O error, naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
    let tmp = tmp_path(path);
    let mut f = create_fresh(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    if sync {
        f.sync_all().map_err(io_err("syncing", &tmp))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("renaming", &tmp))?;
    if sync {
        sync_parent(path)?;
    }
    Ok(())
}

/// Syncs the folder holding `path`, so a rename into it is on disk.
pub(super) fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing folder", dir))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Moves `src` to `dst` without ever replacing a file at `dst`: a hard link (which fails if
/// `dst` exists, atomically) and the removal of `src`; on a file system without hard links, a
/// check that nothing is at `dst`, then a rename.
pub(super) fn place(src: &Path, dst: &Path) -> Result<(), StoreError> {
    match fs::hard_link(src, dst) {
        Ok(()) => fs::remove_file(src).map_err(io_err("removing", src)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(StoreError::WouldReplace(dst.to_path_buf()))
        }
        Err(_) if fs::symlink_metadata(dst).is_ok() => {
            Err(StoreError::WouldReplace(dst.to_path_buf()))
        }
        Err(_) => fs::rename(src, dst).map_err(io_err("renaming", src)),
    }
}

/// The BLAKE3 hash of a whole file, read in 1 MiB pieces.
///
/// # Errors
///
/// Any I/O error, naming the path.
pub fn hash_file(path: &Path) -> Result<Hash, StoreError> {
    let mut f = open_read(path).map_err(io_err("opening", path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
