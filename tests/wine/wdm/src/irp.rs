//! The parts of an IRP the front end touches, with their x64 layout checked at compile time
//! against the WDK's (windows-sys is generated from metadata and is wrong in one place here).
//!
//! All functions run at IRQL <= `DISPATCH_LEVEL` and take raw IRPs the I/O manager handed to
//! a dispatch or cancel routine.

use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use windows_sys::Wdk::Foundation::{DRIVER_CANCEL, FILE_OBJECT, IO_STACK_LOCATION, IRP};
use windows_sys::Wdk::System::SystemServices::IoReleaseCancelSpinLock;
use windows_sys::Wdk::System::SystemServices::IofCompleteRequest;
use windows_sys::Win32::Foundation::NTSTATUS;

// x64 offsets of the WDK's IRP (wdm.h, as the debugger's `dt nt!_IRP` shows them). The front
// end reads these fields through windows-sys' struct: check it agrees.
const _: () = assert!(size_of::<IRP>() == 0xD0);
const _: () = assert!(offset_of!(IRP, AssociatedIrp) == 0x18);
const _: () = assert!(offset_of!(IRP, IoStatus) == 0x30);
const _: () = assert!(offset_of!(IRP, Cancel) == 0x44);
const _: () = assert!(offset_of!(IRP, CancelIrql) == 0x45);
const _: () = assert!(offset_of!(IRP, CancelRoutine) == 0x68);
const _: () = assert!(offset_of!(IRP, Tail) == 0x78);
const _: () = assert!(offset_of!(IRP, Tail.Overlay.Anonymous2.ListEntry) == 0xA8);
const _: () = assert!(offset_of!(IRP, Tail.Overlay.Anonymous2.Anonymous) == 0xB8);
const _: () = assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
const _: () = assert!(offset_of!(IO_STACK_LOCATION, Control) == 3);
const _: () = assert!(offset_of!(IO_STACK_LOCATION, Parameters) == 8);
const _: () = assert!(offset_of!(IO_STACK_LOCATION, FileObject) == 0x30);
const _: () = assert!(offset_of!(FILE_OBJECT, FsContext) == 0x18);
const _: () = assert!(size_of::<DRIVER_CANCEL>() == size_of::<*mut core::ffi::c_void>());

/// `SL_PENDING_RETURNED` (wdm.h), the `Control` bit `IoMarkIrpPending` sets.
const SL_PENDING_RETURNED: u8 = 0x01;

/// `IO_STACK_LOCATION.Parameters.DeviceIoControl` as wdm.h lays it out on x64: each `ULONG`
/// is `POINTER_ALIGNMENT`, so the fields sit 8 bytes apart. windows-sys 0.61 omits that
/// alignment and puts `IoControlCode` at +8 instead of +16 (microsoft/windows-rs#4404).
#[repr(C)]
struct DeviceIoControlParameters {
    output_buffer_length: u32,
    _alignment_0: u32,
    input_buffer_length: u32,
    _alignment_1: u32,
    io_control_code: u32,
    _alignment_2: u32,
    type3_input_buffer: *mut c_void,
}
const _: () = assert!(offset_of!(DeviceIoControlParameters, input_buffer_length) == 8);
const _: () = assert!(offset_of!(DeviceIoControlParameters, io_control_code) == 16);
const _: () = assert!(offset_of!(DeviceIoControlParameters, type3_input_buffer) == 24);
const _: () = assert!(
    offset_of!(IO_STACK_LOCATION, Parameters) + size_of::<DeviceIoControlParameters>()
        <= offset_of!(IO_STACK_LOCATION, DeviceObject)
);

/// A device-control request as the dispatch entry needs it. The front end's device does
/// buffered I/O only (`METHOD_BUFFERED` codes), so input and output share `SystemBuffer`.
pub struct DeviceControl {
    /// The IOCTL code.
    pub code: u32,
    /// Bytes of input in the system buffer.
    pub input_length: usize,
    /// Bytes of output the caller's buffer (and so the system buffer) can take.
    pub output_length: usize,
    /// The system buffer (`max(input, output)` bytes), or null when both lengths are 0.
    pub system_buffer: *mut u8,
}

/// The IRP's current stack location.
///
/// # Safety
/// `irp` was passed to a dispatch routine and is not completed yet, so the I/O manager has
/// set its current stack location.
unsafe fn current_stack_location(irp: &IRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: for an IRP in the I/O system `Tail` holds the `Overlay` variant (the others are
    // used only after completion); reading the union member is the read of that variant.
    let overlay = unsafe { &irp.Tail.Overlay };
    // SAFETY: in `Overlay` the current stack location pointer is this union's active member
    // (its other member, `PacketType`, is for mini-packets, never for IRPs).
    unsafe { overlay.Anonymous2.Anonymous.CurrentStackLocation }
}

/// Reads a device-control request's parameters.
///
/// # Safety
/// As for [`current_stack_location`], and the current stack location is an
/// `IRP_MJ_DEVICE_CONTROL` one (so `Parameters` holds `DeviceIoControl`).
pub unsafe fn device_control(irp: &IRP) -> DeviceControl {
    // SAFETY: the caller's contract is current_stack_location's.
    let location = unsafe { current_stack_location(irp) };
    let parameters = location
        .wrapping_byte_add(offset_of!(IO_STACK_LOCATION, Parameters))
        .cast::<DeviceIoControlParameters>();
    // SAFETY: `location` is valid (above) and its Parameters union holds the DeviceIoControl
    // block (caller's contract), whose real layout is `DeviceIoControlParameters` (asserted).
    let parameters = unsafe { &*parameters };
    // SAFETY: for a buffered request the I/O manager puts the system buffer in this union.
    let system_buffer = unsafe { irp.AssociatedIrp.SystemBuffer }.cast::<u8>();
    DeviceControl {
        code: parameters.io_control_code,
        input_length: parameters.input_buffer_length as usize,
        output_length: parameters.output_buffer_length as usize,
        system_buffer,
    }
}

/// Sets the IRP's final status and byte count and hands it back to the I/O manager. Returns
/// `status` so dispatch routines can `return complete(..)`.
///
/// # Safety
/// The caller owns the live IRP and gives up ownership: the IRP must not be touched after.
pub unsafe fn complete(irp: *mut IRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: the caller owns the live IRP (contract), so nobody else accesses it now.
    let request = unsafe { &mut *irp };
    request.IoStatus.Anonymous.Status = status;
    request.IoStatus.Information = information;
    // SAFETY: the caller owns the IRP and passes it on; IO_NO_INCREMENT (0) as priority boost.
    unsafe { IofCompleteRequest(irp, 0) };
    status
}

/// `IoMarkIrpPending` (an inline routine in wdm.h): the dispatch routine will return
/// `STATUS_PENDING`, whoever completes the IRP and whenever.
///
/// # Safety
/// As for [`current_stack_location`]; the IRP is not completed yet.
pub unsafe fn mark_pending(irp: &IRP) {
    // SAFETY: the caller's contract is current_stack_location's.
    let location = unsafe { current_stack_location(irp) };
    let control = location
        .wrapping_byte_add(offset_of!(IO_STACK_LOCATION, Control))
        .cast::<u8>();
    // SAFETY: `control` is the byte field of the live stack location, which only the IRP's
    // current owner (us) writes.
    let flags = unsafe { control.read() };
    // SAFETY: as above.
    unsafe { control.write(flags | SL_PENDING_RETURNED) };
}

/// The `FsContext` of the IRP's file object: where the front end keeps the handle.
///
/// # Safety
/// As for [`current_stack_location`]; the IRP is a create, cleanup, close, device-control
/// or cancelled device-control IRP, so its stack location names the file object.
pub unsafe fn file_context(irp: &IRP) -> *mut *mut core::ffi::c_void {
    // SAFETY: the caller's contract is current_stack_location's.
    let location = unsafe { current_stack_location(irp) };
    // SAFETY: `location` is valid (above); FileObject is a plain pointer field.
    let file = unsafe { (*location).FileObject };
    file.wrapping_byte_add(offset_of!(FILE_OBJECT, FsContext))
        .cast()
}

/// `IoSetCancelRoutine` (an inline routine in wdm.h): swaps the IRP's cancel routine
/// atomically and returns the previous one. IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
/// `irp` is a live IRP the caller owns or is racing the I/O manager's cancel path for, which
/// is what the atomic exchange arbitrates.
pub unsafe fn set_cancel_routine(irp: NonNull<IRP>, routine: DRIVER_CANCEL) -> DRIVER_CANCEL {
    let field = irp
        .as_ptr()
        .wrapping_byte_add(offset_of!(IRP, CancelRoutine))
        .cast::<*mut core::ffi::c_void>();
    // SAFETY: the field is an aligned pointer-sized slot of the live IRP that the I/O manager
    // also accesses only with interlocked operations (as the header's inline does).
    let slot = unsafe { AtomicPtr::from_ptr(field) };
    let new = routine.map_or(core::ptr::null_mut(), |routine| {
        routine as *mut core::ffi::c_void
    });
    let old = slot.swap(new, Ordering::SeqCst);
    // SAFETY: the slot only ever holds null or a DRIVER_CANCEL routine (ours), and
    // `Option<fn>` has the null-pointer layout (asserted size; guaranteed niche).
    unsafe { core::mem::transmute::<*mut core::ffi::c_void, DRIVER_CANCEL>(old) }
}

/// Whether the IRP has been cancelled (`Irp->Cancel`), read after a full barrier.
///
/// # Safety
/// `irp` is a live IRP.
pub unsafe fn cancel_requested(irp: NonNull<IRP>) -> bool {
    let field = irp
        .as_ptr()
        .wrapping_byte_add(offset_of!(IRP, Cancel))
        .cast::<u8>();
    // SAFETY: an aligned byte of the live IRP that the I/O manager sets concurrently.
    unsafe { AtomicU8::from_ptr(field) }.load(Ordering::SeqCst) != 0
}

/// `IoReleaseCancelSpinLock(Irp->CancelIrql)`, as a cancel routine must do first.
///
/// # Safety
/// Called from the IRP's cancel routine, with the cancel spin lock held.
pub unsafe fn release_cancel_spin_lock(irp: NonNull<IRP>) {
    // SAFETY: the IRP is live; the I/O manager stored the IRQL to restore before calling us.
    let irql = unsafe { (*irp.as_ptr()).CancelIrql };
    // SAFETY: we hold the cancel spin lock (contract).
    unsafe { IoReleaseCancelSpinLock(irql) };
}
