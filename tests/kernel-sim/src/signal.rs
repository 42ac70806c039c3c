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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_registered_sleeper_is_woken_and_leaves_no_count_behind() {
        let shared = Arc::new((Mutex::new(false), Signal::new()));
        // Nobody asleep: a notify is a no-op (and must not be remembered).
        shared.1.notify_all();
        let sleeper = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut ready = shared.0.lock().unwrap();
                while !*ready {
                    ready = shared.1.wait(ready).unwrap();
                }
            })
        };
        while shared.1.sleepers.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        *shared.0.lock().unwrap() = true;
        shared.1.notify_all();
        sleeper.join().unwrap();
        assert_eq!(shared.1.sleepers.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_timed_wait_with_no_notify_times_out_and_unregisters() {
        let mutex = Mutex::new(());
        let signal = Signal::new();
        let (_guard, result) = signal
            .wait_timeout(mutex.lock().unwrap(), Duration::from_millis(1))
            .unwrap();
        assert!(result.timed_out());
        assert_eq!(signal.sleepers.load(Ordering::Acquire), 0);
    }
}
