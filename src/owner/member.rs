//! A client's directory registration, held for as long as its connection lives.

use std::net::SocketAddr;

use tracing::info;

use super::shared::Files;
use crate::directory::{Directory, MemberId};

/// A client's directory registration; dropped (deregistered) with its connection, freeing
/// what the directory freed with it.
pub(super) struct Member<'a> {
    pub directory: &'a Directory,
    pub files: &'a Files,
    pub id: MemberId,
    pub addr: SocketAddr,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        let left = self.directory.deregister(self.id);
        self.files.forget(&left.freed);
        if left.was_member {
            info!(source = %self.addr, "left the directory");
        }
    }
}
