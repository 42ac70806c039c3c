//! User-mode periodic timers, run on the same schedule as the driver's periodic timer so the
//! report can show kernel and user-mode lateness side by side.
//!
//! Windows: a high-resolution waitable timer (`CreateWaitableTimerExW` with
//! `CREATE_WAITABLE_TIMER_HIGH_RESOLUTION`, see `crate::windows`). Elsewhere, and for `--sim`
//! everywhere: the host's own sleep, on an absolute schedule so that errors do not add up.

use std::time::{Duration, Instant};

use crate::clock::units_100ns;

/// A user-mode timer that can run a periodic schedule.
pub trait UserTimer: Sync {
    /// What it is, for the report.
    fn name(&self) -> String;

    /// Runs `count` periods of `period` starting now and returns each expiration's lateness
    /// in 100 ns units, measured from its scheduled time `start + k × period`.
    ///
    /// # Errors
    /// A description if the timer could not be created or waited on.
    fn run_periodic(&self, period: Duration, count: u32) -> Result<Vec<i64>, String>;
}

/// The host's `std::thread::sleep` to absolute deadlines.
#[derive(Debug, Default)]
pub struct SleepTimer;

impl UserTimer for SleepTimer {
    fn name(&self) -> String {
        "user-mode sleep (std::thread::sleep to absolute deadlines)".to_owned()
    }

    fn run_periodic(&self, period: Duration, count: u32) -> Result<Vec<i64>, String> {
        let start = Instant::now();
        let mut lateness = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for k in 1..=count {
            let due = start + period * k;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            lateness.push(signed_lateness(Instant::now(), due));
        }
        Ok(lateness)
    }
}

/// `fired - due` in 100 ns units, negative when early.
#[must_use]
pub fn signed_lateness(fired: Instant, due: Instant) -> i64 {
    match fired.checked_duration_since(due) {
        Some(late) => units_100ns(late),
        None => -units_100ns(due - fired),
    }
}

/// The user-mode timer of this platform for real-time runs.
#[must_use]
pub fn platform_timer(sim: bool) -> Box<dyn UserTimer> {
    #[cfg(windows)]
    if !sim {
        return Box::new(crate::windows::HighResolutionWaitableTimer);
    }
    let _ = sim;
    Box::new(SleepTimer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_timer_runs_every_period_never_early() {
        let lateness = SleepTimer
            .run_periodic(Duration::from_millis(1), 5)
            .expect("runs");
        assert_eq!(lateness.len(), 5);
        assert!(lateness.iter().all(|&late| late >= 0), "{lateness:?}");
    }

    #[test]
    fn lateness_is_signed() {
        let now = Instant::now();
        let later = now + Duration::from_micros(250);
        assert_eq!(signed_lateness(later, now), 2_500);
        assert_eq!(signed_lateness(now, later), -2_500);
    }
}
