//! A value and its changes, as `tokio::sync::watch`, but waking its waiters in a fixed
//! order.
//!
//! tokio's watch spreads waiters over eight `Notify`s chosen at random (to ease contention
//! across threads), so which of several waiting tasks runs first differs from run to run. A
//! simulation must take the same steps every time (see [`crate::sim`]), so the engine's
//! change signals go through this one: a version number and a single `Notify`, whose
//! waiters are woken in the order they started waiting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug)]
struct Slot<T> {
    value: Mutex<T>,
    version: AtomicU64,
    closed: AtomicBool,
    notify: Notify,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half: one per value. Dropping it ends every receiver's [`Receiver::changed`].
#[derive(Debug)]
pub struct Sender<T> {
    shared: Arc<Slot<T>>,
}

/// A receiving half: sees the latest value, and waits for the next change.
#[derive(Debug)]
pub struct Receiver<T> {
    shared: Arc<Slot<T>>,
    seen: u64,
}

/// The sender is gone: no change will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sender was dropped")]
pub struct Closed;

/// A sender holding `value`, and a receiver that has seen it.
pub fn channel<T>(value: T) -> (Sender<T>, Receiver<T>) {
    let tx = Sender::new(value);
    let rx = tx.subscribe();
    (tx, rx)
}

impl<T> Sender<T> {
    /// A sender holding `value`, with no receiver yet.
    pub fn new(value: T) -> Self {
        Self {
            shared: Arc::new(Slot {
                value: Mutex::new(value),
                version: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                notify: Notify::new(),
            }),
        }
    }

    /// A new receiver, which has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver {
            shared: self.shared.clone(),
            seen: self.shared.version.load(Ordering::Acquire),
        }
    }

    /// The current value.
    pub fn borrow(&self) -> MutexGuard<'_, T> {
        self.shared.lock()
    }

    /// Replaces the value and wakes every receiver; returns the old value.
    pub fn send_replace(&self, value: T) -> T {
        let old = std::mem::replace(&mut *self.shared.lock(), value);
        self.changed();
        old
    }

    /// Lets `modify` change the value in place; wakes every receiver when it returns true.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = modify(&mut self.shared.lock());
        if modified {
            self.changed();
        }
        modified
    }

    fn changed(&self) {
        self.shared.version.fetch_add(1, Ordering::AcqRel);
        self.shared.notify.notify_waiters();
    }
}

impl<T: Default> Default for Sender<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.notify.notify_waiters();
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Receiver<T> {
    /// The current value, without marking it seen.
    pub fn borrow(&self) -> MutexGuard<'_, T> {
        self.shared.lock()
    }

    /// The current value, marked seen.
    pub fn borrow_and_update(&mut self) -> MutexGuard<'_, T> {
        self.seen = self.shared.version.load(Ordering::Acquire);
        self.shared.lock()
    }

    /// Whether there is a value not yet seen (and marks it seen).
    pub fn take_changed(&mut self) -> bool {
        let version = self.shared.version.load(Ordering::Acquire);
        std::mem::replace(&mut self.seen, version) != version
    }

    /// Marks the current value not seen: the next [`Receiver::changed`] returns at once.
    pub fn mark_changed(&mut self) {
        self.seen = self.shared.version.load(Ordering::Acquire).wrapping_sub(1);
    }

    /// Waits for a value not yet seen, and marks it seen.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the sender is gone (and every value was seen).
    pub async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before the version is read: a change after the read wakes it.
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::Acquire);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(Closed);
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_seen_once_and_the_end_is_told() {
        let (tx, mut rx) = channel(1);
        tx.send_replace(2);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 2);
        assert!(!tx.send_if_modified(|_| false));
        let waiter = tokio::spawn(async move {
            rx.changed().await.unwrap();
            let v = *rx.borrow_and_update();
            (v, rx.changed().await)
        });
        tokio::task::yield_now().await;
        assert!(tx.send_if_modified(|v| {
            *v = 3;
            true
        }));
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (3, Err(Closed)));
    }

    /// Waiters wake in the order they began to wait, every time.
    #[tokio::test(flavor = "current_thread")]
    async fn waiters_wake_in_a_fixed_order() {
        let tx = Sender::new(());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (mut rx, order) = (tx.subscribe(), order.clone());
            tasks.push(tokio::spawn(async move {
                rx.changed().await.unwrap();
                order.lock().unwrap().push(i);
            }));
        }
        tokio::task::yield_now().await;
        tx.send_replace(());
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }
}
