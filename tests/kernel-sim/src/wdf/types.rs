//! The KMDF 1.33 names the driver's KMDF shell uses, spelled as wdk-sys' bindgen output
//! spells them (wdk-build's configuration: `ModuleConsts` enums, `derive_default`,
//! `Option<unsafe extern "C" fn ..>` callbacks, `size_t` as `usize`, handles as pointers to
//! opaque `X__` structures from `WDF_DECLARE_HANDLE`), so that the seam can `pub use` the
//! same list from either crate. Field order and types follow `wdfdriver.h`, `wdfobject.h`,
//! `wdffileobject.h` and `wdfio.h` of KMDF 1.33 (Windows-Driver-Frameworks,
//! `src/publicinc/wdf/kmdf/1.33/`).

#![expect(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    reason = "type, field and constant names mirror the KMDF headers as wdk-sys' bindgen emits them"
)]

use core::ffi::c_void;

use crate::types::{NTSTATUS, PVOID, ULONG};

/// `USHORT`.
pub type USHORT = u16;
/// `WCHAR`.
pub type WCHAR = u16;
/// `CHAR`.
pub type CHAR = i8;
/// `PWCH`.
pub type PWCH = *mut WCHAR;
/// `LPCSTR`.
pub type LPCSTR = *const CHAR;

/// `GUID`.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq)]
pub struct _GUID {
    /// First 32 bits.
    pub Data1: u32,
    /// Next 16 bits.
    pub Data2: u16,
    /// Next 16 bits.
    pub Data3: u16,
    /// Last 64 bits.
    pub Data4: [u8; 8],
}
/// `GUID`.
pub type GUID = _GUID;

/// `UNICODE_STRING`: a counted UTF-16 string (`Length` and `MaximumLength` in bytes).
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _UNICODE_STRING {
    /// Bytes in use.
    pub Length: USHORT,
    /// Bytes of `Buffer`.
    pub MaximumLength: USHORT,
    /// The characters (no terminator required).
    pub Buffer: PWCH,
}
/// `UNICODE_STRING`.
pub type UNICODE_STRING = _UNICODE_STRING;
/// Pointer to a `UNICODE_STRING`.
pub type PUNICODE_STRING = *mut _UNICODE_STRING;
/// Pointer to a constant `UNICODE_STRING`.
pub type PCUNICODE_STRING = *const _UNICODE_STRING;

impl Default for _UNICODE_STRING {
    fn default() -> Self {
        Self {
            Length: 0,
            MaximumLength: 0,
            Buffer: core::ptr::null_mut(),
        }
    }
}

/// `DRIVER_OBJECT`: opaque here (the shell only passes the pointer to `WdfDriverCreate`);
/// the simulated I/O manager allocates one per loaded driver.
#[repr(C)]
#[derive(Debug, Default)]
pub struct _DRIVER_OBJECT {
    _opaque: [u64; 2],
}
/// `DRIVER_OBJECT`.
pub type DRIVER_OBJECT = _DRIVER_OBJECT;
/// Pointer to a `DRIVER_OBJECT`.
pub type PDRIVER_OBJECT = *mut _DRIVER_OBJECT;

/// `WDF_DECLARE_HANDLE(X)`: `typedef struct X__ *X;`.
macro_rules! wdf_handle {
    ($handle:ident, $target:ident, $doc:literal) => {
        #[doc = concat!("The opaque structure a `", stringify!($handle), "` points to.")]
        #[repr(C)]
        #[derive(Debug)]
        pub struct $target {
            _unused: [u8; 0],
        }
        #[doc = $doc]
        pub type $handle = *mut $target;
    };
}
wdf_handle!(WDFDRIVER, WDFDRIVER__, "A framework driver object handle.");
wdf_handle!(WDFDEVICE, WDFDEVICE__, "A framework device object handle.");
wdf_handle!(WDFQUEUE, WDFQUEUE__, "A framework I/O queue handle.");
wdf_handle!(WDFREQUEST, WDFREQUEST__, "A framework request handle.");
wdf_handle!(
    WDFFILEOBJECT,
    WDFFILEOBJECT__,
    "A framework file object handle."
);
wdf_handle!(WDFOBJECT, WDFOBJECT__, "Any framework object handle.");

/// `WDFDEVICE_INIT`: opaque; handed to `EvtDriverDeviceAdd`, consumed by `WdfDeviceCreate`.
#[repr(C)]
#[derive(Debug)]
pub struct WDFDEVICE_INIT {
    _unused: [u8; 0],
}
/// Pointer to a `WDFDEVICE_INIT`.
pub type PWDFDEVICE_INIT = *mut WDFDEVICE_INIT;

/// `enum _WDF_EXECUTION_LEVEL` (bindgen `ModuleConsts`).
pub mod _WDF_EXECUTION_LEVEL {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// Not initialised.
    pub const WdfExecutionLevelInvalid: Type = 0;
    /// The parent's level.
    pub const WdfExecutionLevelInheritFromParent: Type = 1;
    /// Callbacks at `PASSIVE_LEVEL`.
    pub const WdfExecutionLevelPassive: Type = 2;
    /// Callbacks at `<= DISPATCH_LEVEL`.
    pub const WdfExecutionLevelDispatch: Type = 3;
}
/// `WDF_EXECUTION_LEVEL`.
pub type WDF_EXECUTION_LEVEL = _WDF_EXECUTION_LEVEL::Type;

/// `enum _WDF_SYNCHRONIZATION_SCOPE` (bindgen `ModuleConsts`).
pub mod _WDF_SYNCHRONIZATION_SCOPE {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// Not initialised.
    pub const WdfSynchronizationScopeInvalid: Type = 0;
    /// The parent's scope.
    pub const WdfSynchronizationScopeInheritFromParent: Type = 1;
    /// One lock per device.
    pub const WdfSynchronizationScopeDevice: Type = 2;
    /// One lock per queue.
    pub const WdfSynchronizationScopeQueue: Type = 3;
    /// No framework locking.
    pub const WdfSynchronizationScopeNone: Type = 4;
}
/// `WDF_SYNCHRONIZATION_SCOPE`.
pub type WDF_SYNCHRONIZATION_SCOPE = _WDF_SYNCHRONIZATION_SCOPE::Type;

/// `enum _WDF_TRI_STATE` (bindgen `ModuleConsts`).
pub mod _WDF_TRI_STATE {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// False.
    pub const WdfFalse: Type = 0;
    /// True.
    pub const WdfTrue: Type = 1;
    /// The framework's default.
    pub const WdfUseDefault: Type = 2;
}
/// `WDF_TRI_STATE`.
pub type WDF_TRI_STATE = _WDF_TRI_STATE::Type;

/// `enum _WDF_FILEOBJECT_CLASS` (bindgen `ModuleConsts`).
pub mod _WDF_FILEOBJECT_CLASS {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// Not initialised.
    pub const WdfFileObjectInvalid: Type = 0;
    /// No framework file object.
    pub const WdfFileObjectNotRequired: Type = 1;
    /// The framework may use `FsContext`.
    pub const WdfFileObjectWdfCanUseFsContext: Type = 2;
    /// The framework may use `FsContext2`.
    pub const WdfFileObjectWdfCanUseFsContext2: Type = 3;
    /// The framework keeps its own map.
    pub const WdfFileObjectWdfCannotUseFsContexts: Type = 4;
}
/// `WDF_FILEOBJECT_CLASS`.
pub type WDF_FILEOBJECT_CLASS = _WDF_FILEOBJECT_CLASS::Type;

/// `enum _WDF_IO_QUEUE_DISPATCH_TYPE` (bindgen `ModuleConsts`).
pub mod _WDF_IO_QUEUE_DISPATCH_TYPE {
    /// The enum's representation.
    pub type Type = core::ffi::c_int;
    /// Not initialised.
    pub const WdfIoQueueDispatchInvalid: Type = 0;
    /// One driver-owned request at a time.
    pub const WdfIoQueueDispatchSequential: Type = 1;
    /// Requests presented as they arrive.
    pub const WdfIoQueueDispatchParallel: Type = 2;
    /// The driver pulls requests.
    pub const WdfIoQueueDispatchManual: Type = 3;
}
/// `WDF_IO_QUEUE_DISPATCH_TYPE`.
pub type WDF_IO_QUEUE_DISPATCH_TYPE = _WDF_IO_QUEUE_DISPATCH_TYPE::Type;

/// `PFN_WDF_DRIVER_DEVICE_ADD`.
pub type PFN_WDF_DRIVER_DEVICE_ADD =
    Option<unsafe extern "C" fn(Driver: WDFDRIVER, DeviceInit: PWDFDEVICE_INIT) -> NTSTATUS>;
/// `PFN_WDF_DRIVER_UNLOAD`.
pub type PFN_WDF_DRIVER_UNLOAD = Option<unsafe extern "C" fn(Driver: WDFDRIVER)>;
/// `PFN_WDF_OBJECT_CONTEXT_CLEANUP`.
pub type PFN_WDF_OBJECT_CONTEXT_CLEANUP = Option<unsafe extern "C" fn(Object: WDFOBJECT)>;
/// `PFN_WDF_OBJECT_CONTEXT_DESTROY`.
pub type PFN_WDF_OBJECT_CONTEXT_DESTROY = Option<unsafe extern "C" fn(Object: WDFOBJECT)>;
/// `PFN_WDF_DEVICE_FILE_CREATE`.
pub type PFN_WDF_DEVICE_FILE_CREATE =
    Option<unsafe extern "C" fn(Device: WDFDEVICE, Request: WDFREQUEST, FileObject: WDFFILEOBJECT)>;
/// `PFN_WDF_FILE_CLOSE`.
pub type PFN_WDF_FILE_CLOSE = Option<unsafe extern "C" fn(FileObject: WDFFILEOBJECT)>;
/// `PFN_WDF_FILE_CLEANUP`.
pub type PFN_WDF_FILE_CLEANUP = Option<unsafe extern "C" fn(FileObject: WDFFILEOBJECT)>;
/// `PFN_WDF_IO_QUEUE_IO_DEFAULT`.
pub type PFN_WDF_IO_QUEUE_IO_DEFAULT =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST)>;
/// `PFN_WDF_IO_QUEUE_IO_READ`.
pub type PFN_WDF_IO_QUEUE_IO_READ =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST, Length: usize)>;
/// `PFN_WDF_IO_QUEUE_IO_WRITE`.
pub type PFN_WDF_IO_QUEUE_IO_WRITE = PFN_WDF_IO_QUEUE_IO_READ;
/// `PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL`.
pub type PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL = Option<
    unsafe extern "C" fn(
        Queue: WDFQUEUE,
        Request: WDFREQUEST,
        OutputBufferLength: usize,
        InputBufferLength: usize,
        IoControlCode: ULONG,
    ),
>;
/// `PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL`.
pub type PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL = PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL;
/// `PFN_WDF_IO_QUEUE_IO_STOP`.
pub type PFN_WDF_IO_QUEUE_IO_STOP =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST, ActionFlags: ULONG)>;
/// `PFN_WDF_IO_QUEUE_IO_RESUME`.
pub type PFN_WDF_IO_QUEUE_IO_RESUME =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST)>;
/// `PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE`.
pub type PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST)>;
/// `PFN_WDF_REQUEST_CANCEL`.
pub type PFN_WDF_REQUEST_CANCEL = Option<unsafe extern "C" fn(Request: WDFREQUEST)>;
/// `PFN_GET_UNIQUE_CONTEXT_TYPE`.
pub type PFN_GET_UNIQUE_CONTEXT_TYPE =
    Option<unsafe extern "C" fn() -> PCWDF_OBJECT_CONTEXT_TYPE_INFO>;

/// `WDF_OBJECT_CONTEXT_TYPE_INFO`: a context type; the framework identifies it by the
/// address in `UniqueType`.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_OBJECT_CONTEXT_TYPE_INFO {
    /// `sizeof` this structure.
    pub Size: ULONG,
    /// The type's name (for the debugger).
    pub ContextName: LPCSTR,
    /// Bytes of context.
    pub ContextSize: usize,
    /// The address that identifies the type.
    pub UniqueType: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
    /// For types declared across images.
    pub EvtDriverGetUniqueContextType: PFN_GET_UNIQUE_CONTEXT_TYPE,
}
/// `WDF_OBJECT_CONTEXT_TYPE_INFO`.
pub type WDF_OBJECT_CONTEXT_TYPE_INFO = _WDF_OBJECT_CONTEXT_TYPE_INFO;
/// Pointer to a constant `WDF_OBJECT_CONTEXT_TYPE_INFO`.
pub type PCWDF_OBJECT_CONTEXT_TYPE_INFO = *const _WDF_OBJECT_CONTEXT_TYPE_INFO;

/// bindgen's `derive_default` for structures with pointers: an all-zero value.
macro_rules! zeroed_default {
    ($type:ty) => {
        impl Default for $type {
            fn default() -> Self {
                // SAFETY: every field is an integer, a raw pointer, a union of integers or
                // an `Option` of a function pointer: all-zero bytes are valid for each.
                unsafe { core::mem::zeroed() }
            }
        }
    };
}

/// `WDF_DRIVER_CONFIG`.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_DRIVER_CONFIG {
    /// `sizeof` this structure.
    pub Size: ULONG,
    /// `EvtDriverDeviceAdd`.
    pub EvtDriverDeviceAdd: PFN_WDF_DRIVER_DEVICE_ADD,
    /// `EvtDriverUnload`.
    pub EvtDriverUnload: PFN_WDF_DRIVER_UNLOAD,
    /// `WdfDriverInitNonPnpDriver` and friends.
    pub DriverInitFlags: ULONG,
    /// Tag of the framework's allocations for the driver.
    pub DriverPoolTag: ULONG,
}
/// `WDF_DRIVER_CONFIG`.
pub type WDF_DRIVER_CONFIG = _WDF_DRIVER_CONFIG;
/// Pointer to a `WDF_DRIVER_CONFIG`.
pub type PWDF_DRIVER_CONFIG = *mut _WDF_DRIVER_CONFIG;
zeroed_default!(_WDF_DRIVER_CONFIG);

/// `WDF_OBJECT_ATTRIBUTES`.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_OBJECT_ATTRIBUTES {
    /// `sizeof` this structure.
    pub Size: ULONG,
    /// Called when the object is deleted, children first.
    pub EvtCleanupCallback: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    /// Called when the object's memory goes.
    pub EvtDestroyCallback: PFN_WDF_OBJECT_CONTEXT_DESTROY,
    /// Callback IRQL.
    pub ExecutionLevel: WDF_EXECUTION_LEVEL,
    /// Callback locking.
    pub SynchronizationScope: WDF_SYNCHRONIZATION_SCOPE,
    /// The parent (must be null for the objects this driver creates).
    pub ParentObject: WDFOBJECT,
    /// Context size instead of the type's.
    pub ContextSizeOverride: usize,
    /// The context type.
    pub ContextTypeInfo: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
}
/// `WDF_OBJECT_ATTRIBUTES`.
pub type WDF_OBJECT_ATTRIBUTES = _WDF_OBJECT_ATTRIBUTES;
/// Pointer to `WDF_OBJECT_ATTRIBUTES`.
pub type PWDF_OBJECT_ATTRIBUTES = *mut _WDF_OBJECT_ATTRIBUTES;
zeroed_default!(_WDF_OBJECT_ATTRIBUTES);

/// `WDF_FILEOBJECT_CONFIG`.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_FILEOBJECT_CONFIG {
    /// `sizeof` this structure.
    pub Size: ULONG,
    /// `EvtDeviceFileCreate`.
    pub EvtDeviceFileCreate: PFN_WDF_DEVICE_FILE_CREATE,
    /// `EvtFileClose`.
    pub EvtFileClose: PFN_WDF_FILE_CLOSE,
    /// `EvtFileCleanup`.
    pub EvtFileCleanup: PFN_WDF_FILE_CLEANUP,
    /// Forward cleanup/close to the next driver (filters).
    pub AutoForwardCleanupClose: WDF_TRI_STATE,
    /// How the framework finds its file object.
    pub FileObjectClass: WDF_FILEOBJECT_CLASS,
}
/// `WDF_FILEOBJECT_CONFIG`.
pub type WDF_FILEOBJECT_CONFIG = _WDF_FILEOBJECT_CONFIG;
/// Pointer to a `WDF_FILEOBJECT_CONFIG`.
pub type PWDF_FILEOBJECT_CONFIG = *mut _WDF_FILEOBJECT_CONFIG;
zeroed_default!(_WDF_FILEOBJECT_CONFIG);

/// `WDF_IO_QUEUE_CONFIG::Settings.Parallel`.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_IO_QUEUE_CONFIG__bindgen_ty_1__bindgen_ty_1 {
    /// Cap on presented requests (`(ULONG)-1`: none).
    pub NumberOfPresentedRequests: ULONG,
}
/// `WDF_IO_QUEUE_CONFIG::Settings`.
#[repr(C)]
#[derive(Copy, Clone)]
pub union _WDF_IO_QUEUE_CONFIG__bindgen_ty_1 {
    /// Parallel-queue settings.
    pub Parallel: _WDF_IO_QUEUE_CONFIG__bindgen_ty_1__bindgen_ty_1,
}
impl core::fmt::Debug for _WDF_IO_QUEUE_CONFIG__bindgen_ty_1 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("_WDF_IO_QUEUE_CONFIG__bindgen_ty_1")
    }
}

/// `WDF_IO_QUEUE_CONFIG`.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_IO_QUEUE_CONFIG {
    /// `sizeof` this structure.
    pub Size: ULONG,
    /// Sequential, parallel or manual.
    pub DispatchType: WDF_IO_QUEUE_DISPATCH_TYPE,
    /// Stops with the device's power state.
    pub PowerManaged: WDF_TRI_STATE,
    /// Present zero-length reads and writes.
    pub AllowZeroLengthRequests: u8,
    /// The device's default queue.
    pub DefaultQueue: u8,
    /// `EvtIoDefault`.
    pub EvtIoDefault: PFN_WDF_IO_QUEUE_IO_DEFAULT,
    /// `EvtIoRead`.
    pub EvtIoRead: PFN_WDF_IO_QUEUE_IO_READ,
    /// `EvtIoWrite`.
    pub EvtIoWrite: PFN_WDF_IO_QUEUE_IO_WRITE,
    /// `EvtIoDeviceControl`.
    pub EvtIoDeviceControl: PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    /// `EvtIoInternalDeviceControl`.
    pub EvtIoInternalDeviceControl: PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL,
    /// `EvtIoStop`.
    pub EvtIoStop: PFN_WDF_IO_QUEUE_IO_STOP,
    /// `EvtIoResume`.
    pub EvtIoResume: PFN_WDF_IO_QUEUE_IO_RESUME,
    /// `EvtIoCanceledOnQueue`.
    pub EvtIoCanceledOnQueue: PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE,
    /// Dispatch-type settings.
    pub Settings: _WDF_IO_QUEUE_CONFIG__bindgen_ty_1,
    /// The driver (set by the framework).
    pub Driver: WDFDRIVER,
}
/// `WDF_IO_QUEUE_CONFIG`.
pub type WDF_IO_QUEUE_CONFIG = _WDF_IO_QUEUE_CONFIG;
/// Pointer to a `WDF_IO_QUEUE_CONFIG`.
pub type PWDF_IO_QUEUE_CONFIG = *mut _WDF_IO_QUEUE_CONFIG;
zeroed_default!(_WDF_IO_QUEUE_CONFIG);

/// `WDF_NO_OBJECT_ATTRIBUTES` (wdk-sys' `constants.rs`).
pub const WDF_NO_OBJECT_ATTRIBUTES: PWDF_OBJECT_ATTRIBUTES = core::ptr::null_mut();
/// `WDF_NO_HANDLE` (wdk-sys' `constants.rs`).
pub const WDF_NO_HANDLE: PVOID = core::ptr::null_mut::<c_void>();

/// `NT_SUCCESS`: a success or informational status.
#[must_use]
pub const fn NT_SUCCESS(nt_status: NTSTATUS) -> bool {
    nt_status >= 0
}

/// `STATUS_OBJECT_NAME_NOT_FOUND`.
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = 0xC000_0034_u32.cast_signed();
/// `STATUS_OBJECT_NAME_COLLISION`.
pub const STATUS_OBJECT_NAME_COLLISION: NTSTATUS = 0xC000_0035_u32.cast_signed();
/// `STATUS_INFO_LENGTH_MISMATCH`.
pub const STATUS_INFO_LENGTH_MISMATCH: NTSTATUS = 0xC000_0004_u32.cast_signed();
/// `STATUS_INVALID_SECURITY_DESCR`.
pub const STATUS_INVALID_SECURITY_DESCR: NTSTATUS = 0xC000_0079_u32.cast_signed();
/// `STATUS_NO_SUCH_DEVICE`.
pub const STATUS_NO_SUCH_DEVICE: NTSTATUS = 0xC000_000E_u32.cast_signed();
/// `STATUS_DRIVER_INTERNAL_ERROR`.
pub const STATUS_DRIVER_INTERNAL_ERROR: NTSTATUS = 0xC000_0183_u32.cast_signed();
