//! The service's expiry path allocates nothing: counting expirations, pushing records and
//! completing pending waits from the DPC make no heap or pool allocation, however many timers
//! are live.
//!
//! A counting global allocator attributes heap allocations made while a simulated processor
//! runs a DPC routine or an `EX_TIMER` callback (the whole expiry path, including the waits it
//! completes). In the real driver the heap is pool (wdk-alloc), so pool is checked as well.
#![cfg(not(windows))]

mod service_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use kernel_sim::Config;
use ktimer_abi::CREATE_HIGH_RESOLUTION;
use ktimer_service::ServiceConfig;
use service_common::*;

static IN_EXPIRY_PATH: AtomicU64 = AtomicU64::new(0);

struct CountingAllocator;

// SAFETY: forwards to the system allocator unchanged; the bookkeeping neither allocates nor
// panics (`in_callback` reads a thread-local flag).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if kernel_sim::in_callback() {
            IN_EXPIRY_PATH.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn expiries_and_the_waits_they_complete_allocate_nothing() {
    // No event log: the simulator's own bookkeeping is not what is measured.
    let rig = Rig::with(
        Config {
            time_increment: 10_000,
            trace: false,
            ..Config::default()
        },
        ServiceConfig::default(),
    );
    let handle = rig.open();
    let ids: Vec<u64> = (0..200)
        .map(|n| create(&handle, schedule_periodic(MS, 1 + n % 5)))
        .collect();
    let mut high_resolution = create_request(schedule_periodic(MS, 1));
    high_resolution.flags = CREATE_HIGH_RESOLUTION;
    create_with(&handle, &high_resolution).unwrap();
    // Warm-up: the simulator sizes its own queues.
    rig.advance_ms(5);
    let _ = drain(&handle, 4096);
    let waits: Vec<_> = (0..16).map(|_| submit_wait(&handle, 64, 64)).collect();
    assert!(waits.iter().all(|wait| wait.result().is_none()));

    let pool_before = rig.kernel.pool_stats().allocations;
    let expiry_before = IN_EXPIRY_PATH.load(Ordering::SeqCst);
    rig.advance_ms(50);
    let allocated = IN_EXPIRY_PATH.load(Ordering::SeqCst) - expiry_before;

    let completed = waits.iter().filter(|wait| wait.result().is_some()).count();
    assert_eq!(completed, 16, "the expiry path completed every wait");
    let delivered: usize = waits
        .iter()
        .map(|wait| records_of(&wait.result().unwrap()).1.len())
        .sum();
    assert_eq!(delivered, 16 * 64);
    assert_eq!(
        query(&handle, ids[0]).unwrap().expirations,
        55,
        "1 ms period, 55 ms elapsed"
    );
    assert_eq!(allocated, 0, "the expiry path allocated");
    assert_eq!(
        rig.kernel.pool_stats().allocations,
        pool_before,
        "pool allocated during expiries"
    );
    drop(handle);
    rig.finish();
}
