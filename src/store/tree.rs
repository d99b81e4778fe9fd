//! The whole-file hash, built from the chunks as they are stored, in any order.
//!
//! BLAKE3 hashes a file as a binary tree over its 1 KiB pieces. When chunks start on 1 KiB
//! boundaries, the tree's nodes that lie inside one chunk can be hashed as soon as that chunk
//! is verified (their "chaining values", with the chunk's offset in the file), and the whole
//! file's hash is merged from them at the end: a few thousand parent hashes, where reading
//! and hashing the finished file again took a second or more per GiB. The result is the
//! BLAKE3 hash of exactly the bytes that were verified and written, as `blake3::hash` of the
//! whole file would give.
//!
//! The hashing runs behind the transfer on a thread of its own at the lowest priority
//! ([`TreeHasher`]), so it takes nothing from the forwarding path and uses a core the peer's
//! runtime leaves idle (on a machine of more cores than the peer's threads). It never holds
//! more than [`QUEUE`] chunks: when it falls behind (no idle core), a chunk is left out, and
//! at the end every chunk the tree lacks (left out, or held from an earlier run) is read back
//! and added. So the end costs what it did before at worst.
//!
//! Used only where it applies: chunk sizes that are a multiple of 1 KiB and files of more than
//! one chunk and more than 1 KiB. Other files are hashed whole at the end, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;

use bytes::Bytes;

use blake3::hazmat::{ChainingValue, HasherExt, Mode, left_subtree_len};
use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root};

use crate::hash::Hash;

/// BLAKE3's piece size: tree nodes start on multiples of it.
const PIECE: u64 = blake3::CHUNK_LEN as u64;

/// The most chunks waiting for the hashing thread (3.2 MiB of 100 KiB chunks).
pub const QUEUE: usize = 32;

/// The hashing thread: where chunks are handed to it, and its handle.
type Worker = (SyncSender<(u64, Bytes)>, JoinHandle<()>);

/// A [`FileTree`] fed on a thread of its own, started at the first chunk.
#[derive(Debug)]
pub struct TreeHasher {
    tree: std::sync::Arc<FileTree>,
    thread: Mutex<Option<Worker>>,
}

impl TreeHasher {
    /// Feeds `tree`.
    pub fn new(tree: FileTree) -> Self {
        Self {
            tree: std::sync::Arc::new(tree),
            thread: Mutex::default(),
        }
    }

    /// Hands the chunk `data` at `offset` to the hashing thread, or leaves it out (it is read
    /// back at the end) when [`QUEUE`] chunks wait already or no thread could be started.
    pub fn add_later(&self, offset: u64, data: Bytes) {
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Bytes)>(QUEUE);
            let tree = self.tree.clone();
            let spawned = std::thread::Builder::new()
                .name("tree hash".into())
                .spawn(move || {
                    // Lowest priority: the thread takes only what the peer leaves idle.
                    let tid = rustix::thread::gettid();
                    let _ = rustix::process::setpriority_process(Some(tid), 19);
                    while let Ok((at, data)) = rx.recv() {
                        tree.add(at, &data);
                    }
                });
            match spawned {
                Ok(handle) => *thread = Some((tx, handle)),
                Err(_) => return,
            }
        }
        if let Some((tx, _)) = thread.as_ref()
            && let Err(TrySendError::Disconnected(_)) = tx.try_send((offset, data))
        {
            *thread = None;
        }
    }

    /// Waits until the chunks handed over are hashed (the thread ends; a later chunk starts
    /// another), then gives the tree.
    pub fn finish(&self) -> &FileTree {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((tx, handle)) = thread {
            drop(tx);
            let _ = handle.join();
        }
        &self.tree
    }
}

/// The tree nodes hashed so far, each inside one chunk: start → (length, chaining value).
#[derive(Debug)]
pub struct FileTree {
    len: u64,
    nodes: Mutex<HashMap<u64, (u64, ChainingValue)>>,
}

impl FileTree {
    /// A tree for a file of `len` bytes cut in chunks of `chunk_size`, or `None` where chunks
    /// do not start on 1 KiB boundaries or the file is one chunk or one piece.
    pub fn new(len: u64, chunk_size: u64) -> Option<Self> {
        let applies =
            chunk_size > 0 && chunk_size.is_multiple_of(PIECE) && len > PIECE && len > chunk_size;
        applies.then(|| Self {
            len,
            nodes: Mutex::default(),
        })
    }

    /// Adds the chunk `data` found at `offset`: hashes every tree node that lies inside it.
    /// Costs one BLAKE3 pass over `data`. A chunk that does not fit the tree is ignored (the
    /// hash at the end then reads it back).
    pub fn add(&self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        if !offset.is_multiple_of(PIECE)
            || end > self.len
            || !(end.is_multiple_of(PIECE) || end == self.len)
        {
            return;
        }
        let mut found = Vec::new();
        inside(0, self.len, offset, end, &mut |s, e| {
            let at = usize::try_from(s - offset).unwrap_or(usize::MAX);
            let to = usize::try_from(e - offset).unwrap_or(usize::MAX);
            if let Some(bytes) = data.get(at..to) {
                let cv = blake3::Hasher::new()
                    .set_input_offset(s)
                    .update(bytes)
                    .finalize_non_root();
                found.push((s, (e - s, cv)));
            }
        });
        self.lock().extend(found);
    }

    /// Whether the chunk at `offset` was added.
    pub fn has(&self, offset: u64) -> bool {
        self.lock().contains_key(&offset)
    }

    /// The whole file's BLAKE3 hash, or `None` while a chunk is missing.
    pub fn root(&self) -> Option<Hash> {
        let nodes = self.lock();
        let left = left_subtree_len(self.len);
        let l = node(&nodes, 0, left)?;
        let r = node(&nodes, left, self.len)?;
        Some(merge_subtrees_root(&l, &r, Mode::Hash).into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, ChainingValue)>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Calls `found` with every largest tree node of `[s, e)` that lies inside `[a, b)`.
fn inside(s: u64, e: u64, a: u64, b: u64, found: &mut impl FnMut(u64, u64)) {
    if e <= a || s >= b {
        return;
    }
    if a <= s && e <= b {
        found(s, e);
        return;
    }
    if e - s <= PIECE {
        // One piece that a chunk boundary cuts: `add` refuses such chunks.
        return;
    }
    let mid = s + left_subtree_len(e - s);
    inside(s, mid, a, b, found);
    inside(mid, e, a, b, found);
}

/// The chaining value of the tree node `[s, e)`, merged from the nodes below it.
fn node(nodes: &HashMap<u64, (u64, ChainingValue)>, s: u64, e: u64) -> Option<ChainingValue> {
    if let Some(&(len, cv)) = nodes.get(&s)
        && len == e - s
    {
        return Some(cv);
    }
    if e - s <= PIECE {
        return None;
    }
    let mid = s + left_subtree_len(e - s);
    let l = node(nodes, s, mid)?;
    let r = node(nodes, mid, e)?;
    Some(merge_subtrees_non_root(&l, &r, Mode::Hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251).to_le_bytes()[0]).collect()
    }

    /// Adds every chunk of `file`, in the order given by `order` over chunk indexes.
    fn tree_of(file: &[u8], chunk: usize, order: &[usize]) -> FileTree {
        let tree = FileTree::new(file.len() as u64, chunk as u64).unwrap();
        for &i in order {
            let at = i * chunk;
            tree.add(at as u64, &file[at..(at + chunk).min(file.len())]);
        }
        tree
    }

    #[test]
    fn the_root_is_blake3_of_the_whole_file_in_any_order() {
        for (len, chunk) in [
            (102_400 * 7 + 1, 102_400),
            (102_400 * 5, 102_400),
            (4096 * 3 + 1023, 4096),
            (2048 + 1, 1024),
            (1024 * 1000 + 512, 3072),
            (65_536 * 9, 65_536),
        ] {
            let file = data(len);
            let n = len.div_ceil(chunk);
            let forward: Vec<usize> = (0..n).collect();
            let mixed: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
            let backward: Vec<usize> = (0..n).rev().collect();
            let want: Hash = blake3::hash(&file).into();
            for order in [forward, backward] {
                assert_eq!(
                    tree_of(&file, chunk, &order).root(),
                    Some(want),
                    "{len}/{chunk}"
                );
            }
            if n % 7 != 0 {
                assert_eq!(
                    tree_of(&file, chunk, &mixed).root(),
                    Some(want),
                    "{len}/{chunk}"
                );
            }
        }
    }

    #[test]
    fn a_missing_or_wrong_chunk_shows() {
        let file = data(102_400 * 6 + 10);
        let tree = tree_of(&file, 102_400, &[0, 1, 2, 4, 5, 6]);
        assert_eq!(tree.root(), None);
        assert!(tree.has(102_400 * 2) && !tree.has(102_400 * 3));
        let mut other = file[102_400 * 3..102_400 * 4].to_vec();
        other[5] ^= 1;
        tree.add(102_400 * 3, &other);
        let got = tree.root().unwrap();
        assert_ne!(got, Hash::from(blake3::hash(&file)));
        // The right bytes replace the wrong ones.
        tree.add(102_400 * 3, &file[102_400 * 3..102_400 * 4]);
        assert_eq!(tree.root(), Some(blake3::hash(&file).into()));
    }

    #[test]
    fn the_thread_behind_hashes_what_it_is_handed() {
        let file = bytes::Bytes::from(data(102_400 * 9 + 77));
        let hasher = TreeHasher::new(FileTree::new(file.len() as u64, 102_400).unwrap());
        for i in [3usize, 0, 8, 1, 9, 2, 7, 4, 6, 5] {
            let at = i * 102_400;
            hasher.add_later(at as u64, file.slice(at..(at + 102_400).min(file.len())));
            if i == 8 {
                // A thread ended midway is started again by the next chunk.
                assert_eq!(hasher.finish().root(), None);
            }
        }
        assert_eq!(hasher.finish().root(), Some(blake3::hash(&file).into()));
    }

    #[test]
    fn it_applies_only_where_chunks_start_on_pieces() {
        assert!(FileTree::new(1000, 200).is_none());
        assert!(FileTree::new(102_400 * 5 - 1, 102_399).is_none());
        assert!(FileTree::new(5000, 1024).is_some());
        assert!(FileTree::new(1024, 1024).is_none());
        assert!(FileTree::new(4096, 4096).is_none());
        assert!(FileTree::new(0, 102_400).is_none());
        // A chunk that does not fit is ignored, not trusted.
        let tree = FileTree::new(8192, 2048).unwrap();
        tree.add(100, &[0; 2048]);
        tree.add(8192, &[0; 2048]);
        assert_eq!(tree.lock().len(), 0);
    }
}
