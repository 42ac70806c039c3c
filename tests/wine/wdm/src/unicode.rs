//! Counted UTF-16 strings (`UNICODE_STRING`) for the object names the front end registers,
//! built at compile time from ASCII text.

use windows_sys::Win32::Foundation::UNICODE_STRING;

/// An ASCII name encoded as UTF-16 at compile time, `N` code units long (no terminator: a
/// `UNICODE_STRING` is counted).
pub struct StaticUnicode<const N: usize> {
    units: [u16; N],
}

impl<const N: usize> StaticUnicode<N> {
    /// Encodes `text`. Meant for `static`s: a non-ASCII text, a length other than `N` or one
    /// too long for a `UNICODE_STRING` stops the build (const evaluation), never the driver.
    pub const fn from_ascii(text: &str) -> Self {
        let bytes = text.as_bytes();
        assert!(
            bytes.len() == N,
            "StaticUnicode: N must be the text's length"
        );
        assert!(
            N * 2 <= u16::MAX as usize,
            "StaticUnicode: too long for a UNICODE_STRING"
        );
        let mut units = [0u16; N];
        let mut index = 0;
        while index < N {
            assert!(bytes[index].is_ascii(), "StaticUnicode: ASCII text only");
            units[index] = bytes[index] as u16;
            index += 1;
        }
        Self { units }
    }

    /// The counted string describing this name. The kernel only reads through `Buffer`
    /// (`IoCreateDevice` and `IoCreateSymbolicLink` copy the name), so pointing it at a
    /// `static` is sound although the field is a `*mut`.
    pub fn as_unicode_string(&'static self) -> UNICODE_STRING {
        // Checked in `from_ascii`: N * 2 fits a u16.
        let byte_length = u16::try_from(N * 2).unwrap_or(u16::MAX);
        UNICODE_STRING {
            Length: byte_length,
            MaximumLength: byte_length,
            Buffer: self.units.as_ptr().cast_mut(),
        }
    }
}
