//! What the publisher's tasks share: the files shared now (with a signal for each change),
//! what is reported of them, and how often the shared paths are looked at again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::manifest::Manifest;
use crate::owner::SharedFile;
use crate::watch;

/// How often the shared paths are looked at again.
pub const RESCAN: Duration = Duration::from_secs(2);

/// What happened to a shared file, as the publisher reports it.
#[derive(Debug, Clone)]
pub enum Report {
    /// The directory lists it under this id; `node` is the directory's key, as proven.
    Published {
        id: u32,
        manifest: Arc<Manifest>,
        node: Option<crate::key::NodeId>,
    },
    /// It was removed from its folder, or changed (its new content is published anew).
    Withdrawn { manifest: Arc<Manifest> },
}

/// Told of every [`Report`].
pub type OnReport = Arc<dyn Fn(&Report) + Send + Sync>;

/// The files shared now, and a signal for each change.
pub(super) struct Current {
    pub(super) files: Mutex<Vec<Arc<SharedFile>>>,
    pub(super) changed: watch::Sender<()>,
}

impl Current {
    pub(super) fn snapshot(&self) -> Vec<Arc<SharedFile>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
