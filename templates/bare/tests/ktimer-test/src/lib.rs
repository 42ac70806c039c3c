//! ktimer-test, the companion app of the ktimer driver: drives the driver's IOCTL through a
//! list of scenarios, each with exact expected statuses and values, and reports pass/fail as
//! text or JSON.
//!
//! What each module owns:
//! - [`device`]: the [`device::Device`] trait, the one way scenarios reach the driver.
//! - [`scenarios`]: the scenarios and their checks.
//! - [`report`]: the results, as text and as JSON.
//! - [`app`]: the command line, the choice of backend, the exit code.
//! - `sim` (not on Windows): the driver loaded in-process on the kernel simulator (`--sim`).
//! - `windows` (Windows only): the installed device through Win32.

pub mod app;
pub mod device;
pub mod report;
pub mod scenarios;
#[cfg(not(windows))]
pub mod sim;
#[cfg(windows)]
pub mod windows;
