//! The app's shares as it keeps them: the paths a person shares (checked before they are
//! taken: [`check_share_path`]) and what the publisher reported published, by hash, with the
//! file served (its path, its upload counts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::hash::Hash;
use crate::key::NodeId;
use crate::owner::SharedFile;
use crate::share::{Paths, Report};

/// One path shared.
#[derive(Clone, Debug)]
pub struct Share {
    /// Its id in the app.
    pub id: u32,
    /// The path, as given.
    pub path: PathBuf,
}

/// A file the directory lists because this app published it.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub(crate) id: u32,
    pub(crate) file: Arc<SharedFile>,
    pub(crate) node: Option<NodeId>,
}

/// The shares and what of them is published.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    pub(crate) paths: Paths,
    pub(crate) list: Mutex<BTreeMap<u32, Share>>,
    pub(crate) published: Mutex<BTreeMap<Hash, Published>>,
    /// Why the publisher stopped, in words (the directory refused it).
    pub(crate) error: Mutex<Option<String>>,
}

impl Shares {
    pub(crate) fn list(&self) -> Vec<Share> {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn published(&self) -> Vec<Published> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn report(&self, r: &Report) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Report::Published {
                id,
                manifest,
                node,
                file,
            } => {
                published.insert(
                    manifest.hash,
                    Published {
                        id: *id,
                        file: file.clone(),
                        node: *node,
                    },
                );
            }
            Report::Withdrawn { manifest } => {
                published.remove(&manifest.hash);
            }
        }
    }
}

/// Whether `path` can be shared: an existing regular file, or a folder holding one, that
/// this process can read. The error says what is wrong in words.
///
/// # Errors
///
/// The words: missing, unreadable, a device, a FIFO or a socket, an empty folder.
pub fn check_share_path(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let shown = crate::manifest::display_name(&path.to_string_lossy()).to_string();
    if path.as_os_str().is_empty() {
        return Err("give the path of a file or a folder to share".into());
    }
    if !path.is_absolute() {
        return Err(format!(
            "{shown} is not a full path: give it from the root (/home/…)"
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown} does not exist"),
        std::io::ErrorKind::PermissionDenied => {
            format!("{shown} cannot be read: permission denied")
        }
        _ => format!("{shown} cannot be read: {e}"),
    })?;
    let ft = meta.file_type();
    let odd = if ft.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ft.is_char_device() || ft.is_block_device() {
        Some("a device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        None
    };
    if let Some(what) = odd {
        return Err(format!(
            "{shown} is {what}: only regular files and folders can be shared"
        ));
    }
    if ft.is_file() {
        return std::fs::File::open(path)
            .map(drop)
            .map_err(|e| format!("{shown} cannot be read: {}", io_words(&e)));
    }
    let files = crate::owner::files_to_share(path)
        .map_err(|e| format!("{shown} cannot be shared: {}", io_words(&e)))?;
    if files
        .iter()
        .all(|f| std::fs::File::open(f).map(drop).is_err())
    {
        return Err(format!("{shown}: none of its files can be read"));
    }
    Ok(())
}

/// An I/O error in words, without the OS's error number.
fn io_words(e: &std::io::Error) -> String {
    if e.get_ref().is_some() {
        // A message of ours ("the folder holds no regular file to share").
        return e.to_string();
    }
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::NotFound => "not found".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
    }
}

/// Which shares hold `file` (the path it was shared by, or the folder it is in).
pub(crate) fn holds(share: &Share, file: &Path) -> bool {
    file == share.path || file.parent() == Some(share.path.as_path())
}
