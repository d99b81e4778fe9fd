//! What the owner's connections share ([`Ctx`]): its files, the directory, the choker, the
//! spare-upload gate and its settings. Every step of a connection takes it; none defines it.

use std::sync::Arc;

use super::config::Config;
use super::shared::Files;
use super::spare::SpareGate;
use crate::choke::Choker;
use crate::directory::Directory;

/// What the owner knows of its connections: its files, the directory, the choker, and its
/// settings.
#[derive(Debug)]
pub(super) struct Ctx {
    pub config: Arc<Config>,
    pub files: Arc<Files>,
    pub directory: Arc<Directory>,
    pub choker: Arc<Choker>,
    pub spare: SpareGate,
    /// The owner's own network when it is in memory (`None`: TCP), for its probes.
    pub net: Option<Arc<crate::net::MemNet>>,
}
