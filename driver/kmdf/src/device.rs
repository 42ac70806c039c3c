//! The device object: `EvtDriverDeviceAdd` creates it with its file-object callbacks, name,
//! security descriptor, device interface, symbolic link and default queue. Its context owns
//! the timer service; the device's cleanup callback unloads the service and drops it.
//!
//! One instance: the device's NT name and symbolic link are fixed (`\Device\KTimer`,
//! `\DosDevices\KTimer`), so the framework refuses a second device
//! (`WdfDeviceCreate`: `STATUS_OBJECT_NAME_COLLISION`), its `EvtDriverDeviceAdd` fails with
//! that status and the node does not start, while the first device keeps serving.

use core::sync::atomic::Ordering;

use crate::sys::{
    _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, GUID,
    NTSTATUS, PWDFDEVICE_INIT, STATUS_INVALID_DEVICE_STATE, STATUS_SUCCESS, ULONG,
    WDF_FILEOBJECT_CONFIG, WDF_NO_HANDLE, WDFDEVICE, WDFDRIVER, WDFOBJECT,
    call_unsafe_wdf_function_binding,
};
use ktimer_abi::device::{
    DEVICE_INTERFACE_GUID, DEVICE_NAME_KERNEL_UTF16, SYMBOLIC_LINK_KERNEL_UTF16, ascii_to_utf16,
};

use crate::Logic;
use crate::contexts::{DEVICE_CONTEXT, FILE_CONTEXT};
use crate::file;
use crate::logic::DriverLogic;
use crate::queue;
use crate::request::REQUEST_CONTEXT;
use crate::wdf::{check, object_attributes, ulong_size_of, unicode_string};
use ktimer_kernel::irql::PassiveLevel;

/// Who may open the device: SYSTEM and Administrators, full access; a protected DACL. The
/// same descriptor as the INF's hardware section (`driver/ktimer.inx`), applied here to the
/// named device object as well, so the name is never less protected than the interface.
const DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

static DEVICE_SDDL_UTF16: [u16; DEVICE_SDDL.len()] = ascii_to_utf16(DEVICE_SDDL);
static DEVICE_NAME: [u16; DEVICE_NAME_KERNEL_UTF16.len()] = DEVICE_NAME_KERNEL_UTF16;
static SYMBOLIC_LINK: [u16; SYMBOLIC_LINK_KERNEL_UTF16.len()] = SYMBOLIC_LINK_KERNEL_UTF16;

/// The device interface user mode finds the device by (defined in ktimer-abi).
static INTERFACE_GUID: GUID = GUID {
    Data1: DEVICE_INTERFACE_GUID.data1,
    Data2: DEVICE_INTERFACE_GUID.data2,
    Data3: DEVICE_INTERFACE_GUID.data3,
    Data4: DEVICE_INTERFACE_GUID.data4,
};

const WDF_FILEOBJECT_CONFIG_SIZE: ULONG = ulong_size_of::<WDF_FILEOBJECT_CONFIG>();

/// `EvtDriverDeviceAdd`: creates the device for the root-enumerated `Root\KTimer` node.
/// `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Called by the framework with its driver handle and a `WDFDEVICE_INIT` that is valid
/// until `WdfDeviceCreate` consumes it.
pub(super) unsafe extern "C" fn evt_driver_device_add(
    _driver: WDFDRIVER,
    device_init: PWDFDEVICE_INIT,
) -> NTSTATUS {
    let Some(passive) = PassiveLevel::current() else {
        trace!("ktimer: EvtDriverDeviceAdd above PASSIVE_LEVEL");
        return STATUS_INVALID_DEVICE_STATE;
    };
    // SAFETY: `device_init` is the framework's, valid for this callback (our contract).
    match unsafe { create_device(device_init, &passive) } {
        Ok(()) => {
            trace!("ktimer: device created");
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

/// The body of [`evt_driver_device_add`]. On an error after `WdfDeviceCreate` the
/// framework deletes the device, and its cleanup callback unloads the service.
/// `PASSIVE_LEVEL`.
///
/// # Safety
///
/// `device_init` is the framework's `WDFDEVICE_INIT` for this `EvtDriverDeviceAdd` call.
unsafe fn create_device(
    mut device_init: PWDFDEVICE_INIT,
    passive: &PassiveLevel,
) -> Result<(), NTSTATUS> {
    // Open/cleanup/close callbacks, and the per-handle context that holds the service's
    // FileHandle (WDF_FILEOBJECT_CONFIG_INIT sets the last two members the same way).
    let mut file_config = WDF_FILEOBJECT_CONFIG {
        Size: WDF_FILEOBJECT_CONFIG_SIZE,
        EvtDeviceFileCreate: Some(file::evt_device_file_create),
        EvtFileClose: Some(file::evt_file_close),
        EvtFileCleanup: Some(file::evt_file_cleanup),
        AutoForwardCleanupClose: _WDF_TRI_STATE::WdfUseDefault,
        FileObjectClass: _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts,
    };
    let mut file_attributes = object_attributes();
    file_attributes.ContextTypeInfo = FILE_CONTEXT.type_info();
    // SAFETY: `device_init` is valid until WdfDeviceCreate (our contract); both structures
    // are initialised, live across the call, and are copied by the framework.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetFileObjectConfig,
            device_init,
            &raw mut file_config,
            &raw mut file_attributes,
        );
    }

    // Every request gets the small context the cancel hand-off needs (see `request`).
    let mut request_attributes = object_attributes();
    request_attributes.ContextTypeInfo = REQUEST_CONTEXT.type_info();
    // SAFETY: as above; the attributes are copied by the framework.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetRequestAttributes,
            device_init,
            &raw mut request_attributes,
        );
    }

    // \Device\KTimer, the target of the symbolic link, protected by the same DACL as the
    // INF gives the device. Opens of names below it (\Device\KTimer\x) are checked too:
    // the framework always sets FILE_DEVICE_SECURE_OPEN (WdfDeviceInitSetCharacteristics).
    let name = unicode_string(&DEVICE_NAME);
    // SAFETY: `device_init` is valid (our contract); `name` describes a live 'static
    // UTF-16 buffer and is copied by the framework.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceInitAssignName, device_init, &raw const name)
    };
    check(status, "WdfDeviceInitAssignName")?;
    let sddl = unicode_string(&DEVICE_SDDL_UTF16);
    // SAFETY: as for the name; a name was assigned first, as the routine requires.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitAssignSDDLString,
            device_init,
            &raw const sddl
        )
    };
    check(status, "WdfDeviceInitAssignSDDLString")?;

    // PASSIVE_LEVEL callbacks for the device and, by inheritance, its queue and file
    // objects; no framework locking (the service has its own).
    let mut device_attributes = object_attributes();
    device_attributes.EvtCleanupCallback = Some(evt_device_cleanup);
    device_attributes.ExecutionLevel = _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
    device_attributes.SynchronizationScope =
        _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeNone;
    device_attributes.ContextTypeInfo = DEVICE_CONTEXT.type_info();

    // Created before the device so that a failure needs no cleanup beyond dropping it here.
    let service = match <Logic as DriverLogic>::create(logic_config(), passive) {
        Ok(service) => service,
        Err(status) => {
            trace!("ktimer: timer service creation failed: {status:#010x}");
            return Err(status);
        }
    };

    let mut device: WDFDEVICE = WDF_NO_HANDLE.cast();
    // SAFETY: `device_init` is the framework's (our contract) and is consumed here;
    // the attributes are initialised and live; `device` receives the handle.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut device_init,
            &raw mut device_attributes,
            &raw mut device,
        )
    };
    check(status, "WdfDeviceCreate")?;

    // SAFETY: `device` was just created with DEVICE_CONTEXT.
    let context = unsafe { DEVICE_CONTEXT.get(device.cast()) };
    // SAFETY: a non-null context pointer points to this device's zero-filled
    // DeviceContext; no other callback of the device can run before this function returns.
    let Some(context) = (unsafe { context.as_mut() }) else {
        trace!("ktimer: the device has no context");
        return Err(STATUS_INVALID_DEVICE_STATE);
    };
    context.service.write(service);
    context.ready.store(true, Ordering::Release);

    // SAFETY: `device` is valid; the GUID is a 'static; no reference string (null).
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &raw const INTERFACE_GUID,
            core::ptr::null(),
        )
    };
    check(status, "WdfDeviceCreateDeviceInterface")?;

    let link = unicode_string(&SYMBOLIC_LINK);
    // SAFETY: `device` is valid and named; `link` describes a live 'static UTF-16 buffer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const link)
    };
    check(status, "WdfDeviceCreateSymbolicLink")?;

    queue::create_default_queue(device)
}

/// The logic's settings: the defaults; on the simulator, those a test set for this kernel
/// through [`crate::sim_hooks::set_service_config`].
fn logic_config() -> <Logic as DriverLogic>::Config {
    #[cfg(not(windows))]
    if let Some(config) = crate::sim_hooks::configured() {
        return config;
    }
    <Logic as DriverLogic>::Config::default()
}

/// The device's `EvtCleanupCallback` (device removal, or a failed `EvtDriverDeviceAdd`):
/// unloads the service (completes its pending waits, destroys every timer and frees their
/// storage before returning) and drops it. `PASSIVE_LEVEL`; if called above it, the
/// service is left in place (leaked) rather than torn down at the wrong level.
///
/// The service is unloaded while it is still published (`ready`), and only then
/// withdrawn: a cancel routine that runs meanwhile (KMDF's removal purge makes that
/// impossible, but the order does not rely on it) finds the service and takes its wait
/// back through the claim protocol, so each wait is completed once, by one side. Clearing
/// `ready` first would let such a cancel routine complete a wait the service still holds,
/// which the unload would then complete again.
///
/// # Safety
///
/// Called by the framework with the device being deleted, after the callbacks of its
/// queue and file objects have ended.
unsafe extern "C" fn evt_device_cleanup(object: WDFOBJECT) {
    let Some(passive) = PassiveLevel::current() else {
        trace!("ktimer: device cleanup above PASSIVE_LEVEL; the timer service is leaked");
        return;
    };
    // SAFETY: `object` is the device being cleaned up, a valid handle for this callback.
    let context = unsafe { DEVICE_CONTEXT.get(object) };
    // SAFETY: a non-null context pointer points to this device's DeviceContext; it is only
    // read here (shared), as a concurrent cancel routine may read it too.
    let Some(context) = (unsafe { context.as_ref() }) else {
        return;
    };
    if !context.ready.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: `ready` is set, so `service` is initialised; it stays in place until after
    // the unload.
    DriverLogic::unload(unsafe { context.service.assume_init_ref() }, &passive);
    context.ready.store(false, Ordering::Release);
    // SAFETY: `ready` was set, so `service` is initialised; it is moved out once (`ready`
    // is now clear, so neither this callback nor a cancel routine reads it again).
    let service = unsafe { context.service.assume_init_read() };
    drop(service);
    trace!("ktimer: timer service unloaded");
}
