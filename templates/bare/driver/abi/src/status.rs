//! The NTSTATUS values the driver completes requests with, and when. The table in
//! [`STATUS_NAMES`] is the one the app prints names from.

/// An `NTSTATUS`: negative for errors.
pub type NtStatus = i32;

/// `0xC...` codes as the `i32` the kernel uses.
const fn nt(code: u32) -> NtStatus {
    NtStatus::from_ne_bytes(code.to_ne_bytes())
}

/// The request succeeded.
pub const STATUS_SUCCESS: NtStatus = 0;
/// The request's size field, or the input's length, is not the request's size.
pub const STATUS_INFO_LENGTH_MISMATCH: NtStatus = nt(0xC000_0004);
/// The handle has no driver state (its open failed or it is closing).
pub const STATUS_INVALID_HANDLE: NtStatus = nt(0xC000_0008);
/// A reserved field is not zero.
pub const STATUS_INVALID_PARAMETER: NtStatus = nt(0xC000_000D);
/// The IOCTL code is not one of this driver's.
pub const STATUS_INVALID_DEVICE_REQUEST: NtStatus = nt(0xC000_0010);
/// The output buffer is shorter than the response.
pub const STATUS_BUFFER_TOO_SMALL: NtStatus = nt(0xC000_0023);
/// The request's version is not [`crate::ABI_VERSION`].
pub const STATUS_REVISION_MISMATCH: NtStatus = nt(0xC000_0059);
/// No memory for the handle's state (open).
pub const STATUS_INSUFFICIENT_RESOURCES: NtStatus = nt(0xC000_009A);

/// Every status above with its name.
pub const STATUS_NAMES: [(NtStatus, &str); 8] = [
    (STATUS_SUCCESS, "STATUS_SUCCESS"),
    (STATUS_INFO_LENGTH_MISMATCH, "STATUS_INFO_LENGTH_MISMATCH"),
    (STATUS_INVALID_HANDLE, "STATUS_INVALID_HANDLE"),
    (STATUS_INVALID_PARAMETER, "STATUS_INVALID_PARAMETER"),
    (
        STATUS_INVALID_DEVICE_REQUEST,
        "STATUS_INVALID_DEVICE_REQUEST",
    ),
    (STATUS_BUFFER_TOO_SMALL, "STATUS_BUFFER_TOO_SMALL"),
    (STATUS_REVISION_MISMATCH, "STATUS_REVISION_MISMATCH"),
    (
        STATUS_INSUFFICIENT_RESOURCES,
        "STATUS_INSUFFICIENT_RESOURCES",
    ),
];

/// `NT_SUCCESS`: success and informational statuses (the top bit clear).
#[must_use]
pub const fn nt_success(status: NtStatus) -> bool {
    status >= 0
}

/// The name of `status`, if it is one of [`STATUS_NAMES`].
#[must_use]
pub fn status_name(status: NtStatus) -> Option<&'static str> {
    STATUS_NAMES
        .iter()
        .find(|(value, _)| *value == status)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_errors_and_names_are_unique() {
        for (status, name) in STATUS_NAMES {
            assert_eq!(nt_success(status), status == STATUS_SUCCESS, "{name}");
            assert_eq!(status_name(status), Some(name));
        }
        assert_eq!(STATUS_INVALID_DEVICE_REQUEST.cast_unsigned(), 0xC000_0010);
        assert_eq!(status_name(1), None);
    }
}
