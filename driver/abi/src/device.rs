//! How user mode finds the device: the device interface GUID and the names.
//!
//! The KMDF shell registers [`DEVICE_INTERFACE_GUID`] with `WdfDeviceCreateDeviceInterface`
//! (the preferred way to find the device: `CM_Get_Device_Interface_List`) and also creates the
//! symbolic link [`SYMBOLIC_LINK_KERNEL`] to [`DEVICE_NAME_KERNEL`], which user mode opens as
//! [`DEVICE_PATH_USER`].

/// A GUID in the field layout of the Windows `GUID` structure (`windows_sys::core::GUID`
/// has the same fields; build one with `GUID { data1: g.data1, .. }` or
/// `GUID::from_u128(DEVICE_INTERFACE_GUID_U128)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct GuidFields {
    /// The first 8 hex digits.
    pub data1: u32,
    /// The next 4 hex digits.
    pub data2: u16,
    /// The next 4 hex digits.
    pub data3: u16,
    /// The last 16 hex digits, in textual order.
    pub data4: [u8; 8],
}

impl GuidFields {
    /// Splits the `u128` form (the GUID's text read as one big-endian number, as
    /// `GUID::from_u128` does) into fields.
    #[must_use]
    pub const fn from_u128(value: u128) -> Self {
        let b = value.to_be_bytes();
        Self {
            data1: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            data2: u16::from_be_bytes([b[4], b[5]]),
            data3: u16::from_be_bytes([b[6], b[7]]),
            data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }

    /// The inverse of [`GuidFields::from_u128`].
    #[must_use]
    pub const fn to_u128(self) -> u128 {
        ((self.data1 as u128) << 96)
            | ((self.data2 as u128) << 80)
            | ((self.data3 as u128) << 64)
            | (u64::from_be_bytes(self.data4) as u128)
    }
}

/// The device interface GUID `{E7A5882E-BD5A-4A1F-8C79-BBD912892923}` as one number.
pub const DEVICE_INTERFACE_GUID_U128: u128 = 0xE7A5_882E_BD5A_4A1F_8C79_BBD9_1289_2923;
/// The device interface GUID in `GUID` field form.
pub const DEVICE_INTERFACE_GUID: GuidFields = GuidFields::from_u128(DEVICE_INTERFACE_GUID_U128);
/// The device interface GUID as text (registry/INF form, with braces).
pub const DEVICE_INTERFACE_GUID_STR: &str = "{E7A5882E-BD5A-4A1F-8C79-BBD912892923}";

/// The kernel device object name.
pub const DEVICE_NAME_KERNEL: &str = "\\Device\\KTimer";
/// The symbolic link the driver creates (kernel namespace).
pub const SYMBOLIC_LINK_KERNEL: &str = "\\DosDevices\\KTimer";
/// The path user mode passes to `CreateFileW`.
pub const DEVICE_PATH_USER: &str = "\\\\.\\KTimer";

/// Who may open the device: SYSTEM and Administrators, full access; a protected DACL (SDDL).
/// The INX gives the device this descriptor (its hardware section's `Security`), and the
/// driver gives it to the named device object too, so neither path to the device is more
/// open than the other; a test keeps the two equal.
pub const DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// [`DEVICE_SDDL`] as UTF-16 without a terminator (for a `UNICODE_STRING`).
pub const DEVICE_SDDL_UTF16: [u16; DEVICE_SDDL.len()] = ascii_to_utf16(DEVICE_SDDL);

/// [`DEVICE_NAME_KERNEL`] as UTF-16 without a terminator (for a `UNICODE_STRING`).
pub const DEVICE_NAME_KERNEL_UTF16: [u16; DEVICE_NAME_KERNEL.len()] =
    ascii_to_utf16(DEVICE_NAME_KERNEL);
/// [`SYMBOLIC_LINK_KERNEL`] as UTF-16 without a terminator (for a `UNICODE_STRING`).
pub const SYMBOLIC_LINK_KERNEL_UTF16: [u16; SYMBOLIC_LINK_KERNEL.len()] =
    ascii_to_utf16(SYMBOLIC_LINK_KERNEL);
/// [`DEVICE_PATH_USER`] as NUL-terminated UTF-16 (for `CreateFileW`).
pub const DEVICE_PATH_USER_UTF16Z: [u16; DEVICE_PATH_USER.len() + 1] =
    ascii_to_utf16(DEVICE_PATH_USER);

/// Widens ASCII text to UTF-16 at compile time into an array of `N >= text.len()` code units;
/// the rest is zero (so `N = len + 1` gives a NUL-terminated string). Only used in constant
/// initialisers.
///
/// # Panics
/// On a non-ASCII byte or an `N` shorter than the text. In a constant initialiser that is a
/// build error, never a panic in a running program.
#[must_use]
pub const fn ascii_to_utf16<const N: usize>(text: &str) -> [u16; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() <= N, "array too short for the text");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii(), "only ASCII names are supported");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    //! Checked against the text forms rather than spelled out, so that a driver derived from
    //! this template (`cargo xtask derive`: new GUID, new names) keeps passing them.

    extern crate std;

    use super::*;
    use std::format;
    use std::vec::Vec;

    fn hex_field(text: &str) -> u64 {
        u64::from_str_radix(text, 16).expect("hex digits")
    }

    #[test]
    fn guid_fields_match_the_text_form() {
        let text = DEVICE_INTERFACE_GUID_STR;
        assert_eq!(text.len(), 38);
        assert!(text.starts_with('{') && text.ends_with('}'), "{text}");
        let groups: Vec<&str> = text[1..37].split('-').collect();
        assert_eq!(
            groups.iter().map(|group| group.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert_eq!(u64::from(DEVICE_INTERFACE_GUID.data1), hex_field(groups[0]));
        assert_eq!(u64::from(DEVICE_INTERFACE_GUID.data2), hex_field(groups[1]));
        assert_eq!(u64::from(DEVICE_INTERFACE_GUID.data3), hex_field(groups[2]));
        let data4 = (hex_field(groups[3]) << 48) | hex_field(groups[4]);
        assert_eq!(u64::from_be_bytes(DEVICE_INTERFACE_GUID.data4), data4);
        assert_eq!(DEVICE_INTERFACE_GUID.to_u128(), DEVICE_INTERFACE_GUID_U128);
    }

    #[test]
    fn the_inx_gives_the_device_the_same_security_descriptor() {
        let inx = include_str!("../../ktimer.inx");
        let security = format!("HKR,,Security,,\"{DEVICE_SDDL}\"");
        assert_eq!(inx.matches(&security).count(), 1, "{security}");
        assert_eq!(inx.matches("HKR,,Security,,").count(), 1);
        assert_eq!(
            DEVICE_SDDL_UTF16.to_vec(),
            DEVICE_SDDL.encode_utf16().collect::<Vec<_>>()
        );
    }

    #[test]
    fn names_widen_to_utf16() {
        let widened = |text: &str, terminator: bool| -> Vec<u16> {
            text.encode_utf16().chain(terminator.then_some(0)).collect()
        };
        assert_eq!(
            DEVICE_PATH_USER_UTF16Z.to_vec(),
            widened(DEVICE_PATH_USER, true)
        );
        assert_eq!(
            SYMBOLIC_LINK_KERNEL_UTF16.to_vec(),
            widened(SYMBOLIC_LINK_KERNEL, false)
        );
        assert_eq!(
            DEVICE_NAME_KERNEL_UTF16.to_vec(),
            widened(DEVICE_NAME_KERNEL, false)
        );
        // The three names are the one device's: kernel name, its link, the user path.
        let device = DEVICE_NAME_KERNEL.trim_start_matches("\\Device\\");
        assert!(!device.is_empty() && !device.contains('\\'), "{device}");
        assert_eq!(SYMBOLIC_LINK_KERNEL, format!("\\DosDevices\\{device}"));
        assert_eq!(DEVICE_PATH_USER, format!("\\\\.\\{device}"));
        assert_eq!(
            ascii_to_utf16::<3>("ab"),
            [u16::from(b'a'), u16::from(b'b'), 0]
        );
    }
}
