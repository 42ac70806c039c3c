//! KMDF plumbing that the C headers provide as macros or inline functions: structure sizes,
//! object context types with their typed getters (`WDF_DECLARE_CONTEXT_TYPE`,
//! `WDF_OBJECT_ATTRIBUTES_INIT`), and `UNICODE_STRING`s over constant names.
//!
//! Written against wdk-sys (0.5.2 in Cargo.lock; bindgen output of the KMDF 1.33 headers) and
//! the Windows-rust-driver-samples echo driver, which builds the same structures. Off Windows
//! it compiles against kernel-sim's KMDF model; its wdk arm is type-checked and linted
//! against bindings generated from the public KMDF headers (`tests/wdk-real-headers/`).

use core::marker::PhantomData;
use core::mem::{align_of, size_of};

use crate::sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, NT_SUCCESS, NTSTATUS,
    PCWDF_OBJECT_CONTEXT_TYPE_INFO, ULONG, UNICODE_STRING, USHORT, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDFOBJECT, call_unsafe_wdf_function_binding,
};

/// `sizeof(T)` as the `ULONG` that the `Size` member of every WDF configuration structure
/// holds. Only used in constant initialisers: a size that does not fit is a build error.
pub(super) const fn ulong_size_of<T>() -> ULONG {
    let bytes = size_of::<T>().to_le_bytes();
    let mut high = size_of::<ULONG>();
    while high < bytes.len() {
        assert!(bytes[high] == 0, "a WDF structure size must fit in a ULONG");
        high += 1;
    }
    ULONG::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

const WDF_OBJECT_ATTRIBUTES_SIZE: ULONG = ulong_size_of::<WDF_OBJECT_ATTRIBUTES>();

/// The framework aligns object context memory to `MEMORY_ALLOCATION_ALIGNMENT` (16 on x64:
/// `FxContextHeader::Context` is declared with that alignment in the WDF sources).
const CONTEXT_ALIGNMENT: usize = 16;

/// `WDF_OBJECT_ATTRIBUTES_INIT`: the size set, execution level and synchronization scope
/// inherited from the parent object, everything else zero. Any IRQL.
pub(super) fn object_attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: WDF_OBJECT_ATTRIBUTES_SIZE,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

/// A typed object context: what `WDF_DECLARE_CONTEXT_TYPE_WITH_NAME(T, ...)` declares in C.
/// Each context type is one `static` whose `UniqueType` points at itself; the framework
/// identifies the type by that address.
#[repr(transparent)]
pub(super) struct ContextType<T> {
    info: WDF_OBJECT_CONTEXT_TYPE_INFO,
    context: PhantomData<T>,
}

// SAFETY: a `ContextType` is only ever a `static` that nothing writes: its pointers are to
// a `'static` C string and to the static itself, both immutable, so sharing it between
// threads is sharing read-only data.
unsafe impl<T> Sync for ContextType<T> {}

impl<T> ContextType<T> {
    /// The type information for `T`, named `name` (shown by the `!wdfkd` debugger
    /// extension). `this` is the address of the `static` being initialised. Only used in
    /// `static` initialisers: a context type the framework cannot align is a build error.
    pub(super) const fn new(name: &'static core::ffi::CStr, this: *const Self) -> Self {
        assert!(
            align_of::<T>() <= CONTEXT_ALIGNMENT,
            "WDF aligns object contexts to MEMORY_ALLOCATION_ALIGNMENT only"
        );
        Self {
            info: WDF_OBJECT_CONTEXT_TYPE_INFO {
                Size: ulong_size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>(),
                ContextName: name.as_ptr().cast(),
                ContextSize: size_of::<T>(),
                UniqueType: this.cast(),
                EvtDriverGetUniqueContextType: None,
            },
            context: PhantomData,
        }
    }

    /// What `WDF_GET_CONTEXT_TYPE_INFO` yields: the value for
    /// `WDF_OBJECT_ATTRIBUTES::ContextTypeInfo` and for `WdfObjectGetTypedContextWorker`.
    /// Any IRQL.
    pub(super) const fn type_info(&self) -> PCWDF_OBJECT_CONTEXT_TYPE_INFO {
        self.info.UniqueType
    }

    /// The `T` context of `object` (`WdfObjectGetTypedContext`), or null if the object was
    /// created without one. The framework zero-fills context memory when it creates the
    /// object (`FxContextHeaderInit` in the WDF sources), so a context nobody has written
    /// yet reads as all zero bytes. `<= DISPATCH_LEVEL`.
    ///
    /// # Safety
    ///
    /// `object` is a valid framework object handle. The pointer is valid while the object
    /// is; what it may be used for is up to the caller (the framework does not synchronise
    /// access to context memory).
    pub(super) unsafe fn get(&'static self, object: WDFOBJECT) -> *mut T {
        // SAFETY: `object` is a valid handle (the caller's contract) and `type_info()` is the
        // address of a `'static` WDF_OBJECT_CONTEXT_TYPE_INFO, as the routine requires.
        let context = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfObjectGetTypedContextWorker,
                object,
                self.type_info()
            )
        };
        context.cast()
    }
}

/// A `UNICODE_STRING` over a `'static` UTF-16 text without terminator, for the framework
/// routines that only read (and copy) the string. Any IRQL.
///
/// The constant names here are far shorter than `USHORT::MAX` bytes; a longer text would
/// become an empty string, which the framework rejects with an error status.
pub(super) fn unicode_string(text: &'static [u16]) -> UNICODE_STRING {
    let bytes = text
        .len()
        .checked_mul(size_of::<u16>())
        .and_then(|bytes| USHORT::try_from(bytes).ok())
        .unwrap_or(0);
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        // The framework reads through this pointer and never writes (`PCUNICODE_STRING`).
        Buffer: text.as_ptr().cast_mut(),
    }
}

/// Fails with `status` (after tracing, prefixed by `driver_name`, which call failed) unless
/// it is a success status.
pub(crate) fn check(driver_name: &str, status: NTSTATUS, call: &str) -> Result<(), NTSTATUS> {
    if NT_SUCCESS(status) {
        Ok(())
    } else {
        trace!("{driver_name}: {call} failed: {status:#010x}");
        Err(status)
    }
}
