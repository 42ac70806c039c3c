//! The claim protocol between the service and a front end's cancel routine, driven with a
//! scripted request type straight through `ktimer_service::dispatch::dispatch`: every request is
//! completed exactly once, by exactly one side, and no record is lost.
#![cfg(not(windows))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel_sim::{Config, Kernel};
use ktimer_abi::codec::{WaitBatch, wait_response_len};
use ktimer_abi::ioctl::{IOCTL_KTIMER_CREATE, IOCTL_KTIMER_WAIT};
use ktimer_abi::status::{NtStatus, STATUS_CANCELLED, STATUS_PENDING, STATUS_SUCCESS};
use ktimer_abi::{
    CreateRequest, Encode, Header, MODE_ONE_SHOT, Schedule, TIMER_TYPE_NOTIFICATION, WaitRequest,
};
use ktimer_kernel::irql::PassiveLevel;
use ktimer_service::dispatch::{CancelableRequest, IoRequest, Pended, cancel_wait, dispatch};
use ktimer_service::{FileHandle, Service, ServiceConfig};

/// What happened to the scripted requests: (key, status, output) per completion.
type Log = Arc<Mutex<Vec<(usize, NtStatus, Vec<u8>)>>>;

struct Scripted {
    key: usize,
    input: Vec<u8>,
    output: Vec<u8>,
    /// `mark_cancelable` reports "already cancelled".
    cancelled_before_parking: bool,
    /// Set by the test to make `claim` fail (the cancel routine took the request).
    cancel_routine_owns: Arc<AtomicBool>,
    log: Log,
}

impl IoRequest for Scripted {
    fn input(&self) -> &[u8] {
        &self.input
    }
    fn output(&mut self) -> &mut [u8] {
        &mut self.output
    }
    fn complete(mut self, status: NtStatus, information: usize) {
        self.output.truncate(information);
        self.log
            .lock()
            .unwrap()
            .push((self.key, status, std::mem::take(&mut self.output)));
    }
}

impl CancelableRequest for Scripted {
    fn key(&self) -> usize {
        self.key
    }
    fn mark_cancelable(&mut self) -> bool {
        !self.cancelled_before_parking
    }
    fn claim(&mut self) -> bool {
        !self.cancel_routine_owns.load(Ordering::SeqCst)
    }
}

struct Bench {
    kernel: Kernel,
    service: Service<Pended<Scripted>>,
    file: FileHandle<Pended<Scripted>>,
    log: Log,
}

fn encode<T: Encode>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let len = message.encode(&mut out).unwrap();
    out.truncate(len);
    out
}

impl Bench {
    fn new() -> Self {
        let kernel = Kernel::new(Config {
            time_increment: 10_000,
            ..Config::default()
        });
        let _entered = kernel.enter();
        let passive = PassiveLevel::current().unwrap();
        let service = Service::new(ServiceConfig::default(), &passive).unwrap();
        let file = service.open(&passive).unwrap();
        Self {
            kernel,
            service,
            file,
            log: Log::default(),
        }
    }

    fn request(
        &self,
        key: usize,
        input: Vec<u8>,
        output_len: usize,
    ) -> (Scripted, Arc<AtomicBool>) {
        let owns = Arc::new(AtomicBool::new(false));
        let request = Scripted {
            key,
            input,
            output: vec![0; output_len],
            cancelled_before_parking: false,
            cancel_routine_owns: Arc::clone(&owns),
            log: Arc::clone(&self.log),
        };
        (request, owns)
    }

    fn dispatch(&self, code: u32, request: Scripted) -> NtStatus {
        let _entered = self.kernel.enter();
        let passive = PassiveLevel::current().unwrap();
        dispatch(&self.service, &self.file, code, request, &passive)
    }

    fn create_one_shot(&self, key: usize, due: i64) {
        let request = CreateRequest {
            header: Header::of::<CreateRequest>(),
            timer_type: TIMER_TYPE_NOTIFICATION,
            flags: 0,
            schedule: Schedule {
                mode: MODE_ONE_SHOT,
                flags: 0,
                due_time: due,
                period_ms: 0,
                tolerable_delay_ms: 0,
            },
        };
        let (request, _) = self.request(key, encode(&request), 16);
        assert_eq!(self.dispatch(IOCTL_KTIMER_CREATE, request), STATUS_SUCCESS);
    }

    fn wait(&self, key: usize) -> (Scripted, Arc<AtomicBool>) {
        let input = encode(&WaitRequest {
            header: Header::of::<WaitRequest>(),
            min_records: 1,
            reserved: 0,
        });
        self.request(key, input, wait_response_len(8).unwrap())
    }

    fn completions_of(&self, key: usize) -> Vec<(NtStatus, Vec<u8>)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, status, output)| (*status, output.clone()))
            .collect()
    }

    fn cancel_wait(&self, key: usize) -> Option<Scripted> {
        let _entered = self.kernel.enter();
        cancel_wait(&self.service, &self.file, key)
    }

    fn finish(self) {
        {
            let _entered = self.kernel.enter();
            let passive = PassiveLevel::current().unwrap();
            self.service.close(self.file, &passive);
            self.service.unload(&passive);
        }
        assert_eq!(self.kernel.bug_check(), None);
        assert_eq!(self.kernel.unload(), Ok(()));
    }
}

#[test]
fn a_request_cancelled_before_it_is_parked_is_completed_cancelled_by_the_service() {
    let bench = Bench::new();
    let (mut request, _) = bench.wait(7);
    request.cancelled_before_parking = true;
    assert_eq!(bench.dispatch(IOCTL_KTIMER_WAIT, request), STATUS_CANCELLED);
    assert_eq!(bench.completions_of(7), vec![(STATUS_CANCELLED, vec![])]);
    assert!(bench.cancel_wait(7).is_none(), "it was never parked");
    bench.finish();
}

#[test]
fn a_parked_request_taken_by_the_cancel_routine_is_not_completed_by_the_service() {
    let bench = Bench::new();
    let (request, _) = bench.wait(7);
    assert_eq!(bench.dispatch(IOCTL_KTIMER_WAIT, request), STATUS_PENDING);
    let taken = bench
        .cancel_wait(7)
        .expect("still parked: the cancel routine gets it");
    taken.complete(STATUS_CANCELLED, 0);
    bench.create_one_shot(1, 10_000);
    bench.kernel.advance(Duration::from_millis(2));
    assert_eq!(
        bench.completions_of(7),
        vec![(STATUS_CANCELLED, vec![])],
        "completed once, by the cancel routine"
    );
    // The record went to the ring, not to the cancelled request.
    let (next, _) = bench.wait(8);
    assert_eq!(bench.dispatch(IOCTL_KTIMER_WAIT, next), STATUS_SUCCESS);
    let done = bench.completions_of(8);
    assert_eq!(
        WaitBatch::decode(&done[0].1).unwrap().response.record_count,
        1
    );
    bench.finish();
}

#[test]
fn when_the_claim_fails_at_expiry_the_record_stays_and_the_cancel_routine_completes() {
    let bench = Bench::new();
    let (request, cancel_routine_owns) = bench.wait(7);
    assert_eq!(bench.dispatch(IOCTL_KTIMER_WAIT, request), STATUS_PENDING);
    // The I/O system cancels: the request is now the cancel routine's, which has not yet
    // reached the service's lock when the timer expires.
    cancel_routine_owns.store(true, Ordering::SeqCst);
    bench.create_one_shot(1, 10_000);
    bench.kernel.advance(Duration::from_millis(2));
    assert!(
        bench.completions_of(7).is_empty(),
        "the expiry path must not complete it"
    );
    // The cancel routine then finds it gone (the service dropped its reference) and completes it.
    assert!(bench.cancel_wait(7).is_none());
    // No record was drained into the request that lost the claim.
    let (next, _) = bench.wait(8);
    assert_eq!(bench.dispatch(IOCTL_KTIMER_WAIT, next), STATUS_SUCCESS);
    assert_eq!(
        WaitBatch::decode(&bench.completions_of(8)[0].1)
            .unwrap()
            .response
            .record_count,
        1
    );
    bench.finish();
}

#[test]
fn cleanup_completes_claimed_waits_and_leaves_the_others_to_their_cancel_routines() {
    let bench = Bench::new();
    let (claimable, _) = bench.wait(1);
    let (owned, cancel_routine_owns) = bench.wait(2);
    assert_eq!(bench.dispatch(IOCTL_KTIMER_WAIT, claimable), STATUS_PENDING);
    assert_eq!(bench.dispatch(IOCTL_KTIMER_WAIT, owned), STATUS_PENDING);
    cancel_routine_owns.store(true, Ordering::SeqCst);
    {
        let _entered = bench.kernel.enter();
        bench
            .service
            .cleanup(&bench.file, &PassiveLevel::current().unwrap());
    }
    assert_eq!(bench.completions_of(1), vec![(STATUS_CANCELLED, vec![])]);
    assert!(bench.completions_of(2).is_empty());
    assert!(bench.cancel_wait(2).is_none());
    bench.finish();
}
