//! Stress (issue 7): 1,000 live 1 ms periodic timers across 4 handles with every handle's
//! pending waits parked, then handle closes and unload mid-flight, repeated on one kernel.
//!
//! Virtual time with a 1 ms tick makes every count exact: each tick all 250 timers of a
//! handle fire once, so each tick completes exactly one of the handle's waits (oldest first)
//! with exactly one record per timer, whose sequence is the tick's number. Checked per round:
//! every wait completes (with records or with `STATUS_CANCELLED`, exactly as many of each as
//! the schedule implies), no record reaches another handle, the kernel ran exactly the DPCs
//! the live timers imply, no DPC runs after unload, the unload verifier finds nothing and no
//! pool is left. A real-time variant is `#[ignore]`d (wall-clock, not exact):
//! `cargo test --release -p ktimer --test stress -- --ignored`.
#![cfg(not(windows))]

mod service_common;

use std::collections::HashSet;
use std::time::Duration;

use kernel_sim::wdf::Io;
use kernel_sim::{Config, Kernel};
use ktimer_abi::status::{STATUS_CANCELLED, STATUS_SUCCESS};
use ktimer_service::ServiceConfig;
use service_common::*;

const HANDLES: usize = 4;
const TIMERS_PER_HANDLE: usize = 250;
/// The service's default limit of pending waits per handle: all of them are used.
const WAITS_PER_HANDLE: usize = 16;
const ROUNDS: usize = 3;

struct Client {
    handle: Option<Handle>,
    ids: HashSet<u64>,
    /// Oldest first.
    waits: Vec<Io>,
}

fn load(kernel: &Kernel) -> (Driver, Vec<Client>) {
    let host = Driver::load(kernel, ServiceConfig::default());
    let clients = (0..HANDLES)
        .map(|_| {
            let handle = host.open().unwrap();
            let ids = (0..TIMERS_PER_HANDLE)
                .map(|_| create(&handle, schedule_periodic(MS, 1)))
                .collect::<HashSet<u64>>();
            assert_eq!(ids.len(), TIMERS_PER_HANDLE);
            // Each wait asks for one tick's worth of records and has room for exactly that.
            let min = u32::try_from(TIMERS_PER_HANDLE).unwrap();
            let waits = (0..WAITS_PER_HANDLE)
                .map(|_| submit_wait(&handle, min, TIMERS_PER_HANDLE))
                .collect();
            Client {
                handle: Some(handle),
                ids,
                waits,
            }
        })
        .collect();
    (host, clients)
}

/// What the waits after the satisfied ones must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rest {
    /// Still pending.
    Pending,
    /// Completed with `STATUS_CANCELLED` (handle closed).
    Cancelled,
    /// Unloaded with one more tick's DPCs queued: the service tears handles down one by one,
    /// and the DPC flush of the first teardown runs the queued DPCs of handles not yet torn
    /// down, which deliver that tick (an expiry before unload is a real event). So the next
    /// wait holds that whole tick or was cancelled; the rest were cancelled.
    CancelledAfterOneQueuedTick,
}

/// Checks the handle's waits: the first `ticks` completed with tick `n`'s records (one per
/// timer, sequence `n`); the rest as `rest` says. Returns the waits that succeeded.
fn check_waits(client: &Client, ticks: usize, rest: Rest) -> usize {
    let mut succeeded = 0;
    for (index, io) in client.waits.iter().enumerate() {
        let done = io.result();
        let delivered_queued_tick = rest == Rest::CancelledAfterOneQueuedTick
            && index == ticks
            && done
                .as_ref()
                .is_some_and(|done| done.status == STATUS_SUCCESS);
        if index < ticks || delivered_queued_tick {
            succeeded += 1;
            let done = done.expect("a satisfied wait has completed");
            let (response, records) = records_of(&done);
            assert_eq!(response.overruns, 0);
            assert_eq!(records.len(), TIMERS_PER_HANDLE);
            let tick = u64::try_from(index + 1).unwrap();
            let mut seen = HashSet::new();
            for record in &records {
                assert!(
                    client.ids.contains(&record.timer_id),
                    "another handle's record"
                );
                assert!(
                    seen.insert(record.timer_id),
                    "one record per timer per tick"
                );
                assert_eq!(record.sequence, tick);
                assert_eq!(record.expirations, 1);
                assert_eq!(
                    record.lateness, 0,
                    "1 ms due times on a 1 ms tick are exact"
                );
            }
        } else if rest == Rest::Pending {
            assert_eq!(
                done, None,
                "wait {index} needs more records than have fired"
            );
        } else {
            let done = done.expect("a closed handle's waits have all completed");
            assert_eq!(done.status, STATUS_CANCELLED);
            assert!(done.output.is_empty());
        }
    }
    succeeded
}

fn status_counts(clients: &[Client]) -> (usize, usize) {
    let all: Vec<_> = clients
        .iter()
        .flat_map(|client| &client.waits)
        .map(|io| io.result().expect("every wait completed").status)
        .collect();
    let succeeded = all.iter().filter(|s| **s == STATUS_SUCCESS).count();
    let cancelled = all.iter().filter(|s| **s == STATUS_CANCELLED).count();
    assert_eq!(succeeded + cancelled, all.len());
    (succeeded, cancelled)
}

/// One round: load, run 5 ticks with all handles, close two handles, run 3 ticks, queue one
/// more tick's DPCs without running them, unload.
fn round(kernel: &Kernel) {
    let (host, mut clients) = load(kernel);
    let runs_at_start = kernel.stats().dpc_runs;
    // Timers are due at 1 ms: five ticks fire every timer five times.
    kernel.advance(Duration::from_millis(5));
    for client in &clients {
        assert_eq!(check_waits(client, 5, Rest::Pending), 5);
        assert_eq!(client.handle.as_ref().unwrap().ready_records(), 0);
    }
    assert_eq!(kernel.stats().dpc_runs - runs_at_start, 5 * 1000);

    // Close two handles mid-flight: their 11 remaining waits each complete cancelled.
    for client in &mut clients[..2] {
        client.handle.take().unwrap().close();
        assert_eq!(check_waits(client, 5, Rest::Cancelled), 5);
    }
    kernel.advance(Duration::from_millis(3));
    for client in &clients[2..] {
        assert_eq!(check_waits(client, 8, Rest::Pending), 8);
    }
    assert_eq!(kernel.stats().dpc_runs - runs_at_start, 5 * 1000 + 3 * 500);

    // Unload (the remaining handles closed, the device removed, the driver unloaded) with
    // one tick's 500 DPCs queued and not yet run: the teardown flushes them; a handle not yet
    // torn down when they run gets that tick (see `Rest`), none gets a partial one.
    kernel.advance_without_running_dpcs(Duration::from_millis(1));
    assert_eq!(kernel.queued_dpcs(), 500);
    host.unload().expect("a clean unload");
    assert_eq!(kernel.queued_dpcs(), 0);
    assert_eq!(kernel.running_dpcs(), 0);
    let late: usize = clients[2..]
        .iter()
        .map(|client| check_waits(client, 8, Rest::CancelledAfterOneQueuedTick) - 8)
        .sum();
    assert!(late <= 2);
    assert_eq!(
        status_counts(&clients),
        (2 * 5 + 2 * 8 + late, 2 * 11 + 2 * 8 - late)
    );
    // Of the queued tick's DPCs, those of a handle already torn down were dequeued by its
    // timers' teardown and never ran; those that ran delivered their records.
    assert_eq!(
        kernel.stats().dpc_runs - runs_at_start,
        u64::try_from(5 * 1000 + 3 * 500 + late * TIMERS_PER_HANDLE).unwrap(),
    );
    assert_eq!(host.framework.live_objects(), 0);

    // Nothing runs after unload: time moves, no DPC runs, no timer is set.
    let runs_after_unload = kernel.stats().dpc_runs;
    kernel.advance(Duration::from_millis(20));
    assert_eq!(
        kernel.stats().dpc_runs,
        runs_after_unload,
        "a DPC ran after unload"
    );
    drop(clients);
    drop(host);
    assert_eq!(kernel.bug_check(), None);
    assert_eq!(kernel.unload(), Ok(()), "the unload verifier finds nothing");
    let pool = kernel.pool_stats();
    assert_eq!(pool.outstanding_allocations, 0, "pool left: {pool:?}");
}

#[test]
fn a_thousand_periodic_timers_with_waits_survive_closes_and_unload_mid_flight() {
    let kernel = Kernel::new(Config {
        time_increment: 10_000,
        trace: false,
        ..Config::default()
    });
    for _ in 0..ROUNDS {
        round(&kernel);
    }
}

/// The same load on a real-time kernel (1 ms tick of wall time, processors running DPCs in
/// parallel): no exact counts, but every wait completes, no DPC runs after unload, no leak.
#[test]
#[ignore = "wall-clock: cargo test --release -p ktimer --test stress -- --ignored"]
fn real_time_variant() {
    let kernel = Kernel::new(Config::real_time(Duration::from_millis(1)));
    for _ in 0..ROUNDS {
        let (host, mut clients) = load(&kernel);
        std::thread::sleep(Duration::from_millis(30));
        for client in &mut clients[..2] {
            client.handle.take().unwrap().close();
        }
        std::thread::sleep(Duration::from_millis(20));
        host.unload().expect("a clean unload");
        let (succeeded, cancelled) = status_counts(&clients);
        assert_eq!(succeeded + cancelled, HANDLES * WAITS_PER_HANDLE);
        assert!(succeeded > 0, "some waits were satisfied in 50 ms");
        let runs_after_unload = kernel.stats().dpc_runs;
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            kernel.stats().dpc_runs,
            runs_after_unload,
            "a DPC ran after unload"
        );
        drop(clients);
        drop(host);
        assert_eq!(kernel.bug_check(), None);
        assert_eq!(kernel.unload(), Ok(()));
        assert_eq!(kernel.pool_stats().outstanding_allocations, 0);
    }
}
