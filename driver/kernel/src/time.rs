//! Typed times for the kernel's timer routines, and the one place where they become the
//! kernel's integers.
//!
//! The kernel counts time in 100 ns units: relative due times and timeouts are negative,
//! absolute ones are positive system times (100 ns since 1601-01-01 UTC). Periods of Ke
//! timers are milliseconds (`LONG`), tolerable delays milliseconds (`ULONG`), and periods of
//! high-resolution timers 100 ns (`LONGLONG`). Every value here is validated when it is
//! made, so arming a timer cannot fail: out-of-range inputs are [`TimeError`]s, never a
//! panic and never a wrapped value. All of this module is callable at any IRQL.

use core::num::NonZeroU32;
use core::time::Duration;

/// 100 ns units in one second.
pub const HUNDRED_NS_PER_SECOND: u64 = 10_000_000;
const NANOS_PER_HUNDRED_NS: u32 = 100;
const NANOS_PER_MILLI: u32 = 1_000_000;

/// Why a time value cannot be expressed in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// The value does not fit the kernel's integer for it.
    OutOfRange,
    /// A period must be at least one unit long.
    ZeroPeriod,
}

impl core::fmt::Display for TimeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("time value out of the kernel's range"),
            Self::ZeroPeriod => f.write_str("a period must not be zero"),
        }
    }
}

/// Converts a duration to 100 ns units, rounding a sub-100 ns remainder up (a timer must
/// not fire before the time asked for), failing if the result exceeds `i64::MAX` (the
/// kernel's `LONGLONG`). THE conversion from [`Duration`] to kernel time units. Any IRQL.
fn hundred_ns_from_duration(duration: Duration) -> Result<u64, TimeError> {
    let whole = duration
        .as_secs()
        .checked_mul(HUNDRED_NS_PER_SECOND)
        .ok_or(TimeError::OutOfRange)?;
    let fraction = duration.subsec_nanos().div_ceil(NANOS_PER_HUNDRED_NS);
    let total = whole
        .checked_add(u64::from(fraction))
        .ok_or(TimeError::OutOfRange)?;
    if i64::try_from(total).is_ok() {
        Ok(total)
    } else {
        Err(TimeError::OutOfRange)
    }
}

/// Converts a duration to whole milliseconds, rounding a sub-millisecond remainder up. Any IRQL.
fn millis_from_duration(duration: Duration) -> Result<u64, TimeError> {
    let whole = duration
        .as_secs()
        .checked_mul(1_000)
        .ok_or(TimeError::OutOfRange)?;
    let fraction = duration.subsec_nanos().div_ceil(NANOS_PER_MILLI);
    whole
        .checked_add(u64::from(fraction))
        .ok_or(TimeError::OutOfRange)
}

/// A relative span of time in the kernel's 100 ns units.
///
/// # Invariants
///
/// `0 <= hundred_ns <= i64::MAX`, so its negation (the kernel's relative form) never
/// overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    hundred_ns: u64,
}

impl Interval {
    /// The empty interval.
    pub const ZERO: Self = Self { hundred_ns: 0 };
    /// The longest interval the kernel can express: `i64::MAX` × 100 ns (~29,227 years).
    pub const MAX: Self = Self {
        hundred_ns: i64::MAX.unsigned_abs(),
    };

    /// The interval of `duration`, rounded up to a whole 100 ns. Any IRQL.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] if it exceeds `i64::MAX` × 100 ns (about 29,000 years).
    pub fn from_duration(duration: Duration) -> Result<Self, TimeError> {
        // INVARIANT: hundred_ns_from_duration only returns values <= i64::MAX.
        hundred_ns_from_duration(duration).map(|hundred_ns| Self { hundred_ns })
    }

    /// The interval of `hundred_ns` 100 ns units. Any IRQL.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] if `hundred_ns > i64::MAX`.
    pub fn from_hundred_ns(hundred_ns: u64) -> Result<Self, TimeError> {
        if i64::try_from(hundred_ns).is_ok() {
            // INVARIANT: checked just above.
            Ok(Self { hundred_ns })
        } else {
            Err(TimeError::OutOfRange)
        }
    }

    /// The interval of `hundred_ns` 100 ns units, or [`Interval::MAX`] if that is longer. Any IRQL.
    #[must_use]
    pub const fn from_hundred_ns_saturating(hundred_ns: u64) -> Self {
        if hundred_ns > Self::MAX.hundred_ns {
            Self::MAX
        } else {
            // INVARIANT: checked just above.
            Self { hundred_ns }
        }
    }

    /// The length in 100 ns units. Any IRQL.
    #[must_use]
    pub const fn as_hundred_ns(self) -> u64 {
        self.hundred_ns
    }

    /// The length as a [`Duration`] (always exact). Any IRQL.
    #[must_use]
    pub fn as_duration(self) -> Duration {
        let secs = self.hundred_ns / HUNDRED_NS_PER_SECOND;
        // Below 10^7 × 100 = 10^9: cannot overflow.
        let nanos = (self.hundred_ns % HUNDRED_NS_PER_SECOND).saturating_mul(100);
        Duration::from_secs(secs).saturating_add(Duration::from_nanos(nanos))
    }

    /// The kernel's relative form: the negated 100 ns count (zero stays zero). Any IRQL.
    #[must_use]
    pub(crate) fn to_kernel_relative(self) -> i64 {
        // The invariant (hundred_ns <= i64::MAX) makes the conversion and negation exact;
        // the fallback is unreachable and chosen to be harmless (the longest wait).
        i64::try_from(self.hundred_ns).map_or(i64::MIN + 1, |value| -value)
    }

    /// The `Period` argument of `ExSetTimer` (100 ns units, non-negative; 0 = one-shot). Any IRQL.
    #[must_use]
    pub(crate) fn to_kernel_period(self) -> i64 {
        // The invariant makes this exact; the fallback is unreachable.
        i64::try_from(self.hundred_ns).unwrap_or(i64::MAX)
    }

    /// The kernel's relative form for routines that require a strictly relative (negative)
    /// due time, such as `ExSetTimer` on a high-resolution timer: like
    /// [`Self::to_kernel_relative`], but zero becomes -1 (100 ns from now), because zero
    /// would be read as the absolute time 1601-01-01. Any IRQL.
    #[must_use]
    pub(crate) fn to_kernel_relative_nonzero(self) -> i64 {
        self.to_kernel_relative().min(-1)
    }
}

/// An absolute system time: 100 ns units since 1601-01-01 00:00 UTC, the kernel's
/// `KeQuerySystemTime` clock (it follows changes of the wall clock).
///
/// # Invariants
///
/// `0 <= hundred_ns <= i64::MAX` (a positive `LONGLONG` in the kernel's absolute form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemTime {
    hundred_ns: u64,
}

impl SystemTime {
    /// The system time `hundred_ns` 100 ns units after 1601-01-01 00:00 UTC. Any IRQL.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] if it exceeds `i64::MAX`.
    pub fn from_hundred_ns_since_1601(hundred_ns: u64) -> Result<Self, TimeError> {
        if i64::try_from(hundred_ns).is_ok() {
            // INVARIANT: checked just above.
            Ok(Self { hundred_ns })
        } else {
            Err(TimeError::OutOfRange)
        }
    }

    /// A system time as the kernel reports it (a `LONGLONG`); a negative report, which the
    /// kernel never makes, is clamped to the epoch. Any IRQL.
    #[must_use]
    pub(crate) const fn from_kernel(hundred_ns: i64) -> Self {
        // INVARIANT: a non-negative i64 is <= i64::MAX.
        Self {
            hundred_ns: if hundred_ns < 0 {
                0
            } else {
                hundred_ns.unsigned_abs()
            },
        }
    }

    /// 100 ns units since 1601-01-01 00:00 UTC. Any IRQL.
    #[must_use]
    pub const fn as_hundred_ns_since_1601(self) -> u64 {
        self.hundred_ns
    }

    /// This time plus `interval`. Any IRQL.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] if the sum exceeds `i64::MAX`.
    pub fn checked_add(self, interval: Interval) -> Result<Self, TimeError> {
        self.hundred_ns
            .checked_add(interval.as_hundred_ns())
            .ok_or(TimeError::OutOfRange)
            .and_then(Self::from_hundred_ns_since_1601)
    }

    /// The kernel's absolute form: the positive 100 ns count. Any IRQL.
    fn to_kernel_absolute(self) -> i64 {
        // The invariant makes this exact; the fallback is unreachable.
        i64::try_from(self.hundred_ns).unwrap_or(i64::MAX)
    }
}

/// When a Ke timer is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueTime {
    /// After an interval from now, measured on the interrupt-time clock (not affected by
    /// changes of the wall clock). Zero expires at the next clock tick.
    After(Interval),
    /// At an absolute system time; follows changes of the wall clock. A time in the past
    /// expires at the next clock tick.
    At(SystemTime),
}

impl DueTime {
    /// Due `duration` from now (rounded up to 100 ns). Any IRQL.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] as [`Interval::from_duration`].
    pub fn after(duration: Duration) -> Result<Self, TimeError> {
        Interval::from_duration(duration).map(Self::After)
    }

    /// The `DueTime` argument of `KeSetTimerEx` and `KeSetCoalescableTimer`: negative for
    /// relative, positive for absolute. Any IRQL.
    #[must_use]
    pub(crate) fn to_kernel(self) -> i64 {
        match self {
            Self::After(interval) => interval.to_kernel_relative(),
            Self::At(time) => time.to_kernel_absolute(),
        }
    }
}

/// The period of a periodic Ke timer, in milliseconds.
///
/// # Invariants
///
/// `1 <= millis <= i32::MAX` (the kernel's `LONG` period; zero would mean one-shot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    millis: NonZeroU32,
}

impl Period {
    /// A period of `millis` milliseconds. Any IRQL.
    ///
    /// # Errors
    ///
    /// [`TimeError::ZeroPeriod`] for 0, [`TimeError::OutOfRange`] above `i32::MAX`.
    pub fn from_millis(millis: u32) -> Result<Self, TimeError> {
        let millis = NonZeroU32::new(millis).ok_or(TimeError::ZeroPeriod)?;
        if i32::try_from(millis.get()).is_ok() {
            // INVARIANT: non-zero and <= i32::MAX, both checked above.
            Ok(Self { millis })
        } else {
            Err(TimeError::OutOfRange)
        }
    }

    /// The period of `duration`, rounded up to a whole millisecond. Any IRQL.
    ///
    /// # Errors
    ///
    /// As [`Period::from_millis`].
    pub fn from_duration(duration: Duration) -> Result<Self, TimeError> {
        let millis = millis_from_duration(duration)?;
        let millis = u32::try_from(millis).map_err(|_| TimeError::OutOfRange)?;
        Self::from_millis(millis)
    }

    /// The period in milliseconds. Any IRQL.
    #[must_use]
    pub const fn as_millis(self) -> u32 {
        self.millis.get()
    }

    /// The `Period` argument of `KeSetTimerEx` (a `LONG`). Any IRQL.
    #[must_use]
    pub(crate) fn to_kernel(self) -> i32 {
        // The invariant makes this exact; the fallback is unreachable.
        i32::try_from(self.millis.get()).unwrap_or(i32::MAX)
    }
}

/// How long the kernel may delay a coalescable timer's expiry to batch wake-ups, in
/// milliseconds (the `ULONG` of `KeSetCoalescableTimer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TolerableDelay {
    millis: u32,
}

impl TolerableDelay {
    /// No delay allowed.
    pub const NONE: Self = Self { millis: 0 };

    /// A tolerable delay of `millis` milliseconds. Any IRQL.
    #[must_use]
    pub const fn from_millis(millis: u32) -> Self {
        Self { millis }
    }

    /// The tolerable delay of `duration`, rounded up to a whole millisecond. Any IRQL.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] above `u32::MAX` milliseconds.
    pub fn from_duration(duration: Duration) -> Result<Self, TimeError> {
        let millis = millis_from_duration(duration)?;
        u32::try_from(millis)
            .map(Self::from_millis)
            .map_err(|_| TimeError::OutOfRange)
    }

    /// The delay in milliseconds (also the kernel's `TolerableDelay` argument). Any IRQL.
    #[must_use]
    pub const fn as_millis(self) -> u32 {
        self.millis
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MAX_HUNDRED_NS: u64 = i64::MAX.unsigned_abs();

    #[test]
    fn durations_convert_to_hundred_ns_rounding_up() {
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_nanos(99), 1),
            (Duration::from_nanos(100), 1),
            (Duration::from_nanos(101), 2),
            (Duration::from_micros(1), 10),
            (Duration::from_millis(15), 150_000),
            (Duration::from_secs(1), 10_000_000),
            (Duration::new(2, 50), 20_000_001),
        ];
        for (duration, expected) in cases {
            assert_eq!(
                Interval::from_duration(duration).map(Interval::as_hundred_ns),
                Ok(expected),
                "{duration:?}"
            );
        }
    }

    #[test]
    fn the_largest_duration_the_kernel_can_express_converts_exactly() {
        let secs = MAX_HUNDRED_NS / HUNDRED_NS_PER_SECOND;
        let hundreds = u32::try_from(MAX_HUNDRED_NS % HUNDRED_NS_PER_SECOND).unwrap();
        let largest = Duration::new(secs, hundreds * 100);
        let interval = Interval::from_duration(largest).unwrap();
        assert_eq!(interval.as_hundred_ns(), MAX_HUNDRED_NS);
        assert_eq!(interval.to_kernel_relative(), -i64::MAX);
        assert_eq!(interval.as_duration(), largest);
        assert_eq!(
            Interval::from_duration(largest + Duration::from_nanos(1)),
            Err(TimeError::OutOfRange),
            "one more nanosecond rounds up past the kernel's range"
        );
    }

    #[test]
    fn overflowing_durations_are_errors_not_wraps() {
        assert_eq!(
            Interval::from_duration(Duration::MAX),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            Interval::from_duration(Duration::from_secs(u64::MAX / HUNDRED_NS_PER_SECOND + 1)),
            Err(TimeError::OutOfRange),
            "the seconds multiplication overflows u64"
        );
        assert_eq!(
            Interval::from_hundred_ns(MAX_HUNDRED_NS + 1),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            Interval::from_hundred_ns(MAX_HUNDRED_NS).map(Interval::as_hundred_ns),
            Ok(MAX_HUNDRED_NS)
        );
    }

    #[test]
    fn due_times_take_the_kernel_sign_convention() {
        let relative = DueTime::after(Duration::from_millis(20)).unwrap();
        assert_eq!(relative.to_kernel(), -200_000);
        assert_eq!(DueTime::After(Interval::ZERO).to_kernel(), 0);
        let absolute = SystemTime::from_hundred_ns_since_1601(133_000_000_000_000_000).unwrap();
        assert_eq!(DueTime::At(absolute).to_kernel(), 133_000_000_000_000_000);
        assert_eq!(
            SystemTime::from_hundred_ns_since_1601(MAX_HUNDRED_NS + 1),
            Err(TimeError::OutOfRange)
        );
    }

    #[test]
    fn strictly_relative_due_times_never_become_absolute() {
        assert_eq!(Interval::ZERO.to_kernel_relative_nonzero(), -1);
        assert_eq!(
            Interval::from_hundred_ns(5)
                .unwrap()
                .to_kernel_relative_nonzero(),
            -5
        );
    }

    #[test]
    fn system_time_addition_is_checked() {
        let start = SystemTime::from_hundred_ns_since_1601(1_000).unwrap();
        let later = start
            .checked_add(Interval::from_hundred_ns(234).unwrap())
            .unwrap();
        assert_eq!(later.as_hundred_ns_since_1601(), 1_234);
        let end = SystemTime::from_hundred_ns_since_1601(MAX_HUNDRED_NS).unwrap();
        assert_eq!(
            end.checked_add(Interval::from_hundred_ns(1).unwrap()),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(end.checked_add(Interval::ZERO), Ok(end));
    }

    #[test]
    fn periods_are_non_zero_milliseconds_that_fit_a_long() {
        assert_eq!(Period::from_millis(0), Err(TimeError::ZeroPeriod));
        assert_eq!(Period::from_millis(1).map(Period::to_kernel), Ok(1));
        assert_eq!(
            Period::from_millis(i32::MAX.unsigned_abs()).map(Period::to_kernel),
            Ok(i32::MAX)
        );
        assert_eq!(
            Period::from_millis(i32::MAX.unsigned_abs() + 1),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            Period::from_duration(Duration::from_micros(1_500)).map(Period::as_millis),
            Ok(2),
            "sub-millisecond remainders round up"
        );
        assert_eq!(
            Period::from_duration(Duration::ZERO),
            Err(TimeError::ZeroPeriod)
        );
        assert_eq!(
            Period::from_duration(Duration::MAX),
            Err(TimeError::OutOfRange)
        );
    }

    #[test]
    fn tolerable_delays_are_milliseconds_that_fit_a_ulong() {
        assert_eq!(TolerableDelay::NONE.as_millis(), 0);
        assert_eq!(
            TolerableDelay::from_duration(Duration::from_nanos(1)).map(TolerableDelay::as_millis),
            Ok(1)
        );
        assert_eq!(
            TolerableDelay::from_duration(Duration::from_millis(u64::from(u32::MAX) + 1)),
            Err(TimeError::OutOfRange)
        );
    }
}
