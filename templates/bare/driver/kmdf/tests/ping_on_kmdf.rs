//! The driver through `DriverEntry` on kernel-sim's KMDF model: the shell and the ping
//! logic together, as the app's `--sim` and Windows see them — load, open, IOCTLs, bad
//! input, close, unload, with the simulator's verifier watching (pool leaks, IRQL, object
//! lifetimes).

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

use kernel_sim::wdf::{Callback, DeviceNode, Framework, FrameworkConfig};
use kernel_sim::{Config, Kernel};
use kernel_sim::{STATUS_OBJECT_NAME_COLLISION, STATUS_OBJECT_NAME_NOT_FOUND};
use ktimer_abi::device::SYMBOLIC_LINK_KERNEL;
use ktimer_abi::ioctl::{FILE_DEVICE_KTIMER, IOCTL_KTIMER_PING, METHOD_NEITHER, ctl_code};
use ktimer_abi::ping::{PING_REQUEST_SIZE, PING_RESPONSE_SIZE, PingRequest, PingResponse};
use ktimer_abi::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_REVISION_MISMATCH,
};

fn loaded(kernel: &Kernel) -> (Framework, DeviceNode) {
    let framework = Framework::new(kernel, &FrameworkConfig::default());
    framework
        .load(ktimer_kmdf::DRIVER_ENTRY)
        .expect("DriverEntry succeeds");
    let device = framework.add_device().expect("EvtDriverDeviceAdd succeeds");
    (framework, device)
}

fn finish(framework: &Framework, device: DeviceNode) {
    framework.remove_device(device);
    framework
        .unload()
        .expect("clean unload: no bug check, nothing leaked");
    assert_eq!(framework.live_objects(), 0);
}

fn ping(file: &kernel_sim::wdf::UserHandle, cookie: u64) -> PingResponse {
    let mut output = [0; PING_RESPONSE_SIZE];
    let written = file
        .control(
            IOCTL_KTIMER_PING,
            &PingRequest::new(cookie).to_bytes(),
            &mut output,
        )
        .expect("a valid ping succeeds");
    PingResponse::decode(&output[..written]).expect("one whole response")
}

#[test]
fn the_driver_loads_answers_pings_and_unloads_cleanly() {
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
        Some(SYMBOLIC_LINK_KERNEL)
    );
    let file = framework.open(device, None).unwrap();
    let response = ping(&file, 0xFEED);
    assert_eq!(
        (
            response.cookie,
            response.handle_pings,
            response.device_pings
        ),
        (0xFEED, 1, 1)
    );
    file.close();
    finish(&framework, device);
    let log = framework.callback_log();
    let position = |wanted: fn(&Callback) -> bool| log.iter().position(wanted).unwrap();
    let create = position(|c| matches!(c, Callback::FileCreate(_)));
    let close = position(|c| matches!(c, Callback::FileClose(_)));
    let unload = position(|c| matches!(c, Callback::DriverUnload));
    assert!(create < close && close < unload, "{log:?}");
}

#[test]
fn each_handle_counts_its_own_pings_and_the_device_counts_all() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let first = framework.open(device, None).unwrap();
    let second = framework.open(device, None).unwrap();
    assert_eq!(ping(&first, 1).handle_pings, 1);
    assert_eq!(ping(&first, 2).handle_pings, 2);
    let from_second = ping(&second, 3);
    assert_eq!((from_second.handle_pings, from_second.device_pings), (1, 3));
    drop(first);
    assert_eq!(ping(&second, 4).device_pings, 4);
    drop(second);
    finish(&framework, device);
}

#[test]
fn bad_input_gets_its_documented_status_through_the_framework() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let file = framework.open(device, None).unwrap();
    let valid = PingRequest::new(9).to_bytes();
    let with = |change: fn(&mut PingRequest)| {
        let mut request = PingRequest::new(9);
        change(&mut request);
        request.to_bytes().to_vec()
    };
    let too_long = [valid.as_slice(), &[0; 100]].concat();
    let cases: Vec<(u32, Vec<u8>, usize, i32)> = vec![
        (
            IOCTL_KTIMER_PING,
            valid[..PING_REQUEST_SIZE - 1].to_vec(),
            PING_RESPONSE_SIZE,
            STATUS_INFO_LENGTH_MISMATCH,
        ),
        (
            IOCTL_KTIMER_PING,
            too_long,
            PING_RESPONSE_SIZE,
            STATUS_INFO_LENGTH_MISMATCH,
        ),
        (
            IOCTL_KTIMER_PING,
            Vec::new(),
            PING_RESPONSE_SIZE,
            STATUS_INFO_LENGTH_MISMATCH,
        ),
        (
            IOCTL_KTIMER_PING,
            with(|r| r.size = 8),
            PING_RESPONSE_SIZE,
            STATUS_INFO_LENGTH_MISMATCH,
        ),
        (
            IOCTL_KTIMER_PING,
            with(|r| r.version = 0),
            PING_RESPONSE_SIZE,
            STATUS_REVISION_MISMATCH,
        ),
        (
            IOCTL_KTIMER_PING,
            with(|r| r.reserved = u64::MAX),
            PING_RESPONSE_SIZE,
            STATUS_INVALID_PARAMETER,
        ),
        (
            IOCTL_KTIMER_PING,
            valid.to_vec(),
            PING_RESPONSE_SIZE - 1,
            STATUS_BUFFER_TOO_SMALL,
        ),
        (
            IOCTL_KTIMER_PING,
            valid.to_vec(),
            0,
            STATUS_BUFFER_TOO_SMALL,
        ),
        (
            IOCTL_KTIMER_PING + 4,
            valid.to_vec(),
            PING_RESPONSE_SIZE,
            STATUS_INVALID_DEVICE_REQUEST,
        ),
        (0, Vec::new(), 0, STATUS_INVALID_DEVICE_REQUEST),
        (
            ctl_code(FILE_DEVICE_KTIMER, 0x800, METHOD_NEITHER, 1),
            valid.to_vec(),
            PING_RESPONSE_SIZE,
            STATUS_INVALID_DEVICE_REQUEST,
        ),
    ];
    for (code, input, room, status) in cases {
        let mut output = vec![0; room];
        assert_eq!(
            file.control(code, &input, &mut output),
            Err(status),
            "code {code:#x}, input {} bytes, output {room} bytes",
            input.len()
        );
    }
    // None of them counted: the next valid ping is the first.
    assert_eq!(ping(&file, 10).handle_pings, 1);
    drop(file);
    finish(&framework, device);
}

#[test]
fn the_shell_refuses_names_below_the_device_and_a_second_device() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    assert_eq!(
        framework.open(device, Some("\\below")).unwrap_err(),
        STATUS_OBJECT_NAME_NOT_FOUND
    );
    assert_eq!(
        framework.add_device().unwrap_err(),
        STATUS_OBJECT_NAME_COLLISION
    );
    // The first device still serves.
    let file = framework.open(device, None).unwrap();
    assert_eq!(ping(&file, 1).device_pings, 1);
    drop(file);
    finish(&framework, device);
}

#[test]
fn an_open_without_memory_fails_cleanly_and_the_next_one_works() {
    let kernel = Kernel::new(Config::default());
    let (framework, device) = loaded(&kernel);
    let before = kernel.pool_stats().outstanding_allocations;
    kernel.fail_next_pool_allocations(1);
    assert_eq!(
        framework.open(device, None).unwrap_err(),
        STATUS_INSUFFICIENT_RESOURCES
    );
    assert_eq!(kernel.pool_stats().outstanding_allocations, before);
    let file = framework.open(device, None).unwrap();
    assert_eq!(
        kernel.pool_stats().outstanding_allocations,
        before + 1,
        "a handle's state is one pool block"
    );
    assert_eq!(ping(&file, 1).handle_pings, 1);
    drop(file);
    assert_eq!(kernel.pool_stats().outstanding_allocations, before);
    finish(&framework, device);
}

#[test]
fn a_device_whose_logic_cannot_be_allocated_is_not_created() {
    let kernel = Kernel::new(Config::default());
    let framework = Framework::new(&kernel, &FrameworkConfig::default());
    framework.load(ktimer_kmdf::DRIVER_ENTRY).unwrap();
    kernel.fail_next_pool_allocations(1);
    assert_eq!(
        framework.add_device().unwrap_err(),
        STATUS_INSUFFICIENT_RESOURCES
    );
    // Nothing half-made survives, and the node can be started again.
    let device = framework.add_device().expect("the second attempt succeeds");
    let file = framework.open(device, None).unwrap();
    assert_eq!(ping(&file, 1).device_pings, 1);
    drop(file);
    finish(&framework, device);
}
