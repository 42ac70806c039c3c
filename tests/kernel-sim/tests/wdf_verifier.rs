//! The KMDF model's verifier: each `WDF_VIOLATION` check fires on misuse and stays quiet on
//! the correct use next to it. A minimal driver (below) parks every IOCTL it receives so
//! that the test thread can act on the request with the DDIs directly.

#[macro_use]
mod minimal_driver;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use kernel_sim::bugcheck::codes;
use kernel_sim::wdf::{DeviceNode, Framework, FrameworkConfig};
use kernel_sim::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, BugCheck, Config, Kernel,
    STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_SUCCESS, UNICODE_STRING,
    WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDFQUEUE, WDFREQUEST,
    call_unsafe_wdf_function_binding, catch_bug_check, ntddk,
};

/// Requests the test driver received, by device.
static PARKED: LazyLock<Mutex<HashMap<usize, Vec<usize>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

unsafe extern "C" fn cancel_routine(request: WDFREQUEST) {
    // SAFETY: the framework's cancelled request, ours to complete.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_CANCELLED) };
}

unsafe extern "C" fn io_device_control(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    _output: usize,
    _input: usize,
    _code: u32,
) {
    // SAFETY: the framework's queue.
    let device = unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueGetDevice, queue) };
    PARKED
        .lock()
        .unwrap()
        .entry(device.addr())
        .or_default()
        .push(request.addr());
}

minimal_kmdf_driver!(io_device_control);

struct Rig {
    kernel: Kernel,
    framework: Framework,
    device: DeviceNode,
}

fn rig() -> Rig {
    rig_with(&FrameworkConfig::default())
}

fn rig_with(config: &FrameworkConfig) -> Rig {
    let kernel = Kernel::new(Config::default());
    let framework = Framework::new(&kernel, config);
    framework.load(driver_entry).unwrap();
    let device = framework.add_device().unwrap();
    Rig {
        kernel,
        framework,
        device,
    }
}

impl Rig {
    /// Sends one IOCTL (8 bytes in, 8 out) and returns the request the driver parked.
    fn parked_request(
        &self,
        file: &kernel_sim::wdf::UserHandle,
    ) -> (WDFREQUEST, kernel_sim::wdf::Io) {
        let io = file.submit(0x0022_2000, &[1; 8], 8);
        let request = PARKED
            .lock()
            .unwrap()
            .get_mut(&self.device.handle().addr())
            .and_then(Vec::pop)
            .expect("the driver parked the request");
        (core::ptr::without_provenance_mut(request), io)
    }
}

fn wdf(bug_check: BugCheck) -> (u32, u64) {
    (bug_check.code, bug_check.parameters[0])
}

#[test]
fn required_parameter_null_fires_and_a_valid_buffer_pointer_does_not() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let (request, io) = rig.parked_request(&file);
    let _entered = rig.kernel.enter();
    let mut buffer: kernel_sim::PVOID = core::ptr::null_mut();
    let mut length = 0_usize;
    // SAFETY: a live request; valid out pointers.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveInputBuffer,
            request,
            8,
            &raw mut buffer,
            &raw mut length
        )
    };
    assert_eq!((status, length), (STATUS_SUCCESS, 8));
    assert!(!buffer.is_null());
    let fired = catch_bug_check(|| {
        // SAFETY: deliberately NULL Buffer: the check under test.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut()
            )
        }
    })
    .unwrap_err();
    assert_eq!(
        wdf(fired),
        (codes::WDF_VIOLATION, codes::WDF_REQUIRED_PARAMETER_IS_NULL)
    );
    drop(io);
    std::mem::forget(file);
}

#[test]
fn invalid_handle_fires_for_null_and_wrong_type_and_not_for_the_right_type() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let _entered = rig.kernel.enter();
    // SAFETY: a live file object.
    let device =
        unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetDevice, file.file_object()) };
    assert_eq!(device, rig.device.handle());
    let wrong_type = catch_bug_check(|| {
        // SAFETY: a device passed as a file object: the check under test.
        unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetDevice, device.cast()) }
    })
    .unwrap_err();
    assert_eq!(
        wdf(wrong_type),
        (codes::WDF_VIOLATION, codes::WDF_INVALID_HANDLE)
    );
    assert_eq!(wrong_type.parameters[1], device.addr() as u64);
    std::mem::forget(file);
}

#[test]
fn a_null_handle_is_invalid_handle() {
    let rig = rig();
    let _entered = rig.kernel.enter();
    let fired = catch_bug_check(|| {
        // SAFETY: deliberately NULL: the check under test.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueGetDevice, core::ptr::null_mut()) }
    })
    .unwrap_err();
    assert_eq!(
        wdf(fired),
        (codes::WDF_VIOLATION, codes::WDF_INVALID_HANDLE)
    );
}

#[test]
fn information_longer_than_the_output_buffer_fires_and_equal_length_does_not() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let (request, io) = rig.parked_request(&file);
    let (second, second_io) = rig.parked_request(&file);
    let entered = rig.kernel.enter();
    // SAFETY: a live, driver-owned request.
    unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestCompleteWithInformation, request, 0, 8);
    }
    assert_eq!(io.result().unwrap().output.len(), 8);
    let fired = catch_bug_check(|| {
        // SAFETY: 9 bytes reported for an 8-byte buffer: the check under test.
        unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestCompleteWithInformation, second, 0, 9);
        }
    })
    .unwrap_err();
    assert_eq!(
        fired.parameters[..2],
        [
            codes::WDF_REQUEST_FATAL_ERROR,
            codes::WDF_REQUEST_FATAL_ERROR_INFORMATION_LENGTH_MISMATCH
        ]
    );
    drop((entered, second_io));
    std::mem::forget(file);
}

#[test]
fn completing_twice_is_the_simulators_stale_handle_check() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let (request, io) = rig.parked_request(&file);
    let _entered = rig.kernel.enter();
    // SAFETY: a live, driver-owned request, completed once.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS) };
    assert_eq!(io.result().unwrap().status, STATUS_SUCCESS);
    let fired = catch_bug_check(|| {
        // SAFETY: completed already: the check under test.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS) };
    })
    .unwrap_err();
    assert_eq!(
        wdf(fired),
        (codes::WDF_VIOLATION, codes::WDF_SIM_STALE_HANDLE)
    );
    std::mem::forget(file);
}

#[test]
fn completing_while_cancelable_fires_and_after_a_successful_unmark_does_not() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let (request, io) = rig.parked_request(&file);
    let (second, second_io) = rig.parked_request(&file);
    let entered = rig.kernel.enter();
    // SAFETY: live, driver-owned requests.
    unsafe {
        assert_eq!(
            call_unsafe_wdf_function_binding!(
                WdfRequestMarkCancelableEx,
                request,
                Some(cancel_routine)
            ),
            STATUS_SUCCESS
        );
    }
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, request),
            STATUS_SUCCESS
        );
    }
    // SAFETY: owned again after the unmark.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS) };
    assert!(io.result().is_some());
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            call_unsafe_wdf_function_binding!(
                WdfRequestMarkCancelableEx,
                second,
                Some(cancel_routine)
            ),
            STATUS_SUCCESS
        );
    }
    let fired = catch_bug_check(|| {
        // SAFETY: still cancelable: the check under test.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, second, STATUS_SUCCESS) };
    })
    .unwrap_err();
    assert_eq!(
        wdf(fired),
        (
            codes::WDF_VIOLATION,
            codes::WDF_SIM_COMPLETE_WHILE_CANCELABLE
        )
    );
    drop((entered, second_io));
    std::mem::forget(file);
}

#[test]
fn unmark_of_a_request_never_marked_fires_and_cancel_makes_unmark_return_cancelled() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let (request, io) = rig.parked_request(&file);
    let (never_marked, never_io) = rig.parked_request(&file);
    {
        let _entered = rig.kernel.enter();
        // SAFETY: a live, driver-owned request.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestMarkCancelableEx,
                request,
                Some(cancel_routine)
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
    }
    // CancelIoEx; its cancel routine is held at its first DDI call, before it completes.
    let hold = rig.framework.hold_next_cancel_routine();
    std::thread::scope(|scope| {
        let canceller = scope.spawn(|| io.cancel());
        assert!(hold.wait_until_held(kernel_sim::wall_time_budget(Duration::from_secs(10))));
        let _entered = rig.kernel.enter();
        // SAFETY: a live request whose cancel routine is running: not a check, the
        // documented STATUS_CANCELLED.
        let status =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, request) };
        assert_eq!(status, STATUS_CANCELLED);
        hold.release();
        canceller.join().unwrap();
    });
    assert_eq!(io.result().unwrap().status, STATUS_CANCELLED);
    let _entered = rig.kernel.enter();
    let fired = catch_bug_check(|| {
        // SAFETY: never marked: the check under test.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, never_marked) }
    })
    .unwrap_err();
    assert_eq!(
        wdf(fired),
        (codes::WDF_VIOLATION, codes::WDF_SIM_CANCELABLE_STATE)
    );
    drop(never_io);
    std::mem::forget(file);
}

#[test]
fn mark_cancelable_ex_on_a_cancelled_request_returns_cancelled_without_the_routine() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let (request, io) = rig.parked_request(&file);
    io.cancel();
    assert!(
        io.result().is_none(),
        "a non-cancelable request is untouched by the cancel"
    );
    let entered = rig.kernel.enter();
    // SAFETY: a live, driver-owned request.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestMarkCancelableEx, request, Some(cancel_routine))
    };
    assert_eq!(status, STATUS_CANCELLED);
    assert!(io.result().is_none(), "the cancel routine was not called");
    // SAFETY: still driver-owned.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_CANCELLED) };
    assert_eq!(io.result().unwrap().status, STATUS_CANCELLED);
    drop(entered);
    file.close();
    rig.framework.remove_device(rig.device);
    rig.framework.unload().unwrap();
}

#[test]
fn a_ddi_above_its_irql_fires_and_at_its_irql_does_not() {
    let rig = rig();
    let _entered = rig.kernel.enter();
    let units: Vec<u16> = "\\DosDevices\\Test".encode_utf16().collect();
    let link = UNICODE_STRING {
        Length: 32,
        MaximumLength: 32,
        Buffer: units.as_ptr().cast_mut(),
    };
    // SAFETY: a live device; the device has no name, so the link is refused: no check.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateSymbolicLink,
            rig.device.handle(),
            &raw const link
        )
    };
    assert_eq!(status, kernel_sim::STATUS_INVALID_DEVICE_REQUEST);
    let mut lock: kernel_sim::KSPIN_LOCK = 0;
    // SAFETY: a local spin lock.
    unsafe { ntddk::KeInitializeSpinLock(&raw mut lock) };
    // SAFETY: an initialised local spin lock, not held.
    let irql = unsafe { ntddk::KeAcquireSpinLockRaiseToDpc(&raw mut lock) };
    let fired = catch_bug_check(|| {
        // SAFETY: a PASSIVE_LEVEL DDI at DISPATCH_LEVEL: the check under test.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreateSymbolicLink,
                rig.device.handle(),
                &raw const link
            )
        }
    })
    .unwrap_err();
    assert_eq!(wdf(fired), (codes::WDF_VIOLATION, codes::WDF_SIM_DDI_IRQL));
    let _ = irql;
}

#[test]
fn a_request_kept_past_removal_fires_and_a_completed_one_does_not() {
    let kept = rig_with(&FrameworkConfig {
        removal_timeout: Duration::from_millis(200),
        ..FrameworkConfig::default()
    });
    let file = kept.framework.open(kept.device, None).unwrap();
    let (_request, io) = kept.parked_request(&file);
    let fired = catch_bug_check(|| kept.framework.remove_device(kept.device)).unwrap_err();
    assert_eq!(
        wdf(fired),
        (
            codes::WDF_VIOLATION,
            codes::WDF_SIM_REQUEST_OWNED_AT_REMOVAL
        )
    );
    drop(io);
    std::mem::forget(file);

    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let (request, io) = rig.parked_request(&file);
    {
        let _entered = rig.kernel.enter();
        // SAFETY: a live, driver-owned request.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS) };
    }
    assert!(io.result().is_some());
    file.close();
    rig.framework.remove_device(rig.device);
    rig.framework.unload().unwrap();
}

#[test]
fn an_object_alive_at_unload_fires_object_error_and_a_clean_unload_does_not() {
    // A request the driver never completes outlives the driver object's tree.
    let leaking = rig();
    let file = leaking.framework.open(leaking.device, None).unwrap();
    let (request, _io) = leaking.parked_request(&file);
    std::mem::forget(file);
    let fired = leaking.framework.unload().unwrap_err();
    assert_eq!(wdf(fired), (codes::WDF_VIOLATION, codes::WDF_OBJECT_ERROR));
    assert_eq!(
        fired.parameters[1..3],
        [
            request.addr() as u64,
            kernel_sim::bugcheck::wdf_object::REQUEST
        ]
    );

    let rig = rig();
    rig.framework.remove_device(rig.device);
    rig.framework.unload().unwrap();
    assert_eq!(rig.framework.live_objects(), 0);
}

#[test]
fn a_context_of_another_type_is_null_not_a_bug_check() {
    let info = Box::leak(Box::new(WDF_OBJECT_CONTEXT_TYPE_INFO {
        Size: 40,
        ContextName: c"Other".as_ptr(),
        ContextSize: 8,
        UniqueType: core::ptr::null(),
        EvtDriverGetUniqueContextType: None,
    }));
    info.UniqueType = &raw const *info;
    let info: &WDF_OBJECT_CONTEXT_TYPE_INFO = info;
    let rig = rig();
    let _entered = rig.kernel.enter();
    // SAFETY: a live device; a type it was not created with.
    let context = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            rig.device.handle().cast(),
            core::ptr::from_ref(info)
        )
    };
    assert!(context.is_null());
    let fired = catch_bug_check(|| {
        // SAFETY: NULL type info: the check under test.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfObjectGetTypedContextWorker,
                rig.device.handle().cast(),
                core::ptr::null()
            )
        }
    })
    .unwrap_err();
    assert_eq!(
        wdf(fired),
        (codes::WDF_VIOLATION, codes::WDF_REQUIRED_PARAMETER_IS_NULL)
    );
}

#[test]
fn a_zero_length_buffer_is_buffer_too_small() {
    let rig = rig();
    let file = rig.framework.open(rig.device, None).unwrap();
    let io = file.submit(0x0022_2000, &[], 0);
    let request = PARKED
        .lock()
        .unwrap()
        .get_mut(&rig.device.handle().addr())
        .and_then(Vec::pop)
        .map(core::ptr::without_provenance_mut)
        .unwrap();
    let _entered = rig.kernel.enter();
    let mut buffer: kernel_sim::PVOID = core::ptr::null_mut();
    // SAFETY: a live request; a valid out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveInputBuffer,
            request,
            0,
            &raw mut buffer,
            core::ptr::null_mut()
        )
    };
    assert_eq!(status, STATUS_BUFFER_TOO_SMALL);
    assert!(buffer.is_null());
    // SAFETY: still driver-owned.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS) };
    assert!(io.result().is_some());
    let _ = (
        _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive,
        _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeNone,
        WDF_OBJECT_ATTRIBUTES::default(),
    );
    std::mem::forget(file);
}
