//! The label sets the metrics share (`role`, choke `state`), and the values each takes from
//! the first scrape.

use prometheus_client::encoding::EncodeLabelSet;

use crate::protocol::Role;

/// A `role` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RoleLabel {
    pub(super) role: String,
}

/// A choke `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub(crate) state: String,
}

/// Every role a client can say `hello` with: each is exported (at 0) from the start.
pub(super) const ROLES: [Role; 6] = [
    Role::Peer,
    Role::Neighbour,
    Role::Getter,
    Role::Query,
    Role::Joiner,
    Role::Publisher,
];

/// Every role a directory member is listed with (`crate::directory::PeerInfo::role`).
pub(super) const MEMBER_ROLES: [&str; 4] = ["peer", "getter", "query", "publisher"];

/// Every choke `state` label value.
pub(super) const CHOKE_STATES: [&str; 3] = ["choked", "unchoked", "interested"];

/// The label value of `role`.
pub(crate) fn role(role: Role) -> RoleLabel {
    let name = match role {
        Role::Peer => "peer",
        Role::Neighbour => "neighbour",
        Role::Getter => "getter",
        Role::Query => "query",
        Role::Joiner => "joiner",
        Role::Publisher => "publisher",
    };
    RoleLabel { role: name.into() }
}
