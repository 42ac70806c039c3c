//! Deferred teardown: how a timer dropped above `PASSIVE_LEVEL` is freed safely later.
//!
//! Freeing a timer's storage is safe only after `KeFlushQueuedDpcs` (or, for a
//! high-resolution timer, `ExDeleteTimer(.., Wait = TRUE, ..)`), and both are only legal
//! at `PASSIVE_LEVEL`. A drop can happen at `DISPATCH_LEVEL` (inside a spin-lock guard, or
//! inside the timer's own callback), where nothing can wait. Such a drop stops the timer
//! (cancel, dequeue the DPC, mark it torn down so no callback starts) and *parks* the
//! storage on a lock-free list instead of freeing it. The parked storage stays valid for
//! any DPC still in flight. The next PASSIVE-level teardown (any timer dropped at
//! `PASSIVE_LEVEL`) or an explicit [`reclaim_deferred`] takes the parked entries, flushes
//! once, and frees them. Parking allocates nothing: the list link lives in the storage.
//!
//! The driver must call [`reclaim_deferred`] before unload, or the verifier reports the
//! parked storage as leaked pool.
//!
//! The list is a Treiber stack with a take-all pop (`swap(null)`), so it has no ABA
//! problem. There is one list per kernel (`parked_list`):
//! one per driver image on Windows; one per simulated kernel in tests, so that no kernel
//! ever frees, or even reads, a block another kernel allocated.

use core::ptr::{self, NonNull};

use super::irql::PassiveLevel;
use super::pool::PoolTag;
use super::sync::{AtomicBool, AtomicPtr, Ordering};
use super::sys;

/// The "torn down" mark of a timer's storage: set once by the handle's drop, read by the
/// expiry trampoline before it calls the callback.
///
/// # Invariants
///
/// Goes from false to true once and never back.
pub(crate) struct TornDown {
    torn_down: AtomicBool,
}

impl TornDown {
    /// Any IRQL.
    pub(crate) fn new() -> Self {
        Self {
            torn_down: AtomicBool::new(false),
        }
    }

    /// Marks the storage torn down: no callback starts after this returns. Any IRQL.
    pub(crate) fn tear_down(&self) {
        // INVARIANT: only ever stores true.
        // Release pairs with the Acquire in `admits_callback`.
        self.torn_down.store(true, Ordering::Release);
    }

    /// Whether an expiry may still call the callback. Any IRQL.
    pub(crate) fn admits_callback(&self) -> bool {
        !self.torn_down.load(Ordering::Acquire)
    }
}

/// What finishes a parked storage block once the DPCs that might still touch it are
/// flushed: frees it (and, for a high-resolution timer, deletes its `EX_TIMER` first).
///
/// Called at `PASSIVE_LEVEL`, after the flush, exactly once per parked node, with the node
/// that was parked.
pub(crate) type Finish = unsafe fn(NonNull<DeferredNode>);

/// The list link embedded (as the first field, `#[repr(C)]`) in every timer storage block.
///
/// # Invariants
///
/// `tag` and `finish` never change after construction. `next` is written only by the
/// party that currently owns the node (the parker before publishing it, the reclaimer
/// after taking it).
pub(crate) struct DeferredNode {
    next: AtomicPtr<DeferredNode>,
    tag: PoolTag,
    finish: Finish,
}

impl DeferredNode {
    /// A node for a block tagged `tag`, finished by `finish`. Any IRQL.
    pub(crate) fn new(finish: Finish, tag: PoolTag) -> Self {
        // Make sure this kernel's list exists now, while the timer is being made: on the
        // simulator the first use creates it, and a later park may run inside a DPC.
        let _ = parked();
        Self {
            next: AtomicPtr::new(ptr::null_mut()),
            tag,
            finish,
        }
    }

    /// The pool tag of the block this node heads. Any IRQL.
    pub(crate) fn tag(&self) -> PoolTag {
        self.tag
    }
}

/// A lock-free stack of parked storage blocks.
///
/// # Invariants
///
/// Every node reachable from `head` was handed over by [`ParkedList::park`]: it is valid
/// until finished, owned by the list, and on no other list.
pub(crate) struct ParkedList {
    head: AtomicPtr<DeferredNode>,
}

/// A privately owned chain of nodes taken off a [`ParkedList`].
///
/// # Invariants
///
/// Owns every node of the chain from `head`; each is valid until its finisher runs.
pub(crate) struct Taken {
    head: *mut DeferredNode,
}

impl ParkedList {
    /// Any IRQL.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Any IRQL.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes a node. Any IRQL; lock-free, allocates nothing.
    ///
    /// # Safety
    ///
    /// `node` must be valid until it is finished, owned by the caller, and not on any list.
    pub(crate) unsafe fn park(&self, node: NonNull<DeferredNode>) {
        // SAFETY: the caller owns `node` and keeps it valid.
        let node_ref = unsafe { node.as_ref() };
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            node_ref.next.store(head, Ordering::Relaxed);
            // Release: publishes the node's fields (and the storage's last writes) to the
            // reclaimer that takes it with Acquire.
            match self.head.compare_exchange_weak(
                head,
                node.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                // INVARIANT: the node is published on the list, which now owns it.
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    /// Takes every parked node. Any IRQL; lock-free, allocates nothing.
    pub(crate) fn take_all(&self) -> Taken {
        // Acquire pairs with `park`'s Release: the nodes' fields are visible.
        // INVARIANT: the swap moved the whole chain out of the list into the `Taken`.
        Taken {
            head: self.head.swap(ptr::null_mut(), Ordering::Acquire),
        }
    }
}

impl Taken {
    /// Whether nothing was taken. Any IRQL.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Runs every node's finisher, returning how many ran.
    ///
    /// # Safety
    ///
    /// Every DPC and callback that could touch the taken storage has been flushed (the
    /// caller ran `KeFlushQueuedDpcs` at `PASSIVE_LEVEL` after taking them), and the
    /// current IRQL is `PASSIVE_LEVEL`.
    pub(crate) unsafe fn finish_all(self) -> usize {
        let mut finished = 0_usize;
        let mut next = self.head;
        while let Some(node) = NonNull::new(next) {
            // SAFETY: we own the taken node; it is valid until its finisher runs.
            let node_ref = unsafe { node.as_ref() };
            next = node_ref.next.load(Ordering::Relaxed);
            let finish = node_ref.finish;
            // SAFETY: the node was parked once and is finished once, here, after the flush
            // the caller guarantees; `finish` is the finisher of the storage it heads.
            unsafe { finish(node) };
            finished = finished.saturating_add(1);
        }
        finished
    }
}

/// The parked list of the kernel this code runs in. Any IRQL.
#[cfg(not(loom))]
fn parked() -> &'static ParkedList {
    parked_list()
}

/// The list of torn-down timers awaiting a PASSIVE-level flush of the kernel this code runs
/// in. Any IRQL; allocates nothing in the driver.
///
/// On Windows a driver image lives in exactly one kernel: one static list. The simulator
/// runs many independent kernels in one process (one per test), each with its own pool
/// that is released when the kernel goes away: each kernel gets its own list (made on
/// first use and never freed, a few bytes per simulated kernel), so no kernel ever reads or
/// frees a block of another, even of one that no longer exists.
#[cfg(all(windows, not(loom)))]
fn parked_list() -> &'static ParkedList {
    static PARKED: ParkedList = ParkedList::new();
    &PARKED
}

/// See the Windows version above. Any IRQL.
#[cfg(all(not(windows), not(loom)))]
fn parked_list() -> &'static ParkedList {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, PoisonError};

    static LISTS: Mutex<BTreeMap<u64, &'static ParkedList>> = Mutex::new(BTreeMap::new());
    let kernel = sys::kernel_instance();
    let mut lists = LISTS.lock().unwrap_or_else(PoisonError::into_inner);
    lists
        .entry(kernel)
        .or_insert_with(|| std::boxed::Box::leak(std::boxed::Box::new(ParkedList::new())))
}

/// Under the model checker, statics must be loom objects made inside each execution. Any IRQL.
#[cfg(loom)]
fn parked() -> &'static ParkedList {
    loom::lazy_static! {
        static ref PARKED: ParkedList = ParkedList::new();
    }
    &PARKED
}

/// Retires a torn-down storage block whose timer was already cancelled and whose DPC was
/// dequeued: at `PASSIVE_LEVEL` flushes DPCs and finishes it at once (with any parked
/// blocks of this kernel); above it, parks it. Any IRQL <= `DISPATCH_LEVEL`.
///
/// # Safety
///
/// `node` heads a storage block owned by the caller, valid, on no list, whose timer can no
/// longer be armed by anyone (its handle is being dropped) and was cancelled; its finisher
/// frees it.
pub(crate) unsafe fn retire(node: NonNull<DeferredNode>) {
    if PassiveLevel::current().is_some() {
        let parked = parked().take_all();
        // SAFETY: at PASSIVE_LEVEL (just checked); waits for every DPC queued or running.
        unsafe { sys::KeFlushQueuedDpcs() };
        // SAFETY: the caller hands over a valid node.
        let finish = unsafe { node.as_ref() }.finish;
        // SAFETY: the DPCs were flushed above, at PASSIVE_LEVEL; `node` is ours to finish,
        // once, with its own finisher.
        unsafe { finish(node) };
        // SAFETY: these were taken before the flush above, at PASSIVE_LEVEL.
        unsafe { parked.finish_all() };
    } else {
        // SAFETY: the caller hands over a valid node that is on no list.
        unsafe { parked().park(node) };
    }
}

/// Parks a torn-down storage block for [`reclaim_deferred`] (or the next PASSIVE-level
/// teardown) to finish. Any IRQL; lock-free, allocates nothing.
///
/// # Safety
///
/// As [`retire`]; additionally the block's finisher must be safe to run after a
/// `KeFlushQueuedDpcs` at `PASSIVE_LEVEL`.
pub(crate) unsafe fn park(node: NonNull<DeferredNode>) {
    // SAFETY: the caller hands over a valid node that is on no list.
    unsafe { parked().park(node) };
}

/// Frees every timer storage block this kernel parked because its timer was dropped above
/// `PASSIVE_LEVEL`, after flushing the DPCs that might still touch them. Returns how many
/// were freed. `PASSIVE_LEVEL`.
///
/// The driver calls this before unload (and may call it at any PASSIVE point). If the
/// thread raised its IRQL since `passive` was made, nothing is done and 0 is returned.
#[must_use = "the number of timers freed"]
pub fn reclaim_deferred(passive: &PassiveLevel) -> usize {
    if !passive.still_passive() {
        return 0;
    }
    let parked = parked().take_all();
    if parked.is_empty() {
        return 0;
    }
    // SAFETY: at PASSIVE_LEVEL (re-checked above).
    unsafe { sys::KeFlushQueuedDpcs() };
    // SAFETY: the DPCs were flushed above, after the entries were taken, at PASSIVE_LEVEL.
    unsafe { parked.finish_all() }
}

/// Waits until every DPC queued or running when it is called has run
/// (`KeFlushQueuedDpcs`). `PASSIVE_LEVEL`; if the thread raised its IRQL since `passive` was
/// made, nothing is done and `false` is returned.
#[must_use = "whether the DPCs were flushed"]
pub fn flush_queued_dpcs(passive: &PassiveLevel) -> bool {
    if !passive.still_passive() {
        return false;
    }
    // SAFETY: at PASSIVE_LEVEL (re-checked above).
    unsafe { sys::KeFlushQueuedDpcs() };
    true
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use std::vec::Vec;

    /// A parked block in the model: a node plus a counter of how often it was finished.
    #[repr(C)]
    struct Block {
        node: DeferredNode,
        finished: AtomicUsize,
    }

    unsafe fn finish_block(node: NonNull<DeferredNode>) {
        // SAFETY: every node in these tests is the first field of a #[repr(C)] Block.
        let block = unsafe { node.cast::<Block>().as_ref() };
        block.finished.fetch_add(1, Ordering::Relaxed);
    }

    fn block() -> Arc<Block> {
        Arc::new(Block {
            node: DeferredNode::new(finish_block, PoolTag::new(*b"test")),
            finished: AtomicUsize::new(0),
        })
    }

    fn node_of(block: &Arc<Block>) -> NonNull<DeferredNode> {
        NonNull::from(&block.node)
    }

    #[test]
    fn loom_concurrent_parks_and_reclaims_finish_every_block_exactly_once() {
        loom::model(|| {
            let list = Arc::new(ParkedList::new());
            let blocks = [block(), block()];
            let parkers: Vec<_> = blocks
                .iter()
                .map(|b| {
                    let list = Arc::clone(&list);
                    let b = Arc::clone(b);
                    loom::thread::spawn(move || {
                        // SAFETY: the block outlives the list (held by the test) and is
                        // parked once.
                        unsafe { list.park(node_of(&b)) };
                    })
                })
                .collect();
            // A reclaim racing the parks takes some subset ...
            // SAFETY: the model has no DPCs to flush.
            let early = unsafe { list.take_all().finish_all() };
            for parker in parkers {
                parker.join().unwrap();
            }
            // ... and a later one takes the rest; together exactly the parked blocks.
            // SAFETY: as above.
            let late = unsafe { list.take_all().finish_all() };
            assert_eq!(early + late, 2);
            for b in &blocks {
                assert_eq!(b.finished.load(Ordering::Relaxed), 1);
            }
        });
    }

    #[test]
    fn loom_two_reclaimers_never_finish_a_block_twice() {
        loom::model(|| {
            let list = Arc::new(ParkedList::new());
            let b = block();
            // SAFETY: the block outlives the list and is parked once.
            unsafe { list.park(node_of(&b)) };
            let other = {
                let list = Arc::clone(&list);
                // SAFETY: no DPCs in the model.
                loom::thread::spawn(move || unsafe { list.take_all().finish_all() })
            };
            // SAFETY: as above.
            let here = unsafe { list.take_all().finish_all() };
            assert_eq!(here + other.join().unwrap(), 1);
            assert_eq!(b.finished.load(Ordering::Relaxed), 1);
        });
    }
}
