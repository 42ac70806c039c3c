//! Per-arming expiry accounting: which expiration a DPC run covers, counted from time, and
//! the lateness statistics. Pure integer arithmetic on interrupt times (100 ns units), no
//! allocation, so the expiry path (`DISPATCH_LEVEL`) can use it.
//!
//! Why from time: a DPC object is queued at most once, so when a periodic timer expires again
//! before its DPC ran, the kernel does not queue a second run. The run that does happen at
//! time `now` covers every expiration due at or before `now`: expiration `n` is due at
//! `first_due + (n - 1) * period`. Every run covers at least one new expiration (the kernel may
//! fire up to a tick early, so "due at or before now" alone would miss one).

/// When the current arming expires, in interrupt time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arming {
    /// Interrupt time of the first expiration.
    pub first_due: i64,
    /// Period in 100 ns units; 0 for a one-shot timer.
    pub period: i64,
}

/// What one DPC run covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Number of the latest expiration covered (1-based).
    pub sequence: u64,
    /// Its due time.
    pub due: i64,
    /// `now - due`.
    pub lateness: i64,
    /// Expirations covered (>= 1).
    pub covered: u64,
}

/// Counters since the last arming.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Expirations counted from time.
    pub expirations: u64,
    /// DPC runs.
    pub dpc_runs: u64,
    /// Lateness of the last run.
    pub lateness_last: i64,
    /// Smallest lateness.
    pub lateness_min: i64,
    /// Largest lateness.
    pub lateness_max: i64,
    /// Sum of lateness over runs (for the mean).
    pub lateness_sum: i128,
}

impl Stats {
    /// Accounts a DPC run at interrupt time `now` for `arming`. `early_tolerance` is how early
    /// the kernel may fire (one clock tick): a run before `first_due - early_tolerance` belongs
    /// to an earlier arming (a DPC queued before a cancel or re-arm that the kernel still ran)
    /// and is ignored, as is a second run of a one-shot arming. Any IRQL; no allocation.
    pub fn record_run(&mut self, arming: Arming, now: i64, early_tolerance: i64) -> Option<Run> {
        if now < arming.first_due.saturating_sub(early_tolerance) {
            return None;
        }
        let sequence = if arming.period <= 0 {
            if self.expirations > 0 {
                return None;
            }
            1
        } else {
            let elapsed = now.saturating_sub(arming.first_due);
            let by_time = if elapsed < 0 {
                0
            } else {
                // period > 0 here, and elapsed >= 0: the quotient is non-negative.
                u64::try_from(elapsed / arming.period)
                    .unwrap_or(0)
                    .saturating_add(1)
            };
            by_time.max(self.expirations.saturating_add(1))
        };
        let covered = sequence.saturating_sub(self.expirations);
        let periods_before = i64::try_from(sequence.saturating_sub(1)).unwrap_or(i64::MAX);
        let due = arming
            .first_due
            .saturating_add(periods_before.saturating_mul(arming.period.max(0)));
        let lateness = now.saturating_sub(due);

        self.expirations = sequence;
        if self.dpc_runs == 0 {
            self.lateness_min = lateness;
            self.lateness_max = lateness;
        } else {
            self.lateness_min = self.lateness_min.min(lateness);
            self.lateness_max = self.lateness_max.max(lateness);
        }
        self.dpc_runs = self.dpc_runs.saturating_add(1);
        self.lateness_last = lateness;
        self.lateness_sum = self.lateness_sum.saturating_add(i128::from(lateness));
        Some(Run {
            sequence,
            due,
            lateness,
            covered,
        })
    }

    /// Expirations that had no DPC run of their own.
    #[must_use]
    pub fn coalesced(&self) -> u64 {
        self.expirations.saturating_sub(self.dpc_runs)
    }

    /// Mean lateness over runs, rounded toward zero; 0 before any run.
    #[must_use]
    pub fn lateness_mean(&self) -> i64 {
        if self.dpc_runs == 0 {
            return 0;
        }
        let mean = self.lateness_sum / i128::from(self.dpc_runs);
        // The mean of i64 values lies within the i64 range.
        i64::try_from(mean).unwrap_or(if mean < 0 { i64::MIN } else { i64::MAX })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: i64 = 156_250;

    #[test]
    fn a_one_shot_counts_once() {
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: 1_000,
            period: 0,
        };
        assert_eq!(
            stats.record_run(arming, 1_200, TICK),
            Some(Run {
                sequence: 1,
                due: 1_000,
                lateness: 200,
                covered: 1
            })
        );
        assert_eq!(stats.record_run(arming, 5_000, TICK), None);
        assert_eq!(
            (stats.expirations, stats.dpc_runs, stats.coalesced()),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_late_periodic_run_covers_every_elapsed_period() {
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: 10_000,
            period: 10_000,
        };
        assert_eq!(
            stats.record_run(arming, 10_000, TICK).map(|r| r.covered),
            Some(1)
        );
        // Due at 20k, 30k, 40k; the run comes at 45k: three expirations, lateness from 40k.
        assert_eq!(
            stats.record_run(arming, 45_000, TICK),
            Some(Run {
                sequence: 4,
                due: 40_000,
                lateness: 5_000,
                covered: 3
            })
        );
        assert_eq!(
            (stats.expirations, stats.dpc_runs, stats.coalesced()),
            (4, 2, 2)
        );
        assert_eq!(
            (stats.lateness_min, stats.lateness_max, stats.lateness_last),
            (0, 5_000, 5_000)
        );
        assert_eq!(stats.lateness_mean(), 2_500);
    }

    #[test]
    fn an_early_run_still_counts_one_expiration() {
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: 100_000,
            period: 50_000,
        };
        assert_eq!(
            stats.record_run(arming, 99_000, TICK),
            Some(Run {
                sequence: 1,
                due: 100_000,
                lateness: -1_000,
                covered: 1
            })
        );
        // Expiration 2 is due at 150k; the kernel fires a little early.
        assert_eq!(
            stats
                .record_run(arming, 149_500, TICK)
                .map(|r| (r.sequence, r.lateness)),
            Some((2, -500))
        );
        assert_eq!(stats.lateness_mean(), -750);
    }

    #[test]
    fn a_run_long_before_the_due_time_belongs_to_an_earlier_arming() {
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: 1_000_000,
            period: 0,
        };
        assert_eq!(stats.record_run(arming, 1_000_000 - TICK - 1, TICK), None);
        assert_eq!(stats, Stats::default());
    }

    #[test]
    fn extreme_values_saturate_instead_of_overflowing() {
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: i64::MIN,
            period: 1,
        };
        let run = stats.record_run(arming, i64::MAX, 0).unwrap();
        assert!(run.covered >= 1);
        let arming = Arming {
            first_due: i64::MAX,
            period: i64::MAX,
        };
        let mut other = Stats::default();
        assert!(other.record_run(arming, i64::MAX, i64::MAX).is_some());
        assert_eq!(Stats::default().lateness_mean(), 0);
    }
}
