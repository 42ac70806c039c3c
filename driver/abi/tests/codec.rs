//! The decoders' bad-input classes and encode/decode round trips.

use core::mem::size_of;

use ktimer_abi::codec::{
    WaitBatch, encode_wait_response, records_fitting, validate_high_resolution, wait_response_len,
};
use ktimer_abi::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_PARAMETER,
    STATUS_REVISION_MISMATCH,
};
use ktimer_abi::*;

fn schedule_one_shot(due: i64) -> Schedule {
    Schedule {
        mode: MODE_ONE_SHOT,
        flags: 0,
        due_time: due,
        period_ms: 0,
        tolerable_delay_ms: 0,
    }
}

fn schedule_periodic(due: i64, period_ms: i32) -> Schedule {
    Schedule {
        mode: MODE_PERIODIC,
        flags: 0,
        due_time: due,
        period_ms,
        tolerable_delay_ms: 0,
    }
}

fn create(schedule: Schedule) -> CreateRequest {
    CreateRequest {
        header: Header::of::<CreateRequest>(),
        timer_type: TIMER_TYPE_NOTIFICATION,
        flags: 0,
        schedule,
    }
}

fn bytes_of<T: Encode>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let len = message
        .encode(&mut out)
        .expect("256 bytes hold every message");
    out.truncate(len);
    out
}

fn status_of<T: Decode>(bytes: &[u8]) -> i32 {
    match T::decode(bytes) {
        Ok(_) => 0,
        Err(error) => error.status(),
    }
}

#[test]
fn a_valid_create_request_round_trips() {
    let request = create(schedule_periodic(10_000, 5));
    let bytes = bytes_of(&request);
    assert_eq!(bytes.len(), 40);
    assert_eq!(CreateRequest::decode(&bytes), Ok(request));
}

#[test]
fn short_buffers_are_too_small_at_every_length() {
    let bytes = bytes_of(&create(schedule_one_shot(0)));
    for len in 0..bytes.len() {
        assert_eq!(
            status_of::<CreateRequest>(&bytes[..len]),
            STATUS_BUFFER_TOO_SMALL,
            "len {len}"
        );
    }
}

#[test]
fn oversized_buffers_are_a_length_mismatch() {
    let mut bytes = bytes_of(&create(schedule_one_shot(0)));
    bytes.push(0);
    assert_eq!(
        status_of::<CreateRequest>(&bytes),
        STATUS_INFO_LENGTH_MISMATCH
    );
    bytes.extend_from_slice(&[0; 4096]);
    assert_eq!(
        status_of::<CreateRequest>(&bytes),
        STATUS_INFO_LENGTH_MISMATCH
    );
}

#[test]
fn a_header_size_field_that_disagrees_is_a_length_mismatch() {
    for size in [0u32, 8, 39, 41, u32::MAX] {
        let mut request = create(schedule_one_shot(0));
        request.header.size = size;
        assert_eq!(
            CreateRequest::decode(&bytes_of(&request)),
            Err(DecodeError::SizeField {
                expected: 40,
                found: size
            })
        );
    }
}

#[test]
fn a_wrong_version_is_a_revision_mismatch_even_with_a_shorter_body() {
    let mut request = TimerRequest {
        header: Header::of::<TimerRequest>(),
        timer_id: 7,
    };
    for version in [0u32, 2, u32::MAX] {
        request.header.abi_version = version;
        let bytes = bytes_of(&request);
        assert_eq!(status_of::<TimerRequest>(&bytes), STATUS_REVISION_MISMATCH);
        // A future version may have another size: the version is checked before the length.
        assert_eq!(
            status_of::<TimerRequest>(&bytes[..8]),
            STATUS_REVISION_MISMATCH
        );
    }
}

#[test]
fn bad_schedule_fields_are_invalid_parameters() {
    let bad = [
        (
            Schedule {
                mode: 2,
                ..schedule_one_shot(0)
            },
            "schedule.mode",
        ),
        (
            Schedule {
                flags: 0x2,
                ..schedule_one_shot(0)
            },
            "schedule.flags",
        ),
        (
            Schedule {
                flags: 0x8000_0000,
                ..schedule_one_shot(0)
            },
            "schedule.flags",
        ),
        (schedule_one_shot(-1), "schedule.due_time"),
        (
            schedule_one_shot(MAX_RELATIVE_DUE_100NS + 1),
            "schedule.due_time",
        ),
        (schedule_one_shot(i64::MIN), "schedule.due_time"),
        (
            Schedule {
                flags: SCHEDULE_ABSOLUTE,
                ..schedule_one_shot(0)
            },
            "schedule.due_time",
        ),
        (
            Schedule {
                flags: SCHEDULE_ABSOLUTE,
                ..schedule_one_shot(-5)
            },
            "schedule.due_time",
        ),
        (
            Schedule {
                period_ms: 5,
                ..schedule_one_shot(0)
            },
            "schedule.period_ms",
        ),
        (schedule_periodic(0, 0), "schedule.period_ms"),
        (schedule_periodic(0, -1), "schedule.period_ms"),
        (schedule_periodic(0, i32::MIN), "schedule.period_ms"),
        (
            schedule_periodic(0, MAX_PERIOD_MS + 1),
            "schedule.period_ms",
        ),
        (
            Schedule {
                tolerable_delay_ms: MAX_TOLERABLE_DELAY_MS + 1,
                ..schedule_one_shot(0)
            },
            "schedule.tolerable_delay_ms",
        ),
    ];
    for (schedule, field) in bad {
        let create = create(schedule);
        assert_eq!(
            CreateRequest::decode(&bytes_of(&create)),
            Err(DecodeError::InvalidField { field }),
            "{schedule:?}"
        );
        let set = SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id: 1,
            schedule,
        };
        assert_eq!(
            status_of::<SetRequest>(&bytes_of(&set)),
            STATUS_INVALID_PARAMETER
        );
    }
}

#[test]
fn boundary_schedules_are_accepted() {
    for schedule in [
        schedule_one_shot(0),
        schedule_one_shot(MAX_RELATIVE_DUE_100NS),
        schedule_periodic(0, MIN_PERIOD_MS_FLOOR),
        schedule_periodic(0, MAX_PERIOD_MS),
        Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_one_shot(1)
        },
        Schedule {
            tolerable_delay_ms: MAX_TOLERABLE_DELAY_MS,
            ..schedule_one_shot(0)
        },
    ] {
        assert_eq!(
            CreateRequest::decode(&bytes_of(&create(schedule))),
            Ok(create(schedule))
        );
    }
}

#[test]
fn bad_create_fields_are_invalid_parameters() {
    let base = create(schedule_one_shot(10));
    let cases = [
        (
            CreateRequest {
                timer_type: 2,
                ..base
            },
            "timer_type",
        ),
        (CreateRequest { flags: 0x2, ..base }, "flags"),
        (
            CreateRequest {
                flags: u32::MAX,
                ..base
            },
            "flags",
        ),
        (
            CreateRequest {
                flags: CREATE_HIGH_RESOLUTION,
                timer_type: TIMER_TYPE_SYNCHRONIZATION,
                ..base
            },
            "timer_type",
        ),
        (
            CreateRequest {
                flags: CREATE_HIGH_RESOLUTION,
                schedule: Schedule {
                    flags: SCHEDULE_ABSOLUTE,
                    ..schedule_one_shot(10)
                },
                ..base
            },
            "schedule.flags",
        ),
        (
            CreateRequest {
                flags: CREATE_HIGH_RESOLUTION,
                schedule: Schedule {
                    tolerable_delay_ms: 1,
                    ..schedule_one_shot(10)
                },
                ..base
            },
            "schedule.tolerable_delay_ms",
        ),
    ];
    for (request, field) in cases {
        assert_eq!(
            CreateRequest::decode(&bytes_of(&request)),
            Err(DecodeError::InvalidField { field })
        );
    }
    let high_resolution = CreateRequest {
        flags: CREATE_HIGH_RESOLUTION,
        ..base
    };
    assert_eq!(
        CreateRequest::decode(&bytes_of(&high_resolution)),
        Ok(high_resolution)
    );
    assert!(validate_high_resolution(&schedule_periodic(0, 1)).is_ok());
}

#[test]
fn bad_wait_fields_are_invalid_parameters() {
    let base = WaitRequest {
        header: Header::of::<WaitRequest>(),
        min_records: 1,
        reserved: 0,
    };
    assert_eq!(WaitRequest::decode(&bytes_of(&base)), Ok(base));
    let zero = WaitRequest {
        min_records: 0,
        ..base
    };
    assert_eq!(
        WaitRequest::decode(&bytes_of(&zero)),
        Err(DecodeError::InvalidField {
            field: "min_records"
        })
    );
    let reserved = WaitRequest {
        reserved: 1,
        ..base
    };
    assert_eq!(
        WaitRequest::decode(&bytes_of(&reserved)),
        Err(DecodeError::InvalidField { field: "reserved" })
    );
}

#[test]
fn encoding_into_a_short_buffer_writes_nothing() {
    let response = CreateResponse {
        header: Header::of::<CreateResponse>(),
        timer_id: 9,
    };
    let mut out = [0xAAu8; 15];
    assert_eq!(
        response.encode(&mut out),
        Err(DecodeError::TooShort {
            needed: 16,
            actual: 15
        })
    );
    assert_eq!(out, [0xAA; 15]);
}

#[test]
fn responses_validate_too() {
    let zero_id = CreateResponse {
        header: Header::of::<CreateResponse>(),
        timer_id: 0,
    };
    assert_eq!(
        status_of::<CreateResponse>(&bytes_of(&zero_id)),
        STATUS_INVALID_PARAMETER
    );
    let query = QueryResponse {
        header: Header::of::<QueryResponse>(),
        state: STATE_ARMED,
        expirations: 3,
        coalesced: 4,
        ..QueryResponse::default()
    };
    assert_eq!(
        QueryResponse::decode(&bytes_of(&query)),
        Err(DecodeError::InvalidField { field: "coalesced" })
    );
    let info = InfoResponse {
        header: Header::of::<InfoResponse>(),
        min_period_ms: 1,
        ..InfoResponse::default()
    };
    assert_eq!(InfoResponse::decode(&bytes_of(&info)), Ok(info));
    let arm = ArmResponse {
        header: Header::of::<ArmResponse>(),
        was_armed: 2,
        reserved: 0,
    };
    assert_eq!(
        status_of::<ArmResponse>(&bytes_of(&arm)),
        STATUS_INVALID_PARAMETER
    );
}

fn record(n: u64) -> ExpiryRecord {
    ExpiryRecord {
        timer_id: 100 + n,
        sequence: n,
        due_time: 1000 * i64::try_from(n).unwrap_or(0),
        fire_time: 1000 * i64::try_from(n).unwrap_or(0) + 7,
        lateness: 7,
        expirations: 1,
        reserved: 0,
    }
}

#[test]
fn wait_responses_carry_as_many_records_as_fit_and_no_more_are_consumed() {
    let mut out = vec![0u8; wait_response_len(3).unwrap() + 47];
    assert_eq!(records_fitting(out.len()), 3);
    let mut source = (1..=5).map(record);
    let (count, written) = encode_wait_response(2, &mut source, &mut out).unwrap();
    assert_eq!((count, written), (3, 24 + 3 * 48));
    // The iterator still holds the records that did not fit.
    assert_eq!(source.next(), Some(record(4)));
    let batch = WaitBatch::decode(&out[..written]).unwrap();
    assert_eq!(batch.response.record_count, 3);
    assert_eq!(batch.response.overruns, 2);
    assert_eq!(
        batch.records().collect::<Vec<_>>(),
        vec![record(1), record(2), record(3)]
    );
}

#[test]
fn wait_response_output_must_hold_one_record() {
    let mut out = vec![0u8; size_of::<WaitResponse>() + size_of::<ExpiryRecord>() - 1];
    assert_eq!(
        encode_wait_response(0, core::iter::once(record(1)), &mut out).map_err(DecodeError::status),
        Err(STATUS_BUFFER_TOO_SMALL)
    );
}

#[test]
fn wait_batches_reject_inconsistent_counts_and_bad_records() {
    let mut out = vec![0u8; wait_response_len(2).unwrap()];
    let (_, written) = encode_wait_response(0, (1..=2).map(record), &mut out).unwrap();
    assert!(WaitBatch::decode(&out[..written - 1]).is_err());
    let mut longer = out.clone();
    longer.push(0);
    assert_eq!(
        WaitBatch::decode(&longer)
            .map(|b| b.response)
            .map_err(DecodeError::status),
        Err(STATUS_INFO_LENGTH_MISMATCH)
    );
    let mut bad_record = out.clone();
    // The first record's reserved field (offset 24 + 44).
    bad_record[24 + 44] = 1;
    assert_eq!(
        WaitBatch::decode(&bad_record).map(|b| b.response),
        Err(DecodeError::InvalidField { field: "reserved" })
    );
    let mut huge_count = out;
    huge_count[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert!(WaitBatch::decode(&huge_count).is_err());
}

/// A small deterministic generator, so the round trips cover many values without a
/// dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_ne_bytes()[0]).collect()
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_valid_decodes_round_trip() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = usize::try_from(rng.next() % 64).unwrap();
        let mut bytes = rng.bytes(len);
        // Often give it a valid header so the field checks are reached.
        if len >= 8 && rng.next().is_multiple_of(2) {
            bytes[..4].copy_from_slice(&ABI_VERSION.to_ne_bytes());
            let size = u32::try_from(len).unwrap();
            bytes[4..8].copy_from_slice(&size.to_ne_bytes());
        }
        if let Ok(request) = CreateRequest::decode(&bytes) {
            accepted += 1;
            assert_eq!(bytes_of(&request), bytes);
        }
        if let Ok(request) = SetRequest::decode(&bytes) {
            assert_eq!(bytes_of(&request), bytes);
        }
        if let Ok(request) = TimerRequest::decode(&bytes) {
            accepted += 1;
            assert_eq!(bytes_of(&request), bytes);
        }
        if let Ok(request) = WaitRequest::decode(&bytes) {
            assert_eq!(bytes_of(&request), bytes);
        }
        let _ = WaitBatch::decode(&bytes);
        let _ = ExpiryRecord::decode(&bytes);
    }
    // Random 16-byte timer requests with a valid header are always accepted.
    assert!(accepted > 100, "only {accepted} accepted");
}

#[test]
fn every_generated_valid_request_round_trips() {
    let mut rng = XorShift(12345);
    for _ in 0..10_000 {
        let periodic = rng.next().is_multiple_of(2);
        let absolute = rng.next().is_multiple_of(2);
        let period = i32::try_from(rng.next() % u64::try_from(MAX_PERIOD_MS).unwrap()).unwrap() + 1;
        let due = if absolute {
            i64::try_from(rng.next() >> 2).unwrap() + 1
        } else {
            i64::try_from(rng.next() % u64::try_from(MAX_RELATIVE_DUE_100NS).unwrap()).unwrap()
        };
        let schedule = Schedule {
            mode: u32::from(periodic),
            flags: if absolute { SCHEDULE_ABSOLUTE } else { 0 },
            due_time: due,
            period_ms: if periodic { period } else { 0 },
            tolerable_delay_ms: u32::try_from(rng.next() % u64::from(MAX_TOLERABLE_DELAY_MS + 1))
                .unwrap(),
        };
        let request = CreateRequest {
            header: Header::of::<CreateRequest>(),
            timer_type: u32::try_from(rng.next() % 2).unwrap(),
            flags: 0,
            schedule,
        };
        assert_eq!(CreateRequest::decode(&bytes_of(&request)), Ok(request));
        let set = SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id: rng.next(),
            schedule,
        };
        assert_eq!(SetRequest::decode(&bytes_of(&set)), Ok(set));
    }
}
