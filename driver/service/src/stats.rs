//! Per-arming expiry accounting: which expirations a DPC run covers, counted from the tick
//! clock, and the lateness statistics. Pure integer arithmetic on interrupt times (100 ns
//! units), no allocation, so the expiry path (`DISPATCH_LEVEL`) can use it.
//!
//! What `expirations` is (docs/PROTOCOL.md, "Expirations"): the number of times the kernel
//! expired the arming. The kernel expires timers on clock ticks: at a tick, a timer due at or
//! before it expires **once** (due times of a periodic timer that passed within one tick are
//! one expiry), and a periodic one is re-armed for the first due time of its grid
//! (`first_due + k * period`) after that tick. So the kernel's expirations by the tick `L`
//! are one at the first tick `T0` after the arming at or after the first due time, plus one
//! per later tick up to `L` that a due time fell into: `1 + min(due times in (T0, L], ticks
//! in (T0, L])` ([`Arming::expirations_by`]).
//!
//! The driver sees only DPC runs. A DPC object is queued at most once, so expirations that
//! find it queued get no run of their own; the run that does happen counts them from the tick
//! clock (`KeQueryInterruptTime`, the clock the kernel expires timers on), never from the
//! precise time of the run: a run delayed past due times the kernel has not reached yet
//! (they expire on the next tick) does not count them. Every run proves one expiration of its
//! own, so the count is also at least the number of runs. Both bounds are expirations the
//! kernel produced, so the count never exceeds the kernel's.
//!
//! Every run handed to [`Stats::record_run`] belongs to the current arming: the service
//! never lets a run of an earlier arming reach it (a re-arm waits for the DPCs the previous
//! arming queued; see `TimerEntry`), so no run is dropped for coming "early".
//!
//! An absolute arming is due when the system clock reads its due time, which clock changes
//! move in interrupt time; its first run dates it in interrupt time
//! ([`Arming::date_first_run`]).

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
    /// Interrupt time of the last clock tick when the timer was armed (read after the
    /// kernel set it): the kernel expires it on a later tick.
    pub armed_tick: i64,
    /// The clock tick (`KeQueryTimeIncrement`), 100 ns; 0 for a high-resolution timer, which
    /// expires at its exact due times.
    pub tick: i64,
    /// System time minus interrupt time when armed (an absolute arming's clock).
    pub system_offset: i64,
    /// Set by an absolute arming's first run to its tick: that run counts one expiration,
    /// and later ones are counted one per `max(period, tick)` from here (see
    /// [`Arming::date_first_run`] for why).
    pub counted_from: Option<i64>,
    /// [`Arming::first_tick`] and the grid's due times at or before it, as of `first_due`:
    /// worked out when the arming is made (or dated), not on every DPC run.
    first_tick: i64,
    due_times_by_first_tick: i64,
}

/// `(later - earlier) / divisor` (truncated, `divisor` > 0), saturated to `i64`. In `i64`
/// when the difference fits, which it does for every pair of clock readings (100 ns units
/// span 29,000 years); through `i128` otherwise. The expiry path runs this on every DPC run,
/// where an `i128` division would be a library call of about a hundred instructions.
fn difference_over(later: i64, earlier: i64, divisor: i64) -> i64 {
    let divisor = divisor.max(1);
    match later.checked_sub(earlier) {
        Some(difference) => difference / divisor,
        None => clamp((i128::from(later) - i128::from(earlier)) / i128::from(divisor)),
    }
}

/// `base + count * step`, saturated to `i64` (through `i128` only when it overflows).
fn offset(base: i64, count: i64, step: i64) -> i64 {
    count
        .checked_mul(step)
        .and_then(|product| base.checked_add(product))
        .unwrap_or_else(|| clamp(i128::from(base) + i128::from(count) * i128::from(step)))
}

/// Due times of the grid `first + k * period` (k >= 0) at or before `at`.
fn grid_count(first: i64, period: i64, at: i64) -> i64 {
    if at < first || period <= 0 {
        return i64::from(at >= first);
    }
    difference_over(at, first, period).saturating_add(1)
}

/// The latest due time of the grid at or before `at` (`first` if there is none).
fn grid_latest(first: i64, period: i64, at: i64) -> i64 {
    let count = grid_count(first, period, at).max(1);
    offset(first, count - 1, period.max(0))
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

fn clamp_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Arming {
    /// A relative (or high-resolution) arming: first due at `first_due`, armed at the tick
    /// `armed_tick`; `tick` 0 for a high-resolution timer. Any IRQL.
    #[must_use]
    pub fn relative(first_due: i64, period: i64, armed_tick: i64, tick: i64) -> Self {
        Self {
            first_due,
            period,
            system_due: None,
            armed_tick,
            tick,
            system_offset: 0,
            counted_from: None,
            first_tick: 0,
            due_times_by_first_tick: 0,
        }
        .with_first_tick()
    }

    /// An absolute arming due at system time `system_due`, armed at the tick `armed_tick`
    /// with the system clock at `system_offset` from interrupt time. Any IRQL.
    #[must_use]
    pub fn absolute(
        system_due: i64,
        period: i64,
        armed_tick: i64,
        tick: i64,
        system_offset: i64,
    ) -> Self {
        Self {
            first_due: system_due.saturating_sub(system_offset),
            period,
            system_due: Some(system_due),
            armed_tick,
            tick,
            system_offset,
            counted_from: None,
            first_tick: 0,
            due_times_by_first_tick: 0,
        }
        .with_first_tick()
    }

    /// Fills in the values derived from `first_due`, `armed_tick`, `tick` and `period`.
    #[must_use]
    fn with_first_tick(mut self) -> Self {
        self.first_tick = self.compute_first_tick();
        self.due_times_by_first_tick = grid_count(self.first_due, self.period, self.first_tick);
        self
    }

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

    /// At the first run of an absolute arming (`tick_now` the last clock tick,
    /// `system_offset` the system clock's offset from interrupt time now): dates its first
    /// due time in interrupt time. Does nothing for a relative arming or after the first run.
    /// Any IRQL; no allocation.
    ///
    /// The kernel expired it on a tick at or before `tick_now`, when the system clock read
    /// its due time, with the clock's offset as it was then. The run sees only the offsets at
    /// arming and now: the clock may have moved before the expiry (the offset now is the one
    /// the kernel used), after it (the offset at arming is), or away and back (neither). The
    /// first due time is dated as the later of the two datings that are not after
    /// `tick_now` (else `tick_now`): exact if the clock did not move, or moved once. The
    /// kernel's grid of later periods may still have another phase, so the count does not
    /// rely on it: the first run counts one expiration at `tick_now`
    /// ([`Arming::counted_from`]) and later ones one per `max(period, tick)` from there, which
    /// the kernel (expiring once per tick, or once per due time) cannot have fallen short of.
    pub fn date_first_run(&mut self, tick_now: i64, system_offset: impl FnOnce() -> i64) {
        let Some(system_due) = self.system_due.take() else {
            return;
        };
        let now_dating = system_due.saturating_sub(system_offset());
        let armed_dating = system_due.saturating_sub(self.system_offset);
        self.first_due = [now_dating, armed_dating]
            .into_iter()
            .filter(|dating| *dating <= tick_now)
            .max()
            .unwrap_or(tick_now);
        self.counted_from = Some(tick_now);
        *self = self.with_first_tick();
    }

    /// The first tick at which the kernel expires this arming (kept in `first_tick`): the first tick after the
    /// arming's tick that is at or after the first due time (a due time at or before the
    /// arming's tick, e.g. in the past, expires at the next tick). Ticks every `tick` from
    /// `armed_tick`.
    fn compute_first_tick(&self) -> i64 {
        let tick = self.tick.max(1);
        let ticks = if self.first_due <= self.armed_tick {
            1
        } else {
            // Whole ticks from the arming's tick to the first tick at or after the due time:
            // ceil((first_due - armed_tick) / tick), with the difference > 0.
            difference_over(self.first_due.saturating_sub(1), self.armed_tick, tick)
                .saturating_add(1)
                .max(1)
        };
        offset(self.armed_tick, ticks, tick)
    }

    /// The number of expirations the kernel has produced for this arming by the clock tick
    /// `tick_now` (a high-resolution arming: by the precise time `now`). Any IRQL.
    ///
    /// Exact when the kernel's ticks come every `tick` (what the simulator does; on Windows
    /// `KeQueryTimeIncrement` is the longest tick, and with shorter ticks the kernel expires
    /// a timer at least as often, so this is never more than the kernel produced).
    #[must_use]
    pub fn expirations_by(&self, tick_now: i64, now: i64) -> u64 {
        if self.period <= 0 {
            let at = if self.tick <= 0 { now } else { tick_now };
            let due = if self.tick <= 0 {
                self.first_due
            } else {
                self.first_tick
            };
            return u64::from(at >= due);
        }
        if self.tick <= 0 {
            // A high-resolution timer expires at each due time.
            return clamp_u64(grid_count(self.first_due, self.period, now));
        }
        if let Some(from) = self.counted_from {
            if tick_now < from {
                return 0;
            }
            let step = self.tick.max(self.period);
            return clamp_u64(difference_over(tick_now, from, step).saturating_add(1));
        }
        let first_tick = self.first_tick;
        if tick_now < first_tick {
            return 0;
        }
        let by_grid =
            grid_count(self.first_due, self.period, tick_now) - self.due_times_by_first_tick;
        let by_ticks = difference_over(tick_now, first_tick, self.tick);
        clamp_u64(by_grid.min(by_ticks).saturating_add(1))
    }

    /// The due time of expiration `sequence` (1-based): the latest due time it covered.
    /// Any IRQL.
    #[must_use]
    pub fn due_of(&self, sequence: u64) -> i64 {
        if self.period <= 0 {
            return self.first_due;
        }
        let later = i64::try_from(sequence.max(1) - 1).unwrap_or(i64::MAX);
        if self.tick <= 0 {
            return offset(self.first_due, later, self.period);
        }
        let expired_at = if let Some(from) = self.counted_from {
            offset(from, later, self.tick.max(self.period))
        } else {
            if self.period >= self.tick {
                // One due time per tick: the `later`-th due time after the first tick.
                let index = (self.due_times_by_first_tick - 1).saturating_add(later);
                return offset(self.first_due, index, self.period);
            }
            offset(self.first_tick, later, self.tick)
        };
        grid_latest(self.first_due, self.period, expired_at)
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
    /// Expirations counted (see the module documentation).
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
    /// Accounts a DPC run of the current arming at the precise interrupt time `now`, the
    /// last clock tick being `tick_now` (an absolute arming dated first,
    /// [`Arming::date_first_run`]). Any IRQL; no allocation.
    ///
    /// `None` (not counted, no record) for a second run of a one-shot arming, and for a run
    /// that finds no expiration left to count: an earlier run of the same periodic timer
    /// that overlapped it (on another processor) read the clock after the kernel queued this
    /// one and already counted its expiration.
    pub fn record_run(&mut self, arming: &Arming, now: i64, tick_now: i64) -> Option<Run> {
        let sequence = if arming.period <= 0 {
            if self.expirations > 0 {
                return None;
            }
            1
        } else {
            let runs = self.dpc_runs.saturating_add(1);
            arming
                .expirations_by(tick_now, now)
                .max(runs)
                .max(self.expirations)
        };
        if sequence <= self.expirations {
            return None;
        }
        let covered = sequence - self.expirations;
        let due = arming.due_of(sequence);
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

    /// The default tick, 15.625 ms.
    const TICK: i64 = 156_250;
    const MS: i64 = 10_000;

    fn run(stats: &mut Stats, arming: &Arming, now: i64) -> Option<(u64, i64, i64, u64)> {
        let tick_now = now / TICK * TICK;
        stats
            .record_run(arming, now, tick_now)
            .map(|run| (run.sequence, run.due, run.lateness, run.covered))
    }

    #[test]
    fn a_one_shot_counts_once() {
        let mut stats = Stats::default();
        let arming = Arming::relative(20 * MS, 0, 0, TICK);
        assert_eq!(
            run(&mut stats, &arming, 2 * TICK),
            Some((1, 20 * MS, 2 * TICK - 20 * MS, 1))
        );
        assert_eq!(run(&mut stats, &arming, 9 * TICK), None);
        assert_eq!(
            (stats.expirations, stats.dpc_runs, stats.coalesced()),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_late_periodic_run_covers_every_period_the_kernel_expired() {
        // Period 40 ms on a 15.625 ms tick: due 40, 80, 120, 160 ms expire at the ticks
        // 46.875, 93.75, 125, 171.875 ms. The first run is on time, the next is late.
        let mut stats = Stats::default();
        let arming = Arming::relative(40 * MS, 40 * MS, 0, TICK);
        assert_eq!(run(&mut stats, &arming, 3 * TICK).map(|r| r.3), Some(1));
        assert_eq!(
            run(&mut stats, &arming, 11 * TICK + 5 * MS),
            Some((4, 160 * MS, 11 * TICK + 5 * MS - 160 * MS, 3))
        );
        assert_eq!(
            (stats.expirations, stats.dpc_runs, stats.coalesced()),
            (4, 2, 2)
        );
        assert!(stats.lateness_min >= 0);
    }

    #[test]
    fn a_run_delayed_past_a_due_time_the_kernel_has_not_expired_yet_does_not_count_it() {
        // Issue 19, defect 0: period 18 ms; the kernel expires due 18 ms at the 31.25 ms
        // tick; the DPC runs late at 40 ms, before the kernel (next tick 46.875 ms) expired
        // due 36 ms. That run covers one expiration, the next run the second.
        let mut stats = Stats::default();
        let arming = Arming::relative(18 * MS, 18 * MS, 0, TICK);
        assert_eq!(
            run(&mut stats, &arming, 40 * MS),
            Some((1, 18 * MS, 22 * MS, 1))
        );
        assert_eq!(
            run(&mut stats, &arming, 3 * TICK),
            Some((2, 36 * MS, 3 * TICK - 36 * MS, 1))
        );
        // At 1,046.875 ms (a tick) the kernel has expired due 18 .. 1044 ms: 58 times.
        assert_eq!(run(&mut stats, &arming, 67 * TICK).map(|r| r.0), Some(58));
        assert!(stats.lateness_min >= 0, "no record dated after its run");
    }

    #[test]
    fn a_period_shorter_than_the_tick_counts_one_expiration_per_tick() {
        // 1 ms period: the kernel expires it once per tick, covering ~15 due times each.
        let mut stats = Stats::default();
        let arming = Arming::relative(MS, MS, 0, TICK);
        assert_eq!(run(&mut stats, &arming, TICK), Some((1, 15 * MS, 6_250, 1)));
        assert_eq!(run(&mut stats, &arming, 2 * TICK).map(|r| r.0), Some(2));
        // A run delayed over four ticks covers four expirations, not 60 due times.
        let late = run(&mut stats, &arming, 6 * TICK + 3 * MS).unwrap();
        assert_eq!((late.0, late.3), (6, 4));
        assert_eq!(
            late.1,
            93 * MS,
            "the latest due time at or before the 93.75 ms tick"
        );
    }

    #[test]
    fn a_past_absolute_periodic_due_time_counts_one_expiration_at_the_next_tick() {
        // Issue 19, defect 2: due 1 h ago, period 7 ms, armed at the 10th tick.
        let hour = 36_000_000_000;
        let armed = 10 * TICK;
        let offset = 1_000 * hour;
        let mut arming = Arming::absolute(offset + armed - hour, 7 * MS, armed, TICK, offset);
        arming.date_first_run(11 * TICK, || offset);
        let mut stats = Stats::default();
        let first = run(&mut stats, &arming, 11 * TICK).unwrap();
        assert_eq!((first.0, first.3), (1, 1), "one expiration, not 514,288");
        assert!(
            (0..7 * MS).contains(&first.2),
            "dated at the latest past due time"
        );
        let next = run(&mut stats, &arming, 12 * TICK).unwrap();
        assert_eq!((next.0, next.3), (2, 1));
        // Due at 100 ns after 1601 with a 1 ms period: still one expiration.
        let mut arming = Arming::absolute(1, MS, armed, TICK, offset);
        arming.date_first_run(11 * TICK, || offset);
        let mut stats = Stats::default();
        let first = run(&mut stats, &arming, 11 * TICK).unwrap();
        assert_eq!((first.0, first.3), (1, 1));
        assert_eq!(stats.expirations, 1);
    }

    #[test]
    fn a_clock_change_between_the_kernels_expiry_and_the_first_run_invents_no_expiration() {
        // Issue 19, defect 1: absolute, due 1 s after arming, period 100 ms; the kernel
        // expires it at the first tick at or after 1 s (1,015.625 ms); the clock moves by
        // 10 s before the DPC runs at that tick.
        let offset = 5_000_000_000_000;
        let due = offset + 10_000_000;
        let expired = 65 * TICK;
        for moved in [-100_000_000, 100_000_000] {
            let mut arming = Arming::absolute(due, 100 * MS, 0, TICK, offset);
            arming.date_first_run(expired, || offset + moved);
            let mut stats = Stats::default();
            let first = run(&mut stats, &arming, expired + 10).unwrap();
            assert_eq!((first.0, first.1), (1, 10_000_000), "moved {moved}");
            assert_eq!(
                first.2,
                expired + 10 - 10_000_000,
                "lateness of the real expiry"
            );
            // The kernel expires due 1.1 s at the 1,109.375 ms tick, 1.2 s at 1,203.125 ms.
            assert_eq!(run(&mut stats, &arming, 71 * TICK).map(|r| r.0), Some(2));
            assert_eq!(run(&mut stats, &arming, 77 * TICK).map(|r| r.0), Some(3));
            assert!(stats.lateness_min >= 0);
        }
        // Unmoved: dated exactly, counted from the first run.
        let mut arming = Arming::absolute(due, 100 * MS, 0, TICK, offset);
        arming.date_first_run(expired, || offset);
        assert_eq!(
            (arming.first_due, arming.counted_from),
            (10_000_000, Some(expired))
        );
        // Later periods are intervals: a clock change after the first run moves nothing.
        arming.date_first_run(expired, || 0);
        assert_eq!(arming.first_due_at(0, 0), 10_000_000);
    }

    #[test]
    fn a_run_whose_expiration_an_overlapping_run_already_counted_is_not_counted() {
        // Run A was queued at the 2nd tick but reads the clock after the 3rd tick, whose
        // expiry queued run B: A counts both, so B has nothing left and makes no record.
        let mut stats = Stats::default();
        let arming = Arming::relative(TICK, TICK, 0, TICK);
        assert_eq!(run(&mut stats, &arming, TICK).map(|r| r.0), Some(1));
        assert_eq!(run(&mut stats, &arming, 3 * TICK + 1).map(|r| r.3), Some(2));
        assert_eq!(run(&mut stats, &arming, 3 * TICK + 2), None);
        assert_eq!((stats.expirations, stats.dpc_runs), (3, 2));
        assert_eq!(run(&mut stats, &arming, 4 * TICK).map(|r| r.0), Some(4));
    }

    #[test]
    fn a_high_resolution_arming_counts_its_exact_due_times() {
        let mut stats = Stats::default();
        let arming = Arming::relative(5 * MS, 2 * MS, 0, 0);
        let first = stats.record_run(&arming, 5 * MS, 0).unwrap();
        assert_eq!((first.sequence, first.lateness), (1, 0));
        let late = stats.record_run(&arming, 12 * MS, 0).unwrap();
        assert_eq!((late.sequence, late.due, late.covered), (4, 11 * MS, 3));
    }

    #[test]
    fn every_run_counts_at_least_one_expiration() {
        // Even if the tick clock says the kernel has not expired it yet (on Windows, ticks
        // can come more often than `KeQueryTimeIncrement` says), a run proves an expiration.
        let mut stats = Stats::default();
        let arming = Arming::relative(10 * TICK, TICK, 0, TICK);
        let run = stats.record_run(&arming, 9 * TICK, 9 * TICK).unwrap();
        assert_eq!((run.sequence, run.covered), (1, 1));
    }

    #[test]
    fn extreme_values_saturate_instead_of_overflowing() {
        let mut stats = Stats::default();
        let arming = Arming::relative(i64::MIN, 1, i64::MIN, 1);
        let run = stats.record_run(&arming, i64::MAX, i64::MAX).unwrap();
        assert!(run.covered >= 1);
        assert!(
            u32::try_from(run.covered).is_err(),
            "a record would saturate"
        );
        let mut arming = Arming::absolute(i64::MIN, i64::MAX, i64::MAX, i64::MAX, i64::MAX);
        arming.date_first_run(i64::MAX, || i64::MIN);
        let mut other = Stats::default();
        assert!(other.record_run(&arming, i64::MAX, i64::MAX).is_some());
        assert_eq!(Stats::default().lateness_mean(), 0);
    }
}
