//! The KMDF shell itself (`DriverEntry`, device, queue, file objects, the request wrapper and
//! its cancel hand-off) executed on kernel-sim's KMDF model: lifetimes and callback order,
//! failures at load, bad input, cancellation races and removal with work in flight.

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

use std::time::Duration;

use kernel_sim::wdf::{Callback, DeviceNode, Fault, Framework, FrameworkConfig};
use kernel_sim::{Config, Kernel};
use kernel_sim::{STATUS_OBJECT_NAME_COLLISION, STATUS_OBJECT_NAME_NOT_FOUND};
use ktimer_abi::ioctl::{IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO, IOCTL_KTIMER_WAIT};
use ktimer_abi::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS,
};
use ktimer_abi::{
    CreateRequest, Encode, Header, MODE_ONE_SHOT, Schedule, TIMER_TYPE_NOTIFICATION, WaitRequest,
};

fn loaded(kernel: &Kernel) -> (Framework, DeviceNode) {
    let framework = Framework::new(kernel, &FrameworkConfig::default());
    framework
        .load(ktimer_kmdf::DRIVER_ENTRY)
        .expect("DriverEntry succeeds");
    let device = framework.add_device().expect("EvtDriverDeviceAdd succeeds");
    (framework, device)
}

fn encode<T: Encode>(message: &T) -> Vec<u8> {
    let mut bytes = vec![0; 256];
    let length = message.encode(&mut bytes).unwrap();
    bytes.truncate(length);
    bytes
}

fn wait_request() -> Vec<u8> {
    encode(&WaitRequest {
        header: Header::of::<WaitRequest>(),
        min_records: 1,
        reserved: 0,
    })
}

fn one_shot(due_ms: i64) -> Vec<u8> {
    encode(&CreateRequest {
        header: Header::of::<CreateRequest>(),
        timer_type: TIMER_TYPE_NOTIFICATION,
        flags: 0,
        schedule: Schedule {
            mode: MODE_ONE_SHOT,
            due_time: due_ms * 10_000,
            ..Schedule::default()
        },
    })
}

fn finish(framework: &Framework, device: DeviceNode) {
    framework.remove_device(device);
    framework
        .unload()
        .expect("clean unload: no bug check, nothing leaked");
}

#[test]
fn the_shell_loads_serves_and_unloads_through_driver_entry() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    // The interface class registered is the ABI's GUID, field by field.
    let expected = ktimer_abi::device::DEVICE_INTERFACE_GUID;
    assert_eq!(
        framework.interfaces(device),
        [kernel_sim::GUID {
            Data1: expected.data1,
            Data2: expected.data2,
            Data3: expected.data3,
            Data4: expected.data4,
        }]
    );
    assert_eq!(
        framework.symbolic_link(device).as_deref(),
        Some("\\DosDevices\\KTimer")
    );
    let file = framework.open(device, None).unwrap();
    let mut info = vec![0; 256];
    assert!(file.control(IOCTL_KTIMER_GET_INFO, &[], &mut info).unwrap() > 0);
    file.close();
    finish(&framework, device);
    let log = framework.callback_log();
    let position = |wanted: fn(&Callback) -> bool| log.iter().position(wanted).unwrap();
    let create = position(|c| matches!(c, Callback::FileCreate(_)));
    let cleanup = position(|c| matches!(c, Callback::FileCleanup(_)));
    let close = position(|c| matches!(c, Callback::FileClose(_)));
    let unload = position(|c| matches!(c, Callback::DriverUnload));
    assert!(
        create < cleanup && cleanup < close && close < unload,
        "{log:?}"
    );
    // The device's cleanup (the only object cleanup callback the shell registers besides
    // none) runs before EvtDriverUnload.
    let device_cleanup = log
        .iter()
        .position(|c| *c == Callback::ObjectCleanup(device.handle().addr()))
        .unwrap();
    assert!(device_cleanup < unload);
    assert_eq!(framework.live_objects(), 0);
}

#[test]
fn a_create_with_a_file_name_fails_with_object_name_not_found() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let refused = framework.open(device, Some("\\anything")).unwrap_err();
    assert_eq!(refused, STATUS_OBJECT_NAME_NOT_FOUND);
    // A failed create has no cleanup or close.
    assert!(
        !framework
            .callback_log()
            .iter()
            .any(|c| matches!(c, Callback::FileCleanup(_) | Callback::FileClose(_)))
    );
    finish(&framework, device);
}

#[test]
fn a_second_device_instance_is_refused_with_object_name_collision() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    assert_eq!(
        framework.add_device().unwrap_err(),
        STATUS_OBJECT_NAME_COLLISION
    );
    // The first device still serves.
    let file = framework.open(device, None).unwrap();
    file.close();
    finish(&framework, device);
}

#[test]
fn each_framework_call_failing_at_load_unwinds_cleanly() {
    for fault in [
        Fault::DeviceInitAssignName,
        Fault::DeviceInitAssignSddlString,
        Fault::DeviceCreate,
        Fault::DeviceCreateDeviceInterface,
        Fault::DeviceCreateSymbolicLink,
        Fault::IoQueueCreate,
    ] {
        let kernel = Kernel::new(Config::default());
        let framework = Framework::new(&kernel, &FrameworkConfig::default());
        framework.load(ktimer_kmdf::DRIVER_ENTRY).unwrap();
        framework.fail_next(fault, STATUS_INSUFFICIENT_RESOURCES);
        assert_eq!(
            framework.add_device().unwrap_err(),
            STATUS_INSUFFICIENT_RESOURCES,
            "{fault:?}"
        );
        framework
            .unload()
            .unwrap_or_else(|bug_check| panic!("{fault:?}: {bug_check}"));
    }
    let kernel = Kernel::new(Config::default());
    let framework = Framework::new(&kernel, &FrameworkConfig::default());
    framework.fail_next(Fault::DriverCreate, STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(
        framework.load(ktimer_kmdf::DRIVER_ENTRY).unwrap_err(),
        STATUS_INSUFFICIENT_RESOURCES
    );
    framework.unload().unwrap();
}

#[test]
fn a_file_object_allocation_failure_at_open_is_reported_and_leaks_nothing() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    framework.fail_next(Fault::FileObjectCreate, STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(
        framework.open(device, None).unwrap_err(),
        STATUS_INSUFFICIENT_RESOURCES
    );
    let file = framework.open(device, None).unwrap();
    file.close();
    finish(&framework, device);
}

#[test]
fn cancel_io_ex_completes_a_pending_wait_cancelled() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let file = framework.open(device, None).unwrap();
    let wait = file.submit(IOCTL_KTIMER_WAIT, &wait_request(), 256);
    assert!(wait.result().is_none(), "the wait pends");
    wait.cancel();
    assert_eq!(wait.result().unwrap().status, STATUS_CANCELLED);
    file.close();
    finish(&framework, device);
}

#[test]
fn device_removal_with_waits_pending_cancels_them_before_the_device_cleanup() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let file = framework.open(device, None).unwrap();
    let waits: Vec<_> = (0..4)
        .map(|_| file.submit(IOCTL_KTIMER_WAIT, &wait_request(), 256))
        .collect();
    framework.remove_device(device);
    for wait in &waits {
        assert_eq!(wait.result().unwrap().status, STATUS_CANCELLED);
    }
    let log = framework.callback_log();
    assert_eq!(
        log.iter()
            .filter(|c| matches!(c, Callback::RequestCancel(_)))
            .count(),
        4
    );
    // New requests are refused while the device goes; the handle still closes.
    let late = file.submit(IOCTL_KTIMER_GET_INFO, &[], 256);
    assert_eq!(
        late.result().unwrap().status,
        kernel_sim::STATUS_INVALID_DEVICE_STATE
    );
    file.close();
    framework.unload().unwrap();
}

#[test]
fn a_request_without_buffers_gets_a_documented_status() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let file = framework.open(device, None).unwrap();
    let statuses: Vec<i32> = [
        IOCTL_KTIMER_CREATE,
        IOCTL_KTIMER_WAIT,
        IOCTL_KTIMER_GET_INFO,
    ]
    .into_iter()
    .map(|code| file.submit(code, &[], 0).result().unwrap().status)
    .collect();
    // docs/PROTOCOL.md's common checks: no room for the response comes first. (The
    // framework's own zero-length rule makes the shell see no buffer at all.)
    assert_eq!(statuses, [STATUS_BUFFER_TOO_SMALL; 3]);
    file.close();
    finish(&framework, device);
}

#[test]
fn an_ioctl_on_a_handle_whose_cleanup_has_begun_is_refused_not_a_bug_check() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let file = framework.open(device, None).unwrap();
    file.begin_cleanup();
    let done = file
        .submit(IOCTL_KTIMER_CREATE, &one_shot(10), 64)
        .result()
        .unwrap();
    // docs/PROTOCOL.md: a request on a handle being cleaned up is STATUS_CANCELLED.
    assert_eq!(done.status, STATUS_CANCELLED);
    let wait = file
        .submit(IOCTL_KTIMER_WAIT, &wait_request(), 256)
        .result()
        .unwrap();
    assert_eq!(wait.status, STATUS_CANCELLED);
    file.close();
    finish(&framework, device);
}

#[test]
fn a_wait_cancelled_while_it_expires_is_completed_once() {
    for round in 0..40_u64 {
        let kernel = Kernel::new(Config::default());
        let (framework, device) = loaded(&kernel);
        let file = framework.open(device, None).unwrap();
        let mut created = vec![0; 64];
        file.control(IOCTL_KTIMER_CREATE, &one_shot(10), &mut created)
            .unwrap();
        let wait = file.submit(IOCTL_KTIMER_WAIT, &wait_request(), 256);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                if round % 2 == 0 {
                    std::thread::yield_now();
                }
                wait.cancel();
            });
            scope.spawn(|| kernel.advance(Duration::from_millis(32)));
        });
        let done = wait.wait(Some(Duration::from_secs(10))).expect("completed");
        assert!(done.status == STATUS_SUCCESS || done.status == STATUS_CANCELLED);
        file.close();
        finish(&framework, device);
    }
}

#[test]
fn a_cancel_during_device_cleanup_completes_the_wait_once() {
    for _ in 0..20 {
        let kernel = Kernel::new(Config::default());
        let (framework, device) = loaded(&kernel);
        // Not KMDF behaviour: no purge at removal, so cancellation reaches the driver while
        // its device cleanup unloads the service.
        framework.set_purge_on_removal(false);
        let file = framework.open(device, None).unwrap();
        let wait = file.submit(IOCTL_KTIMER_WAIT, &wait_request(), 256);
        std::thread::scope(|scope| {
            scope.spawn(|| wait.cancel());
            scope.spawn(|| {
                file.begin_cleanup();
            });
        });
        assert_eq!(
            wait.wait(Some(Duration::from_secs(10))).unwrap().status,
            STATUS_CANCELLED
        );
        file.close();
        finish(&framework, device);
    }
}

#[test]
fn a_cancel_routine_held_mid_run_while_the_wait_expires_and_the_handle_closes_completes_it_once() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let file = framework.open(device, None).unwrap();
    let mut created = vec![0; 64];
    file.control(IOCTL_KTIMER_CREATE, &one_shot(10), &mut created)
        .unwrap();
    let wait = file.submit(IOCTL_KTIMER_WAIT, &wait_request(), 256);
    assert!(wait.result().is_none(), "the wait pends, cancelable");
    let hold = framework.hold_next_cancel_routine();
    std::thread::scope(|scope| {
        // CancelIoEx: its cancel routine starts on this thread and is held at its first DDI.
        let canceller = scope.spawn(|| wait.cancel());
        assert!(hold.wait_until_held(Duration::from_secs(10)));
        // Meanwhile the timer expires: the DPC takes the wait out of the service and loses
        // its claim (WdfRequestUnmarkCancelable: STATUS_CANCELLED)...
        kernel.advance(Duration::from_millis(32));
        // ...and the handle's cleanup runs; its close must wait for the request.
        file.begin_cleanup();
        assert!(wait.result().is_none(), "neither side completed it alone");
        hold.release();
        canceller.join().unwrap();
    });
    assert_eq!(
        wait.wait(Some(Duration::from_secs(10))).unwrap().status,
        STATUS_CANCELLED
    );
    file.close();
    finish(&framework, device);
    let log = framework.callback_log();
    assert_eq!(
        log.iter()
            .filter(|c| matches!(c, Callback::RequestCancel(_)))
            .count(),
        1
    );
    assert!(log.iter().any(|c| matches!(c, Callback::FileClose(_))));
}

#[test]
fn the_shell_serves_with_inline_driver_calls() {
    let kernel = Kernel::new(Config::default());
    let framework = Framework::new(
        &kernel,
        &FrameworkConfig {
            inline_driver_calls: true,
            ..FrameworkConfig::default()
        },
    );
    framework.load(ktimer_kmdf::DRIVER_ENTRY).unwrap();
    let device = framework.add_device().unwrap();
    let file = framework.open(device, None).unwrap();
    let mut created = vec![0; 64];
    file.control(IOCTL_KTIMER_CREATE, &one_shot(10), &mut created)
        .unwrap();
    let expiring = file.submit(IOCTL_KTIMER_WAIT, &wait_request(), 256);
    kernel.advance(Duration::from_millis(32));
    assert_eq!(expiring.result().unwrap().status, STATUS_SUCCESS);
    let cancelled = file.submit(IOCTL_KTIMER_WAIT, &wait_request(), 256);
    cancelled.cancel();
    assert_eq!(cancelled.result().unwrap().status, STATUS_CANCELLED);
    file.close();
    finish(&framework, device);
}
