//! The `#[repr(C)]` requests and responses, their field values, and compile-time checks that
//! their size, alignment and field offsets are exactly what `docs/PROTOCOL.md` documents.
//!
//! Times: a due time is either relative (a delay in 100 ns units, `>= 0`) or, with
//! [`SCHEDULE_ABSOLUTE`], an absolute system time (100 ns units since 1601-01-01 UTC, the
//! `KeQuerySystemTime`/`GetSystemTimeAsFileTime` scale). Times the driver reports (due and
//! fire times in records and queries) are interrupt time: 100 ns units since boot, the
//! `KeQueryInterruptTime`/`QueryInterruptTime` scale, which no clock change moves.

use core::mem::{align_of, offset_of, size_of};

/// The first field of every request and response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    /// [`crate::ABI_VERSION`] of the sender.
    pub abi_version: u32,
    /// `size_of` the whole request or response (for a wait response: without the records).
    pub size: u32,
}

impl Header {
    /// The header a message of type `T` carries under this ABI version.
    #[must_use]
    pub const fn of<T>() -> Self {
        Self {
            abi_version: crate::ABI_VERSION,
            size: size_u32::<T>(),
        }
    }
}

/// `size_of::<T>()` as the `u32` a header carries; every message is a few dozen bytes, and a
/// type too large would stop the build (this is only evaluated in constants).
#[expect(
    clippy::cast_possible_truncation,
    reason = "the assert just above bounds it"
)]
const fn size_u32<T>() -> u32 {
    let size = size_of::<T>();
    assert!(size <= u32::MAX as usize);
    size as u32
}

// ---- field values -------------------------------------------------------------------------

/// [`CreateRequest::timer_type`]: a notification timer (`NotificationTimer`): once expired it
/// stays signaled until re-armed.
pub const TIMER_TYPE_NOTIFICATION: u32 = 0;
/// [`CreateRequest::timer_type`]: a synchronization timer (`SynchronizationTimer`): a
/// satisfied wait resets it to not-signaled.
pub const TIMER_TYPE_SYNCHRONIZATION: u32 = 1;

/// [`Schedule::mode`]: expire once.
pub const MODE_ONE_SHOT: u32 = 0;
/// [`Schedule::mode`]: expire every [`Schedule::period_ms`] after the first due time.
pub const MODE_PERIODIC: u32 = 1;

/// [`Schedule::flags`]: [`Schedule::due_time`] is an absolute system time.
pub const SCHEDULE_ABSOLUTE: u32 = 0x1;
/// Every defined [`Schedule::flags`] bit.
pub const SCHEDULE_FLAGS_ALL: u32 = SCHEDULE_ABSOLUTE;

/// [`CreateRequest::flags`]: a high-resolution timer (`ExAllocateTimer` with
/// `EX_TIMER_HIGH_RESOLUTION`), which expires at its due time rather than on the next clock
/// tick. Needs a relative due time, no tolerable delay, and a notification type.
pub const CREATE_HIGH_RESOLUTION: u32 = 0x1;
/// Every defined [`CreateRequest::flags`] bit.
pub const CREATE_FLAGS_ALL: u32 = CREATE_HIGH_RESOLUTION;

/// [`QueryResponse::state`]: armed, waiting for its (next) expiry.
pub const STATE_ARMED: u32 = 1;
/// [`QueryResponse::state`]: a one-shot timer that has expired.
pub const STATE_EXPIRED: u32 = 2;
/// [`QueryResponse::state`]: cancelled before its expiry; can be re-armed.
pub const STATE_CANCELLED: u32 = 3;

/// The largest relative due time: one day.
pub const MAX_RELATIVE_DUE_100NS: i64 = 24 * 3600 * 10_000_000;
/// The smallest period any driver build accepts; the driver's own minimum (reported by
/// get-info) may be higher.
pub const MIN_PERIOD_MS_FLOOR: i32 = 1;
/// The largest period: one day.
pub const MAX_PERIOD_MS: i32 = 24 * 3600 * 1000;
/// The largest tolerable delay of a coalescable timer: one minute.
pub const MAX_TOLERABLE_DELAY_MS: u32 = 60_000;

// ---- requests and responses ---------------------------------------------------------------

/// When a timer expires, shared by create and set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Schedule {
    /// [`MODE_ONE_SHOT`] or [`MODE_PERIODIC`].
    pub mode: u32,
    /// [`SCHEDULE_ABSOLUTE`] or 0.
    pub flags: u32,
    /// Relative: delay in 100 ns units, `0..=MAX_RELATIVE_DUE_100NS`. Absolute: system time,
    /// `> 0` and at most [`MAX_RELATIVE_DUE_100NS`] in the future (a past time expires at the
    /// next tick, as the kernel does).
    pub due_time: i64,
    /// One-shot: 0. Periodic: milliseconds, from the driver's minimum to [`MAX_PERIOD_MS`].
    pub period_ms: i32,
    /// 0 for an exact timer; otherwise the coalescing tolerance (`KeSetCoalescableTimer`),
    /// at most [`MAX_TOLERABLE_DELAY_MS`].
    pub tolerable_delay_ms: u32,
}

/// Input of [`crate::ioctl::IOCTL_KTIMER_CREATE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CreateRequest {
    /// `Header::of::<CreateRequest>()`.
    pub header: Header,
    /// [`TIMER_TYPE_NOTIFICATION`] or [`TIMER_TYPE_SYNCHRONIZATION`].
    pub timer_type: u32,
    /// [`CREATE_HIGH_RESOLUTION`] or 0.
    pub flags: u32,
    /// The first arming.
    pub schedule: Schedule,
}

/// Output of [`crate::ioctl::IOCTL_KTIMER_CREATE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CreateResponse {
    /// `Header::of::<CreateResponse>()`.
    pub header: Header,
    /// The new timer's id, valid on the creating handle until closed. Never 0.
    pub timer_id: u64,
}

/// Input of [`crate::ioctl::IOCTL_KTIMER_SET`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SetRequest {
    /// `Header::of::<SetRequest>()`.
    pub header: Header,
    /// The timer to re-arm.
    pub timer_id: u64,
    /// The new schedule; replaces the old one (as `KeSetTimerEx` on a set timer does).
    pub schedule: Schedule,
}

/// Input of [`crate::ioctl::IOCTL_KTIMER_CANCEL`], [`crate::ioctl::IOCTL_KTIMER_QUERY`] and
/// [`crate::ioctl::IOCTL_KTIMER_CLOSE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TimerRequest {
    /// `Header::of::<TimerRequest>()`.
    pub header: Header,
    /// The timer.
    pub timer_id: u64,
}

/// Output of [`crate::ioctl::IOCTL_KTIMER_SET`] and [`crate::ioctl::IOCTL_KTIMER_CANCEL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ArmResponse {
    /// `Header::of::<ArmResponse>()`.
    pub header: Header,
    /// 1 if the timer was in the kernel's timer queue before the call (the `BOOLEAN` that
    /// `KeSetTimerEx`/`KeCancelTimer` return), else 0.
    pub was_armed: u32,
    /// 0.
    pub reserved: u32,
}

/// Output of [`crate::ioctl::IOCTL_KTIMER_QUERY`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct QueryResponse {
    /// `Header::of::<QueryResponse>()`.
    pub header: Header,
    /// The timer.
    pub timer_id: u64,
    /// [`STATE_ARMED`], [`STATE_EXPIRED`] or [`STATE_CANCELLED`].
    pub state: u32,
    /// 1 if the kernel timer object is signaled (`KeReadStateTimer`); always 0 for a
    /// high-resolution timer, which is not a dispatcher object.
    pub signaled: u32,
    /// As created.
    pub timer_type: u32,
    /// As created ([`CREATE_HIGH_RESOLUTION`]).
    pub flags: u32,
    /// The current schedule's mode.
    pub mode: u32,
    /// The current schedule's period (0 for one-shot).
    pub period_ms: i32,
    /// Interrupt time of the current schedule's first due time.
    pub due_time: i64,
    /// The kernel's expirations of the current arming, counted at its DPC runs from the
    /// clock tick (docs/PROTOCOL.md, "Expirations"): one per tick a due time fell into, so
    /// a DPC late by several ticks counts each of them, and never one the kernel has not
    /// produced.
    pub expirations: u64,
    /// DPC (or high-resolution callback) runs since the last arming that counted an
    /// expiration.
    pub dpc_runs: u64,
    /// Expirations that had no DPC run of their own (`expirations - dpc_runs`).
    pub coalesced: u64,
    /// Lateness of the last DPC run: its interrupt time minus the latest due time it covers,
    /// 100 ns units (negative if the kernel fired early, which it may by up to a tick).
    pub lateness_last: i64,
    /// Smallest lateness since the last arming (0 before any run).
    pub lateness_min: i64,
    /// Largest lateness since the last arming (0 before any run).
    pub lateness_max: i64,
    /// Mean lateness over DPC runs since the last arming, rounded toward zero (0 before any).
    pub lateness_mean: i64,
}

/// Input of [`crate::ioctl::IOCTL_KTIMER_WAIT`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct WaitRequest {
    /// `Header::of::<WaitRequest>()`.
    pub header: Header,
    /// Complete once at least this many records are ready (`>= 1`, at most what the output
    /// buffer holds and at most the event ring capacity). The response carries as many ready
    /// records as fit.
    pub min_records: u32,
    /// 0.
    pub reserved: u32,
}

/// Output of [`crate::ioctl::IOCTL_KTIMER_WAIT`]: this header, then `record_count`
/// [`ExpiryRecord`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct WaitResponse {
    /// `Header::of::<WaitResponse>()` (the size excludes the records).
    pub header: Header,
    /// Records following this header.
    pub record_count: u32,
    /// 0.
    pub reserved: u32,
    /// Records dropped because the handle's event ring was full, since the previous wait
    /// response (the ring keeps the oldest records and drops new ones).
    pub overruns: u64,
}

/// One DPC run of one timer, as delivered by a wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExpiryRecord {
    /// The timer.
    pub timer_id: u64,
    /// The number of the latest expiration this run covers, counting from 1 at each arming.
    /// A gap to the timer's previous record means coalesced expirations.
    pub sequence: u64,
    /// Interrupt time at which that expiration was due.
    pub due_time: i64,
    /// Interrupt time at which the DPC ran.
    pub fire_time: i64,
    /// `fire_time - due_time`.
    pub lateness: i64,
    /// Expirations this run covers (1, or more when expirations were coalesced). Saturates
    /// at [`crate::EXPIRATIONS_SATURATED`]: that value means "at least that many"; `sequence`
    /// and the query's `expirations` (u64) stay exact.
    pub expirations: u32,
    /// 0.
    pub reserved: u32,
}

/// Output of [`crate::ioctl::IOCTL_KTIMER_GET_INFO`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct InfoResponse {
    /// `Header::of::<InfoResponse>()`: its `abi_version` is the driver's.
    pub header: Header,
    /// Driver version, major.
    pub driver_version_major: u16,
    /// Driver version, minor.
    pub driver_version_minor: u16,
    /// Driver version, patch.
    pub driver_version_patch: u16,
    /// 0.
    pub reserved: u16,
    /// The clock tick, 100 ns units (`KeQueryTimeIncrement`).
    pub clock_increment: u32,
    /// Live timers one handle may own.
    pub max_timers_per_handle: u32,
    /// Waits one handle may have pending.
    pub max_pending_waits_per_handle: u32,
    /// Records one handle's event ring holds.
    pub event_ring_capacity: u32,
    /// The smallest period the driver accepts.
    pub min_period_ms: u32,
    /// The largest period ([`MAX_PERIOD_MS`]).
    pub max_period_ms: u32,
    /// The largest tolerable delay ([`MAX_TOLERABLE_DELAY_MS`]).
    pub max_tolerable_delay_ms: u32,
    /// 0 (explicit padding before the 8-byte fields).
    pub padding: u32,
    /// The largest relative due time ([`MAX_RELATIVE_DUE_100NS`]).
    pub max_relative_due: i64,
    /// Interrupt time when the request was served.
    pub interrupt_time: u64,
    /// System time when the request was served (the base for absolute due times).
    pub system_time: i64,
}

// ---- compile-time layout checks -----------------------------------------------------------

/// Asserts a type's size and alignment and every field's offset at compile time, and gives
/// the type its byte form ([`crate::wire::Wire`]: each field read and written at its
/// `offset_of!`). The list must name every field: the byte form is built as a struct literal,
/// so a field left out (or one added to the struct and not here) stops the build. A type
/// without this line has no byte form, so it cannot be an IOCTL's input or output
/// ([`crate::ioctl::Ioctl`]): that is the coverage check of these assertions.
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr, align = $align:expr, { $($field:ident = $offset:expr),* $(,)? }) => {
        const _: () = {
            assert!(size_of::<$ty>() == $size);
            assert!(align_of::<$ty>() == $align);
            $(assert!(offset_of!($ty, $field) == $offset);)*
        };
        impl crate::wire::Wire for $ty {
            fn read(bytes: &[u8], offset: usize) -> Option<Self> {
                Some(Self {
                    $($field: crate::wire::Wire::read(
                        bytes,
                        offset.checked_add(offset_of!($ty, $field))?,
                    )?,)*
                })
            }
            fn write(&self, out: &mut [u8], offset: usize) -> Option<()> {
                $(crate::wire::Wire::write(
                    &self.$field,
                    out,
                    offset.checked_add(offset_of!($ty, $field))?,
                )?;)*
                Some(())
            }
        }
    };
}

assert_layout!(Header, size = 8, align = 4, { abi_version = 0, size = 4 });
assert_layout!(Schedule, size = 24, align = 8, {
    mode = 0, flags = 4, due_time = 8, period_ms = 16, tolerable_delay_ms = 20,
});
assert_layout!(CreateRequest, size = 40, align = 8, {
    header = 0, timer_type = 8, flags = 12, schedule = 16,
});
assert_layout!(CreateResponse, size = 16, align = 8, { header = 0, timer_id = 8 });
assert_layout!(SetRequest, size = 40, align = 8, { header = 0, timer_id = 8, schedule = 16 });
assert_layout!(TimerRequest, size = 16, align = 8, { header = 0, timer_id = 8 });
assert_layout!(ArmResponse, size = 16, align = 4, { header = 0, was_armed = 8, reserved = 12 });
assert_layout!(QueryResponse, size = 104, align = 8, {
    header = 0, timer_id = 8, state = 16, signaled = 20, timer_type = 24, flags = 28,
    mode = 32, period_ms = 36, due_time = 40, expirations = 48, dpc_runs = 56, coalesced = 64,
    lateness_last = 72, lateness_min = 80, lateness_max = 88, lateness_mean = 96,
});
assert_layout!(WaitRequest, size = 16, align = 4, { header = 0, min_records = 8, reserved = 12 });
assert_layout!(WaitResponse, size = 24, align = 8, {
    header = 0, record_count = 8, reserved = 12, overruns = 16,
});
assert_layout!(ExpiryRecord, size = 48, align = 8, {
    timer_id = 0, sequence = 8, due_time = 16, fire_time = 24, lateness = 32, expirations = 40,
    reserved = 44,
});
assert_layout!(InfoResponse, size = 72, align = 8, {
    header = 0, driver_version_major = 8, driver_version_minor = 10, driver_version_patch = 12,
    reserved = 14, clock_increment = 16, max_timers_per_handle = 20,
    max_pending_waits_per_handle = 24, event_ring_capacity = 28, min_period_ms = 32,
    max_period_ms = 36, max_tolerable_delay_ms = 40, padding = 44, max_relative_due = 48,
    interrupt_time = 56, system_time = 64,
});
