//! The owner's list of the files it answers `hello` for ([`Files`]), and which one a `hello`
//! asks for; the files to share for a path given on the command line ([`files_to_share`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shared::SharedFile;
use crate::directory::{Directory, MemberId};
use crate::manifest::Manifest;

/// The regular files to share for `path`: the file itself, or every regular file directly in
/// the folder (sorted by name; hidden files and subfolders are skipped).
///
/// # Errors
///
/// `path` is missing or unreadable, or a folder holds no regular file.
pub fn files_to_share(path: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let hidden = name.to_str().is_none_or(|n| n.starts_with('.'));
        if !hidden && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the folder holds no regular file to share",
        ));
    }
    Ok(files)
}

/// The files an owner answers `hello` for, at the directory's indices: its own first, then
/// those publishers registered (see [`SharedFile::published`]). A published file leaves when
/// the directory frees it ([`Files::forget`]).
#[derive(Debug, Default)]
pub(crate) struct Files(std::sync::RwLock<BTreeMap<usize, Arc<SharedFile>>>);

impl Files {
    /// The files of `directory` (made from the same list, in the same order).
    pub(crate) fn new(files: Vec<Arc<SharedFile>>) -> Self {
        Self(std::sync::RwLock::new(
            files.into_iter().enumerate().collect(),
        ))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<usize, Arc<SharedFile>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<usize, Arc<SharedFile>>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The file at directory index `index`.
    pub(crate) fn get(&self, index: usize) -> Option<Arc<SharedFile>> {
        self.read().get(&index).cloned()
    }

    /// How many files there are, and the only one if there is one.
    pub(crate) fn only(&self) -> (usize, Option<Arc<SharedFile>>) {
        let files = self.read();
        let only = (files.len() == 1)
            .then(|| files.values().next().cloned())
            .flatten();
        (files.len(), only)
    }

    /// The file a `hello` asks for by `wanted` (a name, a content hash or the directory's
    /// numeric id; `None`: the only file), or the refusal to send the client: no such file,
    /// a name that is ambiguous, or a file withdrawn.
    pub(crate) fn lookup(
        &self,
        directory: &Directory,
        wanted: Option<&str>,
    ) -> Result<Arc<SharedFile>, String> {
        if let Some(msg) = wanted.and_then(|k| directory.ambiguous(k)) {
            return Err(msg);
        }
        let found = wanted
            .and_then(|k| directory.find(k))
            .and_then(|i| self.get(i));
        match found.map_or_else(|| self.choose(directory, wanted), Ok) {
            Ok(f) if f.is_withdrawn() => Err(f.changed_message()),
            found => found,
        }
    }

    /// The file a `hello` asks for when the directory found none by that key (or none was
    /// given), or an error to send back.
    fn choose(
        &self,
        directory: &Directory,
        wanted: Option<&str>,
    ) -> Result<Arc<SharedFile>, String> {
        if let Some(name) = wanted.and_then(|k| directory.gone(k)) {
            return Err(format!(
                "every publisher of {name:?} has left: no one serves it now (it is no longer listed)"
            ));
        }
        let names = || directory.offered_names(false);
        match wanted {
            Some(key) if key.parse::<crate::hash::Hash>().is_ok() => Err(format!(
                "owner shares no file with blake3 {key} (a ticket's file, withdrawn or never shared here); it shares: {}",
                names()
            )),
            Some(name) => Err(format!(
                "owner does not share {name:?}; it shares: {}",
                names()
            )),
            None => match self.only() {
                (_, Some(only)) => Ok(only),
                (n, None) => Err(format!(
                    "owner shares {n} files; choose one with --file NAME: {}",
                    names()
                )),
            },
        }
    }

    /// Adds the published file `manifest` to `directory` and here, or finds it (the same
    /// name and content), and registers `addr` as its publisher; it is offered again if its
    /// publishers had left. Its index, and the membership (`None`: `addr` already publishes
    /// it through another connection).
    pub(crate) fn publish(
        &self,
        directory: &Directory,
        manifest: Manifest,
        addr: std::net::SocketAddr,
        node: Option<String>,
    ) -> (usize, Option<MemberId>) {
        let shared = SharedFile::published(manifest).expect("a decoded manifest encodes");
        // One copy of the manifest, shared by the directory and the file.
        let (index, id) = directory.publish(shared.manifest.clone(), addr, node);
        let mut files = self.write();
        match files.get(&index) {
            Some(f) => f.offer_again(),
            None => {
                files.insert(index, Arc::new(shared));
            }
        }
        (index, id)
    }

    /// Adds a file this node holds (a publisher's, found in its folder after it started) to
    /// `directory` and here; the same name and content replaces the old entry. Its index.
    pub(crate) fn add(&self, directory: &Directory, shared: Arc<SharedFile>) -> usize {
        let mut files = self.write();
        let index = directory.add_held(shared.manifest.clone());
        files.insert(index, shared);
        index
    }

    /// The published file at `index` lost its last publisher: it is no longer offered.
    pub(crate) fn orphaned(&self, index: usize) {
        if let Some(f) = self.read().get(&index).filter(|f| f.is_published()) {
            f.withdraw();
        }
    }

    /// Drops the files the directory freed (see [`crate::directory::Left`]).
    pub(crate) fn forget(&self, freed: &[usize]) {
        if freed.is_empty() {
            return;
        }
        let mut files = self.write();
        for index in freed {
            files.remove(index);
        }
    }
}
