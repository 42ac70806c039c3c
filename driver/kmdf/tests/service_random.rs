//! Arbitrary IOCTL traffic on two handles, interleaved with time: every request completes
//! with a documented status, nothing panics, and unload leaves no bug check and no pool.
//! (The long fuzzing campaign is issue 7's; this is the service's own smoke pass.)
#![cfg(not(windows))]

mod service_common;

use kernel_sim::wdf::Io;
use ktimer_abi::ioctl::{
    ALL_CODES, IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO, IOCTL_KTIMER_SET, IOCTL_KTIMER_WAIT,
};
use ktimer_abi::status::{ALL_STATUSES, STATUS_PENDING};
use ktimer_abi::{Header, MODE_PERIODIC, SetRequest};
use service_common::*;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn arbitrary_requests_on_two_handles_complete_with_documented_statuses() {
    let rig = Rig::fine();
    let handles = [rig.open(), rig.open()];
    let mut rng = XorShift(0x0DDB_1A5E_5BAD_5EED);
    let mut ids: Vec<u64> = Vec::new();
    let mut pending: Vec<Io> = Vec::new();
    let (mut pended, mut succeeded) = (0, 0);
    for step in 0..4000 {
        let handle = &handles[usize::try_from(rng.below(2)).unwrap()];
        let code = if rng.below(10) == 0 {
            u32::try_from(rng.next() >> 32).unwrap()
        } else {
            ALL_CODES[usize::try_from(rng.below(ALL_CODES.len() as u64)).unwrap()]
        };
        // Mostly a well-formed request for the code with random fields, sometimes garbage.
        let mut input = if rng.below(5) == 0 {
            (0..rng.below(64))
                .map(|_| rng.next().to_ne_bytes()[0])
                .collect()
        } else {
            let id = if ids.is_empty() || rng.below(4) == 0 {
                rng.next()
            } else {
                ids[usize::try_from(rng.below(ids.len() as u64)).unwrap()]
            };
            let mut schedule = schedule_once(i64::try_from(rng.below(30)).unwrap() * MS);
            if rng.below(2) == 0 {
                schedule.mode = MODE_PERIODIC;
                schedule.period_ms = i32::try_from(rng.below(40)).unwrap() - 5;
            }
            match code {
                IOCTL_KTIMER_GET_INFO => Vec::new(),
                IOCTL_KTIMER_CREATE => encode(&create_request(schedule)),
                IOCTL_KTIMER_SET => encode(&SetRequest {
                    header: Header::of::<SetRequest>(),
                    timer_id: id,
                    schedule,
                }),
                IOCTL_KTIMER_WAIT => wait_request(u32::try_from(rng.below(9)).unwrap()),
                _ => encode(&timer_request(id)),
            }
        };
        if !input.is_empty() && rng.below(8) == 0 {
            let at = usize::try_from(rng.below(input.len() as u64)).unwrap();
            input[at] ^= 1 << rng.below(8);
        }
        let output_len = if rng.below(5) == 0 {
            usize::try_from(rng.below(400)).unwrap()
        } else {
            400
        };
        let io = handle.submit(code, &input, output_len);
        if let Some(done) = io.result() {
            assert!(
                ALL_STATUSES.contains(&done.status),
                "step {step}: undocumented status {:#x}",
                done.status
            );
            assert_ne!(done.status, STATUS_PENDING);
            assert!(done.output.len() <= output_len);
            succeeded += usize::from(done.status == 0);
            if code == IOCTL_KTIMER_CREATE && done.status == 0 {
                ids.push(u64::from_ne_bytes(done.output[8..16].try_into().unwrap()));
            }
        } else {
            pended += 1;
            pending.push(io);
        }
        if rng.below(16) == 0 {
            rig.advance_ms(rng.below(20));
        }
        if rng.below(32) == 0
            && let Some(io) = pending.pop()
        {
            io.cancel();
            assert!(io.result().is_some(), "a cancelled wait completes");
        }
    }
    // The mix reached the operations, not only the decoders.
    eprintln!(
        "created {}, pended {pended}, succeeded {succeeded}",
        ids.len()
    );
    assert!(
        ids.len() > 50 && pended > 10 && succeeded > 500,
        "{} {pended} {succeeded}",
        ids.len()
    );
    rig.driver.unload().expect("a clean unload");
    for io in &pending {
        let done = io.result().expect("unload completes every pending wait");
        assert!(ALL_STATUSES.contains(&done.status));
    }
    drop(handles);
    rig.finish();
}
