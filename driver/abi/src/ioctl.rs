//! IOCTL codes, built exactly like the Windows SDK's `CTL_CODE` macro.
//!
//! `CTL_CODE(DeviceType, Function, Method, Access) =
//!  (DeviceType << 16) | (Access << 14) | (Function << 2) | Method`.
//! The device type is in the vendor range (0x8000 and up) and the function numbers in the
//! vendor range (0x800 and up). Every code uses `METHOD_BUFFERED`: the I/O manager copies the
//! input into one system buffer and copies the output back from the same buffer, so the driver
//! never touches user addresses. Codes that change driver state require read and write access
//! to the handle; codes that only observe require read access.

/// `METHOD_BUFFERED` (the only transfer method this driver uses).
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_ANY_ACCESS`.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_DATA` (the access bit `CTL_CODE` calls `FILE_READ_ACCESS`).
pub const FILE_READ_DATA: u32 = 0x0001;
/// `FILE_WRITE_DATA` (the access bit `CTL_CODE` calls `FILE_WRITE_ACCESS`).
pub const FILE_WRITE_DATA: u32 = 0x0002;

/// The ktimer device type, in the vendor range 0x8000..=0xFFFF.
pub const FILE_DEVICE_KTIMER: u32 = 0x8A7E;

/// The SDK's `CTL_CODE` as a `const fn`. Fields wider than their bit ranges are masked
/// (device type 16 bits, access 2 bits, function 12 bits, method 2 bits), as the macro's
/// result would be truncated by the 32-bit `DWORD` anyway.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    ((device_type & 0xFFFF) << 16)
        | ((access & 0x3) << 14)
        | ((function & 0xFFF) << 2)
        | (method & 0x3)
}

/// The device type field of an IOCTL code (`DEVICE_TYPE_FROM_CTL_CODE`).
#[must_use]
pub const fn device_type_of(code: u32) -> u32 {
    code >> 16
}

/// The function field of an IOCTL code.
#[must_use]
pub const fn function_of(code: u32) -> u32 {
    (code >> 2) & 0xFFF
}

/// The transfer method field of an IOCTL code (`METHOD_FROM_CTL_CODE`).
#[must_use]
pub const fn method_of(code: u32) -> u32 {
    code & 0x3
}

/// The required-access field of an IOCTL code.
#[must_use]
pub const fn access_of(code: u32) -> u32 {
    (code >> 14) & 0x3
}

const READ: u32 = FILE_READ_DATA;
const READ_WRITE: u32 = FILE_READ_DATA | FILE_WRITE_DATA;

/// Driver and ABI versions, clock increment and limits. No input; output
/// [`crate::InfoResponse`].
pub const IOCTL_KTIMER_GET_INFO: u32 = ctl_code(FILE_DEVICE_KTIMER, 0x800, METHOD_BUFFERED, READ);
/// Create and arm a timer owned by the calling handle. Input [`crate::CreateRequest`];
/// output [`crate::CreateResponse`].
pub const IOCTL_KTIMER_CREATE: u32 =
    ctl_code(FILE_DEVICE_KTIMER, 0x801, METHOD_BUFFERED, READ_WRITE);
/// Re-arm a timer with a new schedule. Input [`crate::SetRequest`]; output
/// [`crate::ArmResponse`].
pub const IOCTL_KTIMER_SET: u32 = ctl_code(FILE_DEVICE_KTIMER, 0x802, METHOD_BUFFERED, READ_WRITE);
/// Cancel a timer (it stays allocated and can be re-armed). Input [`crate::TimerRequest`];
/// output [`crate::ArmResponse`].
pub const IOCTL_KTIMER_CANCEL: u32 =
    ctl_code(FILE_DEVICE_KTIMER, 0x803, METHOD_BUFFERED, READ_WRITE);
/// Read a timer's state and statistics. Input [`crate::TimerRequest`]; output
/// [`crate::QueryResponse`].
pub const IOCTL_KTIMER_QUERY: u32 = ctl_code(FILE_DEVICE_KTIMER, 0x804, METHOD_BUFFERED, READ);
/// Wait for expiry records of the calling handle's timers. Input [`crate::WaitRequest`];
/// output [`crate::WaitResponse`] followed by records. Pended until enough records are ready.
pub const IOCTL_KTIMER_WAIT: u32 = ctl_code(FILE_DEVICE_KTIMER, 0x805, METHOD_BUFFERED, READ);
/// Cancel and destroy a timer; its id becomes stale. Input [`crate::TimerRequest`]; no output.
pub const IOCTL_KTIMER_CLOSE: u32 =
    ctl_code(FILE_DEVICE_KTIMER, 0x806, METHOD_BUFFERED, READ_WRITE);

/// Every code this ABI defines, for tests and tools.
pub const ALL_CODES: [u32; 7] = [
    IOCTL_KTIMER_GET_INFO,
    IOCTL_KTIMER_CREATE,
    IOCTL_KTIMER_SET,
    IOCTL_KTIMER_CANCEL,
    IOCTL_KTIMER_QUERY,
    IOCTL_KTIMER_WAIT,
    IOCTL_KTIMER_CLOSE,
];

/// The name of an IOCTL code of this ABI, for reports; `None` for any other code.
#[must_use]
pub const fn name_of(code: u32) -> Option<&'static str> {
    match code {
        IOCTL_KTIMER_GET_INFO => Some("IOCTL_KTIMER_GET_INFO"),
        IOCTL_KTIMER_CREATE => Some("IOCTL_KTIMER_CREATE"),
        IOCTL_KTIMER_SET => Some("IOCTL_KTIMER_SET"),
        IOCTL_KTIMER_CANCEL => Some("IOCTL_KTIMER_CANCEL"),
        IOCTL_KTIMER_QUERY => Some("IOCTL_KTIMER_QUERY"),
        IOCTL_KTIMER_WAIT => Some("IOCTL_KTIMER_WAIT"),
        IOCTL_KTIMER_CLOSE => Some("IOCTL_KTIMER_CLOSE"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_code_matches_the_sdk_formula_on_known_values() {
        // IOCTL_DISK_GET_DRIVE_GEOMETRY = CTL_CODE(0x7, 0, METHOD_BUFFERED, FILE_ANY_ACCESS).
        assert_eq!(
            ctl_code(0x7, 0, METHOD_BUFFERED, FILE_ANY_ACCESS),
            0x0007_0000
        );
        // FSCTL_LOCK_VOLUME = CTL_CODE(0x9, 6, METHOD_BUFFERED, FILE_ANY_ACCESS).
        assert_eq!(
            ctl_code(0x9, 6, METHOD_BUFFERED, FILE_ANY_ACCESS),
            0x0009_0018
        );
        // IOCTL_STORAGE_EJECT_MEDIA = CTL_CODE(0x2d, 0x202, METHOD_BUFFERED, FILE_READ_ACCESS).
        assert_eq!(
            ctl_code(0x2D, 0x202, METHOD_BUFFERED, FILE_READ_DATA),
            0x002D_4808
        );
    }

    #[test]
    fn codes_decompose_into_their_fields() {
        for code in ALL_CODES {
            assert_eq!(device_type_of(code), FILE_DEVICE_KTIMER);
            assert_eq!(method_of(code), METHOD_BUFFERED);
            assert!(function_of(code) >= 0x800);
            assert!(name_of(code).is_some());
        }
        assert_eq!(
            access_of(IOCTL_KTIMER_CREATE),
            FILE_READ_DATA | FILE_WRITE_DATA
        );
        assert_eq!(access_of(IOCTL_KTIMER_QUERY), FILE_READ_DATA);
        assert_eq!(name_of(0x1234), None);
    }

    #[test]
    fn codes_are_the_values_protocol_md_documents() {
        assert_eq!(IOCTL_KTIMER_GET_INFO, 0x8A7E_6000);
        assert_eq!(IOCTL_KTIMER_CREATE, 0x8A7E_E004);
        assert_eq!(IOCTL_KTIMER_SET, 0x8A7E_E008);
        assert_eq!(IOCTL_KTIMER_CANCEL, 0x8A7E_E00C);
        assert_eq!(IOCTL_KTIMER_QUERY, 0x8A7E_6010);
        assert_eq!(IOCTL_KTIMER_WAIT, 0x8A7E_6014);
        assert_eq!(IOCTL_KTIMER_CLOSE, 0x8A7E_E018);
    }

    #[test]
    fn codes_are_distinct() {
        for (i, a) in ALL_CODES.iter().enumerate() {
            for b in &ALL_CODES[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
