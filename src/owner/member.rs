//! A client's directory registration ([`Membership`]), held for as long as its connection
//! lives.

use std::net::{IpAddr, SocketAddr};

use tracing::{info, warn};

use super::shared::SharedFile;
use super::state::Owner;
use crate::chunkset::ChunkSet;
use crate::connection::Hello;
use crate::directory::MemberId;

/// A client's directory registration; dropped (deregistered) with its connection, freeing
/// what the directory freed with it.
pub(super) struct Membership<'a> {
    pub owner: &'a Owner,
    pub id: MemberId,
    pub addr: SocketAddr,
}

impl<'a> Membership<'a> {
    /// Registers a client at `ip` with an upload server (`hello` with a port) in the
    /// directory of `shared`, holding `held`; `None` for a client without one, or whose
    /// address is already a member through another connection.
    pub(super) fn register(
        owner: &'a Owner,
        ip: Option<IpAddr>,
        shared: &SharedFile,
        hello: &Hello,
        held: &ChunkSet,
    ) -> Option<Self> {
        let port = hello.port?;
        let ip = ip?;
        let directory = &owner.directory;
        let file = directory.index_of(&shared.manifest)?;
        let addr = SocketAddr::new(ip, port);
        let Some(id) = directory.register(file, addr, hello.role, held.clone(), hello.node.clone())
        else {
            warn!(peer = %hello.label, "{addr} is already a member through another connection; serving this one unregistered");
            return None;
        };
        Some(Self { owner, id, addr })
    }
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        let left = self.owner.directory.deregister(self.id);
        self.owner.files.forget(&left.freed);
        if left.was_member {
            info!(source = %self.addr, "left the directory");
        }
    }
}
