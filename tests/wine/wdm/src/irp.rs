//! The parts of an IRP the front end touches, with their x64 layout checked at compile time
//! against the WDK's (windows-sys is generated from metadata and is wrong in one place here).
//!
//! All functions run at IRQL <= `DISPATCH_LEVEL` and take raw IRPs the I/O manager handed to
//! a dispatch or cancel routine.

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

use windows_sys::Wdk::Foundation::{IO_STACK_LOCATION, IRP};
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
const _: () = assert!(offset_of!(IO_STACK_LOCATION, Parameters) == 8);

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
#[expect(
    dead_code,
    reason = "read once device control calls the service's dispatch entry (not on main yet)"
)]
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
