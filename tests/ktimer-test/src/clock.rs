//! The clock the scenarios run against. "Let time pass" is the only thing a scenario does
//! with time, so one scenario body serves a real device (sleep), the simulator on its
//! real-time clock (sleep), and the simulator on its virtual clock in `cargo test` (advance
//! the clock deterministically, no sleeping).

use std::time::Duration;

use crate::device::{PendingRequest, Reply};

/// Device time, as seen by a scenario.
pub trait Clock {
    /// Lets `duration` of device time pass.
    fn let_pass(&self, duration: Duration);

    /// Whether time only moves when [`Clock::let_pass`] is called (virtual time).
    fn is_virtual(&self) -> bool;

    /// Waits up to `limit` of device time for `request` to complete.
    ///
    /// Virtual time advances in `step`s until the request completes or `limit` has passed;
    /// real time simply blocks on the request.
    fn wait_for(
        &self,
        request: &mut dyn PendingRequest,
        limit: Duration,
        step: Duration,
    ) -> Option<Reply> {
        if !self.is_virtual() {
            return request.wait(limit);
        }
        let step = step.max(Duration::from_micros(100));
        let mut waited = Duration::ZERO;
        loop {
            if let Some(done) = request.wait(Duration::ZERO) {
                return Some(done);
            }
            if waited >= limit {
                return None;
            }
            self.let_pass(step);
            waited += step;
        }
    }
}

/// Wall-clock time for a real device: sleeping lets time pass.
#[derive(Debug, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn let_pass(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn is_virtual(&self) -> bool {
        false
    }
}

/// A duration in 100 ns units (the kernel's time unit), saturating.
#[must_use]
pub fn units_100ns(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos() / 100).unwrap_or(i64::MAX)
}

/// 100 ns units as a duration (negative values count as zero).
#[must_use]
pub fn from_100ns(units: i64) -> Duration {
    Duration::from_nanos(u64::try_from(units).unwrap_or(0).saturating_mul(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_between_durations_and_kernel_units() {
        assert_eq!(units_100ns(Duration::from_millis(15)), 150_000);
        assert_eq!(from_100ns(156_250), Duration::from_micros(15_625));
        assert_eq!(from_100ns(-5), Duration::ZERO);
    }
}
