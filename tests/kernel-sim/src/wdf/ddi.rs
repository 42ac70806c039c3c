//! The DDIs, as `call_unsafe_wdf_function_binding!` reaches them: the parameters after
//! `DriverGlobals`, `#[must_use]` on every one that returns a value (as the real macro's
//! generated function has). Each checks what KMDF checks (bug check `WDF_VIOLATION` where
//! KMDF raises one; the simulator's labelled choice where KMDF only breaks into the
//! debugger) and then acts on the framework state (`super::model`).

#![expect(
    non_snake_case,
    reason = "DDI and parameter names as in the KMDF headers and wdk-sys"
)]

use std::sync::Arc;

use super::model::{
    Data, Device, Fault, Fx, Init, Kind, Queue, RequestKind, RequestState, device_mut, file_mut,
    handle_pointer, lookup, new_handle, queue_mut, register, request_mut, require_irql, unregister,
    violation,
};
use super::types::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, GUID, NT_SUCCESS, PCUNICODE_STRING,
    PCWDF_OBJECT_CONTEXT_TYPE_INFO, PDRIVER_OBJECT, PFN_WDF_REQUEST_CANCEL, PUNICODE_STRING,
    PWDF_DRIVER_CONFIG, PWDF_FILEOBJECT_CONFIG, PWDF_IO_QUEUE_CONFIG, PWDF_OBJECT_ATTRIBUTES,
    PWDFDEVICE_INIT, STATUS_DRIVER_INTERNAL_ERROR, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INVALID_SECURITY_DESCR, STATUS_OBJECT_NAME_COLLISION, WDF_DRIVER_CONFIG,
    WDF_FILEOBJECT_CONFIG, WDF_IO_QUEUE_CONFIG, WDF_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDRIVER,
    WDFFILEOBJECT, WDFOBJECT, WDFQUEUE, WDFREQUEST,
};
use crate::bugcheck::{codes, wdf_ddi};
use crate::types::{
    NTSTATUS, PVOID, STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL, ULONG, ULONG_PTR,
};

const PASSIVE: u8 = 0;
const DISPATCH: u8 = 2;

/// The framework `handle` belongs to, after KMDF's handle check (`FxObjectHandleGetPtr`:
/// NULL or the wrong type → `WDF_INVALID_HANDLE`) and the simulator's stale-handle check.
fn checked(handle: usize, expected: Option<Kind>, ddi: u64) -> Arc<Fx> {
    let expected_code = expected.map_or(crate::bugcheck::wdf_object::ANY, Kind::code);
    if handle == 0 {
        violation([codes::WDF_INVALID_HANDLE, 0, expected_code, ddi]);
    }
    let Some(fx) = lookup(handle) else {
        violation([codes::WDF_SIM_STALE_HANDLE, handle as u64, ddi, 0]);
    };
    let kind = fx.lock().objects.get(&handle).map(|object| object.kind);
    match kind {
        None => violation([codes::WDF_SIM_STALE_HANDLE, handle as u64, ddi, 0]),
        Some(kind) if expected.is_some_and(|expected| expected != kind) => {
            violation([codes::WDF_INVALID_HANDLE, handle as u64, expected_code, ddi])
        }
        Some(_) => {
            super::model::cancel_hold_point(&fx);
            fx
        }
    }
}

/// `WDF_REQUIRED_PARAMETER_IS_NULL` unless `pointer` is set.
fn required<T>(pointer: *const T, parameter: u64, ddi: u64) {
    if pointer.is_null() {
        violation([codes::WDF_REQUIRED_PARAMETER_IS_NULL, parameter, ddi, 0]);
    }
}

/// The UTF-16 units of a counted string.
///
/// # Safety
/// `string` is null or a valid `UNICODE_STRING` whose buffer holds `Length` bytes.
unsafe fn units(string: PCUNICODE_STRING) -> Option<Vec<u16>> {
    // SAFETY: null or valid (the caller's contract).
    let string = unsafe { string.as_ref() }?;
    let count = usize::from(string.Length) / 2;
    if count == 0 || string.Buffer.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: the buffer holds `Length` bytes (the caller's contract).
    Some(unsafe { std::slice::from_raw_parts(string.Buffer, count) }.to_vec())
}

/// A copy of the driver's structure, if its `Size` is right (reads `Size` first).
///
/// # Safety
/// `pointer` is null or points to at least a `ULONG`, and to a whole `T` if that `ULONG`
/// equals `size_of::<T>()`.
unsafe fn sized<T: Copy>(pointer: *const T) -> Result<Option<T>, NTSTATUS> {
    if pointer.is_null() {
        return Ok(None);
    }
    // SAFETY: at least a ULONG (the caller's contract); every KMDF structure starts with it.
    let size = unsafe { pointer.cast::<ULONG>().read() };
    if usize::try_from(size).ok() != Some(size_of::<T>()) {
        return Err(STATUS_INFO_LENGTH_MISMATCH);
    }
    // SAFETY: a whole T (the caller's contract).
    Ok(Some(unsafe { pointer.read() }))
}

/// `FxValidateObjectAttributes` for objects that take no parent.
fn validate_attributes(attributes: Option<&WDF_OBJECT_ATTRIBUTES>) -> Result<(), NTSTATUS> {
    let Some(attributes) = attributes else {
        return Ok(());
    };
    if attributes.ExecutionLevel == 0 || attributes.SynchronizationScope == 0 {
        // STATUS_WDF_OBJECT_ATTRIBUTES_INVALID in KMDF.
        return Err(STATUS_INVALID_PARAMETER);
    }
    if !attributes.ParentObject.is_null() {
        // STATUS_WDF_PARENT_ASSIGNMENT_NOT_ALLOWED in KMDF.
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(())
}

/// `WdfDriverCreate` (PASSIVE).
///
/// # Safety
/// The pointers are null or valid for their types.
#[must_use]
pub unsafe fn WdfDriverCreate(
    DriverObject: PDRIVER_OBJECT,
    _RegistryPath: PCUNICODE_STRING,
    DriverAttributes: PWDF_OBJECT_ATTRIBUTES,
    DriverConfig: PWDF_DRIVER_CONFIG,
    Driver: *mut WDFDRIVER,
) -> NTSTATUS {
    require_irql(PASSIVE, wdf_ddi::DRIVER_CREATE);
    required(DriverConfig, 4, wdf_ddi::DRIVER_CREATE);
    let Some(fx) = lookup(DriverObject.addr()) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: valid for its type (our contract).
    let config: WDF_DRIVER_CONFIG = match unsafe { sized(DriverConfig) } {
        Ok(Some(config)) => config,
        Ok(None) => return STATUS_INVALID_PARAMETER,
        Err(status) => return status,
    };
    // SAFETY: as above.
    let attributes = match unsafe { sized(DriverAttributes) } {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    if let Err(status) = validate_attributes(attributes.as_ref()) {
        return status;
    }
    let mut st = fx.lock();
    if st.driver.is_some() {
        return STATUS_DRIVER_INTERNAL_ERROR;
    }
    if let Some(status) = Fx::take_fault(&mut st, Fault::DriverCreate) {
        return status;
    }
    let handle = fx.add_object(
        &mut st,
        Kind::Driver,
        None,
        attributes.as_ref(),
        Data::Driver,
    );
    st.driver = Some(handle);
    st.device_add = config.EvtDriverDeviceAdd;
    st.driver_unload = config.EvtDriverUnload;
    drop(st);
    if !Driver.is_null() {
        // SAFETY: a valid out pointer (our contract).
        unsafe { Driver.write(handle_pointer(handle)) };
    }
    STATUS_SUCCESS
}

/// The framework a device-init block belongs to.
fn init_fx(init: PWDFDEVICE_INIT, ddi: u64) -> Arc<Fx> {
    required(init, 1, ddi);
    let fx = lookup(init.addr());
    match fx {
        Some(fx) if fx.lock().inits.contains_key(&init.addr()) => fx,
        _ => violation([codes::WDF_SIM_STALE_HANDLE, init.addr() as u64, ddi, 0]),
    }
}

fn with_init<T>(fx: &Fx, init: PWDFDEVICE_INIT, f: impl FnOnce(&mut Init) -> T) -> Option<T> {
    fx.lock().inits.get_mut(&init.addr()).map(f)
}

/// `WdfDeviceInitSetFileObjectConfig` (`<= DISPATCH_LEVEL`). A bad configuration is
/// ignored, as KMDF does after its verifier break.
///
/// # Safety
/// The pointers are null or valid for their types.
pub unsafe fn WdfDeviceInitSetFileObjectConfig(
    DeviceInit: PWDFDEVICE_INIT,
    FileObjectConfig: PWDF_FILEOBJECT_CONFIG,
    FileObjectAttributes: PWDF_OBJECT_ATTRIBUTES,
) {
    let ddi = wdf_ddi::DEVICE_INIT_SET_FILE_OBJECT_CONFIG;
    require_irql(DISPATCH, ddi);
    let fx = init_fx(DeviceInit, ddi);
    required(FileObjectConfig, 2, ddi);
    // SAFETY: valid for its type (our contract).
    let Ok(Some(config)) = (unsafe { sized::<WDF_FILEOBJECT_CONFIG>(FileObjectConfig) }) else {
        return;
    };
    // SAFETY: as above.
    let Ok(attributes) = (unsafe { sized(FileObjectAttributes) }) else {
        return;
    };
    if validate_attributes(attributes.as_ref()).is_err() {
        return;
    }
    with_init(&fx, DeviceInit, |init| {
        init.file_config = Some(config);
        init.file_attributes = attributes;
    });
}

/// `WdfDeviceInitSetRequestAttributes` (`<= DISPATCH_LEVEL`). Bad attributes are ignored,
/// as KMDF does after its verifier break.
///
/// # Safety
/// The pointers are null or valid for their types.
pub unsafe fn WdfDeviceInitSetRequestAttributes(
    DeviceInit: PWDFDEVICE_INIT,
    RequestAttributes: PWDF_OBJECT_ATTRIBUTES,
) {
    let ddi = wdf_ddi::DEVICE_INIT_SET_REQUEST_ATTRIBUTES;
    require_irql(DISPATCH, ddi);
    let fx = init_fx(DeviceInit, ddi);
    required(RequestAttributes, 2, ddi);
    // SAFETY: valid for its type (our contract).
    let Ok(Some(attributes)) = (unsafe { sized(RequestAttributes) }) else {
        return;
    };
    if validate_attributes(Some(&attributes)).is_err() {
        return;
    }
    with_init(&fx, DeviceInit, |init| {
        init.request_attributes = Some(attributes);
    });
}

/// `WdfDeviceInitAssignName` (PASSIVE). A null name clears the name.
///
/// # Safety
/// The pointers are null or valid for their types.
#[must_use]
pub unsafe fn WdfDeviceInitAssignName(
    DeviceInit: PWDFDEVICE_INIT,
    DeviceName: PCUNICODE_STRING,
) -> NTSTATUS {
    let ddi = wdf_ddi::DEVICE_INIT_ASSIGN_NAME;
    require_irql(PASSIVE, ddi);
    let fx = init_fx(DeviceInit, ddi);
    if let Some(status) = Fx::take_fault(&mut fx.lock(), Fault::DeviceInitAssignName) {
        return status;
    }
    // SAFETY: null or valid (our contract).
    let name = unsafe { units(DeviceName) };
    with_init(&fx, DeviceInit, |init| init.name = name);
    STATUS_SUCCESS
}

/// `WdfDeviceInitAssignSDDLString` (PASSIVE): stored only.
///
/// # Safety
/// The pointers are null or valid for their types.
#[must_use]
pub unsafe fn WdfDeviceInitAssignSDDLString(
    DeviceInit: PWDFDEVICE_INIT,
    SDDLString: PCUNICODE_STRING,
) -> NTSTATUS {
    let ddi = wdf_ddi::DEVICE_INIT_ASSIGN_SDDL_STRING;
    require_irql(PASSIVE, ddi);
    let fx = init_fx(DeviceInit, ddi);
    if let Some(status) = Fx::take_fault(&mut fx.lock(), Fault::DeviceInitAssignSddlString) {
        return status;
    }
    // SAFETY: null or valid (our contract).
    let sddl = unsafe { units(SDDLString) };
    with_init(&fx, DeviceInit, |init| init.sddl = sddl);
    STATUS_SUCCESS
}

/// `WdfDeviceCreate` (PASSIVE): consumes the init block (`*DeviceInit = NULL`) on success;
/// on failure nothing is left and no driver callback runs.
///
/// # Safety
/// The pointers are null or valid for their types.
#[must_use]
pub unsafe fn WdfDeviceCreate(
    DeviceInit: *mut PWDFDEVICE_INIT,
    DeviceAttributes: PWDF_OBJECT_ATTRIBUTES,
    Device: *mut WDFDEVICE,
) -> NTSTATUS {
    let ddi = wdf_ddi::DEVICE_CREATE;
    require_irql(PASSIVE, ddi);
    required(DeviceInit, 1, ddi);
    required(Device, 3, ddi);
    // SAFETY: valid (our contract).
    let init_pointer = unsafe { DeviceInit.read() };
    let fx = init_fx(init_pointer, ddi);
    // SAFETY: valid for its type (our contract).
    let attributes = match unsafe { sized(DeviceAttributes) } {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    if let Err(status) = validate_attributes(attributes.as_ref()) {
        return status;
    }
    let mut st = fx.lock();
    if let Some(status) = Fx::take_fault(&mut st, Fault::DeviceCreate) {
        return status;
    }
    let Some(init) = st.inits.get(&init_pointer.addr()) else {
        return STATUS_INVALID_DEVICE_STATE;
    };
    if init.created.is_some() {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let name = init.name.clone().filter(|name| !name.is_empty());
    if init.sddl.is_some() && name.is_none() {
        return STATUS_INVALID_SECURITY_DESCR;
    }
    if let Some(name) = &name {
        let taken = st.objects.values().any(|object| match &object.data {
            Data::Device(device) => device.name.as_ref() == Some(name),
            _ => false,
        });
        if taken {
            return STATUS_OBJECT_NAME_COLLISION;
        }
    }
    let device = Device {
        name,
        file_config: init.file_config,
        file_attributes: init.file_attributes,
        request_attributes: init.request_attributes,
        interfaces: Vec::new(),
        symbolic_link: None,
        default_queue: None,
        open_files: 0,
        started: false,
        removing: false,
        deleted_when_closed: false,
    };
    let parent = st.driver;
    let handle = fx.add_object(
        &mut st,
        Kind::Device,
        parent,
        attributes.as_ref(),
        Data::Device(device),
    );
    if let Some(init) = st.inits.get_mut(&init_pointer.addr()) {
        init.created = Some(handle);
    }
    drop(st);
    // SAFETY: valid out pointers (our contract).
    unsafe { DeviceInit.write(core::ptr::null_mut()) };
    // SAFETY: as above.
    unsafe { Device.write(handle_pointer(handle)) };
    STATUS_SUCCESS
}

/// `WdfDeviceCreateDeviceInterface` (PASSIVE): registered, enabled at start, removed at
/// removal.
///
/// # Safety
/// The pointers are null or valid for their types.
#[must_use]
pub unsafe fn WdfDeviceCreateDeviceInterface(
    Device: WDFDEVICE,
    InterfaceClassGUID: *const GUID,
    _ReferenceString: PCUNICODE_STRING,
) -> NTSTATUS {
    let ddi = wdf_ddi::DEVICE_CREATE_DEVICE_INTERFACE;
    require_irql(PASSIVE, ddi);
    let fx = checked(Device.addr(), Some(Kind::Device), ddi);
    required(InterfaceClassGUID, 2, ddi);
    // SAFETY: valid (our contract).
    let guid = unsafe { InterfaceClassGUID.read() };
    let mut st = fx.lock();
    if let Some(status) = Fx::take_fault(&mut st, Fault::DeviceCreateDeviceInterface) {
        return status;
    }
    if let Some(device) = device_mut(&mut st, Device.addr()) {
        device.interfaces.push(guid);
    }
    STATUS_SUCCESS
}

/// `WdfDeviceCreateSymbolicLink` (PASSIVE): one per device, deleted at removal.
///
/// # Safety
/// The pointers are null or valid for their types.
#[must_use]
pub unsafe fn WdfDeviceCreateSymbolicLink(
    Device: WDFDEVICE,
    SymbolicLinkName: PCUNICODE_STRING,
) -> NTSTATUS {
    let ddi = wdf_ddi::DEVICE_CREATE_SYMBOLIC_LINK;
    require_irql(PASSIVE, ddi);
    let fx = checked(Device.addr(), Some(Kind::Device), ddi);
    required(SymbolicLinkName, 2, ddi);
    // SAFETY: valid (our contract).
    let link = unsafe { units(SymbolicLinkName) }.unwrap_or_default();
    let mut st = fx.lock();
    if let Some(status) = Fx::take_fault(&mut st, Fault::DeviceCreateSymbolicLink) {
        return status;
    }
    if link.is_empty() {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let taken = st.objects.values().any(|object| match &object.data {
        Data::Device(device) => device.symbolic_link.as_ref() == Some(&link),
        _ => false,
    });
    if taken {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    match device_mut(&mut st, Device.addr()) {
        Some(device) if device.symbolic_link.is_none() && device.name.is_some() => {
            device.symbolic_link = Some(link);
            STATUS_SUCCESS
        }
        _ => STATUS_INVALID_DEVICE_REQUEST,
    }
}

/// `WdfIoQueueCreate` (`<= DISPATCH_LEVEL`). The model has one kind of queue: the
/// device's default queue, parallel, without a presented-request cap; any other
/// configuration is `STATUS_NOT_SUPPORTED` (a model limit, not KMDF behaviour).
///
/// # Safety
/// The pointers are null or valid for their types.
#[must_use]
pub unsafe fn WdfIoQueueCreate(
    Device: WDFDEVICE,
    Config: PWDF_IO_QUEUE_CONFIG,
    QueueAttributes: PWDF_OBJECT_ATTRIBUTES,
    Queue: *mut WDFQUEUE,
) -> NTSTATUS {
    let ddi = wdf_ddi::IO_QUEUE_CREATE;
    require_irql(DISPATCH, ddi);
    let fx = checked(Device.addr(), Some(Kind::Device), ddi);
    required(Config, 2, ddi);
    // SAFETY: valid for its type (our contract).
    let config: WDF_IO_QUEUE_CONFIG = match unsafe { sized(Config) } {
        Ok(Some(config)) => config,
        Ok(None) => return STATUS_INVALID_PARAMETER,
        Err(status) => return status,
    };
    // SAFETY: as above.
    let attributes = match unsafe { sized(QueueAttributes) } {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    if let Err(status) = validate_attributes(attributes.as_ref()) {
        return status;
    }
    // SAFETY: `Parallel` is the union's only member, a plain ULONG.
    let cap = unsafe { config.Settings.Parallel.NumberOfPresentedRequests };
    if config.DefaultQueue == 0
        || config.DispatchType != _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel
        || cap != ULONG::MAX
        || config.PowerManaged == _WDF_TRI_STATE::WdfTrue
    {
        return STATUS_NOT_SUPPORTED;
    }
    let mut st = fx.lock();
    if let Some(status) = Fx::take_fault(&mut st, Fault::IoQueueCreate) {
        return status;
    }
    match device_mut(&mut st, Device.addr()) {
        Some(device) if device.default_queue.is_some() => return STATUS_UNSUCCESSFUL,
        Some(device) if device.started => return STATUS_INVALID_DEVICE_STATE,
        Some(_) => {}
        None => return STATUS_INVALID_DEVICE_STATE,
    }
    let queue = Queue {
        device: Device.addr(),
        io_device_control: config.EvtIoDeviceControl,
        accepting: true,
        cancel_dispatched: false,
        dispatching: 0,
        cancelled: std::collections::VecDeque::new(),
        owned: Vec::new(),
        cancelable: Vec::new(),
    };
    let handle = fx.add_object(
        &mut st,
        Kind::Queue,
        Some(Device.addr()),
        attributes.as_ref(),
        Data::Queue(queue),
    );
    if let Some(device) = device_mut(&mut st, Device.addr()) {
        device.default_queue = Some(handle);
    }
    drop(st);
    if !Queue.is_null() {
        // SAFETY: a valid out pointer (our contract).
        unsafe { Queue.write(handle_pointer(handle)) };
    }
    STATUS_SUCCESS
}

/// `WdfIoQueueGetDevice` (`<= DISPATCH_LEVEL`).
///
/// # Safety
/// `Queue` is a handle the framework gave the driver.
#[must_use]
pub unsafe fn WdfIoQueueGetDevice(Queue: WDFQUEUE) -> WDFDEVICE {
    let ddi = wdf_ddi::IO_QUEUE_GET_DEVICE;
    require_irql(DISPATCH, ddi);
    let fx = checked(Queue.addr(), Some(Kind::Queue), ddi);
    let device = queue_mut(&mut fx.lock(), Queue.addr()).map_or(0, |queue| queue.device);
    handle_pointer(device)
}

/// `WdfFileObjectGetDevice` (`<= DISPATCH_LEVEL`).
///
/// # Safety
/// `FileObject` is a handle the framework gave the driver.
#[must_use]
pub unsafe fn WdfFileObjectGetDevice(FileObject: WDFFILEOBJECT) -> WDFDEVICE {
    let ddi = wdf_ddi::FILE_OBJECT_GET_DEVICE;
    require_irql(DISPATCH, ddi);
    let fx = checked(FileObject.addr(), Some(Kind::File), ddi);
    let device = file_mut(&mut fx.lock(), FileObject.addr()).map_or(0, |file| file.device);
    handle_pointer(device)
}

/// `WdfFileObjectGetFileName` (`<= DISPATCH_LEVEL`): the name the create used after the
/// device's name (`Length` 0 for none). Valid while the file object is.
///
/// # Safety
/// `FileObject` is a handle the framework gave the driver.
#[must_use]
pub unsafe fn WdfFileObjectGetFileName(FileObject: WDFFILEOBJECT) -> PUNICODE_STRING {
    let ddi = wdf_ddi::FILE_OBJECT_GET_FILE_NAME;
    require_irql(DISPATCH, ddi);
    let fx = checked(FileObject.addr(), Some(Kind::File), ddi);
    let mut st = fx.lock();
    file_mut(&mut st, FileObject.addr())
        .map_or(core::ptr::null_mut(), |file| file.name.as_mut_ptr())
}

/// `WdfRequestGetFileObject` (`<= DISPATCH_LEVEL`).
///
/// # Safety
/// `Request` is a handle the framework gave the driver.
#[must_use]
pub unsafe fn WdfRequestGetFileObject(Request: WDFREQUEST) -> WDFFILEOBJECT {
    let ddi = wdf_ddi::REQUEST_GET_FILE_OBJECT;
    require_irql(DISPATCH, ddi);
    let fx = checked(Request.addr(), Some(Kind::Request), ddi);
    let mut st = fx.lock();
    if Fx::take_fault(&mut st, Fault::RequestGetFileObject).is_some() {
        return handle_pointer(0);
    }
    let file = request_mut(&mut st, Request.addr()).map_or(0, |request| request.file);
    handle_pointer(file)
}

/// Which buffer `retrieve` returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Input,
    Output,
}

/// `WdfRequestRetrieve{Input,Output}Buffer`: `METHOD_BUFFERED`, one system buffer.
///
/// # Safety
/// `buffer` and `length` are null or valid for a write.
unsafe fn retrieve(
    request: WDFREQUEST,
    minimum: usize,
    buffer: *mut PVOID,
    length: *mut usize,
    direction: Direction,
) -> NTSTATUS {
    let ddi = match direction {
        Direction::Input => wdf_ddi::REQUEST_RETRIEVE_INPUT_BUFFER,
        Direction::Output => wdf_ddi::REQUEST_RETRIEVE_OUTPUT_BUFFER,
    };
    require_irql(DISPATCH, ddi);
    let fx = checked(request.addr(), Some(Kind::Request), ddi);
    required(buffer, 3, ddi);
    // SAFETY: valid for a write (our contract).
    unsafe { buffer.write(core::ptr::null_mut()) };
    if !length.is_null() {
        // SAFETY: as above.
        unsafe { length.write(0) };
    }
    let mut st = fx.lock();
    let fault = match direction {
        Direction::Input => Fault::RequestRetrieveInputBuffer,
        Direction::Output => Fault::RequestRetrieveOutputBuffer,
    };
    if let Some(status) = Fx::take_fault(&mut st, fault) {
        return status;
    }
    let Some(r) = request_mut(&mut st, request.addr()) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    if r.kind != RequestKind::DeviceControl {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let available = match direction {
        Direction::Input => r.input_length,
        Direction::Output => r.output_length,
    };
    if available == 0 || available < minimum {
        return STATUS_BUFFER_TOO_SMALL;
    }
    let pointer = r.buffer.as_mut_ptr();
    drop(st);
    // SAFETY: valid for a write (our contract).
    unsafe { buffer.write(pointer.cast()) };
    if !length.is_null() {
        // SAFETY: as above.
        unsafe { length.write(available) };
    }
    STATUS_SUCCESS
}

/// `WdfRequestRetrieveInputBuffer` (`<= DISPATCH_LEVEL`).
///
/// # Safety
/// `Request` is a handle the framework gave the driver; the out pointers are null or valid.
#[must_use]
pub unsafe fn WdfRequestRetrieveInputBuffer(
    Request: WDFREQUEST,
    MinimumRequiredSize: usize,
    Buffer: *mut PVOID,
    Length: *mut usize,
) -> NTSTATUS {
    // SAFETY: our contract.
    unsafe {
        retrieve(
            Request,
            MinimumRequiredSize,
            Buffer,
            Length,
            Direction::Input,
        )
    }
}

/// `WdfRequestRetrieveOutputBuffer` (`<= DISPATCH_LEVEL`).
///
/// # Safety
/// `Request` is a handle the framework gave the driver; the out pointers are null or valid.
#[must_use]
pub unsafe fn WdfRequestRetrieveOutputBuffer(
    Request: WDFREQUEST,
    MinimumRequiredSize: usize,
    Buffer: *mut PVOID,
    Length: *mut usize,
) -> NTSTATUS {
    // SAFETY: our contract.
    unsafe {
        retrieve(
            Request,
            MinimumRequiredSize,
            Buffer,
            Length,
            Direction::Output,
        )
    }
}

/// `WdfRequestComplete` (`<= DISPATCH_LEVEL`).
///
/// # Safety
/// `Request` is a handle the framework gave the driver.
pub unsafe fn WdfRequestComplete(Request: WDFREQUEST, Status: NTSTATUS) {
    // SAFETY: our contract.
    unsafe { WdfRequestCompleteWithInformation(Request, Status, 0) };
}

/// `WdfRequestCompleteWithInformation` (`<= DISPATCH_LEVEL`).
///
/// # Safety
/// `Request` is a handle the framework gave the driver.
pub unsafe fn WdfRequestCompleteWithInformation(
    Request: WDFREQUEST,
    Status: NTSTATUS,
    Information: ULONG_PTR,
) {
    let ddi = wdf_ddi::REQUEST_COMPLETE;
    require_irql(DISPATCH, ddi);
    let handle = Request.addr();
    let fx = checked(handle, Some(Kind::Request), ddi);
    let information = usize::try_from(Information).unwrap_or(usize::MAX);
    {
        let mut st = fx.lock();
        let Some(r) = request_mut(&mut st, handle) else {
            drop(st);
            violation([codes::WDF_SIM_STALE_HANDLE, handle as u64, ddi, 0]);
        };
        if r.completing {
            drop(st);
            violation([codes::WDF_SIM_STALE_HANDLE, handle as u64, ddi, 0]);
        }
        if matches!(
            r.state,
            RequestState::Cancelable | RequestState::CancelPending
        ) {
            drop(st);
            violation([
                codes::WDF_SIM_COMPLETE_WHILE_CANCELABLE,
                handle as u64,
                0,
                0,
            ]);
        }
        if r.kind == RequestKind::DeviceControl
            && r.output_length > 0
            && NT_SUCCESS(Status)
            && information > r.output_length
        {
            drop(st);
            violation([
                codes::WDF_REQUEST_FATAL_ERROR,
                codes::WDF_REQUEST_FATAL_ERROR_INFORMATION_LENGTH_MISMATCH,
                handle as u64,
                Information,
            ]);
        }
    }
    fx.complete(handle, Status, information);
}

/// `WdfRequestMarkCancelableEx` (`<= DISPATCH_LEVEL`). Never calls the cancel routine.
///
/// # Safety
/// `Request` is a handle the framework gave the driver.
#[must_use]
pub unsafe fn WdfRequestMarkCancelableEx(
    Request: WDFREQUEST,
    EvtRequestCancel: PFN_WDF_REQUEST_CANCEL,
) -> NTSTATUS {
    let ddi = wdf_ddi::REQUEST_MARK_CANCELABLE_EX;
    require_irql(DISPATCH, ddi);
    let handle = Request.addr();
    let fx = checked(handle, Some(Kind::Request), ddi);
    if EvtRequestCancel.is_none() {
        violation([codes::WDF_REQUIRED_PARAMETER_IS_NULL, 2, ddi, 0]);
    }
    let mut st = fx.lock();
    let Some(r) = request_mut(&mut st, handle) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let Some(queue) = r.queue else {
        // Not associated with a queue (a create request): KMDF's verifier break + status.
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    if r.state != RequestState::DriverOwned {
        drop(st);
        violation([codes::WDF_SIM_CANCELABLE_STATE, handle as u64, ddi, 0]);
    }
    let cancelled = r.cancelled;
    let purging = queue_mut(&mut st, queue).is_some_and(|q| q.cancel_dispatched);
    if cancelled || purging {
        return STATUS_CANCELLED;
    }
    if let Some(status) = Fx::take_fault(&mut st, Fault::RequestMarkCancelableEx) {
        return status;
    }
    if let Some(r) = request_mut(&mut st, handle) {
        r.state = RequestState::Cancelable;
        r.cancel_routine = EvtRequestCancel;
    }
    if let Some(q) = queue_mut(&mut st, queue) {
        q.cancelable.push(handle);
    }
    STATUS_SUCCESS
}

/// `WdfRequestUnmarkCancelable` (`<= DISPATCH_LEVEL`): `STATUS_SUCCESS` takes the request
/// back; `STATUS_CANCELLED` once its cancel routine will run or has run.
///
/// # Safety
/// `Request` is a handle the framework gave the driver.
#[must_use]
pub unsafe fn WdfRequestUnmarkCancelable(Request: WDFREQUEST) -> NTSTATUS {
    let ddi = wdf_ddi::REQUEST_UNMARK_CANCELABLE;
    require_irql(DISPATCH, ddi);
    let handle = Request.addr();
    let fx = checked(handle, Some(Kind::Request), ddi);
    let mut st = fx.lock();
    let Some(r) = request_mut(&mut st, handle) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    match r.state {
        RequestState::Cancelable => {
            r.state = RequestState::DriverOwned;
            let queue = r.queue;
            if let Some(q) = queue.and_then(|queue| queue_mut(&mut st, queue)) {
                q.cancelable.retain(|c| *c != handle);
            }
            STATUS_SUCCESS
        }
        RequestState::CancelPending | RequestState::CancelRoutine => STATUS_CANCELLED,
        RequestState::DriverOwned => {
            drop(st);
            violation([codes::WDF_SIM_CANCELABLE_STATE, handle as u64, ddi, 0]);
        }
    }
}

/// `WdfObjectGetTypedContextWorker` (`<= DISPATCH_LEVEL + 1`): the context whose type is
/// `TypeInfo` (compared by address), or NULL.
///
/// # Safety
/// `Handle` is a handle the framework gave the driver.
#[must_use]
pub unsafe fn WdfObjectGetTypedContextWorker(
    Handle: WDFOBJECT,
    TypeInfo: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
) -> PVOID {
    let ddi = wdf_ddi::OBJECT_GET_TYPED_CONTEXT_WORKER;
    require_irql(DISPATCH + 1, ddi);
    if Handle.is_null() {
        violation([codes::WDF_REQUIRED_PARAMETER_IS_NULL, 1, ddi, 0]);
    }
    required(TypeInfo, 2, ddi);
    let fx = checked(Handle.addr(), None, ddi);
    let st = fx.lock();
    st.objects
        .get(&Handle.addr())
        .and_then(|object| object.context.as_ref())
        .filter(|context| context.key == TypeInfo.addr())
        .map_or(core::ptr::null_mut(), |context| context.ptr.cast())
}

/// A new device-init block for `EvtDriverDeviceAdd`.
pub(crate) fn new_init(fx: &Arc<Fx>) -> PWDFDEVICE_INIT {
    let handle = new_handle();
    fx.lock().inits.insert(handle, Init::default());
    register(handle, fx);
    handle_pointer(handle)
}

/// Frees a device-init block after `EvtDriverDeviceAdd`; returns the device it created.
pub(crate) fn drop_init(fx: &Fx, init: PWDFDEVICE_INIT) -> Option<usize> {
    unregister(init.addr());
    fx.lock()
        .inits
        .remove(&init.addr())
        .and_then(|init| init.created)
}
