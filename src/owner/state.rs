//! What the owner's connections share ([`Owner`]): its files, the directory, the choker, the
//! spare-upload gate and its settings. Every step of a connection takes it; none defines it.

use std::sync::Arc;

use super::config::OwnerConfig;
use super::files::Files;
use super::spare::SpareGate;
use super::urgent::UrgentGate;
use crate::choke::Choker;
use crate::directory::Directory;

/// The file owner as its connections see it: its files, the directory, the choker, the
/// spare-upload gate and its settings.
#[derive(Debug)]
pub(super) struct Owner {
    pub config: Arc<OwnerConfig>,
    pub files: Arc<Files>,
    pub directory: Arc<Directory>,
    pub choker: Arc<Choker>,
    pub spare: SpareGate,
    /// Requests of members behind a slow neighbour, served first.
    pub urgent: UrgentGate,
    /// The owner's own network when it is in memory (`None`: TCP), for its probes.
    pub net: Option<Arc<crate::net::MemNet>>,
}

#[cfg(test)]
impl Owner {
    /// An owner of `files` with the default settings, its directory at 127.0.0.1:5000
    /// dropping members silent for `ttl`: for tests.
    pub(super) fn for_tests(
        files: Vec<Arc<super::shared::SharedFile>>,
        ttl: std::time::Duration,
    ) -> Self {
        let manifests = files.iter().map(|f| f.manifest.clone()).collect();
        let addr = "127.0.0.1:5000".parse().expect("an address");
        let events = Arc::new(crate::events::EventSink::console("owner"));
        Self {
            config: Arc::new(OwnerConfig::new(events)),
            files: Arc::new(Files::new(files)),
            directory: Arc::new(Directory::new(manifests, addr, ttl)),
            choker: Choker::new(4),
            spare: SpareGate::default(),
            urgent: UrgentGate::default(),
            net: None,
        }
    }
}
