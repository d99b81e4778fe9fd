//! The directory's files: finding one by name, hash or id, and adding the node's own files
//! and published ones.

use std::net::SocketAddr;
use std::sync::Arc;

use super::state::{Directory, MemberId};
use crate::chunkset::ChunkSet;
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::protocol::Role;

impl Directory {
    /// The number of files the directory holds (listed or not: a published file whose
    /// publishers left is held until its last member leaves too).
    pub fn file_count(&self) -> usize {
        self.inner().files.len()
    }

    /// The file named `key`, or else the file whose BLAKE3 hash is `key` (64 hex digits, as
    /// a ticket gives it), or else the file with numeric id `key`: its index.
    pub fn find(&self, key: &str) -> Option<usize> {
        let inner = self.inner();
        if let Some(&i) = inner.by_name.get(key).and_then(|ids| ids.first()) {
            return Some(i);
        }
        if let Ok(hash) = key.parse::<Hash>()
            && let Some((&i, _)) = inner.files.iter().find(|(_, e)| e.manifest.hash == hash)
        {
            return Some(i);
        }
        match key.trim().parse::<usize>() {
            Ok(id) if id >= 1 && inner.files.contains_key(&(id - 1)) => Some(id - 1),
            _ => None,
        }
    }

    /// When `key` names or hashes a published file the directory freed after its last
    /// publisher and member left: its name.
    pub fn gone(&self, key: &str) -> Option<String> {
        let hash = key.parse::<Hash>().ok();
        self.inner()
            .gone
            .iter()
            .rev()
            .find(|(name, h)| name == key || Some(*h) == hash)
            .map(|(name, _)| name.clone())
    }

    /// When several offered files are named `key` (two publishers' different contents): a
    /// message saying how to choose one.
    pub fn ambiguous(&self, key: &str) -> Option<String> {
        let inner = self.inner();
        let ids: Vec<String> = inner
            .by_name
            .get(key)
            .into_iter()
            .flatten()
            .filter(|&&f| inner.offered(f))
            .map(|f| (f + 1).to_string())
            .collect();
        (ids.len() > 1).then(|| {
            format!(
                "{} files are named {key:?} (ids {}): give its id, or its ticket",
                ids.len(),
                ids.join(", ")
            )
        })
    }

    /// The index of the file with this manifest's name and content.
    pub fn index_of(&self, manifest: &Manifest) -> Option<usize> {
        self.inner()
            .by_content
            .get(&(manifest.name.clone(), manifest.hash))
            .copied()
    }

    /// The manifest of the file at `index`.
    pub fn manifest(&self, index: usize) -> Option<Arc<Manifest>> {
        self.inner().files.get(&index).map(|e| e.manifest.clone())
    }

    /// Whether the owner holds the file at `index` itself (else only its publishers do).
    pub fn is_own(&self, index: usize) -> bool {
        self.inner().files.get(&index).is_some_and(|e| e.held)
    }

    /// How many members publish the file at `index`.
    pub fn publishers(&self, index: usize) -> usize {
        let inner = self.inner();
        inner.publishers_of(index).count()
    }

    /// The earliest registered publisher of the file at `index` still listed and not
    /// demoted for bad chunks.
    pub fn publisher(&self, index: usize) -> Option<SocketAddr> {
        let inner = self.inner();
        inner
            .publishers_of(index)
            .find(|m| !m.demoted)
            .map(|m| m.addr)
    }

    /// Adds a file this node holds itself (found after it started), or finds it: the same
    /// name and content is one file. Returns its index (its id − 1). It is never freed.
    pub fn add_held(&self, manifest: Arc<Manifest>) -> usize {
        let mut inner = self.inner();
        let index = inner.insert_file(manifest, false);
        if let Some(e) = inner.files.get_mut(&index) {
            e.held = true;
        }
        index
    }

    /// Adds a published file, or finds it (the same name and content is one file, whoever
    /// publishes it), and registers `addr` as its publisher, in one step: a file is never
    /// freed between being found and being published. Returns its index (its id − 1) and
    /// the membership, `None` when a live connection already publishes it from `addr`.
    pub fn publish(
        &self,
        manifest: Arc<Manifest>,
        addr: SocketAddr,
        node: Option<String>,
    ) -> (usize, Option<MemberId>) {
        let mut inner = self.inner();
        let index = inner.insert_file(manifest, false);
        let full = inner
            .files
            .get(&index)
            .map(|e| ChunkSet::full(e.manifest.chunk_count()));
        let id = full.and_then(|have| {
            self.register_in(&mut inner, index, addr, Role::Publisher, have, node)
        });
        (index, id)
    }
}
