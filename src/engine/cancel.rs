//! A cancellation flag the walk checks before starting each step.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Set once (e.g. on the first Ctrl-C): the walk starts no new step, lets the
/// running ones finish and record their state, then returns.
#[derive(Default)]
pub struct CancelFlag {
    set: AtomicBool,
    notify: Notify,
}

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
