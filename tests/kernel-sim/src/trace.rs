//! The event log a kernel keeps (when `Config::trace` is on), so tests can compare runs.
//!
//! Objects are named by [`ObjectId`]s handed out in initialisation order, not by address,
//! so the same test produces the same trace on every run.

use crate::BugCheck;

/// A kernel object's stable name within one kernel: the order in which it was initialised
/// (KTIMER, KDPC and `EX_TIMER` share one sequence, starting at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub u32);

/// One entry of the trace: when (interrupt time, 100 ns units) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Interrupt time (100 ns units since boot) at which the event happened.
    pub at: u64,
    /// What happened.
    pub event: Event,
}

/// What the kernel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `KeInitializeTimer(Ex)`; `synchronization` is the timer type.
    TimerInitialized {
        /// The timer.
        timer: ObjectId,
        /// `true` for a `SynchronizationTimer`.
        synchronization: bool,
    },
    /// `KeSetTimer(Ex)` / `KeSetCoalescableTimer`.
    TimerSet {
        /// The timer.
        timer: ObjectId,
        /// Interrupt time at which it is due (after coalescing), 100 ns units.
        due: u64,
        /// Period in milliseconds (0 = one-shot).
        period_ms: u32,
        /// The DPC to queue on expiry.
        dpc: Option<ObjectId>,
        /// Whether the timer was already set (the routine's return value).
        was_set: bool,
    },
    /// `KeCancelTimer`.
    TimerCancelled {
        /// The timer.
        timer: ObjectId,
        /// Whether it was set (the routine's return value).
        was_set: bool,
    },
    /// A timer expired (became signaled; its DPC, if any, is queued next).
    TimerExpired {
        /// The timer.
        timer: ObjectId,
    },
    /// `KeInitializeDpc`.
    DpcInitialized {
        /// The DPC.
        dpc: ObjectId,
    },
    /// A DPC (or an `EX_TIMER`'s callback) was queued on a processor.
    DpcQueued {
        /// The DPC or `EX_TIMER`.
        dpc: ObjectId,
        /// The processor.
        cpu: usize,
    },
    /// Queuing was refused because the DPC was already queued (expirations coalesce).
    DpcAlreadyQueued {
        /// The DPC or `EX_TIMER`.
        dpc: ObjectId,
    },
    /// `KeRemoveQueueDpc` dequeued it before it ran.
    DpcRemoved {
        /// The DPC.
        dpc: ObjectId,
    },
    /// A processor started running the routine.
    DpcStarted {
        /// The DPC or `EX_TIMER`.
        dpc: ObjectId,
        /// The processor.
        cpu: usize,
    },
    /// The routine returned.
    DpcFinished {
        /// The DPC or `EX_TIMER`.
        dpc: ObjectId,
        /// The processor.
        cpu: usize,
    },
    /// `ExAllocateTimer`.
    ExTimerAllocated {
        /// The timer.
        timer: ObjectId,
        /// The attributes.
        attributes: u32,
    },
    /// `ExSetTimer`.
    ExTimerSet {
        /// The timer.
        timer: ObjectId,
        /// Interrupt time at which it is due, 100 ns units.
        due: u64,
        /// Period, 100 ns units.
        period: u64,
        /// The routine's return value.
        was_set: bool,
    },
    /// `ExCancelTimer`, or the cancel step of `ExDeleteTimer`.
    ExTimerCancelled {
        /// The timer.
        timer: ObjectId,
        /// Whether it was set.
        was_set: bool,
    },
    /// An `EX_TIMER` expired (its callback is queued next).
    ExTimerExpired {
        /// The timer.
        timer: ObjectId,
    },
    /// The `EX_TIMER`'s storage was released (after `ExDeleteTimer` and its last callback).
    ExTimerDeleted {
        /// The timer.
        timer: ObjectId,
    },
    /// A `KeWaitForSingleObject` returned `STATUS_SUCCESS`.
    WaitSatisfied {
        /// The timer waited on.
        timer: ObjectId,
    },
    /// A `KeWaitForSingleObject` returned `STATUS_TIMEOUT`.
    WaitTimedOut {
        /// The timer waited on.
        timer: ObjectId,
    },
    /// `ExAllocatePool2` succeeded.
    PoolAllocated {
        /// Pool tag.
        tag: u32,
        /// Size in bytes.
        bytes: usize,
    },
    /// `ExFreePoolWithTag`.
    PoolFreed {
        /// Pool tag.
        tag: u32,
        /// Size in bytes.
        bytes: usize,
    },
    /// The test moved the system clock (`Kernel::set_system_time`).
    SystemTimeSet {
        /// The new system time (100 ns since 1601).
        system_time: i64,
    },
    /// The machine stopped.
    BugCheck(BugCheck),
    /// A line the driver printed (`kernel_sim::print`).
    Print(String),
}
