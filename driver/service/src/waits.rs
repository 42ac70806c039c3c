//! Pending waits: the per-handle list of parked wait requests, the port through which the
//! service finishes them later, and the protocol that decides who completes each one.
//!
//! A wait is the one request the service completes itself, and only when it cannot be
//! answered at once: every other answer, a wait's immediate one included, goes back up to
//! the dispatcher as a value. The service sees a parked wait only through [`PendingWait`]
//! (cancel key, cancelability, filling records into its output, completion); the IOCTL
//! dispatcher implements it ([`crate::dispatch::Pended`]) on top of the front end's request.
//!
//! The list is bounded and allocated once at open, oldest first. Insert, remove and take
//! never allocate, so the expiry path (`DISPATCH_LEVEL`) and the cancel path can use them
//! under the handle's spin lock.
//!
//! # Who completes a pending wait: the claim protocol
//!
//! A parked request is cancelable by the I/O system (`CancelIoEx`, thread exit). Two paths
//! can then race to finish it: the service (records arrived, handle closed) and the front
//! end's cancel routine. The rule that makes exactly one of them complete it, and lose no
//! record:
//! - [`park`] parks a request under the handle's lock, calling
//!   [`PendingWait::mark_cancelable`] there: if the request was already cancelled it is
//!   answered with `STATUS_CANCELLED` at once; otherwise the cancel routine, which takes the
//!   same lock in [`cancel`], can only run after the request is in the list.
//! - Before the service fills records into a parked request it **claims** it with
//!   [`PendingWait::claim`] (KMDF: `WdfRequestUnmarkCancelable`), under the lock. If the
//!   claim fails, the cancel routine owns the request: the service drops it without
//!   completing it and without taking any record from the ring.
//! - The cancel routine calls [`cancel`] (through `Service::cancel_wait`). `Some(request)`:
//!   it was still parked; the cancel routine completes it with `STATUS_CANCELLED`. `None`:
//!   the service has already taken it out of its list, and its claim fails (or has failed):
//!   the service drops its request without completing it, and the request must be completed
//!   with `STATUS_CANCELLED` exactly once, after both sides have let go of it. How is the
//!   front end's business: the KMDF shell's cancel routine cannot complete it at once,
//!   because the service's request may still call `WdfRequestUnmarkCancelable` on it, so the
//!   cancel routine and the dropped request each release it once and the second release
//!   completes it (`ktimer-kmdf`'s `request` module).
//!
//! The protocol functions ([`park`], [`complete_ready`], [`cancel`], [`cancel_all`]) take
//! the handle's lock through [`WaitLock`], so the same code runs under the handle's spin
//! lock in the driver and under a loom mutex in `tests/loom_waits.rs`.

use alloc::vec::Vec;
use core::iter;

use ktimer_abi::ExpiryRecord;
use ktimer_abi::status::{NtStatus, STATUS_CANCELLED, STATUS_QUOTA_EXCEEDED};

use crate::ring::EventRing;

/// The port through which the service finishes a wait it parked: the only way it completes
/// a request. Implemented by the IOCTL dispatcher ([`crate::dispatch::Pended`]) on top of
/// the front end's request, and by the loom model's request.
///
/// Dropping a value must **not** complete the request: the service drops one exactly when
/// the front end's cancel routine owns it (the claim protocol, module documentation).
pub trait PendingWait: Send + Sized + 'static {
    /// A value that identifies this request among the handle's pending ones, for
    /// [`cancel`] (KMDF: the `WDFREQUEST` handle value). Any IRQL.
    fn key(&self) -> usize;

    /// Lets the I/O system cancel the request (KMDF: `WdfRequestMarkCancelableEx` with the
    /// cancel routine). Returns `false` if it has already been cancelled; it is then
    /// answered with `STATUS_CANCELLED`. Called once, at `DISPATCH_LEVEL` under the handle's
    /// lock: it must not call into the service.
    fn mark_cancelable(&mut self) -> bool;

    /// Takes the request back from the I/O system's cancellation (KMDF:
    /// `WdfRequestUnmarkCancelable`). `true`: the service owns it again and will complete
    /// it. `false`: the cancel routine owns it; the service drops it uncompleted. `<=
    /// DISPATCH_LEVEL`, possibly under the handle's lock: it must not call into the service.
    fn claim(&mut self) -> bool;

    /// Writes a wait response into the request's output: `overruns`, then as many of
    /// `records` as fit, taking no more from the iterator than it writes (the rest stay in
    /// the ring). Under the handle's lock, `<= DISPATCH_LEVEL`; no allocation.
    ///
    /// # Errors
    /// The status to complete with if the output cannot hold a response with one record
    /// (then no record is taken).
    fn fill(
        &mut self,
        overruns: u64,
        records: impl Iterator<Item = ExpiryRecord>,
    ) -> Result<usize, NtStatus>;

    /// Completes the request: success with `Ok(bytes)` of output, or `Err(status)` with
    /// none. `<= DISPATCH_LEVEL`; called at most once, never under the service's locks.
    fn complete(self, result: Result<usize, NtStatus>);
}

/// A wait request parked until enough records are ready.
#[derive(Debug)]
pub struct Parked<R> {
    /// The front end's request.
    pub request: R,
    /// Its cancel key ([`PendingWait::key`]).
    pub key: usize,
    /// Complete once this many records are ready.
    pub min_records: usize,
}

/// Pending waits of one handle, oldest first.
#[derive(Debug)]
pub struct WaitList<R> {
    entries: Vec<Parked<R>>,
}

impl<R> WaitList<R> {
    /// A list holding at most `capacity` waits. Allocates; `PASSIVE_LEVEL` (open time).
    ///
    /// # Errors
    /// `None` if the allocation fails.
    #[must_use]
    pub fn new(capacity: usize) -> Option<Self> {
        let mut entries = Vec::new();
        entries.try_reserve_exact(capacity).ok()?;
        Some(Self { entries })
    }

    /// Whether another wait would exceed the limit.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.entries.capacity()
    }

    /// Parks a wait, or gives it back if the list is full. Never allocates.
    ///
    /// # Errors
    /// The entry itself when the list is full.
    pub fn push(&mut self, parked: Parked<R>) -> Result<(), Parked<R>> {
        if self.is_full() {
            return Err(parked);
        }
        // Within the reserved capacity: `push` does not reallocate.
        self.entries.push(parked);
        Ok(())
    }

    /// Removes the wait with this cancel key.
    pub fn remove_key(&mut self, key: usize) -> Option<Parked<R>> {
        let index = self.entries.iter().position(|parked| parked.key == key)?;
        Some(self.entries.remove(index))
    }

    /// Removes the oldest wait that `ready` records satisfy.
    pub fn take_satisfied(&mut self, ready: usize) -> Option<Parked<R>> {
        let index = self
            .entries
            .iter()
            .position(|parked| parked.min_records <= ready)?;
        Some(self.entries.remove(index))
    }

    /// Removes the oldest wait.
    pub fn pop_oldest(&mut self) -> Option<Parked<R>> {
        if self.entries.is_empty() {
            None
        } else {
            Some(self.entries.remove(0))
        }
    }

    /// Waits parked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is parked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The part of a handle's state the wait protocol works on, borrowed under its lock.
#[derive(Debug)]
pub struct WaitState<'a, R> {
    /// Cleanup or unload has begun: new waits are refused.
    pub closing: bool,
    /// The handle's event ring.
    pub ring: &'a mut EventRing,
    /// The handle's pending waits.
    pub waits: &'a mut WaitList<R>,
}

/// The handle's lock as the wait protocol takes it: the handle's spin lock in the service
/// (taken at, or raising to, `DISPATCH_LEVEL`), a loom mutex in the loom model.
pub trait WaitLock<R> {
    /// Runs `f` with the lock held. The protocol never completes or drops a request inside
    /// `f`: it hands it out and finishes it after the lock is released.
    fn with<T>(&self, f: impl FnOnce(WaitState<'_, R>) -> T) -> T;
}

/// What became of a wait handed to [`park`].
#[derive(Debug)]
pub enum Parking<R> {
    /// Answered at once: records filled in (`Ok(bytes)`), or refused (`Err(status)`). The
    /// caller completes the request; nothing in the service refers to it.
    Answered(R, Result<usize, NtStatus>),
    /// No longer the caller's: parked (the service or the cancel routine completes it).
    Parked,
}

/// Moves as many records as fit from the ring into a wait response, with the overrun count
/// (which is then reset). No allocation; any IRQL.
fn drain_into<R: PendingWait>(ring: &mut EventRing, request: &mut R) -> Result<usize, NtStatus> {
    let overruns = ring.overruns();
    let written = request.fill(overruns, iter::from_fn(|| ring.pop()))?;
    ring.take_overruns();
    Ok(written)
}

/// A wait's submission (`Service::wait`): answers it from the ring if `min_records` are
/// ready, refuses it if the handle is closing, the list is full or the request is already
/// cancelled, or parks it, cancelable, until the records arrive. The dispatcher has checked
/// that `min_records` fits the output and the ring. `<= DISPATCH_LEVEL`.
pub fn park<R: PendingWait>(
    lock: &impl WaitLock<R>,
    mut request: R,
    min_records: usize,
) -> Parking<R> {
    /// What happened under the lock; the request is completed or dropped after it.
    enum Submitted<R> {
        Answered(R, Result<usize, NtStatus>),
        Parked,
        /// Given back by the list and not claimed back: its cancel routine owns it.
        Lost(R),
    }
    let key = request.key();
    let submitted = lock.with(|state| {
        let refused = if state.closing {
            STATUS_CANCELLED
        } else if state.ring.len() >= min_records {
            let result = drain_into(state.ring, &mut request);
            return Submitted::Answered(request, result);
        } else if state.waits.is_full() {
            STATUS_QUOTA_EXCEEDED
        } else if !request.mark_cancelable() {
            STATUS_CANCELLED
        } else {
            // Not full (checked under this lock): the push cannot fail. A request given back
            // anyway is marked cancelable, so it is answered only if it is claimed back.
            return match state.waits.push(Parked {
                request,
                key,
                min_records,
            }) {
                Ok(()) => Submitted::Parked,
                Err(Parked { mut request, .. }) => {
                    if request.claim() {
                        Submitted::Answered(request, Err(STATUS_QUOTA_EXCEEDED))
                    } else {
                        Submitted::Lost(request)
                    }
                }
            };
        };
        Submitted::Answered(request, Err(refused))
    });
    match submitted {
        Submitted::Answered(request, result) => Parking::Answered(request, result),
        Submitted::Parked => Parking::Parked,
        Submitted::Lost(request) => {
            drop(request);
            Parking::Parked
        }
    }
}

/// Completes, oldest first, every parked wait the ring's records satisfy: claim and fill
/// under the lock, complete after it. A wait whose claim fails belongs to its cancel routine
/// and takes no record; it is dropped after the lock. The expiry path calls this after
/// pushing a record (`DISPATCH_LEVEL`); no allocation.
pub fn complete_ready<R: PendingWait>(lock: &impl WaitLock<R>) {
    loop {
        let next = lock.with(|state| {
            let ready = state.ring.len();
            if ready == 0 {
                return None;
            }
            let mut parked = state.waits.take_satisfied(ready)?;
            if !parked.request.claim() {
                return Some((parked.request, None));
            }
            let result = drain_into(state.ring, &mut parked.request);
            Some((parked.request, Some(result)))
        });
        match next {
            None => return,
            Some((request, Some(result))) => request.complete(result),
            // Lost claim: the cancel routine completes it; this side only lets go.
            Some((request, None)) => drop(request),
        }
    }
}

/// The cancel routine's side (`Service::cancel_wait`): takes the wait with this key out of
/// the list. `Some`: still parked; the caller completes it with `STATUS_CANCELLED`. `None`:
/// the service took it first (see the claim protocol). `<= DISPATCH_LEVEL`.
pub fn cancel<R: PendingWait>(lock: &impl WaitLock<R>, key: usize) -> Option<R> {
    lock.with(|state| state.waits.remove_key(key))
        .map(|parked| parked.request)
}

/// Handle cleanup's side: completes every parked wait with `STATUS_CANCELLED`, oldest
/// first, each one it can claim (a lost claim: its cancel routine completes it). Called
/// after `closing` is set, so nothing new is parked meanwhile. `<= DISPATCH_LEVEL`.
pub fn cancel_all<R: PendingWait>(lock: &impl WaitLock<R>) {
    while let Some(mut parked) = lock.with(|state| state.waits.pop_oldest()) {
        if parked.request.claim() {
            parked.request.complete(Err(STATUS_CANCELLED));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(key: usize, min_records: usize) -> Parked<&'static str> {
        Parked {
            request: "request",
            key,
            min_records,
        }
    }

    #[test]
    fn bounded_and_oldest_first() {
        let mut list = WaitList::new(2).unwrap();
        assert!(list.push(parked(1, 3)).is_ok());
        assert!(list.push(parked(2, 1)).is_ok());
        assert!(list.is_full());
        assert_eq!(list.push(parked(3, 1)).map_err(|p| p.key), Err(3));
        // Two records satisfy the second wait but not the first.
        assert_eq!(list.take_satisfied(2).map(|p| p.key), Some(2));
        assert_eq!(list.take_satisfied(2).map(|p| p.key), None);
        assert_eq!(list.take_satisfied(3).map(|p| p.key), Some(1));
        assert!(list.is_empty());
    }

    #[test]
    fn remove_by_key_and_pop() {
        let mut list = WaitList::new(3).unwrap();
        for key in 1..=3 {
            assert!(list.push(parked(key, 1)).is_ok());
        }
        assert_eq!(list.remove_key(2).map(|p| p.key), Some(2));
        assert_eq!(list.remove_key(2).map(|p| p.key), None);
        assert_eq!(list.pop_oldest().map(|p| p.key), Some(1));
        assert_eq!(list.len(), 1);
        assert_eq!(list.pop_oldest().map(|p| p.key), Some(3));
        assert_eq!(list.pop_oldest().map(|p| p.key), None);
    }
}
