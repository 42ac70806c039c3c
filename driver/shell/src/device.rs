//! The device object: `EvtDriverDeviceAdd` creates it with its file-object callbacks, name,
//! security descriptor, device interface, symbolic link and default queue, all from the
//! hosted logic's [`DeviceIdentity`](crate::DeviceIdentity). Its context owns the logic; the
//! device's cleanup callback unloads the logic and drops it.
//!
//! One instance: the device's NT name and symbolic link are fixed, so the framework refuses
//! a second device
//! (`WdfDeviceCreate`: `STATUS_OBJECT_NAME_COLLISION`), its `EvtDriverDeviceAdd` fails with
//! that status and the node does not start, while the first device keeps serving.

use core::sync::atomic::Ordering;

use ktimer_kernel::pool::{PoolArc, PoolTag};

use crate::sys::{
    _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, GUID,
    NTSTATUS, PWDFDEVICE_INIT, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_STATE,
    STATUS_SUCCESS, ULONG, WDF_FILEOBJECT_CONFIG, WDF_NO_HANDLE, WDFDEVICE, WDFDRIVER, WDFOBJECT,
    call_unsafe_wdf_function_binding,
};

use crate::contexts::{self, DEVICE_CONTEXT, FILE_CONTEXT};
use crate::file;
use crate::logic::DriverLogic;
use crate::queue;
use crate::request::REQUEST_CONTEXT;
use crate::wdf::{check, object_attributes, ulong_size_of, unicode_string};
use ktimer_kernel::irql::PassiveLevel;

const WDF_FILEOBJECT_CONFIG_SIZE: ULONG = ulong_size_of::<WDF_FILEOBJECT_CONFIG>();

/// `EvtDriverDeviceAdd`: creates the device for the driver's root-enumerated node.
/// `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Called by the framework with its driver handle and a `WDFDEVICE_INIT` that is valid
/// until `WdfDeviceCreate` consumes it.
pub(super) unsafe extern "C" fn evt_driver_device_add<L: DriverLogic>(
    _driver: WDFDRIVER,
    device_init: PWDFDEVICE_INIT,
) -> NTSTATUS {
    let name = L::IDENTITY.driver_name;
    let Some(passive) = PassiveLevel::current() else {
        trace!("{name}: EvtDriverDeviceAdd above PASSIVE_LEVEL");
        return STATUS_INVALID_DEVICE_STATE;
    };
    // SAFETY: `device_init` is the framework's, valid for this callback (our contract).
    match unsafe { create_device::<L>(device_init, &passive) } {
        Ok(()) => {
            trace!("{name}: device created");
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

/// The body of [`evt_driver_device_add`]. On an error after `WdfDeviceCreate` the
/// framework deletes the device, and its cleanup callback unloads the logic.
/// `PASSIVE_LEVEL`.
///
/// # Safety
///
/// `device_init` is the framework's `WDFDEVICE_INIT` for this `EvtDriverDeviceAdd` call.
unsafe fn create_device<L: DriverLogic>(
    mut device_init: PWDFDEVICE_INIT,
    passive: &PassiveLevel,
) -> Result<(), NTSTATUS> {
    let identity = &L::IDENTITY;
    let name = identity.driver_name;
    // Open/cleanup/close callbacks, and the per-handle context that holds the logic's
    // handle value (WDF_FILEOBJECT_CONFIG_INIT sets the last two members the same way).
    let mut file_config = WDF_FILEOBJECT_CONFIG {
        Size: WDF_FILEOBJECT_CONFIG_SIZE,
        EvtDeviceFileCreate: Some(file::evt_device_file_create::<L>),
        EvtFileClose: Some(file::evt_file_close::<L>),
        EvtFileCleanup: Some(file::evt_file_cleanup::<L>),
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

    // The NT name, the target of the symbolic link, protected by the same DACL as the INF
    // gives the device. Opens of names below it (\Device\Name\x) are checked too: the
    // framework always sets FILE_DEVICE_SECURE_OPEN (WdfDeviceInitSetCharacteristics).
    let device_name = unicode_string(identity.device_name);
    // SAFETY: `device_init` is valid (our contract); `name` describes a live 'static
    // UTF-16 buffer and is copied by the framework.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitAssignName,
            device_init,
            &raw const device_name
        )
    };
    check(name, status, "WdfDeviceInitAssignName")?;
    let sddl = unicode_string(identity.sddl);
    // SAFETY: as for the name; a name was assigned first, as the routine requires.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitAssignSDDLString,
            device_init,
            &raw const sddl
        )
    };
    check(name, status, "WdfDeviceInitAssignSDDLString")?;

    // PASSIVE_LEVEL callbacks for the device and, by inheritance, its queue and file
    // objects; no framework locking (the logic has its own).
    let mut device_attributes = object_attributes();
    device_attributes.EvtCleanupCallback = Some(evt_device_cleanup::<L>);
    device_attributes.ExecutionLevel = _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
    device_attributes.SynchronizationScope =
        _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeNone;
    device_attributes.ContextTypeInfo = DEVICE_CONTEXT.type_info();

    // Created before the device so that a failure needs no cleanup beyond dropping it here.
    let logic = match L::create(logic_config::<L>(), passive) {
        Ok(logic) => logic,
        Err(status) => {
            trace!("{name}: the driver logic's creation failed: {status:#010x}");
            return Err(status);
        }
    };
    let Ok(logic) = PoolArc::new(logic, PoolTag::new(identity.pool_tag)) else {
        trace!("{name}: no memory for the driver logic");
        return Err(STATUS_INSUFFICIENT_RESOURCES);
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
    check(name, status, "WdfDeviceCreate")?;

    // SAFETY: `device` was just created with DEVICE_CONTEXT and lives while this callback
    // runs.
    let Some(context) = (unsafe { contexts::device_context(device) }) else {
        trace!("{name}: the device has no context");
        return Err(STATUS_INVALID_DEVICE_STATE);
    };
    // Published: from here on the device's cleanup releases the logic.
    context
        .logic
        .store(PoolArc::into_raw(logic), Ordering::Release);

    publish_device::<L>(device)?;
    queue::create_default_queue::<L>(device)
}

/// Registers `device`'s interface and creates its symbolic link. `PASSIVE_LEVEL`.
fn publish_device<L: DriverLogic>(device: WDFDEVICE) -> Result<(), NTSTATUS> {
    let identity = &L::IDENTITY;
    let name = identity.driver_name;
    let interface = guid(identity.interface);
    // SAFETY: `device` is valid; the GUID is live across the call (the framework copies
    // it); no reference string (null).
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &raw const interface,
            core::ptr::null(),
        )
    };
    check(name, status, "WdfDeviceCreateDeviceInterface")?;

    let link = unicode_string(identity.symbolic_link);
    // SAFETY: `device` is valid and named; `link` describes a live 'static UTF-16 buffer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const link)
    };
    check(name, status, "WdfDeviceCreateSymbolicLink")?;

    Ok(())
}

/// The `GUID` whose text, read as one big-endian number, is `value`. Any IRQL.
fn guid(value: u128) -> GUID {
    let [d1a, d1b, d1c, d1d, d2a, d2b, d3a, d3b, data4 @ ..] = value.to_be_bytes();
    GUID {
        Data1: u32::from_be_bytes([d1a, d1b, d1c, d1d]),
        Data2: u16::from_be_bytes([d2a, d2b]),
        Data3: u16::from_be_bytes([d3a, d3b]),
        Data4: data4,
    }
}

/// The logic's settings: the defaults; on the simulator, those a test set for this kernel
/// through [`crate::sim::set_config`].
fn logic_config<L: DriverLogic>() -> L::Config {
    #[cfg(not(windows))]
    if let Some(config) = crate::sim::configured::<L>() {
        return config;
    }
    L::Config::default()
}

/// The device's `EvtCleanupCallback` (device removal, or a failed `EvtDriverDeviceAdd`):
/// unloads the logic (a timer service, for example, completes its pending waits, destroys
/// every timer and frees their storage before returning) and drops it. `PASSIVE_LEVEL`; if
/// called above it, the logic is left in place (leaked) rather than torn down at the wrong
/// level.
///
/// The logic is unloaded while it is still published, and only then withdrawn: a cancel
/// routine that runs meanwhile (KMDF's removal purge makes that impossible, but the order
/// does not rely on it) finds the logic and takes its request back through the logic's
/// claim protocol, so each request is completed once, by one side. Withdrawing it first
/// would let such a cancel routine complete a request the logic still holds, which the
/// unload would then complete again.
///
/// # Safety
///
/// Called by the framework with the device being deleted, after the callbacks of its
/// queue and file objects have ended.
unsafe extern "C" fn evt_device_cleanup<L: DriverLogic>(object: WDFOBJECT) {
    let name = L::IDENTITY.driver_name;
    let Some(passive) = PassiveLevel::current() else {
        trace!("{name}: device cleanup above PASSIVE_LEVEL; the driver logic is leaked");
        return;
    };
    // SAFETY: `object` is the device being cleaned up, a valid handle for this callback.
    let Some(context) = (unsafe { contexts::device_context(object.cast()) }) else {
        return;
    };
    // SAFETY: the device being cleaned up hosts `L`; the borrow ends before the logic is
    // withdrawn below.
    let Some(logic) = (unsafe { contexts::logic::<L>(object.cast()) }) else {
        return;
    };
    logic.unload(&passive);
    let raw = context.logic.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if raw.is_null() {
        return;
    }
    // SAFETY: `raw` came from `PoolArc::<L>::into_raw` in `create_device`, and the swap
    // took it out of the context, so it is taken back exactly once.
    drop(unsafe { PoolArc::<L>::from_raw(raw) });
    trace!("{name}: driver logic unloaded");
}
