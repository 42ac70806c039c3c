//! Counted UTF-16 strings (`UNICODE_STRING`) for the object names the front end registers.

use windows_sys::Win32::Foundation::UNICODE_STRING;

/// The counted string describing `units` (UTF-16, no terminator). The kernel only reads
/// through `Buffer` (`IoCreateDevice` and `IoCreateSymbolicLink` copy the name), so pointing
/// it at a `static` is sound although the field is a `*mut`. Names longer than a
/// `UNICODE_STRING` can count (32,767 units) are cut to that length.
pub fn counted(units: &'static [u16]) -> UNICODE_STRING {
    let byte_length = u16::try_from(units.len().saturating_mul(2)).unwrap_or(u16::MAX - 1);
    UNICODE_STRING {
        Length: byte_length,
        MaximumLength: byte_length,
        Buffer: units.as_ptr().cast_mut(),
    }
}
