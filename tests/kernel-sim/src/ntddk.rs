//! The kernel routines, named and typed as wdk-sys 0.5's `wdk_sys::ntddk` binds them.
//!
//! Every routine needs a thread bound to a kernel (`Kernel::enter`, or a simulated
//! processor). Every routine first checks the calling thread's IRQL against the routine's
//! documented maximum, then its pointers (null or misaligned: bug check 0x7E), then that the
//! objects were initialised in this kernel (signature: bug check 0x139 P1 = 3). After the
//! machine has bug-checked, routines do nothing and return FALSE / NULL / `STATUS_TIMEOUT`
//! (so a driver's clean-up code cannot unwind a second time); `Kernel::bug_check` reports the
//! stop.
//!
//! # Safety (all routines)
//! As with the real DDIs: every object pointer must be NULL or point to live, properly
//! typed storage for the duration of the call (and, for `KTIMER`/`KDPC`, for as long as the
//! kernel uses the object: while set / queued / running). Initialised objects must not move.
//! Garbage *contents* are detected; dangling *pointers* are the caller's undefined behaviour.

#![expect(
    non_snake_case,
    reason = "routine and parameter names mirror the WDK headers as wdk-sys' bindgen emits them"
)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::bugcheck::{BugCheck, codes, routine};
use crate::kernel::{Inner, current, irql, set_irql, thread_token};
use crate::types::{
    _TIMER_TYPE, APC_LEVEL, BOOLEAN, DISPATCH_LEVEL, EX_TIMER_HIGH_RESOLUTION, EX_TIMER_NO_WAKE,
    HIGH_LEVEL, KIRQL, KPROCESSOR_MODE, KWAIT_REASON, LARGE_INTEGER, LONG, LONGLONG, NTSTATUS,
    PASSIVE_LEVEL, PEX_TIMER, PEXT_CALLBACK, PEXT_SET_PARAMETERS, PKDEFERRED_ROUTINE, PKDPC,
    PKIRQL, PKSPIN_LOCK, PKTIMER, PLARGE_INTEGER, POOL_FLAG_PAGED, POOL_FLAGS, PRKDPC, PULONG64,
    PVOID, SIZE_T, STATUS_TIMEOUT, TIMER_TYPE, ULONG, ULONG_PTR, ULONG64, ULONGLONG,
};

/// Alignment every kernel object pointer must have (x64 `KTIMER`/`KDPC`/`KSPIN_LOCK`).
const OBJECT_ALIGN: usize = 8;

fn boolean(value: bool) -> BOOLEAN {
    BOOLEAN::from(value)
}

/// Reads an object's signature word.
///
/// # Safety
/// `object` must point to at least 8 readable, initialised bytes.
unsafe fn read_signature<T>(object: *mut T) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { object.cast::<u64>().read_volatile() }
}

/// Writes an object's signature word.
///
/// # Safety
/// `object` must point to at least 8 writable bytes.
unsafe fn write_signature<T>(object: *mut T, signature: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { object.cast::<u64>().write_volatile(signature) };
}

/// Checks `Timer` and returns its address and signature.
///
/// # Safety
/// `timer` must be NULL or point to live `KTIMER` storage.
unsafe fn checked_timer(kernel: &Inner, timer: PKTIMER, routine: u64) -> (usize, u64) {
    kernel.require_pointer(timer.addr(), OBJECT_ALIGN, routine);
    // SAFETY: non-null and aligned (checked above); live per the caller's contract.
    (timer.addr(), unsafe { read_signature(timer) })
}

/// Checks `Dpc` and returns its address and signature.
///
/// # Safety
/// `dpc` must be NULL or point to live `KDPC` storage.
unsafe fn checked_dpc(kernel: &Inner, dpc: PKDPC, routine: u64) -> (usize, u64) {
    kernel.require_pointer(dpc.addr(), OBJECT_ALIGN, routine);
    // SAFETY: non-null and aligned (checked above); live per the caller's contract.
    (dpc.addr(), unsafe { read_signature(dpc) })
}

fn invalid_argument(kernel: &Inner, object: usize, value: u64, routine: u64) -> ! {
    let st = kernel.lock();
    kernel.security_failure(st, codes::FAST_FAIL_INVALID_ARG, object, value, routine)
}

/// Reads the `QuadPart` of a `LARGE_INTEGER`.
fn quad(value: LARGE_INTEGER) -> i64 {
    // SAFETY: every bit pattern is a valid i64; the union holds only plain integers.
    unsafe { value.QuadPart }
}

// ----- timers -----------------------------------------------------------------------------

/// `KeInitializeTimer`: a notification timer, Not-Signaled. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `Timer` must point to writable `KTIMER` storage that stays put while the timer is used.
pub unsafe fn KeInitializeTimer(Timer: PKTIMER) {
    // SAFETY: forwarded caller contract.
    unsafe { KeInitializeTimerEx(Timer, _TIMER_TYPE::NotificationTimer) };
}

/// `KeInitializeTimerEx`. IRQL <= `DISPATCH_LEVEL`. Re-initialising a set timer, or an
/// unknown `Type`, is a bug check (0x139).
///
/// # Safety
/// `Timer` must point to writable `KTIMER` storage that stays put while the timer is used.
pub unsafe fn KeInitializeTimerEx(Timer: PKTIMER, Type: TIMER_TYPE) {
    let kernel = current();
    if kernel.crashed() {
        return;
    }
    let addr = Timer.addr();
    kernel.require_irql_at_most(DISPATCH_LEVEL, addr, routine::KE_INITIALIZE_TIMER);
    kernel.require_pointer(addr, OBJECT_ALIGN, routine::KE_INITIALIZE_TIMER);
    let synchronization = match Type {
        _TIMER_TYPE::NotificationTimer => false,
        _TIMER_TYPE::SynchronizationTimer => true,
        other => invalid_argument(
            &kernel,
            addr,
            u64::from(other.cast_unsigned()),
            routine::KE_INITIALIZE_TIMER,
        ),
    };
    let signature = kernel.initialize_timer(addr, synchronization);
    // SAFETY: non-null and aligned (checked above); writable per the caller's contract.
    unsafe { write_signature(Timer, signature) };
}

/// `KeSetTimer` = `KeSetTimerEx` with period 0.
///
/// # Safety
/// As `KeSetTimerEx`.
pub unsafe fn KeSetTimer(Timer: PKTIMER, DueTime: LARGE_INTEGER, Dpc: PKDPC) -> BOOLEAN {
    // SAFETY: forwarded caller contract.
    unsafe { KeSetTimerEx(Timer, DueTime, 0, Dpc) }
}

/// `KeSetTimerEx`: sets (or resets) the timer; returns TRUE if it was already set. The timer
/// becomes Not-Signaled. `DueTime` < 0: relative (100 ns); > 0: absolute system time;
/// 0: the next tick. `Period` in ms (0 = one-shot; negative: bug check 0x139 P1 = 5).
/// IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `Timer` (initialised) and `Dpc` (NULL or initialised) must stay valid while set/queued.
pub unsafe fn KeSetTimerEx(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Period: LONG,
    Dpc: PKDPC,
) -> BOOLEAN {
    // SAFETY: forwarded caller contract.
    unsafe { set_timer(Timer, quad(DueTime), i64::from(Period), 0, Dpc) }
}

/// `KeSetCoalescableTimer`: as `KeSetTimerEx`, but expiry may be delayed by up to
/// `TolerableDelay` ms; the simulator rounds the due time up to the largest of
/// [`crate::COALESCING_BOUNDARIES_MS`] that fits in the delay. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// As `KeSetTimerEx`.
pub unsafe fn KeSetCoalescableTimer(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Period: ULONG,
    TolerableDelay: ULONG,
    Dpc: PKDPC,
) -> BOOLEAN {
    // SAFETY: forwarded caller contract.
    unsafe { set_timer(Timer, quad(DueTime), i64::from(Period), TolerableDelay, Dpc) }
}

/// # Safety
/// As `KeSetTimerEx`.
unsafe fn set_timer(timer: PKTIMER, due: i64, period: i64, tolerance: u32, dpc: PKDPC) -> BOOLEAN {
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    kernel.require_irql_at_most(DISPATCH_LEVEL, timer.addr(), routine::KE_SET_TIMER);
    // SAFETY: forwarded caller contract.
    let (addr, signature) = unsafe { checked_timer(&kernel, timer, routine::KE_SET_TIMER) };
    let dpc = if dpc.is_null() {
        None
    } else {
        // SAFETY: forwarded caller contract.
        Some(unsafe { checked_dpc(&kernel, dpc, routine::KE_SET_TIMER) })
    };
    boolean(kernel.set_timer(addr, signature, due, period, tolerance, dpc))
}

/// `KeCancelTimer`: removes the timer from the timer queue; TRUE if it was set. Does **not**
/// wait for, or remove, a DPC that the timer already queued or that is running.
/// IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `Timer` must point to an initialised `KTIMER`.
pub unsafe fn KeCancelTimer(Timer: PKTIMER) -> BOOLEAN {
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    kernel.require_irql_at_most(DISPATCH_LEVEL, Timer.addr(), routine::KE_CANCEL_TIMER);
    // SAFETY: forwarded caller contract.
    let (addr, signature) = unsafe { checked_timer(&kernel, Timer, routine::KE_CANCEL_TIMER) };
    boolean(kernel.cancel_timer(addr, signature))
}

/// `KeReadStateTimer`: TRUE if Signaled. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `Timer` must point to an initialised `KTIMER`.
pub unsafe fn KeReadStateTimer(Timer: PKTIMER) -> BOOLEAN {
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    kernel.require_irql_at_most(DISPATCH_LEVEL, Timer.addr(), routine::KE_READ_STATE_TIMER);
    // SAFETY: forwarded caller contract.
    let (addr, signature) = unsafe { checked_timer(&kernel, Timer, routine::KE_READ_STATE_TIMER) };
    boolean(kernel.read_state_timer(addr, signature))
}

// ----- DPCs -------------------------------------------------------------------------------

/// `KeInitializeDpc`. Any IRQL. A NULL routine (bug check 0x139 P1 = 5) or re-initialising
/// a queued DPC (0x139 P1 = 3) is refused.
///
/// # Safety
/// `Dpc` must point to writable `KDPC` storage that stays put while the DPC is used;
/// `DeferredContext` must stay valid for the routine.
pub unsafe fn KeInitializeDpc(
    Dpc: PRKDPC,
    DeferredRoutine: PKDEFERRED_ROUTINE,
    DeferredContext: PVOID,
) {
    let kernel = current();
    if kernel.crashed() {
        return;
    }
    let addr = Dpc.addr();
    kernel.require_pointer(addr, OBJECT_ALIGN, routine::KE_INITIALIZE_DPC);
    let Some(deferred_routine) = DeferredRoutine else {
        invalid_argument(&kernel, addr, 0, routine::KE_INITIALIZE_DPC);
    };
    let signature = kernel.initialize_dpc(Dpc, deferred_routine, DeferredContext);
    // SAFETY: non-null and aligned (checked above); writable per the caller's contract.
    unsafe { write_signature(Dpc, signature) };
}

/// `KeInsertQueueDpc`: queues the DPC (on the calling processor, or round-robin from a
/// non-processor thread); FALSE if it was already queued. Any IRQL.
///
/// # Safety
/// `Dpc` must point to an initialised `KDPC` that stays valid until its routine has run.
pub unsafe fn KeInsertQueueDpc(
    Dpc: PRKDPC,
    SystemArgument1: PVOID,
    SystemArgument2: PVOID,
) -> BOOLEAN {
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    // SAFETY: forwarded caller contract.
    let (addr, signature) = unsafe { checked_dpc(&kernel, Dpc, routine::KE_INSERT_QUEUE_DPC) };
    boolean(kernel.insert_queue_dpc(addr, signature, (SystemArgument1, SystemArgument2)))
}

/// `KeRemoveQueueDpc`: dequeues a queued, not yet started DPC; TRUE if it was queued.
/// Any IRQL. A running routine is not affected.
///
/// # Safety
/// `Dpc` must point to an initialised `KDPC`.
pub unsafe fn KeRemoveQueueDpc(Dpc: PRKDPC) -> BOOLEAN {
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    // SAFETY: forwarded caller contract.
    let (addr, signature) = unsafe { checked_dpc(&kernel, Dpc, routine::KE_REMOVE_QUEUE_DPC) };
    boolean(kernel.remove_queue_dpc(addr, signature))
}

/// `KeFlushQueuedDpcs`: returns once every DPC queued (on any processor) before the call has
/// run. `PASSIVE_LEVEL` only (else bug check 0x0A).
///
/// # Safety
/// None beyond a bound thread; `unsafe` as in wdk-sys.
pub unsafe fn KeFlushQueuedDpcs() {
    let kernel = current();
    if kernel.crashed() {
        return;
    }
    kernel.require_irql_at_most(PASSIVE_LEVEL, 0, routine::KE_FLUSH_QUEUED_DPCS);
    kernel.flush_queued_dpcs();
}

// ----- waiting ----------------------------------------------------------------------------

/// `KeWaitForSingleObject` on a `KTIMER` (the only dispatcher object modelled; anything else
/// is bug check 0x139 P1 = 3). `Timeout`: NULL = forever, < 0 relative, > 0 absolute,
/// 0 = test only. IRQL <= `APC_LEVEL`, or `DISPATCH_LEVEL` with a zero timeout (else bug
/// check 0x0A). Timeouts are measured on the kernel's clock (virtual time in tests) and end
/// on a clock tick. Returns `STATUS_SUCCESS` or `STATUS_TIMEOUT`.
///
/// # Safety
/// `Object` must point to an initialised `KTIMER`; `Timeout` NULL or a valid
/// `LARGE_INTEGER`.
pub unsafe fn KeWaitForSingleObject(
    Object: PVOID,
    WaitReason: KWAIT_REASON,
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    let _ = (WaitReason, WaitMode, Alertable);
    let kernel = current();
    if kernel.crashed() {
        return STATUS_TIMEOUT;
    }
    let timeout = if Timeout.is_null() {
        None
    } else {
        kernel.require_pointer(
            Timeout.addr(),
            OBJECT_ALIGN,
            routine::KE_WAIT_FOR_SINGLE_OBJECT,
        );
        // SAFETY: non-null and aligned (checked above); valid per the caller's contract.
        Some(quad(unsafe { Timeout.read() }))
    };
    let max = if timeout == Some(0) {
        DISPATCH_LEVEL
    } else {
        APC_LEVEL
    };
    kernel.require_irql_at_most(max, Object.addr(), routine::KE_WAIT_FOR_SINGLE_OBJECT);
    let timer = Object.cast::<crate::types::KTIMER>();
    // SAFETY: forwarded caller contract.
    let (addr, signature) =
        unsafe { checked_timer(&kernel, timer, routine::KE_WAIT_FOR_SINGLE_OBJECT) };
    kernel.wait_for_timer(addr, signature, timeout)
}

// ----- time -------------------------------------------------------------------------------

/// `KeQueryInterruptTime` (inline in the x64 header; exported by the simulator): interrupt
/// time at the last clock tick, 100 ns units since boot.
///
/// # Safety
/// None beyond a bound thread; `unsafe` for symmetry with the other routines.
#[must_use]
pub unsafe fn KeQueryInterruptTime() -> ULONGLONG {
    current().interrupt_time()
}

/// `KeQueryInterruptTimePrecise`: the current interrupt time; also stores the performance
/// counter (10 MHz, so equal to the interrupt time) in `*QpcTimeStamp`.
///
/// # Safety
/// `QpcTimeStamp` must point to a writable `ULONG64`.
pub unsafe fn KeQueryInterruptTimePrecise(QpcTimeStamp: PULONG64) -> ULONG64 {
    let kernel = current();
    kernel.require_pointer(QpcTimeStamp.addr(), OBJECT_ALIGN, routine::KE_QUERY_TIME);
    let now = kernel.interrupt_time_precise();
    // SAFETY: non-null and aligned (checked above); writable per the caller's contract.
    unsafe { QpcTimeStamp.write(now) };
    now
}

/// `KeQuerySystemTimePrecise`: system time, 100 ns since 1601-01-01 (settable in the
/// simulator with `Kernel::set_system_time`).
///
/// # Safety
/// `CurrentTime` must point to a writable `LARGE_INTEGER`.
pub unsafe fn KeQuerySystemTimePrecise(CurrentTime: PLARGE_INTEGER) {
    let kernel = current();
    kernel.require_pointer(CurrentTime.addr(), OBJECT_ALIGN, routine::KE_QUERY_TIME);
    let now = kernel.system_time();
    // SAFETY: non-null and aligned (checked above); writable per the caller's contract.
    unsafe { CurrentTime.write(LARGE_INTEGER { QuadPart: now }) };
}

/// `KeQueryTimeIncrement`: the clock tick in 100 ns units.
///
/// # Safety
/// None beyond a bound thread; `unsafe` as in wdk-sys.
#[must_use]
pub unsafe fn KeQueryTimeIncrement() -> ULONG {
    current().config.time_increment
}

/// `KeQueryPerformanceCounter`: the counter (10 MHz in the simulator); stores the frequency
/// in `*PerformanceFrequency` when it is not NULL.
///
/// # Safety
/// `PerformanceFrequency` must be NULL or point to a writable `LARGE_INTEGER`.
pub unsafe fn KeQueryPerformanceCounter(PerformanceFrequency: PLARGE_INTEGER) -> LARGE_INTEGER {
    let kernel = current();
    if !PerformanceFrequency.is_null() {
        kernel.require_pointer(
            PerformanceFrequency.addr(),
            OBJECT_ALIGN,
            routine::KE_QUERY_TIME,
        );
        let frequency = LARGE_INTEGER {
            QuadPart: crate::kernel::PERFORMANCE_FREQUENCY,
        };
        // SAFETY: non-null and aligned (checked above); writable per the caller's contract.
        unsafe { PerformanceFrequency.write(frequency) };
    }
    LARGE_INTEGER {
        QuadPart: i64::try_from(kernel.interrupt_time_precise()).unwrap_or(i64::MAX),
    }
}

// ----- IRQL and spin locks ----------------------------------------------------------------

/// `KeGetCurrentIrql`: the calling thread's IRQL.
///
/// # Safety
/// None; `unsafe` as in wdk-sys.
#[must_use]
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    irql()
}

/// `KeRaiseIrql` (a macro in the header; exported by the simulator). Raising to a lower
/// level is bug check 0x09.
///
/// # Safety
/// `OldIrql` must point to a writable `KIRQL`.
pub unsafe fn KeRaiseIrql(NewIrql: KIRQL, OldIrql: PKIRQL) {
    let kernel = current();
    let current_irql = irql();
    if NewIrql < current_irql {
        kernel.fail_now(BugCheck::new(
            codes::IRQL_NOT_GREATER_OR_EQUAL,
            [
                0,
                u64::from(current_irql),
                u64::from(NewIrql),
                routine::KE_RAISE_LOWER_IRQL,
            ],
        ));
    }
    if u32::from(NewIrql) > HIGH_LEVEL {
        invalid_argument(&kernel, 0, u64::from(NewIrql), routine::KE_RAISE_LOWER_IRQL);
    }
    kernel.require_pointer(OldIrql.addr(), 1, routine::KE_RAISE_LOWER_IRQL);
    // SAFETY: non-null (checked above); writable per the caller's contract.
    unsafe { OldIrql.write(current_irql) };
    set_irql(NewIrql);
}

/// `KeLowerIrql` (inline in the x64 header; exported by the simulator). Lowering to a higher
/// level is bug check 0x0A.
///
/// # Safety
/// None beyond a bound thread; `unsafe` as in wdk-sys.
pub unsafe fn KeLowerIrql(NewIrql: KIRQL) {
    let kernel = current();
    let current_irql = irql();
    if NewIrql > current_irql {
        kernel.fail_now(BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [
                0,
                u64::from(current_irql),
                u64::from(NewIrql),
                routine::KE_RAISE_LOWER_IRQL,
            ],
        ));
    }
    set_irql(NewIrql);
}

/// `KeInitializeSpinLock` (inline in the x64 header; exported by the simulator).
///
/// # Safety
/// `SpinLock` must point to a writable `KSPIN_LOCK` no other thread is using.
pub unsafe fn KeInitializeSpinLock(SpinLock: PKSPIN_LOCK) {
    let kernel = current();
    kernel.require_pointer(
        SpinLock.addr(),
        OBJECT_ALIGN,
        routine::KE_INITIALIZE_SPIN_LOCK,
    );
    // SAFETY: non-null and aligned (checked above); writable per the caller's contract.
    unsafe { SpinLock.write(0) };
}

/// The lock word as an atomic.
///
/// # Safety
/// `lock` must be non-null, 8-aligned, valid, and accessed only atomically while in use.
unsafe fn lock_word<'a>(lock: PKSPIN_LOCK) -> &'a AtomicU64 {
    // SAFETY: guaranteed by the caller.
    unsafe { AtomicU64::from_ptr(lock) }
}

/// Spins until the lock word holds this thread's token.
///
/// # Safety
/// As [`lock_word`].
unsafe fn acquire(kernel: &Inner, lock: PKSPIN_LOCK) {
    // SAFETY: forwarded caller contract.
    let word = unsafe { lock_word(lock) };
    let token = thread_token();
    loop {
        match word.compare_exchange_weak(0, token, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return,
            Err(owner) if owner == token => kernel.fail_now(BugCheck::new(
                codes::SPIN_LOCK_ALREADY_OWNED,
                [lock.addr() as u64, 0, 0, routine::KE_ACQUIRE_SPIN_LOCK],
            )),
            Err(_) => {
                if kernel.crashed() {
                    return;
                }
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
    }
}

/// Clears the lock word if this thread holds it.
///
/// # Safety
/// As [`lock_word`].
unsafe fn release(kernel: &Inner, lock: PKSPIN_LOCK) {
    // SAFETY: forwarded caller contract.
    let word = unsafe { lock_word(lock) };
    let token = thread_token();
    if word
        .compare_exchange(token, 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
        && !kernel.crashed()
    {
        kernel.fail_now(BugCheck::new(
            codes::SPIN_LOCK_NOT_OWNED,
            [lock.addr() as u64, 0, 0, routine::KE_RELEASE_SPIN_LOCK],
        ));
    }
}

/// `KeAcquireSpinLockRaiseToDpc`: raises to `DISPATCH_LEVEL`, spins on the lock word, returns
/// the previous IRQL. IRQL <= `DISPATCH_LEVEL`; re-acquiring an owned lock is bug check 0x0F.
///
/// # Safety
/// `SpinLock` must point to an initialised `KSPIN_LOCK`, used only through these routines.
pub unsafe fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL {
    let kernel = current();
    kernel.require_irql_at_most(
        DISPATCH_LEVEL,
        SpinLock.addr(),
        routine::KE_ACQUIRE_SPIN_LOCK,
    );
    kernel.require_pointer(SpinLock.addr(), OBJECT_ALIGN, routine::KE_ACQUIRE_SPIN_LOCK);
    let previous = irql();
    set_irql(crate::kernel::DISPATCH_IRQL);
    // SAFETY: non-null and aligned (checked above); valid per the caller's contract.
    unsafe { acquire(&kernel, SpinLock) };
    previous
}

/// `KeReleaseSpinLock`: releases the lock and lowers IRQL to `NewIrql`. Releasing a lock the
/// thread does not hold is bug check 0x10.
///
/// # Safety
/// As `KeAcquireSpinLockRaiseToDpc`.
pub unsafe fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL) {
    let kernel = current();
    kernel.require_pointer(SpinLock.addr(), OBJECT_ALIGN, routine::KE_RELEASE_SPIN_LOCK);
    // SAFETY: non-null and aligned (checked above); valid per the caller's contract.
    unsafe { release(&kernel, SpinLock) };
    // SAFETY: no pointer involved.
    unsafe { KeLowerIrql(NewIrql) };
}

/// `KeAcquireSpinLockAtDpcLevel`: the caller is already at `DISPATCH_LEVEL` (below it: bug
/// check 0x09).
///
/// # Safety
/// As `KeAcquireSpinLockRaiseToDpc`.
pub unsafe fn KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK) {
    let kernel = current();
    kernel.require_irql_at_least(
        DISPATCH_LEVEL,
        SpinLock.addr(),
        routine::KE_ACQUIRE_SPIN_LOCK,
    );
    kernel.require_pointer(SpinLock.addr(), OBJECT_ALIGN, routine::KE_ACQUIRE_SPIN_LOCK);
    // SAFETY: non-null and aligned (checked above); valid per the caller's contract.
    unsafe { acquire(&kernel, SpinLock) };
}

/// `KeReleaseSpinLockFromDpcLevel`: releases without changing IRQL.
///
/// # Safety
/// As `KeAcquireSpinLockRaiseToDpc`.
pub unsafe fn KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK) {
    let kernel = current();
    kernel.require_irql_at_least(
        DISPATCH_LEVEL,
        SpinLock.addr(),
        routine::KE_RELEASE_SPIN_LOCK,
    );
    kernel.require_pointer(SpinLock.addr(), OBJECT_ALIGN, routine::KE_RELEASE_SPIN_LOCK);
    // SAFETY: non-null and aligned (checked above); valid per the caller's contract.
    unsafe { release(&kernel, SpinLock) };
}

// ----- pool -------------------------------------------------------------------------------

/// `ExAllocatePool2`: zeroed (unless `POOL_FLAG_UNINITIALIZED`: filled with 0xCD), 16-byte
/// aligned, tracked by tag. NULL on an injected failure. Non-paged: IRQL <= `DISPATCH_LEVEL`;
/// paged: <= `APC_LEVEL` (else bug check 0xC4 P1 = 2 / 1); zero bytes: 0xC4 P1 = 0.
///
/// # Safety
/// None beyond a bound thread; `unsafe` as in wdk-sys.
#[must_use]
pub unsafe fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID {
    let kernel = current();
    if kernel.crashed() {
        return std::ptr::null_mut();
    }
    let paged = Flags & POOL_FLAG_PAGED != 0;
    let (max, subcode) = if paged {
        (APC_LEVEL, 1)
    } else {
        (DISPATCH_LEVEL, 2)
    };
    let current_irql = irql();
    if u32::from(current_irql) > max {
        kernel.fail_now(BugCheck::new(
            codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [subcode, u64::from(current_irql), Flags, NumberOfBytes],
        ));
    }
    kernel.allocate_pool(Flags, NumberOfBytes, Tag)
}

/// `ExFreePoolWithTag`. IRQL <= `DISPATCH_LEVEL` (else 0xC4 P1 = 0x12). Freeing a block that
/// holds a set `KTIMER` (0xC7 P1 = 0) or a queued or running `KDPC` (0xC7 P1 = 1; a routine
/// freeing its own KDPC is allowed), a block not allocated (0xC2 P1 = 7) or with the wrong tag
/// (0xC2 P1 = 0x0A) is a bug check.
///
/// # Safety
/// `P` must come from `ExAllocatePool2` of this kernel; nothing may use it afterwards.
pub unsafe fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    let kernel = current();
    if kernel.crashed() {
        kernel.free_pool_inert(P.addr());
        return;
    }
    let current_irql = irql();
    if u32::from(current_irql) > DISPATCH_LEVEL {
        kernel.fail_now(BugCheck::new(
            codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [0x12, u64::from(current_irql), 0, P.addr() as u64],
        ));
    }
    kernel.free_pool(P.addr(), Tag);
}

// ----- high-resolution timers -------------------------------------------------------------

/// `ExAllocateTimer`. IRQL <= `DISPATCH_LEVEL`. Attributes other than
/// `EX_TIMER_HIGH_RESOLUTION` / `EX_TIMER_NO_WAKE` make it fail (NULL);
/// `HIGH_RESOLUTION | NO_WAKE` is bug check 0x139 P1 = 5.
///
/// # Safety
/// `CallbackContext` must stay valid until the timer is deleted and its callbacks are done.
pub unsafe fn ExAllocateTimer(
    Callback: PEXT_CALLBACK,
    CallbackContext: PVOID,
    Attributes: ULONG,
) -> PEX_TIMER {
    let kernel = current();
    if kernel.crashed() {
        return std::ptr::null_mut();
    }
    kernel.require_irql_at_most(DISPATCH_LEVEL, 0, routine::EX_ALLOCATE_TIMER);
    let known = EX_TIMER_HIGH_RESOLUTION | EX_TIMER_NO_WAKE;
    if Attributes & !known != 0 {
        return std::ptr::null_mut();
    }
    if Attributes & known == known {
        invalid_argument(
            &kernel,
            0,
            u64::from(Attributes),
            routine::EX_ALLOCATE_TIMER,
        );
    }
    kernel.allocate_ex_timer(Callback, CallbackContext, Attributes)
}

/// `ExSetTimer`: TRUE if the timer was already set. `DueTime` < 0 relative, > 0 absolute
/// (not allowed for high resolution: bug check 0x139 P1 = 5); `Period` in 100 ns units
/// (negative: 0x139 P1 = 5). High-resolution timers expire at their exact due time, others
/// on the next tick. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `Timer` must come from `ExAllocateTimer` and not be deleted; `Parameters` NULL or valid.
pub unsafe fn ExSetTimer(
    Timer: PEX_TIMER,
    DueTime: LONGLONG,
    Period: LONGLONG,
    Parameters: PEXT_SET_PARAMETERS,
) -> BOOLEAN {
    let _ = Parameters;
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    kernel.require_irql_at_most(DISPATCH_LEVEL, Timer.addr(), routine::EX_SET_TIMER);
    kernel.require_pointer(Timer.addr(), OBJECT_ALIGN, routine::EX_SET_TIMER);
    boolean(kernel.set_ex_timer(Timer.addr(), DueTime, Period))
}

/// `ExCancelTimer`: TRUE if the timer was set. Does not wait for a queued or running
/// callback. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `Timer` must come from `ExAllocateTimer` and not be deleted.
pub unsafe fn ExCancelTimer(Timer: PEX_TIMER, Parameters: PVOID) -> BOOLEAN {
    let _ = Parameters;
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    kernel.require_irql_at_most(DISPATCH_LEVEL, Timer.addr(), routine::EX_CANCEL_TIMER);
    kernel.require_pointer(Timer.addr(), OBJECT_ALIGN, routine::EX_CANCEL_TIMER);
    boolean(kernel.cancel_ex_timer(Timer.addr()))
}

/// `ExDeleteTimer`: optionally cancels, then deletes; with `Wait` (IRQL <= `APC_LEVEL`) it
/// returns only after any queued or running callback has finished. Without `Cancel` a set
/// one-shot timer is deleted after it fires (a set periodic one: bug check 0x139 P1 = 5).
/// Returns TRUE if `Cancel` cancelled a set timer. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `Timer` must come from `ExAllocateTimer` and not be deleted; it is invalid afterwards.
pub unsafe fn ExDeleteTimer(
    Timer: PEX_TIMER,
    Cancel: BOOLEAN,
    Wait: BOOLEAN,
    Parameters: PVOID,
) -> BOOLEAN {
    let _ = Parameters;
    let kernel = current();
    if kernel.crashed() {
        return 0;
    }
    let max = if Wait != 0 { APC_LEVEL } else { DISPATCH_LEVEL };
    kernel.require_irql_at_most(max, Timer.addr(), routine::EX_DELETE_TIMER);
    kernel.require_pointer(Timer.addr(), OBJECT_ALIGN, routine::EX_DELETE_TIMER);
    boolean(kernel.delete_ex_timer(Timer.addr(), Cancel != 0, Wait != 0))
}

// ----- bug checks -------------------------------------------------------------------------

/// `KeBugCheckEx`: stops the machine with the given code and parameters (recorded in the
/// kernel; this thread unwinds with the [`BugCheck`], or halts if it is a processor inside a
/// driver callback).
///
/// # Safety
/// None beyond a bound thread; `unsafe` as in wdk-sys.
pub unsafe fn KeBugCheckEx(
    BugCheckCode: ULONG,
    BugCheckParameter1: ULONG_PTR,
    BugCheckParameter2: ULONG_PTR,
    BugCheckParameter3: ULONG_PTR,
    BugCheckParameter4: ULONG_PTR,
) -> ! {
    current().fail_now(BugCheck::new(
        BugCheckCode,
        [
            BugCheckParameter1,
            BugCheckParameter2,
            BugCheckParameter3,
            BugCheckParameter4,
        ],
    ))
}
