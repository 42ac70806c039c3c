//! Validating decoders and encoders between the [`crate::layout`] types and byte buffers.
//!
//! Decoders never panic and never read outside the slice: every field is read with a checked
//! range at the offset `offset_of!` gives for it, so the byte form is the `#[repr(C)]` layout by
//! construction. A request decoder checks, in order: the buffer holds a header; the header's
//! ABI version; the buffer's length is exactly the request's size; the header's size field;
//! then every field's value. Response decoders (used by user mode) apply the same checks.
//!
//! What makes a type a message: its layout line in [`crate::layout`] (`assert_layout!`, which
//! also gives it its byte form, [`Wire`]) and its field checks ([`Validate`]). [`Encode`] and
//! [`Decode`] follow from those two for every such type; there is no list of messages to keep.

use core::mem::size_of;

use crate::layout::{
    ArmResponse, CREATE_FLAGS_ALL, CREATE_HIGH_RESOLUTION, CreateRequest, CreateResponse,
    ExpiryRecord, Header, InfoResponse, MAX_PERIOD_MS, MAX_RELATIVE_DUE_100NS,
    MAX_TOLERABLE_DELAY_MS, MIN_PERIOD_MS_FLOOR, MODE_ONE_SHOT, MODE_PERIODIC, QueryResponse,
    SCHEDULE_ABSOLUTE, SCHEDULE_FLAGS_ALL, STATE_ARMED, STATE_CANCELLED, STATE_EXPIRED, Schedule,
    SetRequest, TIMER_TYPE_NOTIFICATION, TIMER_TYPE_SYNCHRONIZATION, TimerRequest, WaitRequest,
    WaitResponse,
};
pub use crate::wire::{DecodeError, Validate, Wire};

/// A message that can be read from a byte buffer and validated.
pub trait Decode: Sized {
    /// Reads and validates a message that fills `bytes` exactly.
    ///
    /// # Errors
    /// [`DecodeError`] for a short or long buffer, a wrong version or size field, or a bad
    /// field value.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// A message that can be written to a byte buffer.
pub trait Encode {
    /// Writes the message at the start of `out`, returning the bytes written.
    ///
    /// # Errors
    /// [`DecodeError::TooShort`] if `out` cannot hold it (nothing is written then).
    fn encode(&self, out: &mut [u8]) -> Result<usize, DecodeError>;
}

const fn invalid(field: &'static str) -> DecodeError {
    DecodeError::InvalidField { field }
}

const fn check(ok: bool, field: &'static str) -> Result<(), DecodeError> {
    if ok { Ok(()) } else { Err(invalid(field)) }
}

impl Schedule {
    /// The checks of a schedule embedded in create and set.
    fn validate(&self) -> Result<(), DecodeError> {
        check(
            self.mode == MODE_ONE_SHOT || self.mode == MODE_PERIODIC,
            "schedule.mode",
        )?;
        check(self.flags & !SCHEDULE_FLAGS_ALL == 0, "schedule.flags")?;
        if self.flags & SCHEDULE_ABSOLUTE == 0 {
            check(
                (0..=MAX_RELATIVE_DUE_100NS).contains(&self.due_time),
                "schedule.due_time",
            )?;
        } else {
            // The upper bound needs the current time: the driver checks it.
            check(self.due_time > 0, "schedule.due_time")?;
        }
        if self.mode == MODE_ONE_SHOT {
            check(self.period_ms == 0, "schedule.period_ms")?;
        } else {
            check(
                (MIN_PERIOD_MS_FLOOR..=MAX_PERIOD_MS).contains(&self.period_ms),
                "schedule.period_ms",
            )?;
        }
        check(
            self.tolerable_delay_ms <= MAX_TOLERABLE_DELAY_MS,
            "schedule.tolerable_delay_ms",
        )
    }
}

impl Validate for CreateRequest {
    fn validate(&self) -> Result<(), DecodeError> {
        check(
            self.timer_type == TIMER_TYPE_NOTIFICATION
                || self.timer_type == TIMER_TYPE_SYNCHRONIZATION,
            "timer_type",
        )?;
        check(self.flags & !CREATE_FLAGS_ALL == 0, "flags")?;
        self.schedule.validate()?;
        if self.flags & CREATE_HIGH_RESOLUTION != 0 {
            check(self.timer_type == TIMER_TYPE_NOTIFICATION, "timer_type")?;
            validate_high_resolution(&self.schedule)?;
        }
        Ok(())
    }
}

/// The extra rules of a high-resolution timer's schedule (`EX_TIMER_HIGH_RESOLUTION` takes a
/// relative due time and has no coalescing tolerance). Used by the driver for set requests
/// too, once it knows the timer is high-resolution.
///
/// # Errors
/// [`DecodeError::InvalidField`] for an absolute due time or a tolerable delay.
pub const fn validate_high_resolution(schedule: &Schedule) -> Result<(), DecodeError> {
    if schedule.flags & SCHEDULE_ABSOLUTE != 0 {
        return Err(invalid("schedule.flags"));
    }
    check(
        schedule.tolerable_delay_ms == 0,
        "schedule.tolerable_delay_ms",
    )
}

impl Validate for SetRequest {
    fn validate(&self) -> Result<(), DecodeError> {
        self.schedule.validate()
    }
}

impl Validate for TimerRequest {
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }
}

impl Validate for WaitRequest {
    fn validate(&self) -> Result<(), DecodeError> {
        check(self.min_records >= 1, "min_records")?;
        check(self.reserved == 0, "reserved")
    }
}

impl Validate for CreateResponse {
    fn validate(&self) -> Result<(), DecodeError> {
        check(self.timer_id != 0, "timer_id")
    }
}

impl Validate for ArmResponse {
    fn validate(&self) -> Result<(), DecodeError> {
        check(self.was_armed <= 1, "was_armed")?;
        check(self.reserved == 0, "reserved")
    }
}

impl Validate for QueryResponse {
    fn validate(&self) -> Result<(), DecodeError> {
        check(
            matches!(self.state, STATE_ARMED | STATE_EXPIRED | STATE_CANCELLED),
            "state",
        )?;
        check(self.signaled <= 1, "signaled")?;
        check(self.coalesced <= self.expirations, "coalesced")
    }
}

impl Validate for WaitResponse {
    fn validate(&self) -> Result<(), DecodeError> {
        check(self.reserved == 0, "reserved")
    }
}

impl Validate for InfoResponse {
    fn validate(&self) -> Result<(), DecodeError> {
        check(self.reserved == 0 && self.padding == 0, "reserved")
    }
}

/// The header checks shared by every message, on a buffer that must hold exactly `T`.
fn decode_exact<T: Wire + Validate>(bytes: &[u8]) -> Result<T, DecodeError> {
    let header = check_header::<T>(bytes)?;
    let expected = size_of::<T>();
    if bytes.len() > expected {
        return Err(DecodeError::TooLong {
            expected,
            actual: bytes.len(),
        });
    }
    if usize::try_from(header.size).ok() != Some(expected) {
        return Err(DecodeError::SizeField {
            expected,
            found: header.size,
        });
    }
    let message = T::read(bytes, 0).ok_or(DecodeError::TooShort {
        needed: expected,
        actual: bytes.len(),
    })?;
    message.validate()?;
    Ok(message)
}

/// Header present, right version, buffer at least `size_of::<T>()`.
fn check_header<T>(bytes: &[u8]) -> Result<Header, DecodeError> {
    let header = Header::read(bytes, 0).ok_or(DecodeError::TooShort {
        needed: size_of::<Header>(),
        actual: bytes.len(),
    })?;
    if header.abi_version != crate::ABI_VERSION {
        return Err(DecodeError::Revision {
            found: header.abi_version,
        });
    }
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::TooShort {
            needed: size_of::<T>(),
            actual: bytes.len(),
        });
    }
    Ok(header)
}

fn encode_value<T: Wire>(value: &T, out: &mut [u8]) -> Result<usize, DecodeError> {
    let needed = size_of::<T>();
    let Some(target) = out.get_mut(..needed) else {
        return Err(DecodeError::TooShort {
            needed,
            actual: out.len(),
        });
    };
    // `target` has exactly the type's size, and every field lies inside it.
    value.write(target, 0).ok_or(DecodeError::TooShort {
        needed,
        actual: out.len(),
    })?;
    Ok(needed)
}

/// Every message decodes with the header checks, then its field checks. (A wait response
/// decodes this way only without records: read one with records with [`WaitBatch::decode`].)
impl<T: Wire + Validate> Decode for T {
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(bytes)
    }
}

/// Every type with a layout line encodes as its `#[repr(C)]` bytes.
impl<T: Wire> Encode for T {
    fn encode(&self, out: &mut [u8]) -> Result<usize, DecodeError> {
        encode_value(self, out)
    }
}

impl ExpiryRecord {
    /// Reads one record that fills `bytes` exactly.
    ///
    /// # Errors
    /// [`DecodeError::TooShort`]/[`DecodeError::TooLong`] for another length,
    /// [`DecodeError::InvalidField`] for a non-zero reserved field or zero expirations.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let expected = size_of::<Self>();
        if bytes.len() > expected {
            return Err(DecodeError::TooLong {
                expected,
                actual: bytes.len(),
            });
        }
        let record = Self::read(bytes, 0).ok_or(DecodeError::TooShort {
            needed: expected,
            actual: bytes.len(),
        })?;
        check(record.reserved == 0, "reserved")?;
        check(record.expirations >= 1, "expirations")?;
        Ok(record)
    }
}

/// The bytes a wait response with `records` records occupies, or `None` on overflow.
#[must_use]
pub const fn wait_response_len(records: usize) -> Option<usize> {
    match records.checked_mul(size_of::<ExpiryRecord>()) {
        Some(bytes) => bytes.checked_add(size_of::<WaitResponse>()),
        None => None,
    }
}

/// How many records fit in an output buffer of `output_len` bytes after the response header.
#[must_use]
pub const fn records_fitting(output_len: usize) -> usize {
    output_len.saturating_sub(size_of::<WaitResponse>()) / size_of::<ExpiryRecord>()
}

/// A decoded wait response: the header and its records, still as bytes, read one by one.
#[derive(Clone, Copy, Debug)]
pub struct WaitBatch<'a> {
    /// The response header.
    pub response: WaitResponse,
    records: &'a [u8],
}

impl<'a> WaitBatch<'a> {
    /// Reads a wait response whose buffer holds exactly the header and its `record_count`
    /// records (the bytes the request returned).
    ///
    /// # Errors
    /// As [`Decode::decode`]; [`DecodeError::TooShort`]/[`DecodeError::TooLong`] when the
    /// buffer does not hold exactly `record_count` records; a bad record's error.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let header = check_header::<WaitResponse>(bytes)?;
        let head_len = size_of::<WaitResponse>();
        if usize::try_from(header.size).ok() != Some(head_len) {
            return Err(DecodeError::SizeField {
                expected: head_len,
                found: header.size,
            });
        }
        let response = WaitResponse::read(bytes, 0).ok_or(DecodeError::TooShort {
            needed: head_len,
            actual: bytes.len(),
        })?;
        response.validate()?;
        let count = usize::try_from(response.record_count).map_err(|_| invalid("record_count"))?;
        let total = wait_response_len(count).ok_or(invalid("record_count"))?;
        if bytes.len() < total {
            return Err(DecodeError::TooShort {
                needed: total,
                actual: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(DecodeError::TooLong {
                expected: total,
                actual: bytes.len(),
            });
        }
        let records = bytes.get(head_len..).unwrap_or_default();
        for chunk in records.chunks_exact(size_of::<ExpiryRecord>()) {
            ExpiryRecord::decode(chunk)?;
        }
        Ok(Self { response, records })
    }

    /// The records, in delivery order (already validated by [`WaitBatch::decode`]).
    pub fn records(&self) -> impl Iterator<Item = ExpiryRecord> + 'a {
        self.records
            .chunks_exact(size_of::<ExpiryRecord>())
            .filter_map(|chunk| ExpiryRecord::decode(chunk).ok())
    }
}

/// Writes a wait response header and `records` into `out`: the driver's encoder. Takes at
/// most [`records_fitting`]`(out.len())` records from the iterator (so none is pulled and then
/// lost) and returns (records written, bytes written).
///
/// # Errors
/// [`DecodeError::TooShort`] if `out` cannot hold the header and one record.
pub fn encode_wait_response(
    overruns: u64,
    records: impl Iterator<Item = ExpiryRecord>,
    out: &mut [u8],
) -> Result<(u32, usize), DecodeError> {
    let head_len = size_of::<WaitResponse>();
    let one = wait_response_len(1).unwrap_or(usize::MAX);
    if out.len() < one {
        return Err(DecodeError::TooShort {
            needed: one,
            actual: out.len(),
        });
    }
    let mut count: u32 = 0;
    let mut written = head_len;
    for record in records.take(records_fitting(out.len())) {
        let Some(target) = out.get_mut(written..) else {
            break;
        };
        let Ok(len) = record.encode(target) else {
            break;
        };
        written = written.saturating_add(len);
        count = count.saturating_add(1);
    }
    let response = WaitResponse {
        header: Header::of::<WaitResponse>(),
        record_count: count,
        reserved: 0,
        overruns,
    };
    encode_value(&response, out)?;
    Ok((count, written))
}
