//! The KMDF model: the framework a KMDF driver's callbacks run on, and the simulated I/O
//! and `PnP` managers that drive it ([`Framework`]). docs/SIMULATOR.md ("The KMDF model")
//! lists what is modelled, each rule's source, and what is not modelled.
//!
//! The DDIs are reached exactly as wdk-sys' are, through
//! [`call_unsafe_wdf_function_binding!`](crate::call_unsafe_wdf_function_binding); types
//! and constants are at the crate root like wdk-sys'.

mod ddi;
mod io;
mod model;
pub(crate) mod types;

#[doc(hidden)]
pub mod __ddi {
    //! The DDIs the `call_unsafe_wdf_function_binding!` macro calls.
    pub use super::ddi::*;
}

pub use io::{DeviceNode, DriverEntry, Framework, FrameworkConfig, Io, UserHandle};
pub use model::{Callback, CancelHold, Fault, IoOutcome};

/// Calls a KMDF DDI the way wdk-sys' macro of the same name does at the call site:
/// `call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status)`, inside an
/// `unsafe` block.
#[macro_export]
macro_rules! call_unsafe_wdf_function_binding {
    ($name:ident $(, $argument:expr)* $(,)?) => {
        $crate::wdf::__ddi::$name($($argument),*)
    };
}
