//! A loom model of the timer's arm / cancel / expiry / DPC / teardown state machine.
//!
//! The kernel's side (timer queue, DPC queue, DPC runs, `KeFlushQueuedDpcs`) is modelled
//! with a lock, as the kernel serialises it with its own locks; the driver's side is the
//! real code: the [`TornDown`] mark the trampolines read and the [`ParkedList`] that
//! deferred teardown uses. Every interleaving (within loom's preemption bound) is checked
//! for the properties the safe layer promises:
//!
//! - the storage is never touched by a DPC after it was freed;
//! - the storage is freed only when the timer is out of the queue, the DPC is not queued
//!   and no DPC is running (including one dequeued but not yet started);
//! - after a PASSIVE-level drop returns, no callback runs again;
//! - a drop above `PASSIVE_LEVEL` parks the storage and one reclaim frees it exactly once.
//!
//! Run (about a minute on two cores):
//! `RUSTFLAGS="--cfg loom" cargo test -p ktimer --release --lib loom`

use core::ptr::NonNull;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use std::vec::Vec;

use super::deferred::{DeferredNode, ParkedList, TornDown};
use super::pool::PoolTag;

/// Whether and how the timer is in the kernel's timer queue.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Setting {
    #[default]
    NotSet,
    OneShot,
    Periodic,
}

/// The kernel's view of one timer and its DPC.
#[derive(Default)]
struct KernelState {
    setting: Setting,
    dpc_queued: bool,
    /// DPC runs dequeued by a processor and not yet returned (started or not).
    dpc_running: usize,
    freed: bool,
    callbacks: usize,
}

/// The timer's storage: the driver-side state the trampoline reads.
#[repr(C)]
struct Storage {
    node: DeferredNode,
    torn_down: TornDown,
    finished: AtomicUsize,
    /// Whether the model's callback already dropped (parked) the timer.
    node_parked: AtomicBool,
}

struct Model {
    kernel: Mutex<KernelState>,
    storage: Storage,
    parked: ParkedList,
}

/// The model's finisher: checks the kernel no longer refers to the storage, then frees.
unsafe fn finish_model(node: NonNull<DeferredNode>) {
    // SAFETY: the node is the first field of a #[repr(C)] Storage inside a live Model.
    let storage = unsafe { node.cast::<Storage>().as_ref() };
    storage.finished.fetch_add(1, Ordering::Relaxed);
}

impl Model {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            kernel: Mutex::new(KernelState::default()),
            storage: Storage {
                node: DeferredNode::new(finish_model, PoolTag::new(*b"modl")),
                torn_down: TornDown::new(),
                finished: AtomicUsize::new(0),
                node_parked: AtomicBool::new(false),
            },
            parked: ParkedList::new(),
        })
    }

    /// `KeSetTimerEx`.
    fn arm(&self, periodic: bool) {
        let mut kernel = self.kernel.lock().unwrap();
        kernel.setting = if periodic {
            Setting::Periodic
        } else {
            Setting::OneShot
        };
    }

    /// A clock tick on one processor: the timer expires (queuing the DPC unless it is
    /// already queued), then the processor dequeues and runs a queued DPC.
    fn tick(&self) {
        self.tick_with(|_| {});
    }

    /// Like [`Model::tick`]; `callback` is what the timer's callback does when it runs.
    fn tick_with(&self, callback: impl FnOnce(&Self)) {
        {
            let mut kernel = self.kernel.lock().unwrap();
            if kernel.setting != Setting::NotSet {
                if kernel.setting == Setting::OneShot {
                    kernel.setting = Setting::NotSet;
                }
                kernel.dpc_queued = true;
            }
        }
        let dequeued = {
            let mut kernel = self.kernel.lock().unwrap();
            let dequeued = kernel.dpc_queued;
            if dequeued {
                kernel.dpc_queued = false;
                kernel.dpc_running += 1;
            }
            dequeued
        };
        if !dequeued {
            return;
        }
        // The window between the dequeue and the routine's first instruction: the kernel
        // already let go of the DPC, the routine has not touched the storage yet.
        thread::yield_now();
        // The trampoline reads the storage: it must still exist.
        assert!(
            !self.kernel.lock().unwrap().freed,
            "a DPC touched freed storage"
        );
        if self.storage.torn_down.admits_callback() {
            {
                let mut kernel = self.kernel.lock().unwrap();
                assert!(!kernel.freed, "a callback ran on freed storage");
                kernel.callbacks += 1;
            }
            callback(self);
            assert!(
                !self.kernel.lock().unwrap().freed,
                "storage freed while its callback was still running"
            );
        }
        self.kernel.lock().unwrap().dpc_running -= 1;
    }

    /// The first half of `Timer::drop`: mark, `KeCancelTimer`, `KeRemoveQueueDpc`.
    fn stop(&self) {
        self.storage.torn_down.tear_down();
        let mut kernel = self.kernel.lock().unwrap();
        kernel.setting = Setting::NotSet;
        kernel.dpc_queued = false;
    }

    /// `KeFlushQueuedDpcs`: returns once no DPC is queued or running.
    fn flush(&self) {
        loop {
            {
                let kernel = self.kernel.lock().unwrap();
                if !kernel.dpc_queued && kernel.dpc_running == 0 {
                    return;
                }
            }
            thread::yield_now();
        }
    }

    /// Frees the storage (the finisher's job), checking the kernel holds no reference.
    fn free(&self) {
        let mut kernel = self.kernel.lock().unwrap();
        assert_eq!(
            kernel.setting,
            Setting::NotSet,
            "freed a timer that is still in the queue"
        );
        assert!(!kernel.dpc_queued, "freed a queued DPC");
        assert_eq!(kernel.dpc_running, 0, "freed storage under a running DPC");
        kernel.freed = true;
    }

    fn callbacks(&self) -> usize {
        self.kernel.lock().unwrap().callbacks
    }
}

fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder
}

#[test]
fn loom_passive_drop_waits_out_running_and_requeued_periodic_dpcs() {
    builder().check(|| {
        let model = Model::new();
        model.arm(true);
        // Two processors, each taking a tick: a periodic DPC can be queued again and run
        // on the second while the first run is still going.
        let cpus: Vec<_> = (0..2)
            .map(|_| {
                let model = Arc::clone(&model);
                thread::spawn(move || model.tick())
            })
            .collect();
        // The owner drops the timer at PASSIVE_LEVEL.
        model.stop();
        model.flush();
        model.free();
        let callbacks_at_drop = model.callbacks();
        for cpu in cpus {
            cpu.join().unwrap();
        }
        assert_eq!(
            model.callbacks(),
            callbacks_at_drop,
            "a callback ran after the drop returned"
        );
    });
}

#[test]
fn loom_dispatch_drop_parks_and_one_reclaim_frees_once() {
    builder().check(|| {
        let model = Model::new();
        model.arm(false);
        let cpu = {
            let model = Arc::clone(&model);
            thread::spawn(move || model.tick())
        };
        // The owner drops the timer at DISPATCH_LEVEL (e.g. from its own callback or under
        // a spin lock): it stops the timer and parks the storage without waiting.
        model.stop();
        // SAFETY: the storage outlives the list (both live in the model) and is parked once.
        unsafe { model.parked.park(NonNull::from(&model.storage.node)) };
        // Later, at PASSIVE_LEVEL: reclaim takes the parked block, flushes, finishes.
        let reclaimer = {
            let model = Arc::clone(&model);
            thread::spawn(move || {
                let taken = model.parked.take_all();
                assert!(!taken.is_empty(), "the parked block is found");
                model.flush();
                model.free();
                // SAFETY: flushed just above; the model's finisher only counts.
                unsafe { taken.finish_all() }
            })
        };
        cpu.join().unwrap();
        assert_eq!(reclaimer.join().unwrap(), 1);
        assert_eq!(model.storage.finished.load(Ordering::Relaxed), 1);
        assert!(model.parked.take_all().is_empty(), "nothing left parked");
    });
}

#[test]
fn loom_a_callback_that_drops_its_own_periodic_timer_is_freed_after_it_returns() {
    builder().check(|| {
        let model = Model::new();
        model.arm(true);
        // Two processors tick; whichever runs the callback first drops the timer from
        // inside it, at DISPATCH_LEVEL: stop it and park the storage.
        let cpus: Vec<_> = (0..2)
            .map(|_| {
                let model = Arc::clone(&model);
                thread::spawn(move || {
                    model.tick_with(|model| {
                        if !model.storage.node_parked.swap(true, Ordering::Relaxed) {
                            model.stop();
                            // SAFETY: parked once (guarded by `node_parked`); the storage
                            // lives as long as the model.
                            unsafe { model.parked.park(NonNull::from(&model.storage.node)) };
                        }
                    });
                })
            })
            .collect();
        // Meanwhile a PASSIVE-level reclaim may run at any point.
        let taken = model.parked.take_all();
        if !taken.is_empty() {
            model.flush();
            model.free();
            // SAFETY: flushed above; the model's finisher only counts.
            unsafe { taken.finish_all() };
        }
        for cpu in cpus {
            cpu.join().unwrap();
        }
        // And the one before unload takes whatever is left.
        let taken = model.parked.take_all();
        if !taken.is_empty() {
            model.flush();
            model.free();
            // SAFETY: as above.
            unsafe { taken.finish_all() };
        }
        let callbacks = model.callbacks();
        assert!(callbacks >= 1, "the timer was armed and ticked");
        assert_eq!(
            model.storage.finished.load(Ordering::Relaxed),
            usize::from(model.storage.node_parked.load(Ordering::Relaxed)),
            "the parked storage was freed exactly once"
        );
        assert_eq!(model.storage.finished.load(Ordering::Relaxed), 1);
    });
}
