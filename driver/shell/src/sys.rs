//! The seam's names the shell uses, KMDF and kernel, under one path.

#[cfg(not(windows))]
pub(crate) use ktimer_seam::kernel_instance;
pub(crate) use ktimer_seam::wdf::*;
pub(crate) use ktimer_seam::{PVOID, STATUS_SUCCESS};
