//! A stand-in for wdk-sys 0.5.1 with the KMDF 1.33 bindings, reduced to what the KMDF shell
//! uses, so that `driver/src/kmdf` can be type-checked and linted on a host without a WDK.
//!
//! Every item has the shape bindgen gives it under wdk-build 0.5.1's configuration
//! (`ModuleConsts` enums, `derive_default`, `Option<unsafe extern "C" fn ..>` callbacks,
//! `size_t` as `usize`), transcribed from: the wdk-sys/wdk-macros 0.5.1 sources and the
//! `call_unsafe_wdf_function_binding!` expansions in windows-drivers-rs' macro tests
//! (`WdfDriverCreate`, `WdfDeviceCreate`, `WdfDeviceCreateDeviceInterface`,
//! `WdfRequestRetrieveOutputBuffer`); the Windows-rust-driver-samples echo driver (the
//! structures and enums it builds); Microsoft's DDI reference (every other signature).
//! A mistake here is not caught by this check: it is a second transcription, not the WDK.
#![no_std]
#![allow(
    unused,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    missing_docs,
    clippy::all,
    clippy::pedantic
)]

use core::ffi::{c_int, c_void};

pub type NTSTATUS = i32;
pub type ULONG = u32;
pub type USHORT = u16;
pub type ULONG_PTR = u64;
pub type PVOID = *mut c_void;
pub type CHAR = i8;
pub type WCHAR = u16;
pub type BOOLEAN = u8;
pub type LPCSTR = *const CHAR;
pub type PWCH = *mut WCHAR;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GUID {
    pub Data1: u32,
    pub Data2: u16,
    pub Data3: u16,
    pub Data4: [u8; 8],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct _UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: PWCH,
}
pub type UNICODE_STRING = _UNICODE_STRING;
pub type PCUNICODE_STRING = *const UNICODE_STRING;

#[repr(C)]
pub struct _DRIVER_OBJECT {
    _opaque: [u8; 0],
}
pub type DRIVER_OBJECT = _DRIVER_OBJECT;
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `WDF_DECLARE_HANDLE(X)`: `typedef struct X__ *X;`.
macro_rules! handle {
    ($handle:ident, $target:ident) => {
        #[repr(C)]
        pub struct $target {
            _opaque: [u8; 0],
        }
        pub type $handle = *mut $target;
    };
}
handle!(WDFDRIVER, WDFDRIVER__);
handle!(WDFDEVICE, WDFDEVICE__);
handle!(WDFQUEUE, WDFQUEUE__);
handle!(WDFREQUEST, WDFREQUEST__);
handle!(WDFFILEOBJECT, WDFFILEOBJECT__);
handle!(WDFOBJECT, WDFOBJECT__);

#[repr(C)]
pub struct WDFDEVICE_INIT {
    _opaque: [u8; 0],
}
pub type PWDFDEVICE_INIT = *mut WDFDEVICE_INIT;

pub mod _WDF_EXECUTION_LEVEL {
    pub type Type = core::ffi::c_int;
    pub const WdfExecutionLevelInvalid: Type = 0;
    pub const WdfExecutionLevelInheritFromParent: Type = 1;
    pub const WdfExecutionLevelPassive: Type = 2;
    pub const WdfExecutionLevelDispatch: Type = 3;
}
pub use _WDF_EXECUTION_LEVEL::Type as WDF_EXECUTION_LEVEL;

pub mod _WDF_SYNCHRONIZATION_SCOPE {
    pub type Type = core::ffi::c_int;
    pub const WdfSynchronizationScopeInvalid: Type = 0;
    pub const WdfSynchronizationScopeInheritFromParent: Type = 1;
    pub const WdfSynchronizationScopeDevice: Type = 2;
    pub const WdfSynchronizationScopeQueue: Type = 3;
    pub const WdfSynchronizationScopeNone: Type = 4;
}
pub use _WDF_SYNCHRONIZATION_SCOPE::Type as WDF_SYNCHRONIZATION_SCOPE;

pub mod _WDF_TRI_STATE {
    pub type Type = core::ffi::c_int;
    pub const WdfFalse: Type = 0;
    pub const WdfTrue: Type = 1;
    pub const WdfUseDefault: Type = 2;
}
pub use _WDF_TRI_STATE::Type as WDF_TRI_STATE;

pub mod _WDF_FILEOBJECT_CLASS {
    pub type Type = core::ffi::c_int;
    pub const WdfFileObjectInvalid: Type = 0;
    pub const WdfFileObjectNotRequired: Type = 1;
    pub const WdfFileObjectWdfCanUseFsContext: Type = 2;
    pub const WdfFileObjectWdfCanUseFsContext2: Type = 3;
    pub const WdfFileObjectWdfCannotUseFsContexts: Type = 4;
}
pub use _WDF_FILEOBJECT_CLASS::Type as WDF_FILEOBJECT_CLASS;

pub mod _WDF_IO_QUEUE_DISPATCH_TYPE {
    pub type Type = core::ffi::c_int;
    pub const WdfIoQueueDispatchInvalid: Type = 0;
    pub const WdfIoQueueDispatchSequential: Type = 1;
    pub const WdfIoQueueDispatchParallel: Type = 2;
    pub const WdfIoQueueDispatchManual: Type = 3;
}
pub use _WDF_IO_QUEUE_DISPATCH_TYPE::Type as WDF_IO_QUEUE_DISPATCH_TYPE;

pub type PFN_WDF_DRIVER_DEVICE_ADD =
    Option<unsafe extern "C" fn(Driver: WDFDRIVER, DeviceInit: PWDFDEVICE_INIT) -> NTSTATUS>;
pub type PFN_WDF_DRIVER_UNLOAD = Option<unsafe extern "C" fn(Driver: WDFDRIVER)>;
pub type PFN_WDF_OBJECT_CONTEXT_CLEANUP = Option<unsafe extern "C" fn(Object: WDFOBJECT)>;
pub type PFN_WDF_OBJECT_CONTEXT_DESTROY = Option<unsafe extern "C" fn(Object: WDFOBJECT)>;
pub type PFN_WDF_DEVICE_FILE_CREATE = Option<
    unsafe extern "C" fn(Device: WDFDEVICE, Request: WDFREQUEST, FileObject: WDFFILEOBJECT),
>;
pub type PFN_WDF_FILE_CLOSE = Option<unsafe extern "C" fn(FileObject: WDFFILEOBJECT)>;
pub type PFN_WDF_FILE_CLEANUP = Option<unsafe extern "C" fn(FileObject: WDFFILEOBJECT)>;
pub type PFN_WDF_IO_QUEUE_IO_DEFAULT =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST)>;
pub type PFN_WDF_IO_QUEUE_IO_READ =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST, Length: usize)>;
pub type PFN_WDF_IO_QUEUE_IO_WRITE = PFN_WDF_IO_QUEUE_IO_READ;
pub type PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL = Option<
    unsafe extern "C" fn(
        Queue: WDFQUEUE,
        Request: WDFREQUEST,
        OutputBufferLength: usize,
        InputBufferLength: usize,
        IoControlCode: ULONG,
    ),
>;
pub type PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL = PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL;
pub type PFN_WDF_IO_QUEUE_IO_STOP =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST, ActionFlags: ULONG)>;
pub type PFN_WDF_IO_QUEUE_IO_RESUME =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST)>;
pub type PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE =
    Option<unsafe extern "C" fn(Queue: WDFQUEUE, Request: WDFREQUEST)>;
pub type PFN_WDF_REQUEST_CANCEL = Option<unsafe extern "C" fn(Request: WDFREQUEST)>;
pub type PFN_GET_UNIQUE_CONTEXT_TYPE =
    Option<unsafe extern "C" fn() -> PCWDF_OBJECT_CONTEXT_TYPE_INFO>;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct _WDF_OBJECT_CONTEXT_TYPE_INFO {
    pub Size: ULONG,
    pub ContextName: LPCSTR,
    pub ContextSize: usize,
    pub UniqueType: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
    pub EvtDriverGetUniqueContextType: PFN_GET_UNIQUE_CONTEXT_TYPE,
}
pub type WDF_OBJECT_CONTEXT_TYPE_INFO = _WDF_OBJECT_CONTEXT_TYPE_INFO;
pub type PCWDF_OBJECT_CONTEXT_TYPE_INFO = *const _WDF_OBJECT_CONTEXT_TYPE_INFO;

/// bindgen's `derive_default` for structures with pointers: an all-zero value.
macro_rules! zeroed_default {
    ($type:ty) => {
        impl Default for $type {
            fn default() -> Self {
                // SAFETY: every field is an integer, a raw pointer or an `Option` of a
                // function pointer, for all of which all-zero bytes are valid.
                unsafe { core::mem::zeroed() }
            }
        }
    };
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct _WDF_DRIVER_CONFIG {
    pub Size: ULONG,
    pub EvtDriverDeviceAdd: PFN_WDF_DRIVER_DEVICE_ADD,
    pub EvtDriverUnload: PFN_WDF_DRIVER_UNLOAD,
    pub DriverInitFlags: ULONG,
    pub DriverPoolTag: ULONG,
}
pub type WDF_DRIVER_CONFIG = _WDF_DRIVER_CONFIG;
pub type PWDF_DRIVER_CONFIG = *mut _WDF_DRIVER_CONFIG;
zeroed_default!(_WDF_DRIVER_CONFIG);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct _WDF_OBJECT_ATTRIBUTES {
    pub Size: ULONG,
    pub EvtCleanupCallback: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    pub EvtDestroyCallback: PFN_WDF_OBJECT_CONTEXT_DESTROY,
    pub ExecutionLevel: WDF_EXECUTION_LEVEL,
    pub SynchronizationScope: WDF_SYNCHRONIZATION_SCOPE,
    pub ParentObject: WDFOBJECT,
    pub ContextSizeOverride: usize,
    pub ContextTypeInfo: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
}
pub type WDF_OBJECT_ATTRIBUTES = _WDF_OBJECT_ATTRIBUTES;
pub type PWDF_OBJECT_ATTRIBUTES = *mut _WDF_OBJECT_ATTRIBUTES;
zeroed_default!(_WDF_OBJECT_ATTRIBUTES);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct _WDF_FILEOBJECT_CONFIG {
    pub Size: ULONG,
    pub EvtDeviceFileCreate: PFN_WDF_DEVICE_FILE_CREATE,
    pub EvtFileClose: PFN_WDF_FILE_CLOSE,
    pub EvtFileCleanup: PFN_WDF_FILE_CLEANUP,
    pub AutoForwardCleanupClose: WDF_TRI_STATE,
    pub FileObjectClass: WDF_FILEOBJECT_CLASS,
}
pub type WDF_FILEOBJECT_CONFIG = _WDF_FILEOBJECT_CONFIG;
pub type PWDF_FILEOBJECT_CONFIG = *mut _WDF_FILEOBJECT_CONFIG;
zeroed_default!(_WDF_FILEOBJECT_CONFIG);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct _WDF_IO_QUEUE_CONFIG__bindgen_ty_1__bindgen_ty_1 {
    pub NumberOfPresentedRequests: ULONG,
}
#[repr(C)]
#[derive(Clone, Copy)]
pub union _WDF_IO_QUEUE_CONFIG__bindgen_ty_1 {
    pub Parallel: _WDF_IO_QUEUE_CONFIG__bindgen_ty_1__bindgen_ty_1,
}
#[repr(C)]
#[derive(Clone, Copy)]
pub struct _WDF_IO_QUEUE_CONFIG {
    pub Size: ULONG,
    pub DispatchType: WDF_IO_QUEUE_DISPATCH_TYPE,
    pub PowerManaged: WDF_TRI_STATE,
    pub AllowZeroLengthRequests: BOOLEAN,
    pub DefaultQueue: BOOLEAN,
    pub EvtIoDefault: PFN_WDF_IO_QUEUE_IO_DEFAULT,
    pub EvtIoRead: PFN_WDF_IO_QUEUE_IO_READ,
    pub EvtIoWrite: PFN_WDF_IO_QUEUE_IO_WRITE,
    pub EvtIoDeviceControl: PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    pub EvtIoInternalDeviceControl: PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL,
    pub EvtIoStop: PFN_WDF_IO_QUEUE_IO_STOP,
    pub EvtIoResume: PFN_WDF_IO_QUEUE_IO_RESUME,
    pub EvtIoCanceledOnQueue: PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE,
    pub Settings: _WDF_IO_QUEUE_CONFIG__bindgen_ty_1,
    pub Driver: WDFDRIVER,
}
pub type WDF_IO_QUEUE_CONFIG = _WDF_IO_QUEUE_CONFIG;
pub type PWDF_IO_QUEUE_CONFIG = *mut _WDF_IO_QUEUE_CONFIG;
zeroed_default!(_WDF_IO_QUEUE_CONFIG);

// wdk-sys' src/constants.rs (hand-written there).
pub const WDF_NO_OBJECT_ATTRIBUTES: PWDF_OBJECT_ATTRIBUTES = core::ptr::null_mut();
pub const WDF_NO_HANDLE: PVOID = core::ptr::null_mut();
pub const STATUS_SUCCESS: NTSTATUS = 0_i32;
pub const STATUS_CANCELLED: NTSTATUS = -1_073_741_536_i32;
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = -1_073_741_436_i32;
pub const STATUS_INVALID_HANDLE: NTSTATUS = -1_073_741_816_i32;

// wdk-sys' src/lib.rs.
#[must_use]
pub const fn NT_SUCCESS(nt_status: NTSTATUS) -> bool {
    nt_status >= 0
}

/// The DDIs, with the parameters (after `DriverGlobals`) and `#[must_use]` that
/// `call_unsafe_wdf_function_binding!` gives the function it generates. Never called.
pub mod ddi {
    use super::*;

    #[must_use]
    pub unsafe fn WdfDriverCreate(
        DriverObject: PDRIVER_OBJECT,
        RegistryPath: PCUNICODE_STRING,
        DriverAttributes: PWDF_OBJECT_ATTRIBUTES,
        DriverConfig: PWDF_DRIVER_CONFIG,
        Driver: *mut WDFDRIVER,
    ) -> NTSTATUS {
        unreachable!()
    }
    pub unsafe fn WdfDeviceInitSetFileObjectConfig(
        DeviceInit: PWDFDEVICE_INIT,
        FileObjectConfig: PWDF_FILEOBJECT_CONFIG,
        FileObjectAttributes: PWDF_OBJECT_ATTRIBUTES,
    ) {
        unreachable!()
    }
    pub unsafe fn WdfDeviceInitSetRequestAttributes(
        DeviceInit: PWDFDEVICE_INIT,
        RequestAttributes: PWDF_OBJECT_ATTRIBUTES,
    ) {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfDeviceInitAssignName(
        DeviceInit: PWDFDEVICE_INIT,
        DeviceName: PCUNICODE_STRING,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfDeviceInitAssignSDDLString(
        DeviceInit: PWDFDEVICE_INIT,
        SDDLString: PCUNICODE_STRING,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfDeviceCreate(
        DeviceInit: *mut PWDFDEVICE_INIT,
        DeviceAttributes: PWDF_OBJECT_ATTRIBUTES,
        Device: *mut WDFDEVICE,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfDeviceCreateDeviceInterface(
        Device: WDFDEVICE,
        InterfaceClassGUID: *const GUID,
        ReferenceString: PCUNICODE_STRING,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfDeviceCreateSymbolicLink(
        Device: WDFDEVICE,
        SymbolicLinkName: PCUNICODE_STRING,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfIoQueueCreate(
        Device: WDFDEVICE,
        Config: PWDF_IO_QUEUE_CONFIG,
        QueueAttributes: PWDF_OBJECT_ATTRIBUTES,
        Queue: *mut WDFQUEUE,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfIoQueueGetDevice(Queue: WDFQUEUE) -> WDFDEVICE {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfObjectGetTypedContextWorker(
        Handle: WDFOBJECT,
        TypeInfo: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
    ) -> PVOID {
        unreachable!()
    }
    pub unsafe fn WdfRequestComplete(Request: WDFREQUEST, Status: NTSTATUS) {
        unreachable!()
    }
    pub unsafe fn WdfRequestCompleteWithInformation(
        Request: WDFREQUEST,
        Status: NTSTATUS,
        Information: ULONG_PTR,
    ) {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfRequestRetrieveInputBuffer(
        Request: WDFREQUEST,
        MinimumRequiredSize: usize,
        Buffer: *mut PVOID,
        Length: *mut usize,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfRequestRetrieveOutputBuffer(
        Request: WDFREQUEST,
        MinimumRequiredSize: usize,
        Buffer: *mut PVOID,
        Length: *mut usize,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfRequestMarkCancelableEx(
        Request: WDFREQUEST,
        EvtRequestCancel: PFN_WDF_REQUEST_CANCEL,
    ) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfRequestUnmarkCancelable(Request: WDFREQUEST) -> NTSTATUS {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfRequestGetFileObject(Request: WDFREQUEST) -> WDFFILEOBJECT {
        unreachable!()
    }
    #[must_use]
    pub unsafe fn WdfFileObjectGetDevice(FileObject: WDFFILEOBJECT) -> WDFDEVICE {
        unreachable!()
    }
}

/// Like the real macro, a call of an `unsafe` function with typed parameters (the real
/// one reaches it through the WDF function table); the caller needs an `unsafe` block.
#[macro_export]
macro_rules! call_unsafe_wdf_function_binding {
    ($name:ident $(, $argument:expr)* $(,)?) => {
        $crate::ddi::$name($($argument),*)
    };
}
