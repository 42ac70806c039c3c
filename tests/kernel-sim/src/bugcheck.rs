//! Bug checks: the value a simulated crash carries, the codes the simulator raises, and
//! [`catch_bug_check`] for tests.
//!
//! A bug check is recorded in the kernel that raised it (see `Kernel::bug_check`) and, in the
//! thread that made the offending call, unwinds with a [`BugCheck`] payload
//! (`std::panic::panic_any`). The exception is a thread that is inside a driver callback
//! (a DPC routine or an `ExAllocateTimer` callback): those are `extern "C"` functions, and
//! unwinding out of one aborts the process, so that simulated processor records the bug
//! check and halts (parks for the rest of the process), as a crashed machine would stop.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Once;

/// A simulated bug check: the stop code and its four parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BugCheck {
    /// The stop code (for example `0xC7` `TIMER_OR_DPC_INVALID`).
    pub code: u32,
    /// `BugCheckParameter1..4`.
    pub parameters: [u64; 4],
}

impl BugCheck {
    /// A bug check with the given code and parameters.
    #[must_use]
    pub const fn new(code: u32, parameters: [u64; 4]) -> Self {
        Self { code, parameters }
    }
}

impl fmt::Display for BugCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [p1, p2, p3, p4] = self.parameters;
        write!(
            f,
            "bug check 0x{:X} ({}) ({p1:#x}, {p2:#x}, {p3:#x}, {p4:#x})",
            self.code,
            codes::name(self.code)
        )
    }
}

/// Runs `f`; a simulated bug check raised in this thread becomes `Err`. Any other panic keeps
/// unwinding.
///
/// # Errors
/// The [`BugCheck`] that `f` raised.
pub fn catch_bug_check<T>(f: impl FnOnce() -> T) -> Result<T, BugCheck> {
    install_quiet_hook();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast::<BugCheck>() {
            Ok(bug_check) => Err(*bug_check),
            Err(other) => resume_unwind(other),
        },
    }
}

/// Makes the default panic message for a [`BugCheck`] payload a single line (the default hook
/// would print "Box<dyn Any>"); other panics go to the previous hook unchanged.
pub(crate) fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(bug_check) = info.payload().downcast_ref::<BugCheck>() {
                eprintln!("kernel-sim: {bug_check}");
            } else {
                previous(info);
            }
        }));
    });
}

/// The stop codes the simulator raises (values as in the Windows bug check reference).
pub mod codes {
    /// `IRQL_NOT_GREATER_OR_EQUAL`: raising to a lower IRQL, or an "at DPC level" routine
    /// below `DISPATCH_LEVEL`. P1 = object/lock address, P2 = current IRQL, P3 = the lowest
    /// allowed IRQL, P4 = routine id ([`super::routine`]).
    pub const IRQL_NOT_GREATER_OR_EQUAL: u32 = 0x09;
    /// `IRQL_NOT_LESS_OR_EQUAL`: a routine called above its maximum IRQL (including a wait
    /// with a non-zero timeout at `DISPATCH_LEVEL`). P1 = object address (or 0), P2 = current
    /// IRQL, P3 = the highest allowed IRQL, P4 = routine id ([`super::routine`]).
    pub const IRQL_NOT_LESS_OR_EQUAL: u32 = 0x0A;
    /// `SPIN_LOCK_ALREADY_OWNED`: acquiring a spin lock the thread already holds. P1 = lock.
    pub const SPIN_LOCK_ALREADY_OWNED: u32 = 0x0F;
    /// `SPIN_LOCK_NOT_OWNED`: releasing a spin lock the thread does not hold. P1 = lock.
    pub const SPIN_LOCK_NOT_OWNED: u32 = 0x10;
    /// `SYSTEM_THREAD_EXCEPTION_NOT_HANDLED`: a null or misaligned object pointer.
    /// P1 = `STATUS_ACCESS_VIOLATION` (null) or `STATUS_DATATYPE_MISALIGNMENT` (misaligned),
    /// P2 = 0, P3 = the pointer, P4 = routine id.
    pub const SYSTEM_THREAD_EXCEPTION_NOT_HANDLED: u32 = 0x7E;
    /// `BAD_POOL_CALLER`: P1 = 0x07 freeing a block that is not allocated (P2 = 0, P3 = 0,
    /// P4 = address); P1 = 0x0A freeing with the wrong tag (P2 = address, P3 = the block's
    /// tag, P4 = the tag passed).
    pub const BAD_POOL_CALLER: u32 = 0xC2;
    /// `DRIVER_VERIFIER_DETECTED_VIOLATION`: P1 = 0x62 pool leaked at unload (P2 = the first
    /// leaked tag, P3 = leaked bytes, P4 = leaked allocations); P1 = 0x00 zero-byte
    /// allocation; P1 = 0x02 non-paged allocation above `DISPATCH_LEVEL`; P1 = 0x12 free above
    /// `DISPATCH_LEVEL` (P2 = IRQL, P3 = 0, P4 = address).
    pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;
    /// `TIMER_OR_DPC_INVALID`: freeing pool holding a set timer (P1 = 0) or a queued or
    /// running DPC object (P1 = 1). P2 = object address, P3/P4 = freed range start/end.
    pub const TIMER_OR_DPC_INVALID: u32 = 0xC7;
    /// `IRQL_UNEXPECTED_VALUE`: a DPC routine or timer callback returned at an IRQL other than
    /// `DISPATCH_LEVEL`. P1 = (returned IRQL << 16) | expected IRQL, P2 = routine address.
    pub const IRQL_UNEXPECTED_VALUE: u32 = 0xC8;
    /// `DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS`: at unload a KTIMER is still
    /// set, a KDPC queued or running, or an `EX_TIMER` not deleted. P1 = object address,
    /// P2 = 0 timer / 1 DPC / 3 `EX_TIMER`.
    pub const DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS: u32 = 0xCE;
    /// `DPC_WATCHDOG_VIOLATION`: P1 = 0 one DPC ran longer than the budget, P1 = 1 one
    /// processor ran DPCs back to back for longer than the budget. P2 = time spent, P3 = the
    /// budget (both in clock ticks of `Config::time_increment`), P4 = 0.
    pub const DPC_WATCHDOG_VIOLATION: u32 = 0x133;
    /// `KERNEL_SECURITY_CHECK_FAILURE`: P1 = 3 (`FAST_FAIL_CORRUPT_LIST_ENTRY`) for an
    /// uninitialised object or the re-initialisation of a set timer / queued DPC (what would
    /// corrupt the kernel's lists), P1 = 5 (`FAST_FAIL_INVALID_ARG`) for an invalid argument
    /// (unknown timer type, negative period, ...). P2 = the object address, P3 = the bad
    /// value (or 0), P4 = routine id.
    pub const KERNEL_SECURITY_CHECK_FAILURE: u32 = 0x139;

    /// `WDF_VIOLATION`: the KMDF model's verifier (`crate::wdf`). P1 is one of the
    /// `WDF_*` values below: those up to 0x10 are the framework's own (`wdfbugcodes.h`),
    /// raised where real KMDF raises them; the `WDF_SIM_*` values (`0x5157_xxxx`) are the
    /// simulator's choice for misuse that real KMDF only reports with a verifier break into
    /// the debugger (`FxVerifierDbgBreakPoint`), never a bug check.
    pub const WDF_VIOLATION: u32 = 0x10D;
    /// `WDF_VIOLATION` P1 `WDF_REQUIRED_PARAMETER_IS_NULL`: P2 = which parameter (1-based),
    /// P3 = the DDI ([`super::wdf_ddi`]).
    pub const WDF_REQUIRED_PARAMETER_IS_NULL: u64 = 0x4;
    /// `WDF_VIOLATION` P1 `WDF_INVALID_HANDLE`: a NULL handle or one of the wrong type.
    /// P2 = the handle, P3 = the expected object type ([`super::wdf_object`]).
    pub const WDF_INVALID_HANDLE: u64 = 0x5;
    /// `WDF_VIOLATION` P1 `WDF_REQUEST_FATAL_ERROR`; P2 says which
    /// ([`WDF_REQUEST_FATAL_ERROR_INFORMATION_LENGTH_MISMATCH`]).
    pub const WDF_REQUEST_FATAL_ERROR: u64 = 0x6;
    /// `WDF_REQUEST_FATAL_ERROR` P2: a buffered IOCTL completed with success and more
    /// `Information` than its output buffer. P3 = the request, P4 = `Information`.
    pub const WDF_REQUEST_FATAL_ERROR_INFORMATION_LENGTH_MISMATCH: u64 = 0x4;
    /// `WDF_VIOLATION` P1 `WDF_OBJECT_ERROR`: framework objects still alive when the driver
    /// object is deleted at unload. P2 = one leaked handle, P3 = its object type, P4 = how
    /// many leaked.
    pub const WDF_OBJECT_ERROR: u64 = 0x7;
    /// Simulator's choice (real KMDF: verifier break, undefined behaviour after): a request
    /// handle used after its completion, or a handle that names no live object. P2 = the
    /// handle, P3 = the DDI.
    pub const WDF_SIM_STALE_HANDLE: u64 = 0x5157_0001;
    /// Simulator's choice (real KMDF: verifier break, then completes): a request completed
    /// while still marked cancelable (its cancel routine could then run on a completed
    /// request). P2 = the request.
    pub const WDF_SIM_COMPLETE_WHILE_CANCELABLE: u64 = 0x5157_0002;
    /// Simulator's choice (real KMDF: verifier break and `STATUS_INVALID_DEVICE_REQUEST`):
    /// `WdfRequestMarkCancelableEx` on a request already cancelable, or
    /// `WdfRequestUnmarkCancelable` on one never marked (or already unmarked). P2 = the
    /// request, P3 = the DDI.
    pub const WDF_SIM_CANCELABLE_STATE: u64 = 0x5157_0003;
    /// Simulator's choice (real KMDF: verifier break and `STATUS_INVALID_DEVICE_REQUEST`
    /// where the DDI returns a status): a DDI called above its documented IRQL. P2 = the
    /// IRQL, P3 = the maximum, P4 = the DDI.
    pub const WDF_SIM_DDI_IRQL: u64 = 0x5157_0004;
    /// Simulator's choice (real KMDF: the removal waits, with a verifier break after its
    /// timeout): a request still owned by the driver when device removal has waited
    /// [`crate::wdf::FrameworkConfig::removal_timeout`]. P2 = the request.
    pub const WDF_SIM_REQUEST_OWNED_AT_REMOVAL: u64 = 0x5157_0005;

    /// `KERNEL_SECURITY_CHECK_FAILURE` P1: corrupt list entry.
    pub const FAST_FAIL_CORRUPT_LIST_ENTRY: u64 = 3;
    /// `KERNEL_SECURITY_CHECK_FAILURE` P1: invalid argument.
    pub const FAST_FAIL_INVALID_ARG: u64 = 5;
    /// `DRIVER_VERIFIER_DETECTED_VIOLATION` P1: pool leaked at unload.
    pub const VERIFIER_POOL_LEAK: u64 = 0x62;

    /// The symbolic name of a stop code the simulator raises.
    #[must_use]
    pub fn name(code: u32) -> &'static str {
        match code {
            IRQL_NOT_GREATER_OR_EQUAL => "IRQL_NOT_GREATER_OR_EQUAL",
            IRQL_NOT_LESS_OR_EQUAL => "IRQL_NOT_LESS_OR_EQUAL",
            SPIN_LOCK_ALREADY_OWNED => "SPIN_LOCK_ALREADY_OWNED",
            SPIN_LOCK_NOT_OWNED => "SPIN_LOCK_NOT_OWNED",
            SYSTEM_THREAD_EXCEPTION_NOT_HANDLED => "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
            BAD_POOL_CALLER => "BAD_POOL_CALLER",
            DRIVER_VERIFIER_DETECTED_VIOLATION => "DRIVER_VERIFIER_DETECTED_VIOLATION",
            TIMER_OR_DPC_INVALID => "TIMER_OR_DPC_INVALID",
            IRQL_UNEXPECTED_VALUE => "IRQL_UNEXPECTED_VALUE",
            DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS => {
                "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS"
            }
            DPC_WATCHDOG_VIOLATION => "DPC_WATCHDOG_VIOLATION",
            KERNEL_SECURITY_CHECK_FAILURE => "KERNEL_SECURITY_CHECK_FAILURE",
            WDF_VIOLATION => "WDF_VIOLATION",
            _ => "driver-raised",
        }
    }
}

/// Stable numbers for the KMDF model's DDIs, carried in `WDF_VIOLATION` parameters.
pub mod wdf_ddi {
    /// `WdfDriverCreate`.
    pub const DRIVER_CREATE: u64 = 0x101;
    /// `WdfDeviceInitSetFileObjectConfig`.
    pub const DEVICE_INIT_SET_FILE_OBJECT_CONFIG: u64 = 0x102;
    /// `WdfDeviceInitSetRequestAttributes`.
    pub const DEVICE_INIT_SET_REQUEST_ATTRIBUTES: u64 = 0x103;
    /// `WdfDeviceInitAssignName`.
    pub const DEVICE_INIT_ASSIGN_NAME: u64 = 0x104;
    /// `WdfDeviceInitAssignSDDLString`.
    pub const DEVICE_INIT_ASSIGN_SDDL_STRING: u64 = 0x105;
    /// `WdfDeviceCreate`.
    pub const DEVICE_CREATE: u64 = 0x106;
    /// `WdfDeviceCreateDeviceInterface`.
    pub const DEVICE_CREATE_DEVICE_INTERFACE: u64 = 0x107;
    /// `WdfDeviceCreateSymbolicLink`.
    pub const DEVICE_CREATE_SYMBOLIC_LINK: u64 = 0x108;
    /// `WdfIoQueueCreate`.
    pub const IO_QUEUE_CREATE: u64 = 0x109;
    /// `WdfIoQueueGetDevice`.
    pub const IO_QUEUE_GET_DEVICE: u64 = 0x10A;
    /// `WdfFileObjectGetDevice`.
    pub const FILE_OBJECT_GET_DEVICE: u64 = 0x10B;
    /// `WdfFileObjectGetFileName`.
    pub const FILE_OBJECT_GET_FILE_NAME: u64 = 0x10C;
    /// `WdfRequestGetFileObject`.
    pub const REQUEST_GET_FILE_OBJECT: u64 = 0x10D;
    /// `WdfRequestRetrieveInputBuffer`.
    pub const REQUEST_RETRIEVE_INPUT_BUFFER: u64 = 0x10E;
    /// `WdfRequestRetrieveOutputBuffer`.
    pub const REQUEST_RETRIEVE_OUTPUT_BUFFER: u64 = 0x10F;
    /// `WdfRequestComplete` / `WdfRequestCompleteWithInformation`.
    pub const REQUEST_COMPLETE: u64 = 0x110;
    /// `WdfRequestMarkCancelableEx`.
    pub const REQUEST_MARK_CANCELABLE_EX: u64 = 0x111;
    /// `WdfRequestUnmarkCancelable`.
    pub const REQUEST_UNMARK_CANCELABLE: u64 = 0x112;
    /// `WdfObjectGetTypedContextWorker`.
    pub const OBJECT_GET_TYPED_CONTEXT_WORKER: u64 = 0x113;
}

/// The object types the KMDF model names in `WDF_VIOLATION` parameters.
pub mod wdf_object {
    /// A WDFDRIVER.
    pub const DRIVER: u64 = 1;
    /// A WDFDEVICE.
    pub const DEVICE: u64 = 2;
    /// A WDFQUEUE.
    pub const QUEUE: u64 = 3;
    /// A WDFFILEOBJECT.
    pub const FILE_OBJECT: u64 = 4;
    /// A WDFREQUEST.
    pub const REQUEST: u64 = 5;
    /// Any object (`WDFOBJECT`).
    pub const ANY: u64 = 0;
}

/// Stable numbers for the kernel routines, carried in bug check parameters (P4) so a test
/// can tell which call was refused.
pub mod routine {
    /// `KeInitializeTimer` / `KeInitializeTimerEx`.
    pub const KE_INITIALIZE_TIMER: u64 = 1;
    /// `KeSetTimer` / `KeSetTimerEx` / `KeSetCoalescableTimer`.
    pub const KE_SET_TIMER: u64 = 2;
    /// `KeCancelTimer`.
    pub const KE_CANCEL_TIMER: u64 = 3;
    /// `KeReadStateTimer`.
    pub const KE_READ_STATE_TIMER: u64 = 4;
    /// `KeInitializeDpc`.
    pub const KE_INITIALIZE_DPC: u64 = 5;
    /// `KeInsertQueueDpc`.
    pub const KE_INSERT_QUEUE_DPC: u64 = 6;
    /// `KeRemoveQueueDpc`.
    pub const KE_REMOVE_QUEUE_DPC: u64 = 7;
    /// `KeFlushQueuedDpcs`.
    pub const KE_FLUSH_QUEUED_DPCS: u64 = 8;
    /// `KeWaitForSingleObject`.
    pub const KE_WAIT_FOR_SINGLE_OBJECT: u64 = 9;
    /// `KeAcquireSpinLockRaiseToDpc` / `KeAcquireSpinLockAtDpcLevel`.
    pub const KE_ACQUIRE_SPIN_LOCK: u64 = 10;
    /// `KeReleaseSpinLock` / `KeReleaseSpinLockFromDpcLevel`.
    pub const KE_RELEASE_SPIN_LOCK: u64 = 11;
    /// `KeRaiseIrql` / `KeLowerIrql`.
    pub const KE_RAISE_LOWER_IRQL: u64 = 12;
    /// `ExAllocatePool2`.
    pub const EX_ALLOCATE_POOL: u64 = 13;
    /// `ExFreePoolWithTag`.
    pub const EX_FREE_POOL: u64 = 14;
    /// `ExAllocateTimer`.
    pub const EX_ALLOCATE_TIMER: u64 = 15;
    /// `ExSetTimer`.
    pub const EX_SET_TIMER: u64 = 16;
    /// `ExCancelTimer`.
    pub const EX_CANCEL_TIMER: u64 = 17;
    /// `ExDeleteTimer`.
    pub const EX_DELETE_TIMER: u64 = 18;
    /// `KeInitializeSpinLock`.
    pub const KE_INITIALIZE_SPIN_LOCK: u64 = 19;
    /// `KeQuery*` time routines.
    pub const KE_QUERY_TIME: u64 = 20;
}
