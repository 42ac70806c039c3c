//! Every bad-input class through the dispatch entry: each gets its documented NTSTATUS and
//! changes nothing (the handle's timers, their state and the event ring are as before).
#![cfg(not(windows))]

mod service_common;

use kernel_sim::Config;
use ktimer_abi::codec::wait_response_len;
use ktimer_abi::ioctl::{
    ALL_CODES, IOCTL_KTIMER_CANCEL, IOCTL_KTIMER_CLOSE, IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO,
    IOCTL_KTIMER_QUERY, IOCTL_KTIMER_SET, IOCTL_KTIMER_WAIT, ctl_code,
};
use ktimer_abi::status::{
    NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER,
    STATUS_NOT_FOUND, STATUS_QUOTA_EXCEEDED, STATUS_REVISION_MISMATCH, STATUS_SUCCESS,
};
use ktimer_abi::{
    CREATE_HIGH_RESOLUTION, Decode, Header, MAX_PERIOD_MS, MAX_RELATIVE_DUE_100NS,
    MAX_TOLERABLE_DELAY_MS, QueryResponse, SCHEDULE_ABSOLUTE, Schedule, SetRequest, TimerRequest,
    WaitRequest,
};
use ktimer_service::ServiceConfig;
use service_common::Handle;
use service_common::*;

/// What a request must not change: the timers' query results and the records ready.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    timers: usize,
    queries: Vec<QueryResponse>,
    ready: usize,
}

fn snapshot(handle: &Handle, ids: &[u64]) -> Snapshot {
    Snapshot {
        timers: handle.timer_count(),
        queries: ids.iter().map(|&id| query(handle, id).unwrap()).collect(),
        ready: handle.ready_records(),
    }
}

/// A handle with one armed periodic timer and one expired one-shot with a record ready.
fn populated(rig: &Rig) -> (Handle, Vec<u64>) {
    let handle = rig.open();
    let expired = create(&handle, schedule_once(MS));
    rig.advance_ms(20);
    let armed = create(&handle, schedule_periodic(10 * MS, 10));
    (handle, vec![armed, expired])
}

/// Sends `input` under `code` and checks the status and that nothing changed.
fn rejects(
    rig: &Rig,
    handle: &Handle,
    ids: &[u64],
    code: u32,
    input: &[u8],
    output_len: usize,
    expected: NtStatus,
) {
    let before = snapshot(handle, ids);
    let done = raw(handle, code, input, output_len);
    assert_eq!(
        done.status.cast_unsigned(),
        expected.cast_unsigned(),
        "code {code:#x}, input {input:02x?}, output {output_len}"
    );
    assert!(done.output.is_empty(), "a failure returns no output");
    assert_eq!(
        snapshot(handle, ids),
        before,
        "code {code:#x} changed state"
    );
    let _ = rig;
}

fn output_len_for(code: u32) -> usize {
    match code {
        IOCTL_KTIMER_GET_INFO => 72,
        IOCTL_KTIMER_QUERY => 104,
        IOCTL_KTIMER_WAIT => wait_response_len(8).unwrap(),
        IOCTL_KTIMER_CLOSE => 0,
        _ => 16,
    }
}

/// A valid input for each code (naming the handle's live timer where one is needed).
fn valid_input(code: u32, id: u64) -> Vec<u8> {
    match code {
        IOCTL_KTIMER_GET_INFO => Vec::new(),
        IOCTL_KTIMER_CREATE => encode(&create_request(schedule_once(MS))),
        IOCTL_KTIMER_SET => encode(&SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id: id,
            schedule: schedule_once(MS),
        }),
        IOCTL_KTIMER_WAIT => wait_request(1),
        _ => encode(&TimerRequest {
            header: Header::of::<TimerRequest>(),
            timer_id: id,
        }),
    }
}

#[test]
fn unknown_codes_are_invalid_device_requests() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    let near_misses = [
        0,
        u32::MAX,
        ctl_code(0x8A7E, 0x807, 0, 3),
        ctl_code(0x8A7E, 0x800, 0, 0), // get-info with the wrong access bits
        ctl_code(0x8A7E, 0x801, 3, 3), // create with METHOD_NEITHER
        ctl_code(0x0022, 0x801, 0, 3), // another device type
    ];
    for code in near_misses {
        assert!(!ALL_CODES.contains(&code));
        rejects(
            &rig,
            &handle,
            &ids,
            code,
            &valid_input(IOCTL_KTIMER_CREATE, 0),
            64,
            STATUS_INVALID_DEVICE_REQUEST,
        );
    }
    drop(handle);
    rig.finish();
}

#[test]
fn short_inputs_are_buffer_too_small_for_every_code() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    for code in ALL_CODES
        .into_iter()
        .filter(|&code| code != IOCTL_KTIMER_GET_INFO)
    {
        let input = valid_input(code, ids[0]);
        for len in [0, 1, 7, 8, input.len() - 1] {
            rejects(
                &rig,
                &handle,
                &ids,
                code,
                &input[..len],
                output_len_for(code),
                STATUS_BUFFER_TOO_SMALL,
            );
        }
    }
    drop(handle);
    rig.finish();
}

#[test]
fn oversized_inputs_are_length_mismatches_for_every_code() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    for code in ALL_CODES {
        let mut input = valid_input(code, ids[0]);
        input.extend_from_slice(&[0; 8]);
        rejects(
            &rig,
            &handle,
            &ids,
            code,
            &input,
            output_len_for(code),
            STATUS_INFO_LENGTH_MISMATCH,
        );
    }
    // A header whose size field disagrees with the buffer.
    let mut request = create_request(schedule_once(MS));
    request.header.size = 48;
    rejects(
        &rig,
        &handle,
        &ids,
        IOCTL_KTIMER_CREATE,
        &encode(&request),
        16,
        STATUS_INFO_LENGTH_MISMATCH,
    );
    drop(handle);
    rig.finish();
}

#[test]
fn a_wrong_abi_version_is_a_revision_mismatch_for_every_code() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    for code in ALL_CODES
        .into_iter()
        .filter(|&code| code != IOCTL_KTIMER_GET_INFO)
    {
        let mut input = valid_input(code, ids[0]);
        input[..4].copy_from_slice(&2u32.to_ne_bytes());
        rejects(
            &rig,
            &handle,
            &ids,
            code,
            &input,
            output_len_for(code),
            STATUS_REVISION_MISMATCH,
        );
    }
    drop(handle);
    rig.finish();
}

#[test]
fn bad_periods_are_invalid_parameters() {
    let rig = Rig::with(
        Config {
            time_increment: 10_000,
            ..Config::default()
        },
        ServiceConfig {
            min_period_ms: 5,
            ..ServiceConfig::default()
        },
    );
    let (handle, ids) = populated(&rig);
    for period in [0, -1, -10, i32::MIN, 1, 4, MAX_PERIOD_MS + 1] {
        let create = create_request(schedule_periodic(MS, period));
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_CREATE,
            &encode(&create),
            16,
            STATUS_INVALID_PARAMETER,
        );
        let set = SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id: ids[0],
            schedule: schedule_periodic(MS, period),
        };
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_SET,
            &encode(&set),
            16,
            STATUS_INVALID_PARAMETER,
        );
    }
    // The minimum itself is accepted; a one-shot with a period is not.
    assert!(create_with(&handle, &create_request(schedule_periodic(MS, 5))).is_ok());
    let one_shot_with_period = Schedule {
        period_ms: 5,
        ..schedule_once(MS)
    };
    assert_eq!(
        create_with(&handle, &create_request(one_shot_with_period)),
        Err(STATUS_INVALID_PARAMETER)
    );
    drop(handle);
    rig.finish();
}

#[test]
fn out_of_range_due_times_are_invalid_parameters() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    let now = info(&handle).system_time;
    let bad = [
        schedule_once(-1),
        schedule_once(i64::MIN),
        schedule_once(MAX_RELATIVE_DUE_100NS + 1),
        Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_once(0)
        },
        Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_once(-5)
        },
        Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_once(now + MAX_RELATIVE_DUE_100NS + MS)
        },
        Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_once(i64::MAX)
        },
        Schedule {
            tolerable_delay_ms: MAX_TOLERABLE_DELAY_MS + 1,
            ..schedule_once(MS)
        },
    ];
    for schedule in bad {
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_CREATE,
            &encode(&create_request(schedule)),
            16,
            STATUS_INVALID_PARAMETER,
        );
        let set = SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id: ids[0],
            schedule,
        };
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_SET,
            &encode(&set),
            16,
            STATUS_INVALID_PARAMETER,
        );
    }
    // The extremes that are in range are accepted: a past absolute time fires at the next tick.
    let past = create_with(
        &handle,
        &create_request(Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_once(1)
        }),
    )
    .unwrap();
    let far = create_with(
        &handle,
        &create_request(schedule_once(MAX_RELATIVE_DUE_100NS)),
    )
    .unwrap();
    rig.advance_ms(1);
    assert_eq!(query(&handle, past).unwrap().expirations, 1);
    assert_eq!(query(&handle, far).unwrap().expirations, 0);
    drop(handle);
    rig.finish();
}

#[test]
fn unknown_flags_types_modes_and_reserved_bits_are_invalid_parameters() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    let base = create_request(schedule_once(MS));
    let mut cases = vec![];
    for flags in [0x2, 0x4, 0x8000_0000, u32::MAX] {
        let mut request = base;
        request.flags = flags;
        cases.push(request);
        let mut request = base;
        request.schedule.flags = flags;
        cases.push(request);
    }
    let mut bad_type = base;
    bad_type.timer_type = 2;
    cases.push(bad_type);
    let mut bad_mode = base;
    bad_mode.schedule.mode = 7;
    cases.push(bad_mode);
    // High resolution takes neither an absolute due time, a tolerance nor a synchronization type.
    let mut high_resolution = base;
    high_resolution.flags = CREATE_HIGH_RESOLUTION;
    let mut absolute = high_resolution;
    absolute.schedule.flags = SCHEDULE_ABSOLUTE;
    absolute.schedule.due_time = info(&handle).system_time + MS;
    let mut tolerant = high_resolution;
    tolerant.schedule.tolerable_delay_ms = 1;
    let mut synchronization = high_resolution;
    synchronization.timer_type = 1;
    cases.extend([absolute, tolerant, synchronization]);
    for request in cases {
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_CREATE,
            &encode(&request),
            16,
            STATUS_INVALID_PARAMETER,
        );
    }
    let wait_reserved = encode(&WaitRequest {
        header: Header::of::<WaitRequest>(),
        min_records: 1,
        reserved: 9,
    });
    rejects(
        &rig,
        &handle,
        &ids,
        IOCTL_KTIMER_WAIT,
        &wait_reserved,
        wait_response_len(8).unwrap(),
        STATUS_INVALID_PARAMETER,
    );
    rejects(
        &rig,
        &handle,
        &ids,
        IOCTL_KTIMER_WAIT,
        &wait_request(0),
        wait_response_len(8).unwrap(),
        STATUS_INVALID_PARAMETER,
    );
    drop(handle);
    rig.finish();
}

#[test]
fn a_high_resolution_timer_refuses_a_schedule_it_cannot_take() {
    let rig = Rig::fine();
    let handle = rig.open();
    let mut request = create_request(schedule_once(10 * MS));
    request.flags = CREATE_HIGH_RESOLUTION;
    let id = create_with(&handle, &request).unwrap();
    let ids = [id];
    let now = info(&handle).system_time;
    for schedule in [
        Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_once(now + MS)
        },
        Schedule {
            tolerable_delay_ms: 2,
            ..schedule_once(MS)
        },
    ] {
        let set = SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id: id,
            schedule,
        };
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_SET,
            &encode(&set),
            16,
            STATUS_INVALID_PARAMETER,
        );
    }
    drop(handle);
    rig.finish();
}

#[test]
fn stale_and_foreign_ids_are_rejected_and_never_aliased() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    let other = rig.open();
    let other_id = create(&other, schedule_periodic(10 * MS, 10));
    // Same slot and generation on both handles: only the serial tells them apart.
    assert_eq!(other_id & 0xFFFF_FFFF, ids[1] & 0xFFFF_FFFF);

    let closed = create(&handle, schedule_once(MS));
    close_timer(&handle, closed).unwrap();
    let reused = create(&handle, schedule_once(100 * MS));
    assert_eq!(reused & 0xFFF, closed & 0xFFF, "the slot was reused");
    let live = [ids[0], ids[1], reused];

    for code in [
        IOCTL_KTIMER_SET,
        IOCTL_KTIMER_CANCEL,
        IOCTL_KTIMER_QUERY,
        IOCTL_KTIMER_CLOSE,
    ] {
        rejects(
            &rig,
            &handle,
            &live,
            code,
            &valid_input(code, closed),
            output_len_for(code),
            STATUS_NOT_FOUND,
        );
        rejects(
            &rig,
            &handle,
            &live,
            code,
            &valid_input(code, other_id),
            output_len_for(code),
            STATUS_INVALID_HANDLE,
        );
        rejects(
            &rig,
            &other,
            &[other_id],
            code,
            &valid_input(code, ids[0]),
            output_len_for(code),
            STATUS_INVALID_HANDLE,
        );
        for never_issued in [
            0,
            1,
            u64::MAX,
            (ids[0] & !0xFFF) | 0xFFE,
            ids[0] + (1 << 12) * 5,
        ] {
            rejects(
                &rig,
                &handle,
                &live,
                code,
                &valid_input(code, never_issued),
                output_len_for(code),
                STATUS_INVALID_HANDLE,
            );
        }
    }
    drop(other);
    drop(handle);
    rig.finish();
}

#[test]
fn short_outputs_are_buffer_too_small_and_change_nothing() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    for code in ALL_CODES
        .into_iter()
        .filter(|&code| code != IOCTL_KTIMER_CLOSE)
    {
        let short = output_len_for(code).min(wait_response_len(1).unwrap()) - 1;
        for len in [0, short] {
            rejects(
                &rig,
                &handle,
                &ids,
                code,
                &valid_input(code, ids[0]),
                len,
                STATUS_BUFFER_TOO_SMALL,
            );
        }
    }
    // A wait asking for more records than its buffer holds can never complete.
    rejects(
        &rig,
        &handle,
        &ids,
        IOCTL_KTIMER_WAIT,
        &wait_request(3),
        wait_response_len(2).unwrap(),
        STATUS_INVALID_PARAMETER,
    );
    drop(handle);
    rig.finish();
}

#[test]
fn limits_are_enforced_with_quota_exceeded() {
    let rig = Rig::with(
        Config {
            time_increment: 10_000,
            ..Config::default()
        },
        ServiceConfig {
            max_handles: 2,
            max_timers_per_handle: 3,
            max_pending_waits_per_handle: 2,
            ..ServiceConfig::default()
        },
    );
    let handle = rig.open();
    let ids: Vec<u64> = (0..3)
        .map(|_| create(&handle, schedule_once(1000 * MS)))
        .collect();
    rejects(
        &rig,
        &handle,
        &ids,
        IOCTL_KTIMER_CREATE,
        &valid_input(IOCTL_KTIMER_CREATE, 0),
        16,
        STATUS_QUOTA_EXCEEDED,
    );
    let first = submit_wait(&handle, 1, 4);
    let second = submit_wait(&handle, 1, 4);
    assert!(first.result().is_none() && second.result().is_none());
    rejects(
        &rig,
        &handle,
        &ids,
        IOCTL_KTIMER_WAIT,
        &wait_request(1),
        wait_response_len(4).unwrap(),
        STATUS_QUOTA_EXCEEDED,
    );
    assert_eq!(handle.pending_waits(), 2);
    // Closing one timer makes room again.
    close_timer(&handle, ids[0]).unwrap();
    assert!(create_with(&handle, &create_request(schedule_once(MS))).is_ok());

    let second_handle = rig.open();
    assert_eq!(rig.driver.open().err(), Some(STATUS_QUOTA_EXCEEDED));
    drop(second_handle);
    assert!(rig.driver.open().is_ok());
    drop(handle);
    assert_eq!(
        first.result().map(|done| done.status),
        Some(ktimer_abi::status::STATUS_CANCELLED)
    );
    rig.finish();
}

/// `PROTOCOL.md`'s order: the output size (step 6) is checked before the id (step 7), for
/// every code that takes an id, so a short output with a bad id is `BUFFER_TOO_SMALL`.
#[test]
fn the_output_size_is_checked_before_the_timer_id() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    for code in [IOCTL_KTIMER_SET, IOCTL_KTIMER_CANCEL, IOCTL_KTIMER_QUERY] {
        for bad_id in [0, u64::MAX, ids[0] ^ (1 << 40)] {
            rejects(
                &rig,
                &handle,
                &ids,
                code,
                &valid_input(code, bad_id),
                0,
                STATUS_BUFFER_TOO_SMALL,
            );
        }
    }
    drop(handle);
    rig.finish();
}

/// `GET_INFO` on a handle whose cleanup ran: the output size (step 6) still comes first.
#[test]
fn get_info_checks_the_output_size_before_the_handle_state() {
    let rig = Rig::fine();
    let handle = rig.open();
    handle.begin_cleanup();
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_GET_INFO, &[], 0).status,
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_GET_INFO, &[], 72).status,
        ktimer_abi::status::STATUS_CANCELLED
    );
    drop(handle);
    rig.finish();
}

/// A handle whose ids are used up (its one slot closed at the id format's last generation,
/// 2^20 - 1, so retired) cannot create again: that is an exhausted resource, not a quota the
/// caller could free by closing timers, so it is `STATUS_INSUFFICIENT_RESOURCES` as
/// PROTOCOL.md says; a full table of live timers stays `STATUS_QUOTA_EXCEEDED`. The slot is
/// moved to three generations before the last by a test hook (the same state a million
/// create/close pairs leave; each release's step is `ids.rs`'s unit tests'), then cycled
/// through the IOCTLs across the boundary.
#[test]
fn exhausted_timer_ids_are_insufficient_resources() {
    const LAST_GENERATION: u32 = ktimer_service::ids::LAST_GENERATION;
    let generation_of = |id: u64| ktimer_service::ids::TimerId::from_raw(id).generation;
    let rig = Rig::with(
        Config {
            time_increment: 10_000,
            processors: 1,
            ..Config::default()
        },
        ServiceConfig {
            max_timers_per_handle: 1,
            ..ServiceConfig::default()
        },
    );
    assert_eq!(
        LAST_GENERATION,
        (1 << 20) - 1,
        "the id format's 20-bit generation"
    );
    let handle = rig.open();
    let request = encode(&create_request(schedule_once(1000 * MS)));
    let first = create_with(&handle, &create_request(schedule_once(1000 * MS))).unwrap();
    assert_eq!(generation_of(first), 0);
    // One live timer fills the table: a quota, freed by closing it.
    rejects(
        &rig,
        &handle,
        &[first],
        IOCTL_KTIMER_CREATE,
        &request,
        16,
        STATUS_QUOTA_EXCEEDED,
    );
    assert_eq!(close_timer(&handle, first), Ok(()));
    handle.skip_timer_id_generations(LAST_GENERATION - 2);
    let mut last = 0;
    for (cycle, generation) in (LAST_GENERATION - 2..=LAST_GENERATION).enumerate() {
        let done = raw(&handle, IOCTL_KTIMER_CREATE, &request, 16);
        assert_eq!(done.status, STATUS_SUCCESS, "create #{cycle}");
        last = ktimer_abi::CreateResponse::decode(&done.output)
            .unwrap()
            .timer_id;
        assert_eq!(generation_of(last), generation);
        assert_eq!(query(&handle, last).map(|q| q.timer_id), Ok(last));
        let closed = raw(
            &handle,
            IOCTL_KTIMER_CLOSE,
            &encode(&timer_request(last)),
            0,
        );
        assert_eq!(closed.status, STATUS_SUCCESS, "close #{cycle}");
    }
    rejects(
        &rig,
        &handle,
        &[],
        IOCTL_KTIMER_CREATE,
        &request,
        16,
        STATUS_INSUFFICIENT_RESOURCES,
    );
    // No id was wrapped or reissued: the last and the first are both closed timers'.
    assert_eq!(close_timer(&handle, last), Err(STATUS_NOT_FOUND));
    assert_eq!(close_timer(&handle, first), Err(STATUS_NOT_FOUND));
    drop(handle);
    rig.finish();
}

/// An absolute due time more than a day after the driver's system time is a field value out
/// of range (step 5), checked before the output size (step 6) and before any id or limit
/// (step 7), exactly as a relative due time above one day is.
#[test]
fn an_absolute_due_time_beyond_a_day_is_a_step_5_invalid_parameter() {
    let rig = Rig::fine();
    let (handle, ids) = populated(&rig);
    let now = info(&handle).system_time;
    let too_far = Schedule {
        flags: SCHEDULE_ABSOLUTE,
        ..schedule_once(now + MAX_RELATIVE_DUE_100NS + MS)
    };
    for output_len in [0, 16] {
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_CREATE,
            &encode(&create_request(too_far)),
            output_len,
            STATUS_INVALID_PARAMETER,
        );
        // On SET, with an id that names no timer: still step 5 first.
        let set = SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id: 0,
            schedule: too_far,
        };
        rejects(
            &rig,
            &handle,
            &ids,
            IOCTL_KTIMER_SET,
            &encode(&set),
            output_len,
            STATUS_INVALID_PARAMETER,
        );
    }
    // Exactly one day ahead is in range.
    let at_limit = Schedule {
        flags: SCHEDULE_ABSOLUTE,
        ..schedule_once(info(&handle).system_time + MAX_RELATIVE_DUE_100NS)
    };
    assert!(create_with(&handle, &create_request(at_limit)).is_ok());
    drop(handle);
    rig.finish();
}
