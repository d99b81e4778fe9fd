//! Opening a [`ChunkStore`]: the refusals (a file in the way, too little space, a symlinked
//! chunk folder), the data files, and resuming from the chunks an earlier run left.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use super::disk::{ChunkStore, Layout};
use super::error::{StoreError, io_err, shown};
use super::fs::{aux_stem, hash_file, nofollow, open_read, read_nofollow, write_atomic};
use super::tree::{FileTree, TreeHasher};
use crate::chunkset::ChunkSet;
use crate::manifest::Manifest;

impl ChunkStore {
    /// Opens (creating) the store for `manifest` in `dir` and returns it with the chunks it
    /// already holds, each verified against the manifest. Chunks that fail are dropped (and
    /// will be fetched again).
    ///
    /// # Errors
    ///
    /// The folder or files cannot be created or read.
    pub fn open(
        dir: &Path,
        manifest: &Manifest,
        layout: Layout,
    ) -> Result<(Self, ChunkSet), StoreError> {
        fs::create_dir_all(dir).map_err(io_err("creating folder", dir))?;
        let mut store = Self {
            dir: dir.to_path_buf(),
            manifest: manifest.clone(),
            layout,
            data: None,
            sync: true,
            assembled: AtomicBool::new(false),
            batch: Mutex::default(),
            flush_lock: Mutex::new(()),
            tree: match layout {
                Layout::PartFile => {
                    FileTree::new(manifest.size, manifest.chunk_size).map(TreeHasher::new)
                }
                Layout::ChunkFiles => None,
            },
        };
        let have = store.open_files()?;
        // Last: a manifest refused above leaves no copy behind.
        let manifest_path = store.manifest_path();
        let json = serde_json::to_vec(manifest).map_err(|_| StoreError::Bug("manifest json"))?;
        if read_nofollow(&manifest_path).ok().as_deref() != Some(&json[..]) {
            write_atomic(&manifest_path, &json, true)?;
        }
        Ok((store, have))
    }

    /// Creates `DIR/chunks` if needed; refuses anything there but a real folder.
    fn ensure_chunk_folder(&self) -> Result<(), StoreError> {
        let chunks = self.chunk_folder();
        fs::create_dir_all(&chunks).map_err(io_err("creating folder", &chunks))?;
        // `create_dir_all` accepts a symlink to a folder: refuse it.
        let meta = fs::symlink_metadata(&chunks).map_err(io_err("reading", &chunks))?;
        if !meta.is_dir() {
            return Err(StoreError::NotAFolder(chunks));
        }
        Ok(())
    }

    /// The part of [`ChunkStore::open`] that finds, checks and creates the data files.
    fn open_files(&mut self) -> Result<ChunkSet, StoreError> {
        let (manifest, layout) = (&self.manifest.clone(), self.layout);
        let store = self;
        // A finished file that verifies: everything is held.
        let out = store.output_path();
        if let Ok(meta) = fs::symlink_metadata(&out)
            && meta.is_file()
            && meta.len() == manifest.size
            && hash_file(&out)? == manifest.hash
        {
            if layout == Layout::PartFile {
                store.data = Some(open_read(&out).map_err(io_err("opening", &out))?);
            }
            let have = ChunkSet::full(manifest.chunk_count());
            if layout == Layout::ChunkFiles {
                store.ensure_chunk_folder()?;
                store.restore_chunk_files(&have)?;
            }
            store.assembled = AtomicBool::new(true);
            return Ok(have);
        }
        // Anything else there is not this peer's to replace.
        if fs::symlink_metadata(&out).is_ok() {
            return Err(StoreError::WouldReplace(out));
        }
        store.check_space()?;
        let created_folder = layout == Layout::ChunkFiles && !store.chunk_folder().exists();
        let res = store.open_data();
        if res.is_err() && created_folder {
            let _ = fs::remove_dir(store.chunk_folder());
        }
        res
    }

    /// Refuses a file that cannot fit: the bytes still to be written (what the part file or
    /// the chunk files do not hold yet, plus, for chunk files, the joined copy) against the
    /// space available in the folder. A folder whose space cannot be read is not checked.
    fn check_space(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let size = self.manifest.size;
        let needed = match self.layout {
            Layout::PartFile => {
                let allocated = fs::symlink_metadata(self.part_path())
                    .ok()
                    .filter(fs::Metadata::is_file)
                    .map_or(0, |m| m.blocks().saturating_mul(512));
                size.saturating_sub(allocated)
            }
            Layout::ChunkFiles => {
                let held: u64 = self
                    .chunk_files_present()
                    .indices()
                    .filter_map(|n| self.manifest.chunk_id(n).ok())
                    .map(|id| self.manifest.chunk_len(id) as u64)
                    .sum();
                size.saturating_mul(2).saturating_sub(held)
            }
        };
        let Ok(vfs) = rustix::fs::statvfs(&self.dir) else {
            return Ok(());
        };
        let available = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        if needed > available {
            return Err(StoreError::NoSpace {
                name: self.manifest.name.clone(),
                needed,
                dir: self.dir.clone(),
                available,
            });
        }
        Ok(())
    }

    /// The rest of [`ChunkStore::open_files`], once the file is known to fit: the chunk
    /// folder or part file, and the chunks already held.
    fn open_data(&mut self) -> Result<ChunkSet, StoreError> {
        let (manifest, layout) = (&self.manifest.clone(), self.layout);
        let store = self;
        if layout == Layout::ChunkFiles {
            store.ensure_chunk_folder()?;
        }

        // Which chunks to look at: with a part file or chunk files from an earlier run, every
        // chunk (a run killed between writing a chunk and the next summary left chunks the
        // summary does not name yet); otherwise those the summary names.
        let earlier = layout == Layout::PartFile && store.open_part_file()?;

        let listed = store.read_summary();
        let candidates = match layout {
            Layout::PartFile if earlier => ChunkSet::full(manifest.chunk_count()),
            Layout::PartFile => listed.clone(),
            Layout::ChunkFiles => {
                let mut c = listed.clone();
                c.union_with(&store.chunk_files_present());
                c
            }
        };
        let mut have = ChunkSet::new(manifest.chunk_count());
        for n in candidates.indices() {
            let id = manifest
                .chunk_id(n)
                .map_err(|_| StoreError::Bug("summary id"))?;
            // Only a chunk the summary names was known good: say so when it is not.
            let named = listed.contains(id);
            match store.read_chunk(id) {
                Ok(data) if crate::storage::verify(manifest, id, &data).is_ok() => {
                    have.insert(id);
                }
                Ok(_) if named => {
                    tracing::warn!(chunk = n, "stored chunk fails its hash; fetching again");
                }
                Err(e) if named => {
                    tracing::warn!(chunk = n, "stored chunk unreadable ({e}); fetching again");
                }
                _ => {}
            }
        }
        let recovered = have.difference(&listed).len();
        if recovered > 0 {
            tracing::info!("{recovered} verified chunks found on disk beyond the summary; kept");
        }
        if layout == Layout::ChunkFiles && store.sync {
            // Found after a crash, they may not be on disk yet: synced before named.
            let mut batch = store.batch();
            for n in have.difference(&listed) {
                batch.add_file(manifest.chunk_id(n).map_err(|_| StoreError::Bug("id"))?);
            }
        }
        if have != listed {
            store.write_summary(&have)?;
        }
        Ok(have)
    }

    /// Opens (creating) the part file, sized to the file, replacing a symlink of its name.
    /// Returns whether it was there from an earlier run; one this call created is removed
    /// again when it cannot be sized.
    fn open_part_file(&mut self) -> Result<bool, StoreError> {
        let part = self.part_path();
        let mut earlier = false;
        match fs::symlink_metadata(&part) {
            Ok(m) if m.is_symlink() => {
                tracing::warn!("{} is a symlink; removing it", shown(&part));
                fs::remove_file(&part).map_err(io_err("removing", &part))?;
            }
            Ok(_) => earlier = true,
            Err(_) => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(nofollow())
            .open(&part)
            .map_err(io_err("opening", &part))?;
        let len = file.metadata().map_err(io_err("reading", &part))?.len();
        if len != self.manifest.size
            && let Err(e) = file.set_len(self.manifest.size)
        {
            if !earlier {
                let _ = fs::remove_file(&part); // leave nothing behind
            }
            return Err(io_err("sizing", &part)(e));
        }
        self.data = Some(file);
        Ok(earlier)
    }

    /// The chunks that have a chunk file (not checked).
    fn chunk_files_present(&self) -> ChunkSet {
        let mut set = ChunkSet::new(self.manifest.chunk_count());
        let prefix = format!("{}.", aux_stem(&self.manifest.name));
        let Ok(entries) = fs::read_dir(self.chunk_folder()) else {
            return set;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if let Ok(n) = rest.parse::<u32>()
                && let Ok(id) = self.manifest.chunk_id(n)
            {
                set.insert(id);
            }
        }
        set
    }

    /// For a complete chunk-files store whose chunk files were removed: cut them again from
    /// the finished file, so the peer can serve.
    fn restore_chunk_files(&self, have: &ChunkSet) -> Result<(), StoreError> {
        let out = self.output_path();
        let file = open_read(&out).map_err(io_err("opening", &out))?;
        for n in have.indices() {
            let id = self
                .manifest
                .chunk_id(n)
                .map_err(|_| StoreError::Bug("id"))?;
            let path = self.chunk_path(id);
            let ok = fs::symlink_metadata(&path)
                .map(|m| m.is_file() && m.len() == self.manifest.chunk_len(id) as u64)
                .unwrap_or(false);
            if !ok {
                let mut buf = vec![0u8; self.manifest.chunk_len(id)];
                file.read_exact_at(&mut buf, self.manifest.chunk_offset(id))
                    .map_err(io_err("reading", &out))?;
                write_atomic(&path, &buf, self.sync)?;
            }
        }
        Ok(())
    }
}
