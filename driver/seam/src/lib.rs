//! THE SEAM: the one crate of the driver that names raw kernel symbols.
//!
//! Everything else in the driver reaches the kernel through the names re-exported here, so
//! this file is the complete list of what the driver uses from the kernel and from KMDF. The
//! binding follows the **target**, never a feature:
//!
//! - every target but Windows: [`kernel_sim`], the user-mode kernel model every test runs
//!   against. It mirrors wdk-sys' module structure (types and constants at the root, routines
//!   in `ntddk`).
//! - Windows: wdk-sys, the bindgen output of the WDK headers. This arm is type-checked and
//!   linted against bindings generated from the public KMDF headers and linked in a
//!   rehearsal (`tests/wdk-real-headers/`, docs/WINDOWS.md); it has not run on Windows.
//!   The Wine test rig (`tests/wine`) builds for Windows without a WDK: it replaces wdk-sys
//!   with its own windows-sys binding through `[patch]` in its own workspace and sets
//!   `--cfg ktimer_wine`, which only changes where the two header-inline routines below come
//!   from (docs/ARCHITECTURE.md, "The Wine rig").
//!
//! The list is explicit (no globs) on purpose, and written once: `bind_kernel!` and
//! `bind_wdf!` below bind the same list to whichever kernel the target has, so the arms
//! cannot drift apart, and `tests/bindings.rs` checks the Wine rig's binding against it. Routines the x64 WDK headers only define
//! as inline functions (`KeQueryInterruptTime`, `KeInitializeSpinLock`,
//! `ExInitializeSetTimerParameters`) have no import library entry; the Windows arm gives
//! their header bodies here and the simulator exports equivalents. Besides the kernel's
//! names, the seam defines [`ext_set_parameters`], [`KERNEL_MODE`] and, on the simulator,
//! [`kernel_instance`].
//!
//! The KMDF names are in [`wdf`] (feature `wdf`, which only the KMDF shell turns on).
#![no_std]

/// Binds one list of names to the target's kernel: `kernel_sim` off Windows, `wdk_sys` on
/// Windows (types and constants at the crate root, routines in `ntddk`), and records the
/// list as strings for the binding test (`tests/bindings.rs`). The list is written once, in
/// the invocation below; an arm that lacks a name fails to compile.
macro_rules! bind_kernel {
    (
        types: { $($type_name:ident),* $(,)? }
        routines: { $($routine:ident),* $(,)? }
        header_inline_routines: { $($inline_routine:ident),* $(,)? }
    ) => {
        #[cfg(not(windows))]
        pub use kernel_sim::{$($type_name),*};
        #[cfg(not(windows))]
        pub use kernel_sim::ntddk::{$($routine,)* $($inline_routine),*};

        #[cfg(windows)]
        pub use wdk_sys::{$($type_name),*};
        #[cfg(windows)]
        pub use wdk_sys::ntddk::{$($routine),*};
        // The WDK's headers define these inline (no export): their bodies are below. The
        // Wine rig's stand-in for wdk-sys exports its own (tests/wine/wdk-sys).
        #[cfg(all(windows, ktimer_wine))]
        pub use wdk_sys::ntddk::{$($inline_routine),*};

        /// Every kernel type, constant and routine name the seam binds, as listed once in
        /// `bind_kernel!`: what each binding must provide.
        pub const KERNEL_NAMES: &[&str] = &[
            $(stringify!($type_name),)* $(stringify!($routine),)* $(stringify!($inline_routine),)*
        ];
    };
}

bind_kernel! {
    types: {
        _KWAIT_REASON, _MODE, _TIMER_TYPE, BOOLEAN, EX_TIMER_HIGH_RESOLUTION, EXT_SET_PARAMETERS,
        KDPC, KIRQL, KPROCESSOR_MODE, KSPIN_LOCK, KTIMER, LARGE_INTEGER, LONG, LONGLONG,
        PASSIVE_LEVEL, PEX_TIMER, PKDPC, PKTIMER, POOL_FLAG_NON_PAGED, PVOID, SIZE_T,
        STATUS_SUCCESS, STATUS_TIMEOUT, TIMER_TYPE, ULONG64,
    }
    routines: {
        ExAllocatePool2, ExAllocateTimer, ExCancelTimer, ExDeleteTimer, ExFreePoolWithTag,
        ExSetTimer, KeAcquireSpinLockAtDpcLevel, KeAcquireSpinLockRaiseToDpc, KeCancelTimer,
        KeFlushQueuedDpcs, KeGetCurrentIrql, KeInitializeDpc, KeInitializeTimerEx,
        KeQueryInterruptTimePrecise, KeQuerySystemTimePrecise, KeQueryTimeIncrement,
        KeReadStateTimer, KeReleaseSpinLock, KeReleaseSpinLockFromDpcLevel, KeRemoveQueueDpc,
        KeSetCoalescableTimer, KeSetTimerEx, KeWaitForSingleObject,
    }
    header_inline_routines: { KeInitializeSpinLock, KeQueryInterruptTime }
}

// Only the inline bodies below need these two.
#[cfg(all(windows, not(ktimer_wine)))]
use wdk_sys::{PKSPIN_LOCK, ULONGLONG};

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
#[cfg(all(windows, not(ktimer_wine)))]
#[expect(non_snake_case, reason = "keeps the WDK routine's name")]
#[must_use]
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
#[cfg(all(windows, not(ktimer_wine)))]
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

/// The identity of the simulated kernel the calling thread is bound to (the test hooks of
/// the KMDF shell keep per-kernel settings). Any IRQL.
#[cfg(not(windows))]
#[must_use]
pub fn kernel_instance() -> u64 {
    kernel_sim::current_kernel_id()
}

/// The KMDF names the KMDF shell uses: wdk-sys on Windows; on the simulator, kernel-sim's
/// KMDF model, whose DDIs are reached through a `call_unsafe_wdf_function_binding!` with the
/// same call-site form as wdk-sys'.
#[cfg(feature = "wdf")]
pub mod wdf {
    /// Binds one list of KMDF names to the target's framework, and records it (see
    /// `bind_kernel!`).
    macro_rules! bind_wdf {
        ($($name:ident),* $(,)?) => {
            #[cfg(not(windows))]
            pub use kernel_sim::{$($name),*};
            #[cfg(windows)]
            pub use wdk_sys::{$($name),*};

            /// Every KMDF name the seam binds, as listed once in `bind_wdf!`.
            pub const WDF_NAMES: &[&str] = &[$(stringify!($name)),*];
        };
    }

    bind_wdf! {
        _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_IO_QUEUE_DISPATCH_TYPE,
        _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, GUID, NT_SUCCESS, NTSTATUS, PCUNICODE_STRING,
        PCWDF_OBJECT_CONTEXT_TYPE_INFO, PDRIVER_OBJECT, PWDFDEVICE_INIT, STATUS_CANCELLED,
        STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_HANDLE, STATUS_OBJECT_NAME_NOT_FOUND, ULONG,
        ULONG_PTR, UNICODE_STRING, USHORT, WDF_DRIVER_CONFIG, WDF_FILEOBJECT_CONFIG,
        WDF_IO_QUEUE_CONFIG, WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES,
        WDF_OBJECT_CONTEXT_TYPE_INFO, WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFOBJECT, WDFQUEUE,
        WDFREQUEST, call_unsafe_wdf_function_binding,
    }
}
