//! [`Signal`]: a condition variable that costs nothing when nobody waits.
//!
//! std's `Condvar::notify_all` makes a wake-up system call every time, sleepers or not. The
//! inline kernel notifies after every DPC and the KMDF model after every request, usually
//! with nobody asleep: that call was a tenth of an end-to-end delivery's time in a profile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, LockResult, MutexGuard, WaitTimeoutResult};
use std::time::Duration;

/// `Condvar`'s API, counting its sleepers so that a notify with none skips the wake-up.
///
/// Sound under the usual condition-variable discipline, which every user here follows: a
/// sleeper registers while it holds the mutex its guard belongs to, before `Condvar` releases
/// it; a notifier changes the state under that mutex before it notifies. A sleeper that
/// registers after the notifier's check therefore took the mutex after the change and sees
/// it before it sleeps.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    condvar: Condvar,
    sleepers: AtomicUsize,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn notify_all(&self) {
        if self.sleepers.load(Ordering::Acquire) > 0 {
            self.condvar.notify_all();
        }
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.sleepers.fetch_add(1, Ordering::AcqRel);
        let result = self.condvar.wait(guard);
        self.sleepers.fetch_sub(1, Ordering::AcqRel);
        result
    }

    pub(crate) fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.sleepers.fetch_add(1, Ordering::AcqRel);
        let result = self.condvar.wait_timeout(guard, timeout);
        self.sleepers.fetch_sub(1, Ordering::AcqRel);
        result
    }
}
