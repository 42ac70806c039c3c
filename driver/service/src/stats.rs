//! Per-arming expiry accounting: which expiration a DPC run covers, counted from time, and
//! the lateness statistics. Pure integer arithmetic on interrupt times (100 ns units), no
//! allocation, so the expiry path (`DISPATCH_LEVEL`) can use it.
//!
//! Why from time: a DPC object is queued at most once, so when a periodic timer expires again
//! before its DPC ran, the kernel does not queue a second run. The run that does happen at
//! time `now` covers every expiration due at or before `now`: expiration `n` is due at
//! `first_due + (n - 1) * period`. Every run covers at least one new expiration (the kernel may
//! fire up to a tick early, so "due at or before now" alone would miss one).
//!
//! Every run handed to [`Stats::record_run`] belongs to the current arming: the service
//! never lets a run of an earlier arming reach it (a re-arm waits for the DPCs the previous
//! arming queued; see `TimerEntry`), so no run is dropped for coming "early".
//!
//! An absolute arming is due when the system clock reads its due time, which clock changes
//! move in interrupt time; its first run fixes `first_due` (see [`Arming::date_first_run`]).

/// When the current arming expires, in interrupt time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arming {
    /// Interrupt time of the first expiration. For an absolute arming before its first run,
    /// an estimate made at arming time (the clock may still move).
    pub first_due: i64,
    /// Period in 100 ns units; 0 for a one-shot timer.
    pub period: i64,
    /// An absolute arming's due time (system time), until its first run dates it in
    /// interrupt time; `None` for a relative arming or once dated.
    pub system_due: Option<i64>,
}

impl Arming {
    /// The interrupt time of the first expiration as of a clock reading: for an absolute
    /// arming not yet run, the interrupt time at which the system clock reads its due time
    /// if the clock is not changed again (`system_now - interrupt_now` is the clock's
    /// current offset). Any IRQL.
    #[must_use]
    pub fn first_due_at(&self, interrupt_now: i64, system_now: i64) -> i64 {
        match self.system_due {
            Some(system_due) => system_due.saturating_sub(system_now.saturating_sub(interrupt_now)),
            None => self.first_due,
        }
    }

    /// At the first run of an absolute arming: the kernel expired it because the system
    /// clock reached its due time, so that due time is dated in interrupt time with the
    /// clock as it reads now, and later periods count from there (they are intervals). Its
    /// lateness is then `system_now - system_due`. Does nothing for a relative arming or
    /// after the first run. Any IRQL; no allocation.
    ///
    /// `system_now` reads the system clock; it is called only for that first run, so the
    /// expiry path of a relative or already dated arming does not read a second clock.
    pub fn date_first_run(&mut self, interrupt_now: i64, system_now: impl FnOnce() -> i64) {
        if self.system_due.is_some() {
            self.first_due = self.first_due_at(interrupt_now, system_now());
            self.system_due = None;
        }
    }
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
    /// Accounts a DPC run of the current arming at interrupt time `now` (an absolute arming
    /// dated first, [`Arming::date_first_run`]). A second run of a one-shot arming is
    /// ignored (`None`). Any IRQL; no allocation.
    pub fn record_run(&mut self, arming: Arming, now: i64) -> Option<Run> {
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

    #[test]
    fn a_one_shot_counts_once() {
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: 1_000,
            period: 0,
            system_due: None,
        };
        assert_eq!(
            stats.record_run(arming, 1_200),
            Some(Run {
                sequence: 1,
                due: 1_000,
                lateness: 200,
                covered: 1
            })
        );
        assert_eq!(stats.record_run(arming, 5_000), None);
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
            system_due: None,
        };
        assert_eq!(stats.record_run(arming, 10_000).map(|r| r.covered), Some(1));
        // Due at 20k, 30k, 40k; the run comes at 45k: three expirations, lateness from 40k.
        assert_eq!(
            stats.record_run(arming, 45_000),
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
            system_due: None,
        };
        assert_eq!(
            stats.record_run(arming, 99_000),
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
                .record_run(arming, 149_500)
                .map(|r| (r.sequence, r.lateness)),
            Some((2, -500))
        );
        assert_eq!(stats.lateness_mean(), -750);
    }

    #[test]
    fn an_absolute_arming_is_dated_by_its_first_run_with_the_clock_as_it_reads_then() {
        // Armed for system time 5_000_000 when the clock read 1_000_000 at interrupt 100:
        // estimated due 4_000_100. The clock then moved forward by 3_000_100.
        let mut arming = Arming {
            first_due: 4_000_100,
            period: 1_000,
            system_due: Some(5_000_000),
        };
        assert_eq!(arming.first_due_at(200, 4_000_200), 1_000_000);
        // The first run comes at interrupt 1_000_300 (system 5_000_300): 300 late.
        arming.date_first_run(1_000_300, || 5_000_300);
        assert_eq!((arming.first_due, arming.system_due), (1_000_000, None));
        let mut stats = Stats::default();
        let run = stats.record_run(arming, 1_000_300).unwrap();
        assert_eq!((run.sequence, run.due, run.lateness), (1, 1_000_000, 300));
        // Later periods are intervals: a clock change after the first run moves nothing.
        arming.date_first_run(1_001_000, || 9_999_999);
        assert_eq!(arming.first_due, 1_000_000);
        assert_eq!(arming.first_due_at(1_001_000, 9_999_999), 1_000_000);
        let run = stats.record_run(arming, 1_001_000).unwrap();
        assert_eq!((run.sequence, run.lateness), (2, 0));
    }

    #[test]
    fn a_run_before_the_first_due_time_still_counts_once() {
        // Runs reaching the statistics are the current arming's (the service filters the
        // others), so an early one (the kernel may fire up to a tick early) is counted.
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: 1_000_000,
            period: 0,
            system_due: None,
        };
        let run = stats.record_run(arming, 900_000).unwrap();
        assert_eq!((run.sequence, run.lateness), (1, -100_000));
        assert_eq!(stats.record_run(arming, 1_000_000), None);
    }

    #[test]
    fn extreme_values_saturate_instead_of_overflowing() {
        let mut stats = Stats::default();
        let arming = Arming {
            first_due: i64::MIN,
            period: 1,
            system_due: None,
        };
        let run = stats.record_run(arming, i64::MAX).unwrap();
        assert!(run.covered >= 1);
        let arming = Arming {
            first_due: i64::MAX,
            period: i64::MAX,
            system_due: Some(i64::MIN),
        };
        let mut other = Stats::default();
        assert!(other.record_run(arming, i64::MAX).is_some());
        assert_eq!(arming.first_due_at(i64::MIN, i64::MAX), i64::MIN);
        assert_eq!(Stats::default().lateness_mean(), 0);
    }
}
