//! A loom model of the service's pending-wait protocol: a wait parked or answered at
//! submission, completed by the expiry path, cancelled by the I/O system (`CancelIoEx`), and
//! cancelled by handle close, in every interleaving.
//!
//! What is real and what is modelled:
//! - real, the code the driver runs: the wait protocol of `ktimer_service::waits`
//!   ([`waits::park`] = `Service::wait`, [`waits::complete_ready`] = the expiry path's
//!   `complete_ready_waits`, [`waits::cancel`] = `Service::cancel_wait`,
//!   [`waits::cancel_all`] = the waits part of cleanup), the [`WaitList`] and [`EventRing`]
//!   it works on, and the dispatcher's [`Pended`] port (filling records with the ABI's
//!   wait-response encoder, completing through [`IoRequest::complete`]);
//! - modelled: the handle's spin lock is a loom `Mutex` behind the same [`WaitLock`] trait
//!   the service implements over its `SpinLock` (mutual exclusion is what the protocol relies
//!   on; the IRQL the spin lock raises is not modelled); the request and the I/O manager's
//!   cancel state (a loom atomic, on KMDF's `WdfRequestMarkCancelableEx` /
//!   `WdfRequestUnmarkCancelable` contract) and the front end's cancel routine with its
//!   two-release hand-off (`ktimer-kmdf`'s `request` module); and, transcribed, the two
//!   non-wait lines around the protocol: the expiry path's push of one record under the lock
//!   (`HandleCore::on_expiry`) and cleanup's `closing = true` + ring clear
//!   (`HandleCore::tear_down`). The dispatcher's argument checks before `park` are not
//!   modelled (the scenarios only submit valid waits).
//!
//! Checked in every interleaving:
//! - every wait request is completed exactly once (never twice, never left pending);
//! - a successful wait holds at least `min_records` records, each delivered once;
//! - no record is lost: delivered + still in the ring + discarded by close == pushed
//!   (a wait whose claim fails takes no record);
//! - after close, nothing is parked.
//!
//! Bounds: one handle; at most two waits, two expiry-path runs (records), one `CancelIoEx`
//! and one close per scenario; at most three threads. Within those, exhaustive: no
//! preemption bound, so loom explores every interleaving of the model's synchronisation
//! operations (lock acquisitions and atomic accesses, with their memory orderings).
//!
//! Run (about 10 s after the build; a separate target dir so the `--cfg loom` build does not
//! invalidate the normal one):
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p ktimer-service --release --test loom_waits loom`
#![cfg(loom)]

use std::collections::HashSet;

use ktimer_abi::ExpiryRecord;
use ktimer_abi::codec::{WaitBatch, wait_response_len};
use ktimer_abi::status::{NtStatus, STATUS_CANCELLED, STATUS_PENDING, STATUS_SUCCESS};
use ktimer_service::dispatch::{CancelableRequest, IoRequest, Pended};
use ktimer_service::ring::EventRing;
use ktimer_service::waits::{self, Parking, PendingWait, WaitList, WaitLock, WaitState};
use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Request states as the I/O manager sees them (the states of a request in the KMDF model:
/// presented, cancelable, cancelled, claimed).
const FRESH: u8 = 0;
const CANCELABLE: u8 = 1;
const CLAIMED: u8 = 2;
const CANCEL_OWNED: u8 = 3;
const CANCEL_REQUESTED: u8 = 4;

/// The I/O manager's side of one request: its cancel state and how it completed.
struct Slot {
    state: AtomicU8,
    completions: AtomicUsize,
    result: Mutex<Option<(NtStatus, Vec<u8>)>>,
    min_records: usize,
    /// The cancel key (KMDF: the `WDFREQUEST` handle value).
    key: usize,
}

impl Slot {
    fn new(key: usize, min_records: usize) -> Arc<Self> {
        Arc::new(Self {
            state: AtomicU8::new(FRESH),
            completions: AtomicUsize::new(0),
            result: Mutex::new(None),
            min_records,
            key,
        })
    }

    /// Records a completion; the checks count them (no "first one wins" guard here).
    fn finish(&self, status: NtStatus, output: Vec<u8>) {
        self.completions.fetch_add(1, Ordering::AcqRel);
        *self.result.lock().unwrap() = Some((status, output));
    }
}

/// The front end's request, as the dispatcher sees it.
struct ModelRequest {
    output: Vec<u8>,
    slot: Arc<Slot>,
}

impl ModelRequest {
    fn new(slot: &Arc<Slot>, capacity: usize) -> Self {
        Self {
            output: vec![0; wait_response_len(capacity).unwrap()],
            slot: Arc::clone(slot),
        }
    }
}

impl IoRequest for ModelRequest {
    fn input(&self) -> &[u8] {
        &[]
    }

    fn output(&mut self) -> &mut [u8] {
        &mut self.output
    }

    fn complete(mut self, status: NtStatus, information: usize) {
        self.output.truncate(information);
        self.slot.finish(status, std::mem::take(&mut self.output));
    }
}

impl CancelableRequest for ModelRequest {
    fn key(&self) -> usize {
        self.slot.key
    }

    fn mark_cancelable(&mut self) -> bool {
        self.slot
            .state
            .compare_exchange(FRESH, CANCELABLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn claim(&mut self) -> bool {
        self.slot
            .state
            .compare_exchange(CANCELABLE, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What the service holds for a wait.
type Wait = Pended<ModelRequest>;

/// The handle's locked state (the wait-related part of `HandleState`), with the model's
/// bookkeeping.
struct State {
    closing: bool,
    ring: EventRing,
    waits: WaitList<Wait>,
    /// Records pushed by expiry runs, and records discarded by close.
    pushed: usize,
    discarded: usize,
}

struct Handle {
    state: Mutex<State>,
}

/// The handle's lock, as the service's `Raising`/`AtDpc` adapters give it to the protocol.
impl WaitLock<Wait> for Handle {
    fn with<T>(&self, f: impl FnOnce(WaitState<'_, Wait>) -> T) -> T {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        f(WaitState {
            closing: state.closing,
            ring: &mut state.ring,
            waits: &mut state.waits,
        })
    }
}

impl Handle {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                closing: false,
                ring: EventRing::new(8).unwrap(),
                waits: WaitList::new(2).unwrap(),
                pushed: 0,
                discarded: 0,
            }),
        })
    }

    /// The dispatcher's wait path after its argument checks: the real `park`, then the
    /// completion of an immediate answer.
    fn submit_wait(&self, request: ModelRequest, min_records: usize) -> NtStatus {
        match waits::park(self, Pended::new(request), min_records) {
            Parking::Answered(wait, result) => {
                wait.complete(result);
                result.map_or_else(|status| status, |_| STATUS_SUCCESS)
            }
            Parking::Parked => STATUS_PENDING,
        }
    }

    /// `HandleCore::on_expiry`: one record pushed under the lock (transcribed), then the
    /// real `complete_ready` if waits are parked.
    fn expire(&self, sequence: u64) {
        let waiters = {
            let mut state = self.state.lock().unwrap();
            if state.closing {
                return;
            }
            state.ring.push(ExpiryRecord {
                timer_id: 1,
                sequence,
                expirations: 1,
                ..ExpiryRecord::default()
            });
            state.pushed += 1;
            !state.waits.is_empty()
        };
        if waiters {
            waits::complete_ready(self);
        }
    }

    /// `HandleCore::tear_down`: `closing` and the ring clear (transcribed), then the real
    /// `cancel_all` (the timers part is the kernel layer's loom model).
    fn close(&self) {
        {
            let mut state = self.state.lock().unwrap();
            state.closing = true;
            state.discarded += state.ring.len();
            state.ring.clear();
        }
        waits::cancel_all(self);
    }

    /// `CancelIoEx` on the request and the front end's cancel routine, which calls the
    /// real `cancel` (`Service::cancel_wait`).
    fn cancel_io(&self, slot: &Arc<Slot>) {
        loop {
            let state = slot.state.load(Ordering::Acquire);
            let next = match state {
                FRESH => CANCEL_REQUESTED,
                CANCELABLE => CANCEL_OWNED,
                _ => return,
            };
            if slot
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            if next == CANCEL_OWNED {
                match waits::cancel(self, slot.key).map(Pended::into_request) {
                    Some(request) => request.complete(STATUS_CANCELLED, 0),
                    // The service removed it and lost the claim: the routine completes it.
                    None => slot.finish(STATUS_CANCELLED, Vec::new()),
                }
            }
            return;
        }
    }
}

/// The checks every scenario ends with (see the module documentation).
fn check(handle: &Handle, slots: &[Arc<Slot>], closed: bool) {
    let mut delivered = HashSet::new();
    for slot in slots {
        assert_eq!(
            slot.completions.load(Ordering::Acquire),
            1,
            "a wait completed other than exactly once"
        );
        let (status, output) = slot.result.lock().unwrap().clone().unwrap();
        if status == STATUS_SUCCESS {
            let batch = WaitBatch::decode(&output).unwrap();
            let records: Vec<_> = batch.records().collect();
            assert!(records.len() >= slot.min_records, "completed too early");
            for record in records {
                assert!(
                    delivered.insert(record.sequence),
                    "a record delivered twice"
                );
            }
        } else {
            assert_eq!(status, STATUS_CANCELLED);
            assert!(output.is_empty());
        }
    }
    let state = handle.state.lock().unwrap();
    assert_eq!(
        delivered.len() + state.ring.len() + state.discarded,
        state.pushed,
        "a record was lost"
    );
    if closed {
        assert!(state.waits.is_empty(), "a wait is still parked after close");
    }
}

/// Exhaustive: no preemption bound (the scenarios are small enough).
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = None;
    builder
}

/// A parked wait for one record: the expiry that satisfies it races `CancelIoEx`. Either the
/// wait gets the record, or it is cancelled and the record stays in the ring.
#[test]
fn loom_expiry_races_cancel_of_a_parked_wait() {
    builder().check(|| {
        let handle = Handle::new();
        let slot = Slot::new(1, 1);
        let status = handle.submit_wait(ModelRequest::new(&slot, 2), 1);
        assert_eq!(status, STATUS_PENDING);
        let expiry = {
            let handle = Arc::clone(&handle);
            thread::spawn(move || handle.expire(1))
        };
        handle.cancel_io(&slot);
        expiry.join().unwrap();
        check(&handle, &[slot], false);
    });
}

/// Two parked waits (one record, two records) while two expiry runs race handle close:
/// each wait completes once, with its records or cancelled; nothing stays parked.
#[test]
fn loom_expiry_races_handle_close() {
    builder().check(|| {
        let handle = Handle::new();
        let slots = [Slot::new(1, 1), Slot::new(2, 2)];
        for slot in &slots {
            let status = handle.submit_wait(ModelRequest::new(slot, 2), slot.min_records);
            assert_eq!(status, STATUS_PENDING);
        }
        let expiry = {
            let handle = Arc::clone(&handle);
            thread::spawn(move || {
                handle.expire(1);
                handle.expire(2);
            })
        };
        handle.close();
        expiry.join().unwrap();
        check(&handle, &slots, true);
    });
}

/// The submission races handle close alone: a wait that arrives after close is refused, one
/// parked before is cancelled by it; none is left parked with nobody to complete it.
#[test]
fn loom_submission_races_close() {
    builder().check(|| {
        let handle = Handle::new();
        let slot = Slot::new(1, 1);
        let submitter = {
            let handle = Arc::clone(&handle);
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                let status = handle.submit_wait(ModelRequest::new(&slot, 1), 1);
                assert!(status == STATUS_PENDING || status == STATUS_CANCELLED);
            })
        };
        handle.close();
        submitter.join().unwrap();
        check(&handle, &[slot], true);
    });
}

/// The submission itself races `CancelIoEx` (which may come before the request is marked
/// cancelable) and handle close (which may come before or after it is parked).
#[test]
fn loom_submission_races_cancel_and_close() {
    builder().check(|| {
        let handle = Handle::new();
        let slot = Slot::new(1, 1);
        let submitter = {
            let handle = Arc::clone(&handle);
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                let _status = handle.submit_wait(ModelRequest::new(&slot, 1), 1);
            })
        };
        let canceller = {
            let handle = Arc::clone(&handle);
            let slot = Arc::clone(&slot);
            thread::spawn(move || handle.cancel_io(&slot))
        };
        handle.close();
        submitter.join().unwrap();
        canceller.join().unwrap();
        check(&handle, &[slot], true);
    });
}

/// Everything at once on two parked waits: an expiry run, `CancelIoEx` of the first wait,
/// and handle close.
#[test]
fn loom_expiry_cancel_and_close_all_race() {
    builder().check(|| {
        let handle = Handle::new();
        let slots = [Slot::new(1, 1), Slot::new(2, 1)];
        for slot in &slots {
            let status = handle.submit_wait(ModelRequest::new(slot, 1), 1);
            assert_eq!(status, STATUS_PENDING);
        }
        let expiry = {
            let handle = Arc::clone(&handle);
            thread::spawn(move || handle.expire(1))
        };
        let canceller = {
            let handle = Arc::clone(&handle);
            let slot = Arc::clone(&slots[0]);
            thread::spawn(move || handle.cancel_io(&slot))
        };
        handle.close();
        expiry.join().unwrap();
        canceller.join().unwrap();
        check(&handle, &slots, true);
    });
}
