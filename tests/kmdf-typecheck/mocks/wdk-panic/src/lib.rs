//! Stand-in for wdk-panic 0.4.1, without its `#[panic_handler]`: the checked crate links
//! std through the driver's simulator binding, which brings its own.
#![no_std]
