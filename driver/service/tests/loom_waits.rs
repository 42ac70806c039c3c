//! A loom model of the service's pending-wait state machine: a wait parked or completed at
//! submission, completed by the expiry path, cancelled by the I/O system (`CancelIoEx`), and
//! cancelled by handle close, in every interleaving.
//!
//! What is real and what is modelled:
//! - real: the per-handle [`WaitList`] and [`EventRing`] (the data structures the service
//!   keeps under the handle's lock), the ABI's wait-response encoder, and the
//!   [`IoRequest`] contract (`mark_cancelable`/`claim`/`complete`/`key`);
//! - transcribed, step for step: `Service::wait` (after its argument checks),
//!   `HandleCore::on_expiry` + `complete_ready_waits` (one record per run),
//!   `Service::cancel_wait`, the waits part of `HandleCore::tear_down`, and the front end's
//!   cancel routine (modelled on KMDF's `WdfRequestMarkCancelableEx` /
//!   `WdfRequestUnmarkCancelable` contract). The handle's spin lock is a loom `Mutex`; the
//!   request's cancel state is a loom atomic. Keep these in step with `driver/service/src`
//!   and `driver/kmdf/src/request.rs` when the protocol changes.
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
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p ktimer --release --test loom_waits`
#![cfg(loom)]

use std::collections::HashSet;
use std::iter;

use ktimer_abi::ExpiryRecord;
use ktimer_abi::codec::{WaitBatch, encode_wait_response, wait_response_len};
use ktimer_abi::status::{NtStatus, STATUS_CANCELLED, STATUS_PENDING, STATUS_SUCCESS};
use ktimer_service::dispatch::IoRequest;
use ktimer_service::ring::EventRing;
use ktimer_service::waits::{Parked, WaitList};
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

/// The driver's view of the request.
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

/// The handle's spin-locked state (the wait-related part of `HandleState`).
struct State {
    closing: bool,
    ring: EventRing,
    waits: WaitList<ModelRequest>,
    /// Records pushed by expiry runs, and records discarded by close (model bookkeeping).
    pushed: usize,
    discarded: usize,
}

struct Handle {
    state: Mutex<State>,
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

    /// `Service::wait`, after its argument checks.
    fn submit_wait(&self, mut request: ModelRequest, min_records: usize) -> NtStatus {
        let key = request.key();
        let mut state = self.state.lock().unwrap();
        if state.closing {
            drop(state);
            request.complete(STATUS_CANCELLED, 0);
            return STATUS_CANCELLED;
        }
        if state.ring.len() >= min_records {
            let (status, written) = drain_into(&mut state.ring, request.output());
            drop(state);
            request.complete(status, written);
            return status;
        }
        assert!(
            !state.waits.is_full(),
            "the scenarios stay within the limit"
        );
        if !request.mark_cancelable() {
            drop(state);
            request.complete(STATUS_CANCELLED, 0);
            return STATUS_CANCELLED;
        }
        let parked = state.waits.push(Parked {
            request,
            key,
            min_records,
        });
        assert!(parked.is_ok());
        STATUS_PENDING
    }

    /// `HandleCore::on_expiry` (the record part) then `complete_ready_waits`.
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
        if !waiters {
            return;
        }
        loop {
            let mut state = self.state.lock().unwrap();
            let ready = state.ring.len();
            if ready == 0 {
                return;
            }
            let Some(mut parked) = state.waits.take_satisfied(ready) else {
                return;
            };
            if !parked.request.claim() {
                drop(state);
                drop(parked);
                continue;
            }
            let (status, written) = drain_into(&mut state.ring, parked.request.output());
            drop(state);
            parked.request.complete(status, written);
        }
    }

    /// `Service::cancel_wait`.
    fn cancel_wait(&self, key: usize) -> Option<ModelRequest> {
        let parked = self.state.lock().unwrap().waits.remove_key(key);
        parked.map(|parked| parked.request)
    }

    /// `HandleCore::tear_down`, its waits part (the timers part is the kernel layer's model).
    fn close(&self) {
        {
            let mut state = self.state.lock().unwrap();
            state.closing = true;
            state.discarded += state.ring.len();
            state.ring.clear();
        }
        loop {
            let parked = self.state.lock().unwrap().waits.pop_oldest();
            let Some(mut parked) = parked else { break };
            if parked.request.claim() {
                parked.request.complete(STATUS_CANCELLED, 0);
            }
        }
    }

    /// `CancelIoEx` on the request and its cancel routine.
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
                match self.cancel_wait(slot.key) {
                    Some(request) => request.complete(STATUS_CANCELLED, 0),
                    // The service removed it and lost the claim: the routine completes it.
                    None => slot.finish(STATUS_CANCELLED, Vec::new()),
                }
            }
            return;
        }
    }
}

/// The service's `drain_into`: as many records as fit, with the overrun count.
fn drain_into(ring: &mut EventRing, output: &mut [u8]) -> (NtStatus, usize) {
    let overruns = ring.overruns();
    match encode_wait_response(overruns, iter::from_fn(|| ring.pop()), output) {
        Ok((_, written)) => {
            ring.take_overruns();
            (STATUS_SUCCESS, written)
        }
        Err(error) => (error.status(), 0),
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
