//! The wdk-sys mirror: scalar types, object types, callback types and constants, spelled the
//! way wdk-sys 0.5's bindgen output spells them (so the driver's seam can `pub use` either).
//!
//! Objects the kernel links into its own lists (`KTIMER`, `KDPC`) are opaque here: the
//! simulator keeps their state in the kernel, keyed by address, and only writes a signature
//! into the object at initialisation (see `kernel::signature`).

#![expect(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    reason = "type, field and constant names mirror the WDK headers as wdk-sys' bindgen emits them"
)]

use core::ffi::c_void;

/// `BOOLEAN` (an 8-bit truth value; `TRUE`/`FALSE`).
pub type BOOLEAN = u8;
/// `UCHAR`.
pub type UCHAR = u8;
/// `CCHAR`.
pub type CCHAR = i8;
/// `KIRQL`: an interrupt request level.
pub type KIRQL = u8;
/// Pointer to a `KIRQL`.
pub type PKIRQL = *mut KIRQL;
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
/// Pointer to a `ULONG64`.
pub type PULONG64 = *mut ULONG64;
/// `ULONG_PTR` (x64: 64 bits).
pub type ULONG_PTR = u64;
/// `SIZE_T` (x64: 64 bits).
pub type SIZE_T = u64;
/// `NTSTATUS`.
pub type NTSTATUS = i32;
/// `PVOID`.
pub type PVOID = *mut c_void;
/// `POOL_FLAGS` (for `ExAllocatePool2`).
pub type POOL_FLAGS = u64;
/// `KSPIN_LOCK`: the spin lock word.
pub type KSPIN_LOCK = ULONG_PTR;
/// Pointer to a `KSPIN_LOCK`.
pub type PKSPIN_LOCK = *mut KSPIN_LOCK;
/// `KPROCESSOR_MODE`.
pub type KPROCESSOR_MODE = CCHAR;

/// `#define PASSIVE_LEVEL 0`.
pub const PASSIVE_LEVEL: u32 = 0;
/// `#define LOW_LEVEL 0`.
pub const LOW_LEVEL: u32 = 0;
/// `#define APC_LEVEL 1`.
pub const APC_LEVEL: u32 = 1;
/// `#define DISPATCH_LEVEL 2`.
pub const DISPATCH_LEVEL: u32 = 2;
/// `#define CLOCK_LEVEL 13` (x64).
pub const CLOCK_LEVEL: u32 = 13;
/// `#define HIGH_LEVEL 15` (x64).
pub const HIGH_LEVEL: u32 = 15;
/// `#define TRUE 1`.
pub const TRUE: u32 = 1;
/// `#define FALSE 0`.
pub const FALSE: u32 = 0;
/// `#define EX_TIMER_HIGH_RESOLUTION 0x4`: expire at the due time, not on the next tick.
pub const EX_TIMER_HIGH_RESOLUTION: u32 = 4;
/// `#define EX_TIMER_NO_WAKE 0x8`: do not wake the processor from idle for this timer.
pub const EX_TIMER_NO_WAKE: u32 = 8;
/// `#define MAXLONG 0x7fffffff`.
pub const MAXLONG: u32 = 0x7fff_ffff;

/// `POOL_FLAG_USE_QUOTA`.
pub const POOL_FLAG_USE_QUOTA: POOL_FLAGS = 0x0000_0000_0000_0001;
/// `POOL_FLAG_UNINITIALIZED`: the simulator fills such blocks with `0xCD` instead of zero.
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;
/// `POOL_FLAG_CACHE_ALIGNED`.
pub const POOL_FLAG_CACHE_ALIGNED: POOL_FLAGS = 0x0000_0000_0000_0008;
/// `POOL_FLAG_RAISE_ON_FAILURE`.
pub const POOL_FLAG_RAISE_ON_FAILURE: POOL_FLAGS = 0x0000_0000_0000_0020;
/// `POOL_FLAG_NON_PAGED`: non-paged, no-execute pool.
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
/// `POOL_FLAG_NON_PAGED_EXECUTE`.
pub const POOL_FLAG_NON_PAGED_EXECUTE: POOL_FLAGS = 0x0000_0000_0000_0080;
/// `POOL_FLAG_PAGED`.
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0000_0000_0100;

/// `STATUS_SUCCESS`.
pub const STATUS_SUCCESS: NTSTATUS = 0_i32;
/// `STATUS_USER_APC`.
pub const STATUS_USER_APC: NTSTATUS = 192_i32;
/// `STATUS_ALERTED`.
pub const STATUS_ALERTED: NTSTATUS = 257_i32;
/// `STATUS_TIMEOUT`.
pub const STATUS_TIMEOUT: NTSTATUS = 258_i32;
/// `STATUS_PENDING`.
pub const STATUS_PENDING: NTSTATUS = 259_i32;
/// `STATUS_DATATYPE_MISALIGNMENT`.
pub const STATUS_DATATYPE_MISALIGNMENT: NTSTATUS = -2_147_483_646_i32;
/// `STATUS_DEVICE_BUSY`.
pub const STATUS_DEVICE_BUSY: NTSTATUS = -2_147_483_631_i32;
/// `STATUS_UNSUCCESSFUL`.
pub const STATUS_UNSUCCESSFUL: NTSTATUS = -1_073_741_823_i32;
/// `STATUS_ACCESS_VIOLATION`.
pub const STATUS_ACCESS_VIOLATION: NTSTATUS = -1_073_741_819_i32;
/// `STATUS_INVALID_HANDLE`.
pub const STATUS_INVALID_HANDLE: NTSTATUS = -1_073_741_816_i32;
/// `STATUS_INVALID_PARAMETER`.
pub const STATUS_INVALID_PARAMETER: NTSTATUS = -1_073_741_811_i32;
/// `STATUS_INVALID_DEVICE_REQUEST`.
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = -1_073_741_808_i32;
/// `STATUS_NO_MEMORY`.
pub const STATUS_NO_MEMORY: NTSTATUS = -1_073_741_801_i32;
/// `STATUS_BUFFER_TOO_SMALL`.
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = -1_073_741_789_i32;
/// `STATUS_QUOTA_EXCEEDED`.
pub const STATUS_QUOTA_EXCEEDED: NTSTATUS = -1_073_741_756_i32;
/// `STATUS_DELETE_PENDING`.
pub const STATUS_DELETE_PENDING: NTSTATUS = -1_073_741_738_i32;
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = -1_073_741_670_i32;
/// `STATUS_NOT_SUPPORTED`.
pub const STATUS_NOT_SUPPORTED: NTSTATUS = -1_073_741_637_i32;
/// `STATUS_CANCELLED`.
pub const STATUS_CANCELLED: NTSTATUS = -1_073_741_536_i32;
/// `STATUS_INVALID_DEVICE_STATE`.
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = -1_073_741_436_i32;
/// `STATUS_INVALID_BUFFER_SIZE`.
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = -1_073_741_306_i32;
/// `STATUS_NOT_FOUND`.
pub const STATUS_NOT_FOUND: NTSTATUS = -1_073_741_275_i32;

/// `enum _TIMER_TYPE` (bindgen `ModuleConsts`).
pub mod _TIMER_TYPE {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// Signaled until explicitly reset: releases every waiter.
    pub const NotificationTimer: Type = 0;
    /// Releases one waiter, then resets itself to Not-Signaled.
    pub const SynchronizationTimer: Type = 1;
}
pub use _TIMER_TYPE::Type as TIMER_TYPE;

/// `enum _KWAIT_REASON` (bindgen `ModuleConsts`; the values a driver uses).
pub mod _KWAIT_REASON {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// `Executive`: the usual reason for a driver's wait.
    pub const Executive: Type = 0;
    /// `FreePage`.
    pub const FreePage: Type = 1;
    /// `PageIn`.
    pub const PageIn: Type = 2;
    /// `PoolAllocation`.
    pub const PoolAllocation: Type = 3;
    /// `DelayExecution`.
    pub const DelayExecution: Type = 4;
    /// `Suspended`.
    pub const Suspended: Type = 5;
    /// `UserRequest`.
    pub const UserRequest: Type = 6;
}
pub use _KWAIT_REASON::Type as KWAIT_REASON;

/// `enum _MODE` (bindgen `ModuleConsts`).
pub mod _MODE {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// `KernelMode`.
    pub const KernelMode: Type = 0;
    /// `UserMode`.
    pub const UserMode: Type = 1;
    /// `MaximumMode`.
    pub const MaximumMode: Type = 2;
}
pub use _MODE::Type as MODE;

/// `_LARGE_INTEGER`'s `{ LowPart, HighPart }` view.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq)]
pub struct _LARGE_INTEGER__bindgen_ty_1 {
    /// Low 32 bits.
    pub LowPart: ULONG,
    /// High 32 bits.
    pub HighPart: LONG,
}

/// `_LARGE_INTEGER`'s named `u` view (same layout as the anonymous one).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq)]
pub struct _LARGE_INTEGER__bindgen_ty_2 {
    /// Low 32 bits.
    pub LowPart: ULONG,
    /// High 32 bits.
    pub HighPart: LONG,
}

/// `union _LARGE_INTEGER`: a 64-bit signed integer; time values are in 100 ns units.
#[repr(C)]
#[derive(Copy, Clone)]
pub union _LARGE_INTEGER {
    /// The anonymous `{ LowPart, HighPart }` view.
    pub __bindgen_anon_1: _LARGE_INTEGER__bindgen_ty_1,
    /// The named `u` view.
    pub u: _LARGE_INTEGER__bindgen_ty_2,
    /// The whole value.
    pub QuadPart: LONGLONG,
}

impl Default for _LARGE_INTEGER {
    fn default() -> Self {
        Self { QuadPart: 0 }
    }
}

impl core::fmt::Debug for _LARGE_INTEGER {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: every bit pattern of the union is a valid i64, and all views are plain data.
        let value = unsafe { self.QuadPart };
        f.debug_struct("_LARGE_INTEGER")
            .field("QuadPart", &value)
            .finish()
    }
}

/// `LARGE_INTEGER`.
pub type LARGE_INTEGER = _LARGE_INTEGER;
/// Pointer to a `LARGE_INTEGER`.
pub type PLARGE_INTEGER = *mut _LARGE_INTEGER;

/// `struct _KTIMER`: opaque, with the real x64 size (64 bytes) and alignment (8).
///
/// The simulator keeps the timer's state in the kernel; at initialisation it writes a
/// signature into this storage, which is how it tells an initialised timer from garbage.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _KTIMER {
    _opaque: [u64; 8],
}

/// `KTIMER`.
pub type KTIMER = _KTIMER;
/// Pointer to a `KTIMER`.
pub type PKTIMER = *mut _KTIMER;
/// Pointer to a `KTIMER` (restricted).
pub type PRKTIMER = *mut _KTIMER;

/// `struct _KDPC`: opaque, with the real x64 size (64 bytes) and alignment (8).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _KDPC {
    _opaque: [u64; 8],
}

/// `KDPC`.
pub type KDPC = _KDPC;
/// Pointer to a `KDPC`.
pub type PKDPC = *mut _KDPC;
/// Pointer to a `KDPC` (restricted).
pub type PRKDPC = *mut _KDPC;

/// `struct _EX_TIMER`: opaque; only ever handled through the pointer `ExAllocateTimer`
/// returns.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _EX_TIMER {
    _unused: [u8; 0],
}

/// Convenience alias: the WDK headers declare only `struct _EX_TIMER` and `PEX_TIMER`, so
/// wdk-sys has no `EX_TIMER`; code meant to compile against both uses `PEX_TIMER`.
pub type EX_TIMER = _EX_TIMER;
/// Pointer to an `EX_TIMER`.
pub type PEX_TIMER = *mut _EX_TIMER;

/// `struct _EXT_SET_PARAMETERS_V0` (`ExInitializeSetTimerParameters` zeroes it).
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq)]
pub struct _EXT_SET_PARAMETERS_V0 {
    /// Structure version (0).
    pub Version: ULONG,
    /// Reserved.
    pub Reserved: ULONG,
    /// Tolerance for no-wake timers, in 100 ns units.
    pub NoWakeTolerance: LONGLONG,
}

/// `EXT_SET_PARAMETERS`.
pub type EXT_SET_PARAMETERS = _EXT_SET_PARAMETERS_V0;
/// Pointer to `EXT_SET_PARAMETERS`.
pub type PEXT_SET_PARAMETERS = *mut _EXT_SET_PARAMETERS_V0;

/// `PKDEFERRED_ROUTINE`: a DPC routine, called at `DISPATCH_LEVEL`.
pub type PKDEFERRED_ROUTINE = Option<
    unsafe extern "C" fn(
        Dpc: *mut _KDPC,
        DeferredContext: PVOID,
        SystemArgument1: PVOID,
        SystemArgument2: PVOID,
    ),
>;

/// `PEXT_CALLBACK`: an `ExAllocateTimer` callback, called at `DISPATCH_LEVEL`.
pub type PEXT_CALLBACK = Option<unsafe extern "C" fn(Timer: PEX_TIMER, Context: PVOID)>;

/// The real x64 layouts.
const _: () = assert!(core::mem::size_of::<KTIMER>() == 64 && core::mem::align_of::<KTIMER>() == 8);
const _: () = assert!(core::mem::size_of::<KDPC>() == 64 && core::mem::align_of::<KDPC>() == 8);
const _: () = assert!(core::mem::size_of::<LARGE_INTEGER>() == 8);
