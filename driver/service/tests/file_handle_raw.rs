//! The service's unsafe surface: a `FileHandle` stored as one raw pointer in the front end's
//! file-object context (`into_raw`), borrowed for each callback (`borrow_raw`) and taken
//! back at close (`from_raw`), in the order the KMDF shell uses them. Written for Miri
//! (docs/EVIDENCE.md): it checks the reference count and that every borrow is sound; the
//! assertions check the handle behaves the same through every borrow.
#![cfg(not(windows))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel_sim::{Config, Kernel};
use ktimer_abi::codec::wait_response_len;
use ktimer_abi::ioctl::{IOCTL_KTIMER_CREATE, IOCTL_KTIMER_WAIT};
use ktimer_abi::status::{NtStatus, STATUS_CANCELLED, STATUS_PENDING, STATUS_SUCCESS};
use ktimer_abi::{
    CreateRequest, Encode, Header, MODE_PERIODIC, Schedule, TIMER_TYPE_NOTIFICATION, WaitRequest,
};
use ktimer_kernel::irql::PassiveLevel;
use ktimer_service::dispatch::{CancelableRequest, IoRequest, Pended, cancel_wait, dispatch};
use ktimer_service::{FileHandle, Service, ServiceConfig};

type Log = Arc<Mutex<Vec<(usize, NtStatus)>>>;

struct Request {
    key: usize,
    input: Vec<u8>,
    output: Vec<u8>,
    log: Log,
}

impl IoRequest for Request {
    fn input(&self) -> &[u8] {
        &self.input
    }
    fn output(&mut self) -> &mut [u8] {
        &mut self.output
    }
    fn complete(self, status: NtStatus, _information: usize) {
        self.log.lock().unwrap().push((self.key, status));
    }
}

impl CancelableRequest for Request {
    fn key(&self) -> usize {
        self.key
    }
    fn mark_cancelable(&mut self) -> bool {
        true
    }
    fn claim(&mut self) -> bool {
        true
    }
}

fn bytes<T: Encode>(message: &T) -> Vec<u8> {
    let mut out = vec![0; 64];
    let len = message.encode(&mut out).unwrap();
    out.truncate(len);
    out
}

#[test]
fn a_handle_round_trips_through_the_file_object_context() {
    let kernel = Kernel::new(Config {
        time_increment: 10_000,
        ..Config::default()
    });
    let entered = kernel.enter();
    let passive = PassiveLevel::current().unwrap();
    let service: Service<Pended<Request>> =
        Service::new(ServiceConfig::default(), &passive).unwrap();
    let log: Log = Arc::default();
    let request = |key: usize, input: Vec<u8>, output_len: usize| Request {
        key,
        input,
        output: vec![0; output_len],
        log: Arc::clone(&log),
    };

    // EvtDeviceFileCreate: the handle goes into the context as one pointer.
    let context = service.open(&passive).unwrap().into_raw();
    assert_eq!(service.open_handle_count(), 1);

    // EvtIoDeviceControl: borrowed for the call, twice (a create and a wait that pends).
    // SAFETY: `context` came from `into_raw` above and is taken back only at the end.
    let file = unsafe { FileHandle::<Pended<Request>>::borrow_raw(context) };
    let create = bytes(&CreateRequest {
        header: Header::of::<CreateRequest>(),
        timer_type: TIMER_TYPE_NOTIFICATION,
        flags: 0,
        schedule: Schedule {
            mode: MODE_PERIODIC,
            flags: 0,
            due_time: 10_000,
            period_ms: 1,
            tolerable_delay_ms: 0,
        },
    });
    let status = dispatch(
        &service,
        &file,
        IOCTL_KTIMER_CREATE,
        request(1, create, 16),
        &passive,
    );
    assert_eq!(status, STATUS_SUCCESS);
    let wait = |min_records: u32| {
        bytes(&WaitRequest {
            header: Header::of::<WaitRequest>(),
            min_records,
            reserved: 0,
        })
    };
    let capacity = wait_response_len(4).unwrap();
    let status = dispatch(
        &service,
        &file,
        IOCTL_KTIMER_WAIT,
        request(2, wait(2), capacity),
        &passive,
    );
    assert_eq!(status, STATUS_PENDING);
    let status = dispatch(
        &service,
        &file,
        IOCTL_KTIMER_WAIT,
        request(3, wait(4), capacity),
        &passive,
    );
    assert_eq!(status, STATUS_PENDING);
    // The borrow is a `ManuallyDrop`: it ends (last use above) without touching the stored
    // reference.

    // The expiry path completes the first wait from a DPC (no borrow involved).
    kernel.advance(Duration::from_millis(2));
    assert_eq!(log.lock().unwrap().last(), Some(&(2, STATUS_SUCCESS)));

    // EvtRequestCancel: borrowed again, from the cancel routine.
    // SAFETY: as above.
    let file = unsafe { FileHandle::<Pended<Request>>::borrow_raw(context) };
    let cancelled = cancel_wait(&service, &file, 3).expect("still parked");
    cancelled.complete(STATUS_CANCELLED, 0);
    assert_eq!(file.pending_waits(), 0);
    // EvtFileCleanup: borrowed once more.
    service.cleanup(&file, &passive);
    assert_eq!(file.timer_count(), 0);

    // EvtFileClose: taken back, exactly once; the service forgets it.
    // SAFETY: `context` came from `into_raw` and is not used after this.
    let file = unsafe { FileHandle::<Pended<Request>>::from_raw(context) };
    service.close(file, &passive);
    assert_eq!(service.open_handle_count(), 0);
    service.unload(&passive);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (1, STATUS_SUCCESS),
            (2, STATUS_SUCCESS),
            (3, STATUS_CANCELLED)
        ]
    );
    drop(entered);
    assert_eq!(kernel.unload(), Ok(()));
}
