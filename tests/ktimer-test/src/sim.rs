//! The `--sim` backend: the driver's timer service in-process on the kernel simulator.
//! Waiting for the driver's host API (`ktimer::host`).

use crate::app::Backend;
use crate::device::OpenError;

/// The simulator on its real-time clock.
///
/// # Errors
/// Not available yet.
pub fn real_time_backend() -> Result<Backend, OpenError> {
    Err(OpenError::Failed(
        "the simulator backend is not available in this build".to_owned(),
    ))
}
