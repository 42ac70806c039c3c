//! The Wine rig's binding of the seam: the kernel API through windows-sys 0.61, for a kernel
//! image built without the WDK (rust-lld, raw-dylib imports), in the shape of wdk-sys (types
//! at the root, routines in [`ntddk`]) so that it can stand in for wdk-sys through `[patch]`
//! (tests/wine/Cargo.toml). It is not the product binding, which is wdk-sys itself.
//!
//! It presents the names and wdk-sys shapes the seam (`ktimer-seam`) imports:
//! windows-sys types differ (`bool` for `BOOLEAN`, `i64` for `LARGE_INTEGER`), so each
//! routine is a thin wrapper. Where windows-sys is wrong or silent, a local definition with a
//! compile-time layout check stands in:
//! - `PKDEFERRED_ROUTINE` and `PKSTART_ROUTINE` are declared without parameters by
//!   windows-sys: `KeInitializeDpc` and `PsCreateSystemThread` are imported locally with the
//!   real routine types.
//! - `KeQueryInterruptTime`, `KeInitializeSpinLock`, `KeGetCurrentIrql` are inline in the x64
//!   WDK headers (no export on Windows): their header bodies are given here. The seam
//!   defines the first two itself for wdk-sys, and takes them from here under the rig's
//!   `--cfg ktimer_wine` (tests/wine/kernel-build.toml): in Wine mode interrupt time must
//!   come from the same clock as `KeQueryInterruptTimePrecise`.
//! - `POOL_FLAG_NON_PAGED`, `_EX_TIMER`, `EXT_SET_PARAMETERS`, `LARGE_INTEGER` are local.
//! - `ZwClose` is declared in ntdll.dll by windows-sys; kernel code imports it from ntoskrnl.
//! - The spin-lock routines are missing from windows-sys: imported locally.
//!
//! # Routines a kernel may lack
//!
//! Every routine the image imports must exist or the image does not load, and Wine 8.0's
//! ntoskrnl has no `ExAllocatePool2`, `ExAllocateTimer`/`ExSetTimer`/`ExCancelTimer`/
//! `ExDeleteTimer`, `KeSetCoalescableTimer`, `KeQueryInterruptTimePrecise` or
//! `KeQuerySystemTimePrecise`. So those are looked up at load time ([`start`], from the front
//! end's `DriverEntry`, with `MmGetSystemRoutineAddress`) and used when present; otherwise:
//! - `ExAllocatePool2` becomes `ExAllocatePoolWithTag(NonPagedPoolNx)` plus the zeroing
//!   `ExAllocatePool2` does (always, so that no deprecated-by-version question arises);
//! - `KeQueryInterruptTimePrecise` becomes the performance counter in 100 ns units;
//! - `KeQuerySystemTimePrecise` becomes `KeQuerySystemTime` (an export on Wine);
//! - `KeSetCoalescableTimer` becomes `KeSetTimerEx` without the tolerance (a coalescable
//!   timer may always fire on time; coalescing itself is then not exercised);
//! - `ExAllocateTimer` returns null, the documented failure: no high-resolution timers.
//!
//! # Wine mode
//!
//! [`start`] recognises Wine by its ntoskrnl's `wine_ntoskrnl_main_loop` export. Wine 8.0
//! differs from Windows where the timer core depends on it (measured; docs/WINE.md):
//! `KeReadStateTimer` and `KeRemoveQueueDpc` are stubs that end the driver host,
//! `KeFlushQueuedDpcs` does nothing, the `KeQueryInterruptTime` export counts milliseconds,
//! a timer's DPC routine is called straight from a thread-pool callback (so the same DPC can
//! run many times at once, and nothing is ever "queued"), and `KeCancelTimer` waits for a
//! running callback — which deadlocks a driver that cancels under a lock its DPC takes, as
//! ours does (real Windows never waits there). In Wine mode this binding therefore gives
//! timers a DPC layer of its own with the Windows semantics the timer core relies on:
//! - Wine is handed a trampoline as the DPC routine; it only queues the real KDPC on the
//!   binding's DPC queue (once: a KDPC already queued is not queued again, as on Windows)
//!   and returns at once, so Wine's waiting `KeCancelTimer` never waits on driver code.
//! - One dispatcher thread runs the queued routines one at a time, in order.
//! - Wine's periodic thread-pool timer does not keep its phase (when its timer thread finds
//!   the next timeout already past, it counts the period from "now"), callbacks that fell
//!   behind can run back to back, and a callback can re-queue the DPC just after the
//!   dispatcher ran it late for that same due time. A KTIMER keeps its absolute schedule and
//!   its DPC runs at most once per due time. So for a periodic timer armed with a relative
//!   due time the dispatcher runs the DPC only when a new due time of the KTIMER's schedule
//!   has come (from a tick before it) and skips the other runs, as if the timer had not
//!   expired again yet.
//! - Wine reports `PASSIVE_LEVEL` everywhere and its spin locks do not raise IRQL, yet the
//!   timer core decides by IRQL whether it may wait (a drop under a spin lock must defer,
//!   not flush). So the binding keeps each thread's IRQL itself: `DISPATCH_LEVEL` while a
//!   thread holds a spin lock taken with `KeAcquireSpinLockRaiseToDpc` and while the
//!   dispatcher runs a routine; `KeGetCurrentIrql` reports it.
//! - `KeRemoveQueueDpc` and `KeFlushQueuedDpcs` act on that queue, with
//!   their Windows meaning; `KeReadStateTimer` reads the timer header's signal state (what
//!   the Windows routine returns; Wine maintains that field).
//! - Interrupt time comes from the performance counter (100 ns since boot on Wine).
//!
//! The consequence, stated where it matters: under Wine DPCs never run concurrently, so a
//! pass there says nothing about the multi-processor races (the simulator's job).
//!
//! Without [`start`] (or outside Wine) every routine passes straight to the kernel.

#![expect(
    non_snake_case,
    non_camel_case_types,
    non_upper_case_globals,
    reason = "the binding keeps the WDK's names, as wdk-sys does"
)]

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use ktimer_abi::device::ascii_to_utf16;
use windows_sys::Wdk::Foundation::KEVENT;
use windows_sys::Wdk::System::SystemServices as services;
use windows_sys::Win32::Foundation::{HANDLE, UNICODE_STRING};
use windows_sys::Win32::System::Kernel::SynchronizationEvent;

// ---------------------------------------------------------------------------------------
// Scalars and constants, in wdk-sys' shapes.

/// `BOOLEAN`.
pub type BOOLEAN = u8;
/// `CCHAR`.
pub type CCHAR = i8;
/// `KIRQL`.
pub type KIRQL = u8;
/// `ULONG`.
pub type ULONG = u32;
/// `LONG`.
pub type LONG = i32;
/// `LONGLONG`.
pub type LONGLONG = i64;
/// `ULONGLONG`.
pub type ULONGLONG = u64;
/// `ULONG64`.
pub type ULONG64 = u64;
/// `ULONG_PTR`.
pub type ULONG_PTR = u64;
/// `SIZE_T`.
pub type SIZE_T = u64;
/// `NTSTATUS`.
pub type NTSTATUS = i32;
/// `PVOID`.
pub type PVOID = *mut c_void;
/// `POOL_FLAGS`.
pub type POOL_FLAGS = u64;
/// `KSPIN_LOCK`.
pub type KSPIN_LOCK = ULONG_PTR;
/// `PKSPIN_LOCK`.
pub type PKSPIN_LOCK = *mut KSPIN_LOCK;
/// `KPROCESSOR_MODE`.
pub type KPROCESSOR_MODE = CCHAR;

/// `PASSIVE_LEVEL`.
pub const PASSIVE_LEVEL: u32 = 0;
/// `EX_TIMER_HIGH_RESOLUTION`.
pub const EX_TIMER_HIGH_RESOLUTION: u32 = 0x4;
/// `STATUS_SUCCESS`.
pub const STATUS_SUCCESS: NTSTATUS = 0;
/// `STATUS_TIMEOUT`.
pub const STATUS_TIMEOUT: NTSTATUS = 0x102;
/// `POOL_FLAG_NON_PAGED` (wdm.h; windows-sys 0.61 has no `POOL_FLAG_*`).
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x40;
/// `POOL_FLAG_UNINITIALIZED` (wdm.h): `ExAllocatePool2` leaves the block as it is.
const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x2;
/// `NonPagedPoolNx` (`POOL_TYPE`).
const NON_PAGED_POOL_NX: i32 = 512;

/// `TIMER_TYPE` as bindgen's `ModuleConsts`.
pub mod _TIMER_TYPE {
    /// The enum's type.
    pub type Type = core::ffi::c_int;
    /// A timer that stays signaled until reset.
    pub const NotificationTimer: Type = 0;
    /// A timer a satisfied wait resets.
    pub const SynchronizationTimer: Type = 1;
}
pub use _TIMER_TYPE::Type as TIMER_TYPE;

/// `KWAIT_REASON` as bindgen's `ModuleConsts` (the one value the driver uses).
pub mod _KWAIT_REASON {
    /// The enum's type.
    pub type Type = core::ffi::c_int;
    /// A wait on behalf of the executive.
    pub const Executive: Type = 0;
}

/// `MODE` as bindgen's `ModuleConsts`.
pub mod _MODE {
    /// The enum's type.
    pub type Type = core::ffi::c_int;
    /// Kernel mode.
    pub const KernelMode: Type = 0;
}

// ---------------------------------------------------------------------------------------
// Objects.

/// `KTIMER` (windows-sys' definition; 64 bytes on x64).
pub type KTIMER = services::KTIMER;
/// `PKTIMER`.
pub type PKTIMER = *mut KTIMER;
/// `KDPC` (windows-sys' definition; 64 bytes on x64).
pub type KDPC = windows_sys::Wdk::Foundation::KDPC;
/// `PKDPC`.
pub type PKDPC = *mut KDPC;
/// `PRKDPC`.
pub type PRKDPC = *mut KDPC;

// The x64 layouts of wdm.h, which Wine's ntoskrnl shares (the binding reads and writes the
// DPC's fields itself in Wine mode, and the timer's signal state).
const _: () = assert!(size_of::<KTIMER>() == 0x40);
const _: () = assert!(offset_of!(KTIMER, Header.SignalState) == 0x4);
const _: () = assert!(size_of::<KDPC>() == 0x40);
const _: () = assert!(offset_of!(KDPC, DpcListEntry) == 0x8);
const _: () = assert!(offset_of!(KDPC, ProcessorHistory) == 0x10);
const _: () = assert!(offset_of!(KDPC, DeferredRoutine) == 0x18);
const _: () = assert!(offset_of!(KDPC, DeferredContext) == 0x20);
const _: () = assert!(offset_of!(KDPC, SystemArgument1) == 0x28);
const _: () = assert!(offset_of!(KDPC, SystemArgument2) == 0x30);
const _: () = assert!(offset_of!(KDPC, DpcData) == 0x38);
const _: () = assert!(size_of::<KEVENT>() == 0x18);

/// `_EX_TIMER`: opaque, only ever behind a pointer (the WDK has no `EX_TIMER` typedef).
#[repr(C)]
pub struct _EX_TIMER {
    _opaque: [u8; 0],
}
/// `PEX_TIMER`.
pub type PEX_TIMER = *mut _EX_TIMER;

/// `LARGE_INTEGER` (a union in wdm.h; windows-sys flattens it to `i64`).
#[repr(C)]
#[derive(Clone, Copy)]
pub union LARGE_INTEGER {
    /// The value.
    pub QuadPart: LONGLONG,
    /// Its halves.
    pub u: LARGE_INTEGER_PARTS,
}
/// The halves of a [`LARGE_INTEGER`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LARGE_INTEGER_PARTS {
    /// Low 32 bits.
    pub LowPart: ULONG,
    /// High 32 bits.
    pub HighPart: LONG,
}
/// `PLARGE_INTEGER`.
pub type PLARGE_INTEGER = *mut LARGE_INTEGER;
const _: () = assert!(size_of::<LARGE_INTEGER>() == 8);

/// `EXT_SET_PARAMETERS` (`_EXT_SET_PARAMETERS_V0`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EXT_SET_PARAMETERS {
    /// `EXT_SET_PARAMETERS_VERSION`.
    pub Version: ULONG,
    /// Zero.
    pub Reserved: ULONG,
    /// How long a no-wake timer may be delayed.
    pub NoWakeTolerance: LONGLONG,
}
const _: () = assert!(size_of::<EXT_SET_PARAMETERS>() == 16);

/// `PKDEFERRED_ROUTINE` with its four parameters (windows-sys declares none).
pub type PKDEFERRED_ROUTINE = Option<
    unsafe extern "C" fn(
        Dpc: *mut KDPC,
        DeferredContext: PVOID,
        SystemArgument1: PVOID,
        SystemArgument2: PVOID,
    ),
>;
/// `PEXT_CALLBACK`.
pub type PEXT_CALLBACK = Option<unsafe extern "C" fn(Timer: PEX_TIMER, Context: PVOID)>;

// ---------------------------------------------------------------------------------------
// Imports windows-sys gets wrong.

/// A system thread's start routine (`PKSTART_ROUTINE`, which windows-sys declares without
/// its parameter).
type SystemThreadStart = unsafe extern "system" fn(StartContext: PVOID);

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    #[link_name = "KeInitializeDpc"]
    fn import_KeInitializeDpc(
        Dpc: PRKDPC,
        DeferredRoutine: PKDEFERRED_ROUTINE,
        DeferredContext: PVOID,
    );
    #[link_name = "PsCreateSystemThread"]
    fn import_PsCreateSystemThread(
        ThreadHandle: *mut HANDLE,
        DesiredAccess: ULONG,
        ObjectAttributes: *const c_void,
        ProcessHandle: HANDLE,
        ClientId: PVOID,
        StartRoutine: SystemThreadStart,
        StartContext: PVOID,
    ) -> NTSTATUS;
    #[link_name = "ZwClose"]
    fn import_ZwClose(Handle: HANDLE) -> NTSTATUS;
    #[link_name = "KeAcquireSpinLockRaiseToDpc"]
    fn import_KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL;
    #[link_name = "KeReleaseSpinLock"]
    fn import_KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL);
    #[link_name = "KeAcquireSpinLockAtDpcLevel"]
    fn import_KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK);
    #[link_name = "KeReleaseSpinLockFromDpcLevel"]
    fn import_KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK);
}

// ---------------------------------------------------------------------------------------
// Routines looked up at load time.

/// A routine found by [`start`], or null.
struct OptionalRoutine(AtomicPtr<c_void>);

impl OptionalRoutine {
    const fn absent() -> Self {
        Self(AtomicPtr::new(null_mut()))
    }

    fn get(&self) -> *mut c_void {
        self.0.load(Ordering::Acquire)
    }
}

static EX_ALLOCATE_TIMER: OptionalRoutine = OptionalRoutine::absent();
static EX_SET_TIMER: OptionalRoutine = OptionalRoutine::absent();
static EX_CANCEL_TIMER: OptionalRoutine = OptionalRoutine::absent();
static EX_DELETE_TIMER: OptionalRoutine = OptionalRoutine::absent();
static KE_SET_COALESCABLE_TIMER: OptionalRoutine = OptionalRoutine::absent();
static KE_QUERY_INTERRUPT_TIME_PRECISE: OptionalRoutine = OptionalRoutine::absent();
static KE_QUERY_SYSTEM_TIME_PRECISE: OptionalRoutine = OptionalRoutine::absent();
static KE_QUERY_SYSTEM_TIME: OptionalRoutine = OptionalRoutine::absent();

/// Whether [`start`] found Wine's ntoskrnl.
static WINE: AtomicBool = AtomicBool::new(false);

/// Binds the routines a kernel may lack and, under Wine, starts the binding's DPC layer.
/// Call once, first thing in `DriverEntry`, at `PASSIVE_LEVEL`; pair with [`stop`].
///
/// # Errors
/// The status of `PsCreateSystemThread` if the DPC dispatcher cannot start.
pub fn start() -> Result<(), NTSTATUS> {
    static NAMES: [(&OptionalRoutine, &[u16]); 8] = [
        (&EX_ALLOCATE_TIMER, &ascii_to_utf16::<15>("ExAllocateTimer")),
        (&EX_SET_TIMER, &ascii_to_utf16::<10>("ExSetTimer")),
        (&EX_CANCEL_TIMER, &ascii_to_utf16::<13>("ExCancelTimer")),
        (&EX_DELETE_TIMER, &ascii_to_utf16::<13>("ExDeleteTimer")),
        (
            &KE_SET_COALESCABLE_TIMER,
            &ascii_to_utf16::<21>("KeSetCoalescableTimer"),
        ),
        (
            &KE_QUERY_INTERRUPT_TIME_PRECISE,
            &ascii_to_utf16::<27>("KeQueryInterruptTimePrecise"),
        ),
        (
            &KE_QUERY_SYSTEM_TIME_PRECISE,
            &ascii_to_utf16::<24>("KeQuerySystemTimePrecise"),
        ),
        (
            &KE_QUERY_SYSTEM_TIME,
            &ascii_to_utf16::<17>("KeQuerySystemTime"),
        ),
    ];
    static WINE_MARKER: [u16; 23] = ascii_to_utf16("wine_ntoskrnl_main_loop");
    for (slot, name) in &NAMES {
        slot.0.store(lookup(name), Ordering::Release);
    }
    let wine = !lookup(&WINE_MARKER).is_null();
    WINE.store(wine, Ordering::Release);
    if wine { DPC_QUEUE.start() } else { Ok(()) }
}

/// Looks `name` up among the kernel's exports (null if absent). `PASSIVE_LEVEL`.
fn lookup(name: &'static [u16]) -> *mut c_void {
    let length = u16::try_from(name.len().saturating_mul(2)).unwrap_or(0);
    let name = UNICODE_STRING {
        Length: length,
        MaximumLength: length,
        Buffer: name.as_ptr().cast_mut(),
    };
    // SAFETY: a valid counted string the routine only reads; the caller is at PASSIVE_LEVEL.
    unsafe { services::MmGetSystemRoutineAddress(&raw const name) }
}

/// Stops what [`start`] started. Call once from the driver's unload, at `PASSIVE_LEVEL`,
/// after every timer is gone.
pub fn stop() {
    if WINE.load(Ordering::Acquire) {
        DPC_QUEUE.stop();
    }
}

/// Whether the binding runs on Wine (decided by [`start`]). Any IRQL.
#[must_use]
pub fn is_wine() -> bool {
    WINE.load(Ordering::Acquire)
}

// ---------------------------------------------------------------------------------------
// Wine mode: the binding's DPC layer.

/// The x64 address of a KDPC field, computed without dereferencing. Any IRQL.
fn dpc_field<T>(dpc: *mut KDPC, offset: usize) -> *mut T {
    dpc.wrapping_byte_add(offset).cast::<T>()
}

/// The queue link (`DpcListEntry.Next`).
fn dpc_next(dpc: *mut KDPC) -> *mut *mut KDPC {
    dpc_field(dpc, offset_of!(KDPC, DpcListEntry))
}

/// The queued mark (`DpcData`: non-null while queued, as on Windows).
fn dpc_mark(dpc: *mut KDPC) -> *mut PVOID {
    dpc_field(dpc, offset_of!(KDPC, DpcData))
}

/// The routine the kernel calls (`DeferredRoutine`).
fn dpc_kernel_routine(dpc: *mut KDPC) -> *mut PKDEFERRED_ROUTINE {
    dpc_field(dpc, offset_of!(KDPC, DeferredRoutine))
}

/// The driver's routine in Wine mode (`ProcessorHistory`, which only Windows' DPC code
/// uses; Wine and this binding's queue do not).
fn dpc_driver_routine(dpc: *mut KDPC) -> *mut PKDEFERRED_ROUTINE {
    dpc_field(dpc, offset_of!(KDPC, ProcessorHistory))
}

/// The gate's state "let every callback through": a DPC not armed as a gated periodic timer.
const GATE_OPEN: i64 = i64::MIN;

/// The gate's next due time (interrupt time) in Wine mode: `SystemArgument1`, which Wine
/// only passes through to the trampoline (which ignores it); [`GATE_OPEN`] when ungated.
/// See [`gate_admits`].
///
/// # Safety
/// `dpc` is a KDPC initialised by [`KeInitializeDpc`] in Wine mode, alive while the
/// reference is used; the field is only accessed atomically from then on.
unsafe fn gate_next_due<'a>(dpc: *mut KDPC) -> &'a AtomicI64 {
    // SAFETY: an aligned 8-byte field (offset 0x28, asserted above) of a live KDPC, only
    // accessed through atomics (contract).
    unsafe { AtomicI64::from_ptr(dpc_field(dpc, offset_of!(KDPC, SystemArgument1))) }
}

/// The gate's period (100 ns units) in Wine mode: `SystemArgument2`, as above.
///
/// # Safety
/// As [`gate_next_due`].
unsafe fn gate_period<'a>(dpc: *mut KDPC) -> &'a AtomicI64 {
    // SAFETY: an aligned 8-byte field (offset 0x30, asserted above) of a live KDPC, only
    // accessed through atomics (contract).
    unsafe { AtomicI64::from_ptr(dpc_field(dpc, offset_of!(KDPC, SystemArgument2))) }
}

/// The first due time of the KTIMER schedule strictly after `now`, given the due time
/// `next_due` the gate was waiting for (`now >= next_due - tick`). Any IRQL.
fn following_due(next_due: i64, period: i64, now: i64) -> i64 {
    if period <= 0 {
        return i64::MAX;
    }
    let elapsed_periods = now.saturating_sub(next_due).max(0) / period;
    next_due.saturating_add(period.saturating_mul(elapsed_periods.saturating_add(1)))
}

/// A DPC taken off the queue, with what its routine is called with.
struct Dequeued {
    dpc: *mut KDPC,
    routine: PKDEFERRED_ROUTINE,
    context: PVOID,
    argument1: PVOID,
    argument2: PVOID,
}

/// The Wine-mode DPC queue and its dispatcher thread.
///
/// INVARIANT: `head`, `tail`, and the link and mark of every KDPC on the list are only
/// touched with `lock` held; a KDPC is on the list exactly when its mark is non-null.
struct DpcQueue {
    lock: UnsafeCell<KSPIN_LOCK>,
    head: UnsafeCell<*mut KDPC>,
    tail: UnsafeCell<*mut KDPC>,
    /// Signaled when a DPC is queued or the dispatcher must stop (a synchronization event).
    wake: UnsafeCell<KEVENT>,
    stopping: AtomicBool,
    /// The dispatcher found the queue empty and waits (or is about to) on `wake`: only then
    /// does a new DPC signal the event. (Signaling takes Wine's global synchronisation lock,
    /// which a burst of timer callbacks would otherwise all contend for.)
    idle: AtomicBool,
    /// The dispatcher's referenced thread object, for the wait in `stop`.
    thread: AtomicPtr<c_void>,
    /// The dispatcher thread's id, so that `KeGetCurrentIrql` can answer `DISPATCH_LEVEL`
    /// there. 0 until it runs.
    dispatcher_id: AtomicUsize,
}

// SAFETY: every field is either atomic or guarded by `lock` (the KEVENT is used only through
// the kernel's synchronised event routines).
unsafe impl Sync for DpcQueue {}

static DPC_QUEUE: DpcQueue = DpcQueue {
    lock: UnsafeCell::new(0),
    head: UnsafeCell::new(null_mut()),
    tail: UnsafeCell::new(null_mut()),
    // SAFETY: KEVENT is plain data for which all-zero is a valid (not yet initialised) value;
    // `start` initialises it before any use.
    wake: UnsafeCell::new(unsafe { core::mem::zeroed() }),
    stopping: AtomicBool::new(false),
    idle: AtomicBool::new(false),
    thread: AtomicPtr::new(null_mut()),
    dispatcher_id: AtomicUsize::new(0),
};

/// `SYNCHRONIZE` access.
const SYNCHRONIZE: u32 = 0x0010_0000;
/// `THREAD_ALL_ACCESS`.
const THREAD_ALL_ACCESS: u32 = 0x001F_FFFF;

impl DpcQueue {
    /// The value of a queued KDPC's mark.
    fn marker(&self) -> PVOID {
        ptr::from_ref(self).cast_mut().cast()
    }

    fn acquire(&self) -> KIRQL {
        // SAFETY: the lock is a static KSPIN_LOCK, initialised (zero); IRQL <= DISPATCH_LEVEL.
        unsafe { import_KeAcquireSpinLockRaiseToDpc(self.lock.get()) }
    }

    fn release(&self, irql: KIRQL) {
        // SAFETY: we hold the lock, acquired by `acquire`, which returned `irql`.
        unsafe { import_KeReleaseSpinLock(self.lock.get(), irql) };
    }

    /// Queues `dpc` unless it is queued already (then returns false, as `KeInsertQueueDpc`
    /// does); wakes the dispatcher. IRQL <= `DISPATCH_LEVEL`.
    ///
    /// # Safety
    /// `dpc` is a KDPC initialised by [`KeInitializeDpc`] in Wine mode, alive until it has run
    /// or been removed.
    unsafe fn enqueue(&self, dpc: *mut KDPC) -> bool {
        let irql = self.acquire();
        // SAFETY: the mark is read under the lock (INVARIANT); `dpc` is alive (contract).
        let queued = !unsafe { dpc_mark(dpc).read() }.is_null();
        if !queued {
            // SAFETY: as above; writes under the lock.
            unsafe { dpc_mark(dpc).write(self.marker()) };
            // SAFETY: as above.
            unsafe { dpc_next(dpc).write(null_mut()) };
            // SAFETY: the list is guarded by the lock we hold.
            let tail = unsafe { &mut *self.tail.get() };
            if tail.is_null() {
                // SAFETY: as above.
                unsafe { *self.head.get() = dpc };
            } else {
                // SAFETY: `*tail` is on the list, so alive (INVARIANT and the contract).
                unsafe { dpc_next(*tail).write(dpc) };
            }
            *tail = dpc;
        }
        self.release(irql);
        // The dispatcher sets `idle` before its last look at the queue (under the lock), so
        // either it saw this DPC or this swap sees `idle` and wakes it.
        if !queued && self.idle.swap(false, Ordering::SeqCst) {
            // SAFETY: the event was initialised by `start`; signaling is legal at <= DISPATCH.
            unsafe { services::KeSetEvent(self.wake.get(), 0, false) };
        }
        !queued
    }

    /// Takes `dpc` off the queue; false if it was not queued. IRQL <= `DISPATCH_LEVEL`.
    ///
    /// # Safety
    /// `dpc` is a KDPC initialised by [`KeInitializeDpc`] in Wine mode, alive.
    unsafe fn remove(&self, dpc: *mut KDPC) -> bool {
        let irql = self.acquire();
        // SAFETY: read under the lock; `dpc` is alive (contract).
        let queued = !unsafe { dpc_mark(dpc).read() }.is_null();
        if queued {
            let mut previous: *mut KDPC = null_mut();
            // SAFETY: the list is guarded by the lock we hold.
            let mut current = unsafe { *self.head.get() };
            while !current.is_null() && current != dpc {
                previous = current;
                // SAFETY: `current` is on the list, so alive.
                current = unsafe { dpc_next(current).read() };
            }
            // A queued DPC is on the list (INVARIANT), so the walk found it.
            // SAFETY: `dpc` is on the list, alive.
            let next = unsafe { dpc_next(dpc).read() };
            if previous.is_null() {
                // SAFETY: guarded by the lock.
                unsafe { *self.head.get() = next };
            } else {
                // SAFETY: `previous` is on the list, alive.
                unsafe { dpc_next(previous).write(next) };
            }
            // SAFETY: guarded by the lock.
            let tail = unsafe { &mut *self.tail.get() };
            if *tail == dpc {
                *tail = previous;
            }
            // SAFETY: under the lock; `dpc` is alive.
            unsafe { dpc_mark(dpc).write(null_mut()) };
        }
        self.release(irql);
        queued
    }

    /// Whether a DPC is queued. IRQL <= `DISPATCH_LEVEL`.
    fn has_work(&self) -> bool {
        let irql = self.acquire();
        // SAFETY: the list is guarded by the lock we hold.
        let head = unsafe { *self.head.get() };
        self.release(irql);
        !head.is_null()
    }

    /// Takes the oldest DPC off the queue, with its routine and arguments read under the
    /// lock. IRQL <= `DISPATCH_LEVEL`.
    fn pop(&self) -> Option<Dequeued> {
        let irql = self.acquire();
        // SAFETY: the list is guarded by the lock we hold.
        let dpc = unsafe { *self.head.get() };
        let dequeued = if dpc.is_null() {
            None
        } else {
            // SAFETY: `dpc` is on the list, so alive (the enqueue contract).
            let next = unsafe { dpc_next(dpc).read() };
            // SAFETY: guarded by the lock.
            unsafe { *self.head.get() = next };
            if next.is_null() {
                // SAFETY: guarded by the lock.
                unsafe { *self.tail.get() = null_mut() };
            }
            // SAFETY: under the lock; `dpc` is alive. From here it may be queued again.
            unsafe { dpc_mark(dpc).write(null_mut()) };
            // SAFETY: `dpc` is alive; these fields were written before it was queued.
            let routine = unsafe { dpc_driver_routine(dpc).read() };
            // SAFETY: as above.
            let context =
                unsafe { dpc_field::<PVOID>(dpc, offset_of!(KDPC, DeferredContext)).read() };
            // The system arguments hold the trampoline's gate (`gate_next_due`): the routine
            // gets none, which the driver's routines do not use.
            Some(Dequeued {
                dpc,
                routine,
                context,
                argument1: null_mut(),
                argument2: null_mut(),
            })
        };
        self.release(irql);
        dequeued
    }

    /// Initialises the wake event and starts the dispatcher thread. `PASSIVE_LEVEL`.
    fn start(&self) -> Result<(), NTSTATUS> {
        // SAFETY: the event is static, not yet in use (no dispatcher exists yet).
        unsafe { services::KeInitializeEvent(self.wake.get(), SynchronizationEvent, false) };
        self.stopping.store(false, Ordering::Release);
        let mut handle: HANDLE = null_mut();
        // SAFETY: valid out pointer; a kernel thread in the system process running
        // `dispatcher_main`, which needs no context.
        let status = unsafe {
            import_PsCreateSystemThread(
                &raw mut handle,
                THREAD_ALL_ACCESS,
                ptr::null(),
                null_mut(),
                null_mut(),
                dispatcher_main,
                null_mut(),
            )
        };
        if status < 0 {
            return Err(status);
        }
        let mut thread: PVOID = null_mut();
        // SAFETY: `handle` is the thread handle just created; valid out pointer; no type check.
        let status = unsafe {
            services::ObReferenceObjectByHandle(
                handle,
                SYNCHRONIZE,
                0,
                0,
                &raw mut thread,
                null_mut(),
            )
        };
        // SAFETY: our handle, closed once; the thread object (if referenced) outlives it.
        unsafe { import_ZwClose(handle) };
        if status < 0 {
            // The thread runs but cannot be waited for: stop it, and let unload take its chance.
            self.stopping.store(true, Ordering::Release);
            // SAFETY: initialised above.
            unsafe { services::KeSetEvent(self.wake.get(), 0, false) };
            return Err(status);
        }
        self.thread.store(thread, Ordering::Release);
        Ok(())
    }

    /// Stops the dispatcher after it has run every queued DPC, and waits for its thread to
    /// end. `PASSIVE_LEVEL`.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // SAFETY: initialised by `start`.
        unsafe { services::KeSetEvent(self.wake.get(), 0, false) };
        let thread = self.thread.swap(null_mut(), Ordering::AcqRel);
        if !thread.is_null() {
            // SAFETY: a referenced thread object (a dispatcher object); PASSIVE_LEVEL; no timeout.
            unsafe { services::KeWaitForSingleObject(thread, 0, 0, false, ptr::null()) };
            // SAFETY: drops the reference taken in `start`, once.
            unsafe { services::ObfDereferenceObject(thread) };
        }
    }

    /// Whether the calling thread is the dispatcher. Any IRQL.
    fn on_dispatcher(&self) -> bool {
        let id = self.dispatcher_id.load(Ordering::Acquire);
        id != 0 && id == current_thread_id()
    }

    /// Waits until every DPC queued before the call has run: queues a barrier DPC and waits
    /// for it (the dispatcher runs DPCs in order). `PASSIVE_LEVEL`, not on the dispatcher.
    fn flush(&self) {
        if self.thread.load(Ordering::Acquire).is_null() || self.on_dispatcher() {
            return;
        }
        // SAFETY: KEVENT and KDPC are plain data; all-zero is their uninitialised state and
        // both are initialised below before use.
        let mut done: KEVENT = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let mut barrier: KDPC = unsafe { core::mem::zeroed() };
        // SAFETY: a local event, initialised once before use.
        unsafe { services::KeInitializeEvent(&raw mut done, SynchronizationEvent, false) };
        // SAFETY: a local KDPC whose context is the local event; both outlive the wait below,
        // which returns only after the barrier routine signaled the event, and the dispatcher
        // touches neither after calling the routine.
        unsafe {
            KeInitializeDpc(
                &raw mut barrier,
                Some(barrier_routine),
                (&raw mut done).cast(),
            );
        }
        // SAFETY: the barrier is initialised in Wine mode and alive until it has run.
        unsafe { self.enqueue(&raw mut barrier) };
        // SAFETY: a local, initialised event; PASSIVE_LEVEL; no timeout.
        unsafe {
            services::KeWaitForSingleObject((&raw mut done).cast(), 0, 0, false, ptr::null())
        };
    }
}

/// Per-thread IRQL in Wine mode (see the module doc): threads above `PASSIVE_LEVEL` and
/// their level. A thread's entry is claimed (CAS of its id into a free slot) when it raises
/// and freed when it returns to `PASSIVE_LEVEL`; only the owning thread writes its level.
struct IrqlTable {
    threads: [AtomicUsize; IRQL_TABLE_SLOTS],
    levels: [AtomicU8; IRQL_TABLE_SLOTS],
}

/// Threads that can be above `PASSIVE_LEVEL` at once in Wine mode (the driver host's I/O
/// threads, the thread-pool threads running trampolines hold no tracked lock, and the
/// dispatcher): far fewer than this.
const IRQL_TABLE_SLOTS: usize = 64;

static IRQL_TABLE: IrqlTable = IrqlTable {
    threads: [const { AtomicUsize::new(0) }; IRQL_TABLE_SLOTS],
    levels: [const { AtomicU8::new(0) }; IRQL_TABLE_SLOTS],
};

impl IrqlTable {
    /// The calling thread's level (`PASSIVE_LEVEL` if it has no entry). Any IRQL.
    fn current(&self) -> KIRQL {
        let me = current_thread_id();
        self.threads
            .iter()
            .zip(&self.levels)
            .find(|(thread, _)| thread.load(Ordering::Acquire) == me)
            .map_or(0, |(_, level)| level.load(Ordering::Relaxed))
    }

    /// Sets the calling thread's level (any IRQL). Raising claims a slot (spinning if all 64 are taken,
    /// which the driver never comes near); returning to `PASSIVE_LEVEL` frees it.
    fn set(&self, irql: KIRQL) {
        let me = current_thread_id();
        let own = self
            .threads
            .iter()
            .position(|thread| thread.load(Ordering::Acquire) == me);
        match (own, irql) {
            (Some(slot), 0) => {
                if let Some(thread) = self.threads.get(slot) {
                    thread.store(0, Ordering::Release);
                }
            }
            (Some(slot), _) => {
                if let Some(level) = self.levels.get(slot) {
                    level.store(irql, Ordering::Relaxed);
                }
            }
            (None, 0) => {}
            (None, _) => loop {
                let claimed = self
                    .threads
                    .iter()
                    .zip(&self.levels)
                    .find(|(thread, level)| {
                        // The level is set before the id is published, so a reader that finds the
                        // id sees the level.
                        if thread.load(Ordering::Relaxed) != 0 {
                            return false;
                        }
                        level.store(irql, Ordering::Relaxed);
                        thread
                            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                    });
                if claimed.is_some() {
                    break;
                }
                core::hint::spin_loop();
            },
        }
    }
}

/// The id of the calling thread. Any IRQL.
fn current_thread_id() -> usize {
    // SAFETY: no preconditions; any IRQL.
    unsafe { services::PsGetCurrentThreadId() }.addr()
}

/// The routine Wine calls for a timer's DPC in Wine mode: queue the real one, return at once.
/// Runs on a Wine thread-pool thread (`DISPATCH_LEVEL` in the DPC's terms: it only takes
/// the queue's spin lock).
///
/// # Safety
/// Called by Wine's timer callback with a KDPC initialised by [`KeInitializeDpc`].
unsafe extern "C" fn wine_timer_trampoline(
    dpc: *mut KDPC,
    _context: PVOID,
    _argument1: PVOID,
    _argument2: PVOID,
) {
    // SAFETY: the KDPC was initialised in Wine mode and is alive while its timer can fire
    // (the timer layer cancels the timer before it frees the DPC).
    unsafe { DPC_QUEUE.enqueue(dpc) };
}

/// Whether a run of `dpc` that the dispatcher is about to make falls on a new due time of
/// its timer's KTIMER schedule (always, for an ungated DPC), and if so moves the gate to the
/// next due time after now. A run that does not is one a KTIMER would never have made (the
/// timer's DPC already ran for this due time): the dispatcher skips it. On the dispatcher.
///
/// # Safety
/// `dpc` was just taken off the queue: initialised in Wine mode and alive until its run.
unsafe fn gate_admits(dpc: *mut KDPC) -> bool {
    // SAFETY: the caller's contract.
    let next_due = unsafe { gate_next_due(dpc) };
    // SAFETY: as above.
    let period = unsafe { gate_period(dpc) };
    // SAFETY: no preconditions.
    let early = i64::from(unsafe { services::KeQueryTimeIncrement() });
    loop {
        let due = next_due.load(Ordering::Acquire);
        if due == GATE_OPEN {
            return true;
        }
        let now = i64::try_from(performance_counter().1).unwrap_or(i64::MAX);
        if now < due.saturating_sub(early) {
            return false;
        }
        let following = following_due(due, period.load(Ordering::Relaxed), now);
        if next_due
            .compare_exchange(due, following, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
        // A re-arm moved the gate meanwhile: look again.
    }
}

/// The flush barrier's routine: signal the flusher's event. `DISPATCH_LEVEL` (a DPC).
///
/// # Safety
/// `context` is the flusher's live KEVENT.
unsafe extern "C" fn barrier_routine(
    _dpc: *mut KDPC,
    context: PVOID,
    _argument1: PVOID,
    _argument2: PVOID,
) {
    // SAFETY: the flusher waits on this event until it is signaled (contract).
    unsafe { services::KeSetEvent(context.cast(), 0, false) };
}

/// The dispatcher thread: runs queued DPCs one at a time until told to stop. Waits at
/// `PASSIVE_LEVEL`; runs each routine at the tracked `DISPATCH_LEVEL`.
///
/// # Safety
/// Started once by `DpcQueue::start`.
unsafe extern "system" fn dispatcher_main(_context: PVOID) {
    DPC_QUEUE
        .dispatcher_id
        .store(current_thread_id(), Ordering::Release);
    loop {
        while let Some(job) = DPC_QUEUE.pop() {
            // SAFETY: just taken off the queue: initialised in Wine mode, alive until it has
            // run (the enqueue contract).
            if !unsafe { gate_admits(job.dpc) } {
                continue;
            }
            if let Some(routine) = job.routine {
                IRQL_TABLE.set(2);
                // SAFETY: the routine and context were given for this KDPC by the driver
                // (KeInitializeDpc), which keeps them valid until the DPC has run or been
                // removed; the arguments are the kernel's.
                unsafe { routine(job.dpc, job.context, job.argument1, job.argument2) };
                IRQL_TABLE.set(0);
            }
        }
        if DPC_QUEUE.stopping.load(Ordering::Acquire) {
            break;
        }
        DPC_QUEUE.idle.store(true, Ordering::SeqCst);
        if DPC_QUEUE.has_work() {
            DPC_QUEUE.idle.store(false, Ordering::SeqCst);
            continue;
        }
        // SAFETY: the event was initialised before this thread started; PASSIVE_LEVEL.
        unsafe {
            services::KeWaitForSingleObject(DPC_QUEUE.wake.get().cast(), 0, 0, false, ptr::null())
        };
    }
    DPC_QUEUE.dispatcher_id.store(0, Ordering::Release);
    // SAFETY: a system thread ending itself.
    unsafe { services::PsTerminateSystemThread(STATUS_SUCCESS) };
}

// ---------------------------------------------------------------------------------------
// The routines of the seam contract (docs/ARCHITECTURE.md), wdk-sys' signatures.

/// Converts a performance-counter reading to 100 ns units. Any IRQL.
fn counter_to_hundred_ns(counter: i64, frequency: i64) -> u64 {
    let (Ok(counter), Ok(frequency)) = (u128::try_from(counter), u128::try_from(frequency)) else {
        return 0;
    };
    if frequency == 0 {
        return 0;
    }
    u64::try_from(counter * 10_000_000 / frequency).unwrap_or(u64::MAX)
}

/// The performance counter and its value in 100 ns units. Any IRQL.
fn performance_counter() -> (u64, u64) {
    let mut frequency: i64 = 0;
    // SAFETY: valid out pointer; any IRQL.
    let counter = unsafe { services::KeQueryPerformanceCounter(&raw mut frequency) };
    (
        u64::try_from(counter).unwrap_or(0),
        counter_to_hundred_ns(counter, frequency),
    )
}

/// `ExAllocatePool2`: `ExAllocatePoolWithTag(NonPagedPoolNx)`, zeroed unless
/// `POOL_FLAG_UNINITIALIZED` (see the module doc). Only non-paged requests are made by the
/// driver. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// As `ExAllocatePool2`.
#[must_use]
pub unsafe fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID {
    let Ok(size) = usize::try_from(NumberOfBytes) else {
        return null_mut();
    };
    // SAFETY: a plain pool allocation at IRQL <= DISPATCH_LEVEL (caller's contract).
    let block = unsafe { services::ExAllocatePoolWithTag(NON_PAGED_POOL_NX, size, Tag) };
    if !block.is_null() && Flags & POOL_FLAG_UNINITIALIZED == 0 {
        // SAFETY: `block` is a fresh allocation of `size` bytes.
        unsafe { block.cast::<u8>().write_bytes(0, size) };
    }
    block
}

/// `ExFreePoolWithTag`.
///
/// # Safety
/// As `ExFreePoolWithTag`.
pub unsafe fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    // SAFETY: the caller's contract is the routine's.
    unsafe { services::ExFreePoolWithTag(P, Tag) };
}

/// `ExAllocateTimer`: null when the kernel has none (Wine 8.0), as for any failure.
///
/// # Safety
/// As `ExAllocateTimer`.
pub unsafe fn ExAllocateTimer(
    Callback: PEXT_CALLBACK,
    CallbackContext: PVOID,
    Attributes: ULONG,
) -> PEX_TIMER {
    let routine = EX_ALLOCATE_TIMER.get();
    if routine.is_null() {
        return null_mut();
    }
    // SAFETY: `routine` is the kernel's ExAllocateTimer export, which has this signature.
    let routine: unsafe extern "system" fn(PEXT_CALLBACK, PVOID, ULONG) -> PEX_TIMER =
        unsafe { core::mem::transmute(routine) };
    // SAFETY: the caller's contract is the routine's.
    unsafe { routine(Callback, CallbackContext, Attributes) }
}

/// `ExSetTimer`. FALSE if the kernel has none (then no timer was ever allocated).
///
/// # Safety
/// As `ExSetTimer`.
pub unsafe fn ExSetTimer(
    Timer: PEX_TIMER,
    DueTime: LONGLONG,
    Period: LONGLONG,
    Parameters: *mut EXT_SET_PARAMETERS,
) -> BOOLEAN {
    let routine = EX_SET_TIMER.get();
    if routine.is_null() {
        return 0;
    }
    // SAFETY: `routine` is the kernel's ExSetTimer export, which has this signature.
    let routine: unsafe extern "system" fn(
        PEX_TIMER,
        LONGLONG,
        LONGLONG,
        *mut EXT_SET_PARAMETERS,
    ) -> BOOLEAN = unsafe { core::mem::transmute(routine) };
    // SAFETY: the caller's contract is the routine's.
    unsafe { routine(Timer, DueTime, Period, Parameters) }
}

/// `ExCancelTimer`. FALSE if the kernel has none.
///
/// # Safety
/// As `ExCancelTimer`.
pub unsafe fn ExCancelTimer(Timer: PEX_TIMER, Parameters: PVOID) -> BOOLEAN {
    let routine = EX_CANCEL_TIMER.get();
    if routine.is_null() {
        return 0;
    }
    // SAFETY: `routine` is the kernel's ExCancelTimer export, which has this signature.
    let routine: unsafe extern "system" fn(PEX_TIMER, PVOID) -> BOOLEAN =
        unsafe { core::mem::transmute(routine) };
    // SAFETY: the caller's contract is the routine's.
    unsafe { routine(Timer, Parameters) }
}

/// `ExDeleteTimer`. FALSE if the kernel has none.
///
/// # Safety
/// As `ExDeleteTimer`.
pub unsafe fn ExDeleteTimer(
    Timer: PEX_TIMER,
    Cancel: BOOLEAN,
    Wait: BOOLEAN,
    Parameters: PVOID,
) -> BOOLEAN {
    let routine = EX_DELETE_TIMER.get();
    if routine.is_null() {
        return 0;
    }
    // SAFETY: `routine` is the kernel's ExDeleteTimer export, which has this signature.
    let routine: unsafe extern "system" fn(PEX_TIMER, BOOLEAN, BOOLEAN, PVOID) -> BOOLEAN =
        unsafe { core::mem::transmute(routine) };
    // SAFETY: the caller's contract is the routine's.
    unsafe { routine(Timer, Cancel, Wait, Parameters) }
}

/// `KeInitializeTimerEx`.
///
/// # Safety
/// As `KeInitializeTimerEx`.
pub unsafe fn KeInitializeTimerEx(Timer: PKTIMER, Type: TIMER_TYPE) {
    // SAFETY: the caller's contract is the routine's.
    unsafe { services::KeInitializeTimerEx(Timer, Type) };
}

/// `KeSetTimerEx`.
///
/// # Safety
/// As `KeSetTimerEx`.
pub unsafe fn KeSetTimerEx(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Period: LONG,
    Dpc: PKDPC,
) -> BOOLEAN {
    // SAFETY: every LARGE_INTEGER bit pattern is a valid i64.
    let due = unsafe { DueTime.QuadPart };
    if !is_wine() || Dpc.is_null() {
        // SAFETY: the caller's contract is the routine's.
        return BOOLEAN::from(unsafe { services::KeSetTimerEx(Timer, due, Period, Dpc) });
    }
    // Wine mode: the dispatcher's gate (module doc). Open while Wine re-arms (it cancels the
    // old arming's callbacks and waits for running ones; a run that gets through meanwhile
    // is a DPC queued before the re-arm, which the timer core expects), then set for a periodic
    // timer with a relative due time. An absolute due time is in system time, which Wine's
    // timers follow and the gate's interrupt time does not: such timers stay ungated.
    // SAFETY: `Dpc` was initialised by `KeInitializeDpc` in Wine mode and outlives the
    // arming (caller's contract); its gate fields are only accessed atomically.
    let next_due = unsafe { gate_next_due(Dpc) };
    next_due.store(GATE_OPEN, Ordering::Release);
    let armed_at = i64::try_from(performance_counter().1).unwrap_or(i64::MAX);
    // SAFETY: the caller's contract is the routine's.
    let was_set = unsafe { services::KeSetTimerEx(Timer, due, Period, Dpc) };
    if Period > 0 && due < 0 {
        // SAFETY: as above.
        unsafe { gate_period(Dpc) }.store(i64::from(Period) * 10_000, Ordering::Relaxed);
        next_due.store(armed_at.saturating_sub(due), Ordering::Release);
    }
    BOOLEAN::from(was_set)
}

/// `KeSetCoalescableTimer`, or `KeSetTimerEx` without the tolerance when the kernel has none
/// (Wine 8.0; see the module doc).
///
/// # Safety
/// As `KeSetCoalescableTimer`.
pub unsafe fn KeSetCoalescableTimer(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Period: ULONG,
    TolerableDelay: ULONG,
    Dpc: PKDPC,
) -> BOOLEAN {
    let routine = KE_SET_COALESCABLE_TIMER.get();
    if routine.is_null() {
        let period = LONG::try_from(Period).unwrap_or(LONG::MAX);
        // SAFETY: the caller's contract covers KeSetTimerEx's.
        return unsafe { KeSetTimerEx(Timer, DueTime, period, Dpc) };
    }
    // SAFETY: `routine` is the kernel's KeSetCoalescableTimer export, which has this
    // signature (LARGE_INTEGER passed by value as its i64).
    let routine: unsafe extern "system" fn(PKTIMER, i64, ULONG, ULONG, PKDPC) -> BOOLEAN =
        unsafe { core::mem::transmute(routine) };
    // SAFETY: every LARGE_INTEGER bit pattern is a valid i64.
    let due = unsafe { DueTime.QuadPart };
    // SAFETY: the caller's contract is the routine's.
    unsafe { routine(Timer, due, Period, TolerableDelay, Dpc) }
}

/// `KeCancelTimer`.
///
/// # Safety
/// As `KeCancelTimer`.
pub unsafe fn KeCancelTimer(Timer: PKTIMER) -> BOOLEAN {
    // SAFETY: the caller's contract is the routine's.
    BOOLEAN::from(unsafe { services::KeCancelTimer(Timer) })
}

/// `KeReadStateTimer`. In Wine mode (where the export is a stub that ends the driver host)
/// the timer header's signal state, which is what the Windows routine returns.
///
/// # Safety
/// As `KeReadStateTimer`.
pub unsafe fn KeReadStateTimer(Timer: PKTIMER) -> BOOLEAN {
    if is_wine() {
        let signal_state = Timer
            .wrapping_byte_add(offset_of!(KTIMER, Header.SignalState))
            .cast::<i32>();
        // SAFETY: `Timer` is an initialised KTIMER (caller's contract); an aligned 4-byte
        // read, racy by nature as on Windows (an unsynchronised snapshot).
        return BOOLEAN::from(unsafe { signal_state.read_volatile() } != 0);
    }
    // SAFETY: the caller's contract is the routine's.
    BOOLEAN::from(unsafe { services::KeReadStateTimer(Timer) })
}

/// `KeInitializeDpc`. In Wine mode the KDPC is set up for the binding's DPC layer: Wine
/// sees a trampoline that queues it (see the module doc).
///
/// # Safety
/// As `KeInitializeDpc`.
pub unsafe fn KeInitializeDpc(
    Dpc: PRKDPC,
    DeferredRoutine: PKDEFERRED_ROUTINE,
    DeferredContext: PVOID,
) {
    // SAFETY: the caller's contract is the routine's (the local import has its real types).
    unsafe { import_KeInitializeDpc(Dpc, DeferredRoutine, DeferredContext) };
    if is_wine() {
        // SAFETY: `Dpc` is a KDPC the caller owns and is initialising (nothing uses it yet).
        unsafe { dpc_driver_routine(Dpc).write(DeferredRoutine) };
        // SAFETY: as above.
        unsafe { dpc_kernel_routine(Dpc).write(Some(wine_timer_trampoline)) };
        // SAFETY: as above.
        unsafe { dpc_mark(Dpc).write(null_mut()) };
        // SAFETY: as above; from here the gate fields are only accessed atomically.
        unsafe { gate_next_due(Dpc) }.store(GATE_OPEN, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { gate_period(Dpc) }.store(0, Ordering::Relaxed);
    }
}

/// `KeRemoveQueueDpc`. In Wine mode (a stub there) it removes the DPC from the binding's
/// queue, with the Windows meaning.
///
/// # Safety
/// As `KeRemoveQueueDpc`.
pub unsafe fn KeRemoveQueueDpc(Dpc: PRKDPC) -> BOOLEAN {
    if is_wine() {
        // SAFETY: an initialised KDPC (caller's contract), set up for Wine mode.
        return BOOLEAN::from(unsafe { DPC_QUEUE.remove(Dpc) });
    }
    // SAFETY: the caller's contract is the routine's.
    BOOLEAN::from(unsafe { services::KeRemoveQueueDpc(Dpc) })
}

/// `KeFlushQueuedDpcs`. In Wine mode (a no-op there) it waits until every DPC queued on the
/// binding's queue before the call has run.
///
/// # Safety
/// As `KeFlushQueuedDpcs` (`PASSIVE_LEVEL`).
pub unsafe fn KeFlushQueuedDpcs() {
    if is_wine() {
        DPC_QUEUE.flush();
        return;
    }
    // SAFETY: the caller's contract is the routine's.
    unsafe { services::KeFlushQueuedDpcs() };
}

/// `KeWaitForSingleObject`.
///
/// # Safety
/// As `KeWaitForSingleObject`.
pub unsafe fn KeWaitForSingleObject(
    Object: PVOID,
    WaitReason: _KWAIT_REASON::Type,
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    // SAFETY: the caller's contract is the routine's (a LARGE_INTEGER is laid out as an i64).
    unsafe {
        services::KeWaitForSingleObject(
            Object,
            WaitReason,
            WaitMode,
            Alertable != 0,
            Timeout.cast::<i64>(),
        )
    }
}

/// `KeQueryTimeIncrement`.
///
/// # Safety
/// None beyond the routine's (any IRQL).
#[must_use]
pub unsafe fn KeQueryTimeIncrement() -> ULONG {
    // SAFETY: no preconditions.
    unsafe { services::KeQueryTimeIncrement() }
}

/// `KeQueryInterruptTimePrecise`; the performance counter in 100 ns units when the kernel has
/// no such routine (Wine 8.0; its counter runs in 100 ns units from boot).
///
/// # Safety
/// `QpcTimeStamp` is valid for a write.
pub unsafe fn KeQueryInterruptTimePrecise(QpcTimeStamp: *mut ULONG64) -> ULONG64 {
    let routine = KE_QUERY_INTERRUPT_TIME_PRECISE.get();
    if routine.is_null() {
        let (counter, time) = performance_counter();
        // SAFETY: valid for a write (caller's contract).
        unsafe { QpcTimeStamp.write(counter) };
        return time;
    }
    // SAFETY: `routine` is the kernel's export of this name and signature.
    let routine: unsafe extern "system" fn(*mut ULONG64) -> ULONG64 =
        unsafe { core::mem::transmute(routine) };
    // SAFETY: the caller's contract is the routine's.
    unsafe { routine(QpcTimeStamp) }
}

/// `KeQueryInterruptTime`. Outside Wine: the x64 header's inline read of
/// `KUSER_SHARED_DATA.InterruptTime`. In Wine mode the precise time (Wine's export counts
/// milliseconds, and the binding's clock must agree with `KeQueryInterruptTimePrecise`).
///
/// # Safety
/// Kernel mode on x64; any IRQL.
#[must_use]
pub unsafe fn KeQueryInterruptTime() -> ULONGLONG {
    /// `KI_USER_SHARED_DATA` + `FIELD_OFFSET(KUSER_SHARED_DATA, InterruptTime)` on x64.
    const SHARED_INTERRUPT_TIME: usize = 0xFFFF_F780_0000_0008;
    if is_wine() {
        return performance_counter().1;
    }
    // SAFETY: in kernel mode on x64 KUSER_SHARED_DATA is always mapped there; an aligned
    // 8-byte load of the KSYSTEM_TIME, atomic on x64, as the header does.
    unsafe {
        ptr::read_volatile(ptr::with_exposed_provenance::<ULONGLONG>(
            SHARED_INTERRUPT_TIME,
        ))
    }
}

/// `KeQuerySystemTimePrecise`, or `KeQuerySystemTime` when the kernel has no precise one.
///
/// # Safety
/// `CurrentTime` is valid for a write.
pub unsafe fn KeQuerySystemTimePrecise(CurrentTime: PLARGE_INTEGER) {
    let precise = KE_QUERY_SYSTEM_TIME_PRECISE.get();
    let routine = if precise.is_null() {
        KE_QUERY_SYSTEM_TIME.get()
    } else {
        precise
    };
    if routine.is_null() {
        // SAFETY: valid for a write (caller's contract). No system time source: report 0.
        unsafe { CurrentTime.write(LARGE_INTEGER { QuadPart: 0 }) };
        return;
    }
    // SAFETY: both exports take a PLARGE_INTEGER to fill and return nothing.
    let routine: unsafe extern "system" fn(PLARGE_INTEGER) =
        unsafe { core::mem::transmute(routine) };
    // SAFETY: the caller's contract is the routine's.
    unsafe { routine(CurrentTime) };
}

/// `KeGetCurrentIrql`: the x64 header's inline read of CR8; in Wine mode the level the
/// binding keeps for the thread (see the module doc).
///
/// # Safety
/// Kernel mode; any IRQL.
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    if is_wine() {
        return IRQL_TABLE.current();
    }
    let irql: u64;
    // SAFETY: reading CR8 (the task priority register) is how x64 kernel code reads its IRQL;
    // it has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) irql, options(nomem, nostack, preserves_flags));
    }
    KIRQL::try_from(irql).unwrap_or(KIRQL::MAX)
}

/// `KeInitializeSpinLock`: the x64 header's inline `*SpinLock = 0`.
///
/// # Safety
/// `SpinLock` is valid for a write.
pub unsafe fn KeInitializeSpinLock(SpinLock: PKSPIN_LOCK) {
    // SAFETY: valid for a write (caller's contract).
    unsafe { SpinLock.write(0) };
}

/// `KeAcquireSpinLockRaiseToDpc`.
///
/// # Safety
/// As `KeAcquireSpinLockRaiseToDpc`.
pub unsafe fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL {
    if is_wine() {
        let old = IRQL_TABLE.current();
        // SAFETY: the caller's contract is the routine's.
        unsafe { import_KeAcquireSpinLockRaiseToDpc(SpinLock) };
        IRQL_TABLE.set(2);
        return old;
    }
    // SAFETY: the caller's contract is the routine's.
    unsafe { import_KeAcquireSpinLockRaiseToDpc(SpinLock) }
}

/// `KeReleaseSpinLock`.
///
/// # Safety
/// As `KeReleaseSpinLock`.
pub unsafe fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL) {
    // SAFETY: the caller's contract is the routine's.
    unsafe { import_KeReleaseSpinLock(SpinLock, NewIrql) };
    if is_wine() {
        IRQL_TABLE.set(NewIrql);
    }
}

/// `KeAcquireSpinLockAtDpcLevel`.
///
/// # Safety
/// As `KeAcquireSpinLockAtDpcLevel`.
pub unsafe fn KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK) {
    // SAFETY: the caller's contract is the routine's.
    unsafe { import_KeAcquireSpinLockAtDpcLevel(SpinLock) };
}

/// `KeReleaseSpinLockFromDpcLevel`.
///
/// # Safety
/// As `KeReleaseSpinLockFromDpcLevel`.
pub unsafe fn KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK) {
    // SAFETY: the caller's contract is the routine's.
    unsafe { import_KeReleaseSpinLockFromDpcLevel(SpinLock) };
}

/// The routines, where wdk-sys keeps them (the seam imports them from here). A glob: the
/// seam's one list (`ktimer_seam::KERNEL_NAMES`) is the contract, and
/// driver/seam/tests/bindings.rs checks this file against it.
pub mod ntddk {
    pub use super::*;
}
