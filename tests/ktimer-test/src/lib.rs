//! ktimer-test, the companion app of the ktimer driver: drives the driver's IOCTLs through
//! a set of scenarios and reports pass/fail, expiration counts and lateness per scenario.
//!
//! Two backends, one set of scenarios ([`device::Device`]): the installed device on Windows
//! (`windows` module, `windows-sys`), and `--sim`, the driver's timer service in-process on
//! the kernel simulator (`sim` module; Linux and WSL only: on a Windows host the app does not
//! depend on the driver, whose Windows build is the KMDF driver itself). Scenarios let time
//! pass only through a [`clock::Clock`], so `cargo test` runs every one of them in
//! deterministic virtual time.

pub mod app;
pub mod cli;
pub mod client;
pub mod clock;
pub mod device;
pub mod install;
pub mod json;
pub mod report;
pub mod scenario;
#[cfg(not(windows))]
pub mod sim;
pub mod stats;
pub mod user_timer;
#[cfg(windows)]
pub mod windows;
