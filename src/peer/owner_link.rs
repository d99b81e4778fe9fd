//! The owner link: whether this peer's connection to the owner is up, and why not.

#[derive(Debug, Default)]
pub(super) struct OwnerLink {
    /// The owner connection is up (the owner holds every chunk).
    connected: bool,
    /// Why the owner connection is down or ended (`None`: connected).
    error: Option<String>,
}

impl OwnerLink {
    pub(super) fn connected(&self) -> bool {
        self.connected
    }

    pub(super) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The connection came up (`e` is `None`) or went down.
    pub(super) fn set_error(&mut self, e: Option<String>) {
        self.connected = e.is_none();
        self.error = e;
    }

    /// A download session with the owner began.
    pub(super) fn mark_connected(&mut self) {
        self.connected = true;
    }
}
