//! The example IOCTL, [`IOCTL_KTIMER_PING`](crate::ioctl::IOCTL_KTIMER_PING): a
//! [`PingRequest`] in, a [`PingResponse`] out.
//!
//! | input | status |
//! | --- | --- |
//! | input length or `size` not `size_of::<PingRequest>()` | `STATUS_INFO_LENGTH_MISMATCH` |
//! | `version` not [`ABI_VERSION`] | `STATUS_REVISION_MISMATCH` |
//! | `reserved` not zero | `STATUS_INVALID_PARAMETER` |
//! | output shorter than `size_of::<PingResponse>()` | `STATUS_BUFFER_TOO_SMALL` |
//! | otherwise | `STATUS_SUCCESS`, `Information` = `size_of::<PingResponse>()` |
//!
//! The checks run in that order, so a request with several faults gets the first one's
//! status. The byte forms are written field by field, never by casting a buffer to a type:
//! the system buffer's alignment is the I/O manager's, and any bytes are a valid input.

use core::mem::{offset_of, size_of};

use crate::ABI_VERSION;
use crate::status::{
    NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_PARAMETER,
    STATUS_REVISION_MISMATCH,
};

/// The ping request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PingRequest {
    /// [`ABI_VERSION`].
    pub version: u32,
    /// `size_of::<PingRequest>()`.
    pub size: u32,
    /// Any value: the response echoes it.
    pub cookie: u64,
    /// Zero (room for flags in a later version).
    pub reserved: u64,
}

/// The ping response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PingResponse {
    /// The driver's [`ABI_VERSION`].
    pub version: u32,
    /// `size_of::<PingResponse>()`.
    pub size: u32,
    /// The request's cookie.
    pub cookie: u64,
    /// Pings answered on this handle, this one included.
    pub handle_pings: u64,
    /// Pings answered by the device, on every handle, this one included.
    pub device_pings: u64,
}

/// The request's size in bytes (also its `size` field).
pub const PING_REQUEST_SIZE: usize = size_of::<PingRequest>();
/// The response's size in bytes (also its `size` field).
pub const PING_RESPONSE_SIZE: usize = size_of::<PingResponse>();

/// [`PING_REQUEST_SIZE`] as the `size` field holds it.
const REQUEST_SIZE_FIELD: u32 = 24;
/// [`PING_RESPONSE_SIZE`] as the `size` field holds it.
const RESPONSE_SIZE_FIELD: u32 = 32;

// The layout is the contract: a change here is a new ABI version, never an accident.
const _: () = {
    assert!(PING_REQUEST_SIZE == REQUEST_SIZE_FIELD as usize);
    assert!(PING_RESPONSE_SIZE == RESPONSE_SIZE_FIELD as usize);
    assert!(offset_of!(PingRequest, version) == 0);
    assert!(offset_of!(PingRequest, size) == 4);
    assert!(offset_of!(PingRequest, cookie) == 8);
    assert!(offset_of!(PingRequest, reserved) == 16);
    assert!(offset_of!(PingResponse, version) == 0);
    assert!(offset_of!(PingResponse, size) == 4);
    assert!(offset_of!(PingResponse, cookie) == 8);
    assert!(offset_of!(PingResponse, handle_pings) == 16);
    assert!(offset_of!(PingResponse, device_pings) == 24);
};

/// `u32` from 4 bytes of `bytes` at `at` (the caller checked the length).
fn u32_at(bytes: &[u8; PING_REQUEST_SIZE], at: usize) -> u32 {
    let mut field = [0; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(field)
}

/// `u64` from 8 bytes of `bytes` at `at` (the caller checked the length).
fn u64_at(bytes: &[u8; PING_REQUEST_SIZE], at: usize) -> u64 {
    let mut field = [0; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(field)
}

impl PingRequest {
    /// A valid request carrying `cookie`.
    #[must_use]
    pub const fn new(cookie: u64) -> Self {
        Self {
            version: ABI_VERSION,
            size: REQUEST_SIZE_FIELD,
            cookie,
            reserved: 0,
        }
    }

    /// The byte form.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; PING_REQUEST_SIZE] {
        let mut bytes = [0; PING_REQUEST_SIZE];
        bytes[0..4].copy_from_slice(&self.version.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.size.to_ne_bytes());
        bytes[8..16].copy_from_slice(&self.cookie.to_ne_bytes());
        bytes[16..24].copy_from_slice(&self.reserved.to_ne_bytes());
        bytes
    }

    /// Validates `input` (the table in the module documentation).
    ///
    /// # Errors
    ///
    /// The status of the first check that fails.
    pub fn decode(input: &[u8]) -> Result<Self, NtStatus> {
        let bytes: &[u8; PING_REQUEST_SIZE] =
            input.try_into().map_err(|_| STATUS_INFO_LENGTH_MISMATCH)?;
        let request = Self {
            version: u32_at(bytes, 0),
            size: u32_at(bytes, 4),
            cookie: u64_at(bytes, 8),
            reserved: u64_at(bytes, 16),
        };
        if request.size != REQUEST_SIZE_FIELD {
            return Err(STATUS_INFO_LENGTH_MISMATCH);
        }
        if request.version != ABI_VERSION {
            return Err(STATUS_REVISION_MISMATCH);
        }
        if request.reserved != 0 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        Ok(request)
    }
}

impl PingResponse {
    /// The response to a ping carrying `cookie`, with the counts after it.
    #[must_use]
    pub const fn new(cookie: u64, handle_pings: u64, device_pings: u64) -> Self {
        Self {
            version: ABI_VERSION,
            size: RESPONSE_SIZE_FIELD,
            cookie,
            handle_pings,
            device_pings,
        }
    }

    /// Writes the byte form to the start of `output`; returns the bytes written.
    ///
    /// # Errors
    ///
    /// `STATUS_BUFFER_TOO_SMALL` if `output` is shorter than the response (nothing is
    /// written).
    pub fn encode(&self, output: &mut [u8]) -> Result<usize, NtStatus> {
        let Some(bytes) = output.get_mut(..PING_RESPONSE_SIZE) else {
            return Err(STATUS_BUFFER_TOO_SMALL);
        };
        bytes[0..4].copy_from_slice(&self.version.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.size.to_ne_bytes());
        bytes[8..16].copy_from_slice(&self.cookie.to_ne_bytes());
        bytes[16..24].copy_from_slice(&self.handle_pings.to_ne_bytes());
        bytes[24..32].copy_from_slice(&self.device_pings.to_ne_bytes());
        Ok(PING_RESPONSE_SIZE)
    }

    /// Reads a response (the app's side): `None` unless `output` is exactly one response
    /// with this version and size.
    #[must_use]
    pub fn decode(output: &[u8]) -> Option<Self> {
        let bytes: &[u8; PING_RESPONSE_SIZE] = output.try_into().ok()?;
        let u64_field = |at: usize| {
            let mut field = [0; 8];
            field.copy_from_slice(&bytes[at..at + 8]);
            u64::from_ne_bytes(field)
        };
        let u32_field = |at: usize| {
            let mut field = [0; 4];
            field.copy_from_slice(&bytes[at..at + 4]);
            u32::from_ne_bytes(field)
        };
        let response = Self {
            version: u32_field(0),
            size: u32_field(4),
            cookie: u64_field(8),
            handle_pings: u64_field(16),
            device_pings: u64_field(24),
        };
        (response.version == ABI_VERSION && response.size == RESPONSE_SIZE_FIELD)
            .then_some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_request_round_trips() {
        let request = PingRequest::new(0x0123_4567_89AB_CDEF);
        assert_eq!(PingRequest::decode(&request.to_bytes()), Ok(request));
    }

    #[test]
    fn each_fault_gets_its_status_in_table_order() {
        let valid = PingRequest::new(7);
        let bytes = valid.to_bytes();
        assert_eq!(
            PingRequest::decode(&bytes[..PING_REQUEST_SIZE - 1]),
            Err(STATUS_INFO_LENGTH_MISMATCH)
        );
        assert_eq!(PingRequest::decode(&[]), Err(STATUS_INFO_LENGTH_MISMATCH));
        let mut longer = [0; PING_REQUEST_SIZE + 1];
        longer[..PING_REQUEST_SIZE].copy_from_slice(&bytes);
        assert_eq!(
            PingRequest::decode(&longer),
            Err(STATUS_INFO_LENGTH_MISMATCH)
        );
        let with = |change: fn(&mut PingRequest)| {
            let mut request = valid;
            change(&mut request);
            PingRequest::decode(&request.to_bytes())
        };
        assert_eq!(with(|r| r.size = 16), Err(STATUS_INFO_LENGTH_MISMATCH));
        assert_eq!(with(|r| r.version = 2), Err(STATUS_REVISION_MISMATCH));
        assert_eq!(with(|r| r.reserved = 1), Err(STATUS_INVALID_PARAMETER));
        // Several faults: the first in table order wins.
        assert_eq!(
            with(|r| {
                r.version = 0;
                r.reserved = 1;
            }),
            Err(STATUS_REVISION_MISMATCH)
        );
    }

    #[test]
    fn a_response_needs_room_and_round_trips() {
        let response = PingResponse::new(9, 2, 5);
        assert_eq!(usize::try_from(response.size), Ok(PING_RESPONSE_SIZE));
        let mut short = [0; PING_RESPONSE_SIZE - 1];
        assert_eq!(response.encode(&mut short), Err(STATUS_BUFFER_TOO_SMALL));
        assert_eq!(short, [0; PING_RESPONSE_SIZE - 1], "nothing written");
        let mut output = [0xAA; PING_RESPONSE_SIZE + 8];
        assert_eq!(response.encode(&mut output), Ok(PING_RESPONSE_SIZE));
        assert_eq!(
            PingResponse::decode(&output[..PING_RESPONSE_SIZE]),
            Some(response)
        );
        assert_eq!(PingResponse::decode(&output), None, "a wrong length");
    }
}
