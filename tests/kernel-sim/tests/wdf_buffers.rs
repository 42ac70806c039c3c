//! The KMDF model's `METHOD_BUFFERED` system buffer: `WdfRequestRetrieveInputBuffer` and
//! `WdfRequestRetrieveOutputBuffer` return the same buffer, and a driver may retrieve both,
//! then read its input and write its output through the two pointers, as KMDF drivers do.
//!
//! Natively these tests check the buffer's semantics; under Miri (CI runs this file) they
//! also check that the model hands out pointers that stay valid side by side: a model that
//! re-derived the buffer pointer from a unique borrow at the second retrieval invalidated
//! the first pointer (a Stacked Borrows violation at the driver's read of its input).

#[macro_use]
mod minimal_driver;

use std::sync::Mutex;
use std::time::Duration;

use kernel_sim::wdf::{Framework, FrameworkConfig};
use kernel_sim::{
    Config, Kernel, PVOID, STATUS_SUCCESS, WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};

/// A `METHOD_BUFFERED` code (device type 0x22, function 0x800).
const IOCTL_REVERSE: u32 = 0x0022_2000;

/// What the driver saw: the input and output buffer addresses of each request.
static SEEN: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// Retrieves one of the request's buffers (`None` if the framework refused).
///
/// # Safety
/// `request` is a live request the driver owns.
unsafe fn retrieve(request: WDFREQUEST, output: bool) -> Option<(*mut u8, usize)> {
    let mut buffer: PVOID = core::ptr::null_mut();
    let mut length = 0_usize;
    let status = if output {
        // SAFETY: a live request (our contract); local out pointers.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                1,
                &raw mut buffer,
                &raw mut length
            )
        }
    } else {
        // SAFETY: as above.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                1,
                &raw mut buffer,
                &raw mut length
            )
        }
    };
    (status == STATUS_SUCCESS).then_some((buffer.cast(), length))
}

/// Writes the input, reversed, as the output: both buffers retrieved first, then the input
/// read through the input pointer and the output written through the output pointer.
unsafe extern "C" fn io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    _output_length: usize,
    _input_length: usize,
    _code: u32,
) {
    // SAFETY: the request the framework just presented.
    let input = unsafe { retrieve(request, false) };
    // SAFETY: as above.
    let output = unsafe { retrieve(request, true) };
    let (status, written) = match (input, output) {
        (Some((input, input_length)), Some((output, output_length))) => {
            SEEN.lock().unwrap().push((input.addr(), output.addr()));
            // SAFETY: the input buffer, `input_length` bytes, valid until completion.
            let bytes = unsafe { core::slice::from_raw_parts(input, input_length) }.to_vec();
            // SAFETY: the output buffer, `output_length` bytes, valid until completion; the
            // input slice above is no longer used.
            let out = unsafe { core::slice::from_raw_parts_mut(output, output_length) };
            let written = bytes.len().min(out.len());
            for (target, source) in out.iter_mut().zip(bytes.iter().rev()) {
                *target = *source;
            }
            (STATUS_SUCCESS, written)
        }
        _ => (kernel_sim::STATUS_BUFFER_TOO_SMALL, 0),
    };
    // SAFETY: the driver owns the request; completed once.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            status,
            u64::try_from(written).unwrap_or(0)
        );
    }
}

minimal_kmdf_driver!(io_device_control);

#[test]
fn input_and_output_are_one_system_buffer_usable_through_both_pointers() {
    let kernel = Kernel::new(Config::default());
    let framework = Framework::new(&kernel, &FrameworkConfig::default());
    framework.load(driver_entry).unwrap();
    let device = framework.add_device().unwrap();
    let file = framework.open(device, None).unwrap();

    // Input longer than output, equal, shorter: the system buffer is the larger of the two.
    for (input, output_length) in [
        (&[1_u8, 2, 3, 4, 5, 6][..], 4),
        (&[7, 8, 9][..], 3),
        (&[10, 11][..], 5),
    ] {
        let mut output = vec![0_u8; output_length];
        let written = file.control(IOCTL_REVERSE, input, &mut output).unwrap();
        let expected: Vec<u8> = input.iter().rev().take(output_length).copied().collect();
        assert_eq!(written, expected.len());
        assert_eq!(output.get(..written), Some(&expected[..]));
    }

    // An asynchronous request too (completed at once by this driver).
    let io = file.submit(IOCTL_REVERSE, &[1, 2, 3], 3);
    let done = io
        .wait(Some(kernel_sim::wall_time_budget(Duration::from_mins(1))))
        .unwrap();
    assert_eq!(done.status, STATUS_SUCCESS);
    assert_eq!(done.output, [3, 2, 1]);

    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    for (input, output) in seen {
        assert_eq!(input, output, "METHOD_BUFFERED: one system buffer");
    }

    file.close();
    framework.remove_device(device);
    framework.unload().unwrap();
}
