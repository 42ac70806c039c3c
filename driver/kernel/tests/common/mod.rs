//! Helpers shared by the simulator tests of the safe kernel layer.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kernel_sim::{Config, Event, Kernel, TraceEvent};
use ktimer_kernel::irql::{self, DispatchLevel, PassiveLevel};
use ktimer_kernel::pool::PoolTag;
use ktimer_kernel::timer::TimerCallback;

/// The pool tag every test timer uses.
pub const TAG: PoolTag = PoolTag::new(*b"KtmT");

/// A kernel whose clock ticks every `tick_ms` milliseconds (virtual time).
pub fn kernel_with_tick_ms(tick_ms: u32) -> Kernel {
    Kernel::new(Config {
        time_increment: tick_ms * 10_000,
        ..Config::default()
    })
}

/// Milliseconds as a `Duration`.
pub const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Counts expiries and records the IRQL the callback ran at.
#[derive(Debug, Default)]
pub struct Counter {
    fired: AtomicU32,
    irql: AtomicU8,
    passive_token_available: AtomicBool,
}

impl Counter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn fired(&self) -> u32 {
        self.fired.load(Ordering::SeqCst)
    }

    /// The IRQL seen by the last run.
    pub fn last_irql(&self) -> u8 {
        self.irql.load(Ordering::SeqCst)
    }

    /// Whether the last run could mint a `PassiveLevel` token.
    pub fn passive_token_was_available(&self) -> bool {
        self.passive_token_available.load(Ordering::SeqCst)
    }
}

impl TimerCallback for Counter {
    fn expired(&self, _irql: &DispatchLevel) {
        self.irql.store(irql::current_irql(), Ordering::SeqCst);
        self.passive_token_available
            .store(PassiveLevel::current().is_some(), Ordering::SeqCst);
        self.fired.fetch_add(1, Ordering::SeqCst);
    }
}

/// A callback whose first run blocks until the test releases it, so a test can act while
/// the DPC is mid-run. Later runs pass straight through.
#[derive(Debug, Default)]
pub struct Held {
    state: Mutex<HeldState>,
    changed: Condvar,
    started: AtomicU32,
    finished: AtomicU32,
}

#[derive(Debug, Default)]
struct HeldState {
    entered: bool,
    released: bool,
}

impl Held {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Blocks the test until the first run is inside the callback.
    pub fn wait_until_entered(&self) {
        let mut state = self.state.lock().unwrap();
        while !state.entered {
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Lets the first run return.
    pub fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.changed.notify_all();
    }

    pub fn started(&self) -> u32 {
        self.started.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> u32 {
        self.finished.load(Ordering::SeqCst)
    }
}

impl TimerCallback for Held {
    fn expired(&self, _irql: &DispatchLevel) {
        let run = self.started.fetch_add(1, Ordering::SeqCst);
        if run == 0 {
            let mut state = self.state.lock().unwrap();
            state.entered = true;
            self.changed.notify_all();
            while !state.released {
                state = self.changed.wait(state).unwrap();
            }
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits (yielding, no clock involved) until the kernel's trace satisfies `condition`.
pub fn wait_for_trace(kernel: &Kernel, condition: impl Fn(&[TraceEvent]) -> bool) {
    while !condition(&kernel.trace()) {
        std::thread::yield_now();
    }
}

/// Index of the first trace event matching `predicate`.
pub fn position(trace: &[TraceEvent], predicate: impl Fn(&Event) -> bool) -> Option<usize> {
    trace.iter().position(|event| predicate(&event.event))
}

/// Index of the last trace event matching `predicate`.
pub fn last_position(trace: &[TraceEvent], predicate: impl Fn(&Event) -> bool) -> Option<usize> {
    trace.iter().rposition(|event| predicate(&event.event))
}

/// Outstanding pool blocks with the test tag.
pub fn outstanding_test_blocks(kernel: &Kernel) -> usize {
    kernel
        .pool_by_tag()
        .iter()
        .filter(|usage| usage.tag == TAG.as_u32())
        .map(|usage| usage.allocations)
        .sum()
}

/// Asserts the kernel never bug-checked and the driver left no pool behind.
pub fn assert_clean_unload(kernel: &Kernel) {
    assert_eq!(kernel.bug_check(), None);
    assert_eq!(kernel.unload(), Ok(()));
}
