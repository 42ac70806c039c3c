//! Real concurrency: several threads drive their own handles on a real-time simulated kernel
//! whose processors run DPCs in parallel, while timers expire, waits complete and get
//! cancelled and handles close. Checks correctness only (every wait completes exactly with a
//! documented status, no bug check, no leak), never durations.
#![cfg(not(windows))]

mod service_common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use kernel_sim::Config;
use ktimer_abi::status::{STATUS_CANCELLED, STATUS_SUCCESS};
use ktimer_service::ServiceConfig;
use service_common::*;

#[test]
fn handles_on_parallel_threads_with_parallel_dpcs_stay_consistent() {
    let rig = Arc::new(Rig::with(
        Config {
            processors: 4,
            ..Config::real_time(Duration::from_millis(1))
        },
        ServiceConfig::default(),
    ));
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let rig = Arc::clone(&rig);
            thread::spawn(move || {
                let mut delivered = 0usize;
                for round in 0..6u64 {
                    let handle = rig.open();
                    let ids: Vec<u64> = (0..25)
                        .map(|n| create(&handle, schedule_periodic(MS, 1 + n % 3)))
                        .collect();
                    for _ in 0..4 {
                        let wait = submit_wait(&handle, 8, 64);
                        let done = wait
                            .wait(Some(Duration::from_secs(30)))
                            .expect("records arrive");
                        delivered += records_of(&done).1.len();
                    }
                    // A wait left pending, then cancelled or orphaned by the close.
                    let pending = submit_wait(&handle, 4096, 4096);
                    if (worker + round) % 2 == 0 {
                        pending.cancel();
                    }
                    for id in ids.iter().step_by(2) {
                        cancel(&handle, *id).unwrap();
                    }
                    for id in ids.iter().skip(1).step_by(3) {
                        close_timer(&handle, *id).unwrap();
                    }
                    handle.close();
                    let done = pending
                        .wait(Some(Duration::from_secs(30)))
                        .expect("close completes it");
                    assert_eq!(done.status, STATUS_CANCELLED);
                }
                delivered
            })
        })
        .collect();
    for worker in workers {
        let delivered = worker.join().expect("worker ran without panicking");
        assert!(
            delivered >= 6 * 4 * 8,
            "each wait returned at least its minimum"
        );
    }
    let rig = Arc::into_inner(rig).expect("workers are done");
    assert_eq!(rig.driver.open_handle_count(), 0);
    let status = raw(
        &rig.open(),
        ktimer_abi::ioctl::IOCTL_KTIMER_GET_INFO,
        &[],
        72,
    )
    .status;
    assert_eq!(status, STATUS_SUCCESS);
    rig.finish();
}
