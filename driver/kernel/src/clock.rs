//! The kernel's clocks: interrupt time (100 ns since boot, monotonic, what relative timers
//! measure), system time (the wall clock in 100 ns since 1601, what absolute timers
//! follow) and the clock tick length (`KeQueryTimeIncrement`). Every query is callable at
//! any IRQL, allocates nothing and never fails.

use core::time::Duration;

use super::sys;
use super::time::{Interval, SystemTime};

/// A reading of the interrupt-time clock: 100 ns units since boot. Monotonic; not
/// affected by changes of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterruptTime {
    hundred_ns: u64,
}

impl InterruptTime {
    /// The reading `hundred_ns` 100 ns units after boot. Any IRQL.
    #[must_use]
    pub const fn from_hundred_ns(hundred_ns: u64) -> Self {
        Self { hundred_ns }
    }

    /// 100 ns units since boot. Any IRQL.
    #[must_use]
    pub const fn as_hundred_ns(self) -> u64 {
        self.hundred_ns
    }

    /// How long after `earlier` this reading is; zero if it is not later. Any IRQL.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        let hundred_ns = self.hundred_ns.saturating_sub(earlier.hundred_ns);
        // Saturation needs ~29,000 years of uptime; it keeps the function total.
        Interval::from_hundred_ns_saturating(hundred_ns).as_duration()
    }
}

/// The interrupt time, as of the last clock tick (`KeQueryInterruptTime`). Any IRQL.
#[must_use]
pub fn interrupt_time() -> InterruptTime {
    // SAFETY: KeQueryInterruptTime has no preconditions and is legal at any IRQL.
    InterruptTime::from_hundred_ns(unsafe { sys::KeQueryInterruptTime() })
}

/// The interrupt time, precise to the performance counter
/// (`KeQueryInterruptTimePrecise`). Any IRQL.
#[must_use]
pub fn interrupt_time_precise() -> InterruptTime {
    let mut qpc_time_stamp: sys::ULONG64 = 0;
    // SAFETY: the out-pointer is valid for a write; legal at any IRQL.
    let hundred_ns = unsafe { sys::KeQueryInterruptTimePrecise(&raw mut qpc_time_stamp) };
    InterruptTime::from_hundred_ns(hundred_ns)
}

/// The current system time, precise to the performance counter
/// (`KeQuerySystemTimePrecise`). Any IRQL.
#[must_use]
pub fn system_time() -> SystemTime {
    let mut now = sys::LARGE_INTEGER { QuadPart: 0 };
    // SAFETY: the out-pointer is valid for a write; legal at any IRQL.
    unsafe { sys::KeQuerySystemTimePrecise(&raw mut now) };
    // SAFETY: every variant of LARGE_INTEGER is plain integer data over the same 8 bytes,
    // all of which the kernel wrote.
    let hundred_ns = unsafe { now.QuadPart };
    SystemTime::from_kernel(hundred_ns)
}

/// The length of a clock tick, the granularity of Ke timer expiry
/// (`KeQueryTimeIncrement`). Any IRQL.
#[must_use]
pub fn time_increment() -> Interval {
    // SAFETY: KeQueryTimeIncrement has no preconditions and is legal at any IRQL.
    let increment = unsafe { sys::KeQueryTimeIncrement() };
    // A ULONG always fits an Interval: saturation cannot happen.
    Interval::from_hundred_ns_saturating(u64::from(increment))
}
