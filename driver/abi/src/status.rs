//! The NTSTATUS values the driver completes requests with, and when. User mode sees them as
//! the `Win32` error `DeviceIoControl` reports (the I/O manager maps NTSTATUS to `GetLastError`
//! values, e.g. `STATUS_INVALID_PARAMETER` to `ERROR_INVALID_PARAMETER`); the simulator host
//! returns them unmapped.
//!
//! For every IOCTL the checks run in this order, and the first failure is returned: unknown
//! code; input too short for a header; ABI version; input length; field values; output
//! length; then the operation itself (ids, limits). A failed request changes nothing.

/// An NTSTATUS value (`NTSTATUS` is a signed 32-bit integer).
pub type NtStatus = i32;

/// Bit pattern of an NTSTATUS written as the hexadecimal `u32` of the headers.
const fn nt(value: u32) -> NtStatus {
    i32::from_ne_bytes(value.to_ne_bytes())
}

/// The request succeeded; the output holds the response.
pub const STATUS_SUCCESS: NtStatus = 0;
/// A wait request was pended: it completes later with records, or with
/// [`STATUS_CANCELLED`]. Returned by the dispatch entry to the front end, which then leaves
/// the request pending; user mode sees `ERROR_IO_PENDING` on an overlapped handle.
pub const STATUS_PENDING: NtStatus = 0x0000_0103;
/// The input length is not the request's size, or the header's size field disagrees with it
/// (an oversized buffer), or an IOCTL that takes no input got some.
pub const STATUS_INFO_LENGTH_MISMATCH: NtStatus = nt(0xC000_0004);
/// The timer id is not one this handle created (another handle's id, or never issued).
pub const STATUS_INVALID_HANDLE: NtStatus = nt(0xC000_0008);
/// A field is out of range: unknown timer type or mode, unknown flag bits, a non-zero
/// reserved field, a zero, negative or below-minimum period, a period given to a one-shot
/// timer, an out-of-range due time or tolerable delay, a flag combination the kernel rejects
/// (high resolution with an absolute due time or a tolerable delay), or a wait asking for more
/// records than the ring holds.
pub const STATUS_INVALID_PARAMETER: NtStatus = nt(0xC000_000D);
/// The IOCTL code is not one of this ABI's.
pub const STATUS_INVALID_DEVICE_REQUEST: NtStatus = nt(0xC000_0010);
/// The input is shorter than the request, or the output shorter than the response (for a
/// wait: than the response header plus one record).
pub const STATUS_BUFFER_TOO_SMALL: NtStatus = nt(0xC000_0023);
/// A per-handle limit was reached: live timers, or pending waits.
pub const STATUS_QUOTA_EXCEEDED: NtStatus = nt(0xC000_0044);
/// The request's header carries another ABI version than [`crate::ABI_VERSION`].
pub const STATUS_REVISION_MISMATCH: NtStatus = nt(0xC000_0059);
/// Pool allocation failed while opening a handle or creating a timer, or no more handles
/// or timer ids can be issued without reusing one.
pub const STATUS_INSUFFICIENT_RESOURCES: NtStatus = nt(0xC000_009A);
/// A pending wait was cancelled: by `CancelIoEx`/`CancelIo`, by closing its handle, or by
/// the driver unloading.
pub const STATUS_CANCELLED: NtStatus = nt(0xC000_0120);
/// The timer id was issued by this handle but that timer has been closed (a stale id).
pub const STATUS_NOT_FOUND: NtStatus = nt(0xC000_0225);

/// The symbolic name of a status this ABI uses, for reports.
#[must_use]
pub const fn name_of(status: NtStatus) -> Option<&'static str> {
    match status {
        STATUS_SUCCESS => Some("STATUS_SUCCESS"),
        STATUS_PENDING => Some("STATUS_PENDING"),
        STATUS_INFO_LENGTH_MISMATCH => Some("STATUS_INFO_LENGTH_MISMATCH"),
        STATUS_INVALID_HANDLE => Some("STATUS_INVALID_HANDLE"),
        STATUS_INVALID_PARAMETER => Some("STATUS_INVALID_PARAMETER"),
        STATUS_INVALID_DEVICE_REQUEST => Some("STATUS_INVALID_DEVICE_REQUEST"),
        STATUS_BUFFER_TOO_SMALL => Some("STATUS_BUFFER_TOO_SMALL"),
        STATUS_QUOTA_EXCEEDED => Some("STATUS_QUOTA_EXCEEDED"),
        STATUS_REVISION_MISMATCH => Some("STATUS_REVISION_MISMATCH"),
        STATUS_INSUFFICIENT_RESOURCES => Some("STATUS_INSUFFICIENT_RESOURCES"),
        STATUS_CANCELLED => Some("STATUS_CANCELLED"),
        STATUS_NOT_FOUND => Some("STATUS_NOT_FOUND"),
        _ => None,
    }
}

/// Every status this ABI documents.
pub const ALL_STATUSES: [NtStatus; 12] = [
    STATUS_SUCCESS,
    STATUS_PENDING,
    STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_BUFFER_TOO_SMALL,
    STATUS_QUOTA_EXCEEDED,
    STATUS_REVISION_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_CANCELLED,
    STATUS_NOT_FOUND,
];

/// `NT_SUCCESS`: success and informational values are non-negative.
#[must_use]
pub const fn nt_success(status: NtStatus) -> bool {
    status >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_ntstatus_h() {
        assert_eq!(STATUS_INVALID_PARAMETER.cast_unsigned(), 0xC000_000D);
        assert_eq!(STATUS_CANCELLED.cast_unsigned(), 0xC000_0120);
        assert_eq!(STATUS_NOT_FOUND.cast_unsigned(), 0xC000_0225);
        assert!(nt_success(STATUS_PENDING));
        assert!(!nt_success(STATUS_BUFFER_TOO_SMALL));
    }

    #[test]
    fn every_status_has_a_distinct_name() {
        for (i, status) in ALL_STATUSES.iter().enumerate() {
            assert!(name_of(*status).is_some());
            assert!(!ALL_STATUSES[i + 1..].contains(status));
        }
    }
}
