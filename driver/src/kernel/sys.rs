//! THE SEAM: the one module of the crate that names raw kernel symbols.
//!
//! Everything else in the driver reaches the kernel through the names re-exported here, so
//! this file is the complete list of what the driver uses from the kernel. The binding is
//! chosen by `build.rs` through `cfg(ktimer_seam)`:
//!
//! - `sim`: [`kernel_sim`], the user-mode kernel model every test runs against. It mirrors
//!   wdk-sys' module structure (types and constants at the root, routines in `ntddk`).
//! - `wdk`: wdk-sys 0.5.1, the bindgen output of the WDK headers. **That arm cannot be
//!   compiled on the machines this project is developed on** (no WDK); it is written
//!   against the wdk-sys 0.5.1 sources and bindgen conventions (`#define` integers are
//!   `u32`, enums are `ModuleConsts` modules, `STATUS_*` are hand-ported `NTSTATUS`
//!   constants in wdk-sys), and is not verified here.
//! - `windows_sys`: windows-sys 0.61 with local definitions where it is wrong or silent,
//!   for the Wine test rig's WDM front end (`tests/wine`; issue 6). It lives in
//!   [`windows_sys`], which also handles the routines Wine lacks and its DPC semantics.
//!
//! The lists are explicit (no globs) on purpose. Routines the x64 WDK headers only define
//! as inline functions (`KeQueryInterruptTime`, `KeInitializeSpinLock`,
//! `ExInitializeSetTimerParameters`) have no import library entry; the `wdk` arm gives
//! their header bodies here and the simulator exports equivalents.
//!
//! One item is not a kernel symbol: [`parked_list`], the deferred-teardown list of "the
//! kernel this code runs in" (one on Windows, one per simulated kernel).

#[cfg(not(loom))]
use super::deferred::ParkedList;

#[cfg(ktimer_seam = "sim")]
pub use kernel_sim::{
    _KWAIT_REASON, _MODE, _TIMER_TYPE, BOOLEAN, EX_TIMER_HIGH_RESOLUTION, EXT_SET_PARAMETERS, KDPC,
    KIRQL, KPROCESSOR_MODE, KSPIN_LOCK, KTIMER, LARGE_INTEGER, LONG, LONGLONG, PASSIVE_LEVEL,
    PEX_TIMER, PKDPC, PKTIMER, POOL_FLAG_NON_PAGED, PVOID, SIZE_T, STATUS_SUCCESS, STATUS_TIMEOUT,
    TIMER_TYPE, ULONG64,
};

#[cfg(ktimer_seam = "sim")]
pub use kernel_sim::ntddk::{
    ExAllocatePool2, ExAllocateTimer, ExCancelTimer, ExDeleteTimer, ExFreePoolWithTag, ExSetTimer,
    KeAcquireSpinLockAtDpcLevel, KeAcquireSpinLockRaiseToDpc, KeCancelTimer, KeFlushQueuedDpcs,
    KeGetCurrentIrql, KeInitializeDpc, KeInitializeSpinLock, KeInitializeTimerEx,
    KeQueryInterruptTime, KeQueryInterruptTimePrecise, KeQuerySystemTimePrecise,
    KeQueryTimeIncrement, KeReadStateTimer, KeReleaseSpinLock, KeReleaseSpinLockFromDpcLevel,
    KeRemoveQueueDpc, KeSetCoalescableTimer, KeSetTimerEx, KeWaitForSingleObject,
};

#[cfg(ktimer_seam = "wdk")]
pub use wdk_sys::{
    _KWAIT_REASON, _MODE, _TIMER_TYPE, BOOLEAN, EX_TIMER_HIGH_RESOLUTION, EXT_SET_PARAMETERS, KDPC,
    KIRQL, KPROCESSOR_MODE, KSPIN_LOCK, KTIMER, LARGE_INTEGER, LONG, LONGLONG, PASSIVE_LEVEL,
    PEX_TIMER, PKDPC, PKTIMER, POOL_FLAG_NON_PAGED, PVOID, SIZE_T, STATUS_SUCCESS, STATUS_TIMEOUT,
    TIMER_TYPE, ULONG64,
};
// Only the inline bodies below need these two.
#[cfg(ktimer_seam = "wdk")]
use wdk_sys::{PKSPIN_LOCK, ULONGLONG};

#[cfg(ktimer_seam = "wdk")]
pub use wdk_sys::ntddk::{
    ExAllocatePool2, ExAllocateTimer, ExCancelTimer, ExDeleteTimer, ExFreePoolWithTag, ExSetTimer,
    KeAcquireSpinLockAtDpcLevel, KeAcquireSpinLockRaiseToDpc, KeCancelTimer, KeFlushQueuedDpcs,
    KeGetCurrentIrql, KeInitializeDpc, KeInitializeTimerEx, KeQueryInterruptTimePrecise,
    KeQuerySystemTimePrecise, KeQueryTimeIncrement, KeReadStateTimer, KeReleaseSpinLock,
    KeReleaseSpinLockFromDpcLevel, KeRemoveQueueDpc, KeSetCoalescableTimer, KeSetTimerEx,
    KeWaitForSingleObject,
};

// The KMDF section: the framework names the KMDF shell (`crate::kmdf`) uses. wdk-sys on
// Windows; on the simulator, kernel-sim's KMDF model, whose DDIs are reached through a
// `call_unsafe_wdf_function_binding!` with the same call-site form as wdk-sys'.
#[cfg(ktimer_seam = "sim")]
pub use kernel_sim::{
    _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_IO_QUEUE_DISPATCH_TYPE,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, GUID, NT_SUCCESS, NTSTATUS, PCUNICODE_STRING,
    PCWDF_OBJECT_CONTEXT_TYPE_INFO, PDRIVER_OBJECT, PWDFDEVICE_INIT, STATUS_CANCELLED,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_HANDLE, STATUS_OBJECT_NAME_NOT_FOUND, ULONG,
    ULONG_PTR, UNICODE_STRING, USHORT, WDF_DRIVER_CONFIG, WDF_FILEOBJECT_CONFIG,
    WDF_IO_QUEUE_CONFIG, WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFOBJECT, WDFQUEUE,
    WDFREQUEST, call_unsafe_wdf_function_binding,
};

#[cfg(ktimer_seam = "wdk")]
pub use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_IO_QUEUE_DISPATCH_TYPE,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, GUID, NT_SUCCESS, NTSTATUS, PCUNICODE_STRING,
    PCWDF_OBJECT_CONTEXT_TYPE_INFO, PDRIVER_OBJECT, PWDFDEVICE_INIT, STATUS_CANCELLED,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_HANDLE, STATUS_OBJECT_NAME_NOT_FOUND, ULONG,
    ULONG_PTR, UNICODE_STRING, USHORT, WDF_DRIVER_CONFIG, WDF_FILEOBJECT_CONFIG,
    WDF_IO_QUEUE_CONFIG, WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFOBJECT, WDFQUEUE,
    WDFREQUEST, call_unsafe_wdf_function_binding,
};

#[cfg(ktimer_seam = "windows_sys")]
pub mod windows_sys;

#[cfg(ktimer_seam = "windows_sys")]
pub use windows_sys::{
    _KWAIT_REASON, _MODE, _TIMER_TYPE, BOOLEAN, EX_TIMER_HIGH_RESOLUTION, EXT_SET_PARAMETERS,
    ExAllocatePool2, ExAllocateTimer, ExCancelTimer, ExDeleteTimer, ExFreePoolWithTag, ExSetTimer,
    KDPC, KIRQL, KPROCESSOR_MODE, KSPIN_LOCK, KTIMER, KeAcquireSpinLockAtDpcLevel,
    KeAcquireSpinLockRaiseToDpc, KeCancelTimer, KeFlushQueuedDpcs, KeGetCurrentIrql,
    KeInitializeDpc, KeInitializeSpinLock, KeInitializeTimerEx, KeQueryInterruptTime,
    KeQueryInterruptTimePrecise, KeQuerySystemTimePrecise, KeQueryTimeIncrement, KeReadStateTimer,
    KeReleaseSpinLock, KeReleaseSpinLockFromDpcLevel, KeRemoveQueueDpc, KeSetCoalescableTimer,
    KeSetTimerEx, KeWaitForSingleObject, LARGE_INTEGER, LONG, LONGLONG, PASSIVE_LEVEL, PEX_TIMER,
    PKDPC, PKTIMER, POOL_FLAG_NON_PAGED, PVOID, SIZE_T, STATUS_SUCCESS, STATUS_TIMEOUT, TIMER_TYPE,
    ULONG64,
};

/// `KeQueryInterruptTime` for x64: wdm.h defines it as an inline read of
/// `SharedUserData->InterruptTime`, so ntoskrnl has no export for it.
///
/// `KUSER_SHARED_DATA` is mapped read-only at `KI_USER_SHARED_DATA` (`0xFFFFF780_00000000`
/// on x64; bindgen cannot translate the header's `UI64`-suffixed macro) and ntddk.h
/// asserts `FIELD_OFFSET(KUSER_SHARED_DATA, InterruptTime) == 0x8`. A 64-bit aligned
/// load of that `KSYSTEM_TIME` is atomic on x64, which is exactly what the header does.
///
/// # Safety
///
/// Only meaningful in kernel mode on x64 Windows, where the shared page is always mapped.
/// Any IRQL.
#[cfg(ktimer_seam = "wdk")]
#[expect(non_snake_case, reason = "keeps the WDK routine's name")]
pub unsafe fn KeQueryInterruptTime() -> ULONGLONG {
    const KI_USER_SHARED_DATA: usize = 0xFFFF_F780_0000_0000;
    const INTERRUPT_TIME_OFFSET: usize = 0x8;
    // SAFETY: the caller runs in kernel mode on x64, where KUSER_SHARED_DATA is permanently
    // mapped at KI_USER_SHARED_DATA and InterruptTime is an 8-byte aligned field at 0x8.
    unsafe {
        core::ptr::read_volatile(core::ptr::with_exposed_provenance::<ULONGLONG>(
            KI_USER_SHARED_DATA + INTERRUPT_TIME_OFFSET,
        ))
    }
}

/// `KeInitializeSpinLock` for x64: wdm.h defines it as an inline `*SpinLock = 0`.
///
/// # Safety
///
/// `spin_lock` must be valid for a write of a `KSPIN_LOCK`. Any IRQL.
#[cfg(ktimer_seam = "wdk")]
#[expect(non_snake_case, reason = "keeps the WDK routine's name")]
pub unsafe fn KeInitializeSpinLock(spin_lock: PKSPIN_LOCK) {
    // SAFETY: the caller guarantees `spin_lock` is valid for a write.
    unsafe { spin_lock.write(0) };
}

/// `EX_TIMER_UNLIMITED_TOLERANCE` (wdm.h: `((LONGLONG)-1)`, a cast bindgen does not
/// translate): no limit on how long a no-wake timer may be delayed.
const EX_TIMER_UNLIMITED_TOLERANCE: LONGLONG = -1;

/// The parameter block `ExInitializeSetTimerParameters` (an inline routine in wdm.h)
/// produces: zeroed, `Version` = `EXT_SET_PARAMETERS_VERSION` (0), `NoWakeTolerance` =
/// `EX_TIMER_UNLIMITED_TOLERANCE`. Any IRQL.
#[must_use]
pub fn ext_set_parameters() -> EXT_SET_PARAMETERS {
    EXT_SET_PARAMETERS {
        Version: 0,
        Reserved: 0,
        NoWakeTolerance: EX_TIMER_UNLIMITED_TOLERANCE,
    }
}

/// The `WaitMode` argument for a kernel-mode wait: `_MODE::KernelMode` as the
/// `KPROCESSOR_MODE` (`CCHAR`) the wait routines take.
#[expect(
    clippy::cast_possible_truncation,
    reason = "_MODE::KernelMode is 0 (a C enum constant); KPROCESSOR_MODE is its CCHAR form"
)]
pub const KERNEL_MODE: KPROCESSOR_MODE = _MODE::KernelMode as KPROCESSOR_MODE;

/// The list of torn-down timers awaiting a PASSIVE-level flush
/// ([`deferred`](super::deferred)) of the kernel this code runs in. Any IRQL; allocates
/// nothing in the driver.
///
/// On Windows a driver image lives in exactly one kernel: one static list. The simulator
/// runs many independent kernels in one process (one per test), each with its own pool
/// that is released when the kernel goes away: each kernel gets its own list (made on
/// first use and never freed, a few bytes per simulated kernel), so no kernel ever reads or
/// frees a block of another, even of one that no longer exists.
#[cfg(not(ktimer_seam = "sim"))]
pub fn parked_list() -> &'static ParkedList {
    static PARKED: ParkedList = ParkedList::new();
    &PARKED
}

/// See the non-simulator version above. Any IRQL.
#[cfg(all(ktimer_seam = "sim", not(loom)))]
pub fn parked_list() -> &'static ParkedList {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, PoisonError};

    static LISTS: Mutex<BTreeMap<u64, &'static ParkedList>> = Mutex::new(BTreeMap::new());
    let kernel = kernel_sim::current_kernel_id();
    let mut lists = LISTS.lock().unwrap_or_else(PoisonError::into_inner);
    lists
        .entry(kernel)
        .or_insert_with(|| std::boxed::Box::leak(std::boxed::Box::new(ParkedList::new())))
}

/// The identity of the simulated kernel the calling thread is bound to (the test hooks of
/// the KMDF shell keep per-kernel settings). Any IRQL.
#[cfg(ktimer_seam = "sim")]
pub(crate) fn kernel_instance() -> u64 {
    kernel_sim::current_kernel_id()
}

/// Writes one line of driver trace output.
///
/// `wdk::println!` (`DbgPrint`, usable at IRQL <= DIRQL) in the real driver; standard error
/// on the simulator. Never used on the timer expiry path.
macro_rules! trace {
    ($($arg:tt)*) => {{
        #[cfg(ktimer_seam = "wdk")]
        {
            ::wdk::println!($($arg)*);
        }
        #[cfg(ktimer_seam = "sim")]
        {
            ::kernel_sim::print(format_args!($($arg)*));
        }
        // The Wine test binding prints nothing (the arguments are still type-checked).
        #[cfg(ktimer_seam = "windows_sys")]
        {
            let _ = format_args!($($arg)*);
        }
    }};
}
pub(crate) use trace;
