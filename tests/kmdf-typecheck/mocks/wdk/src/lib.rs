//! Stand-in for wdk 0.4.1: only `println!` (same expansion shape as the real macro).
#![no_std]

#[doc(hidden)]
pub fn _print(_args: core::fmt::Arguments) {}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        ($crate::_print(format_args!($($arg)*)))
    };
}
