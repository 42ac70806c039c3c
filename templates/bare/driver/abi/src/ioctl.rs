//! IOCTL codes, built exactly like the Windows SDK's `CTL_CODE` macro:
//! `(DeviceType << 16) | (Access << 14) | (Function << 2) | Method`.
//!
//! The device type is in the vendor range (0x8000 and up), the function numbers in the
//! vendor range (0x800 and up). Every code uses `METHOD_BUFFERED`, the only method the
//! KMDF shell gives buffers to: the I/O manager copies the input into one system buffer and
//! the output back from it, so the driver never touches user addresses.

/// `METHOD_BUFFERED`.
pub const METHOD_BUFFERED: u32 = 0;
/// `METHOD_NEITHER` (never used by this driver; the app sends it to see it refused).
pub const METHOD_NEITHER: u32 = 3;
/// `FILE_ANY_ACCESS`.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_DATA` (the access bit `CTL_CODE` calls `FILE_READ_ACCESS`).
pub const FILE_READ_DATA: u32 = 0x0001;

/// The ktimer device type, in the vendor range 0x8000..=0xFFFF.
pub const FILE_DEVICE_KTIMER: u32 = 0x8A7E;

const _: () = assert!(FILE_DEVICE_KTIMER >= 0x8000 && FILE_DEVICE_KTIMER <= 0xFFFF);

/// The SDK's `CTL_CODE` as a `const fn`; fields wider than their bit ranges are masked, as
/// the macro's 32-bit result would truncate them.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    ((device_type & 0xFFFF) << 16)
        | ((access & 0x3) << 14)
        | ((function & 0xFFF) << 2)
        | (method & 0x3)
}

/// Ping: echoes the request's cookie and reports how many pings the handle and the device
/// have answered ([`crate::ping`]). Only observes, so read access is enough.
pub const IOCTL_KTIMER_PING: u32 =
    ctl_code(FILE_DEVICE_KTIMER, 0x800, METHOD_BUFFERED, FILE_READ_DATA);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_built_like_ctl_code() {
        // CTL_CODE(0x8A7E, 0x800, METHOD_BUFFERED, FILE_READ_ACCESS), computed by hand from
        // the fields rather than by the function under test.
        let expected = (FILE_DEVICE_KTIMER << 16) | (1 << 14) | (0x800 << 2);
        assert_eq!(IOCTL_KTIMER_PING, expected);
        assert_eq!(IOCTL_KTIMER_PING & 0x3, METHOD_BUFFERED);
        // Masking: a function number beyond 12 bits cannot reach the access bits.
        assert_eq!(ctl_code(0, 0x1800, 0, 0), ctl_code(0, 0x800, 0, 0));
    }
}
