//! The driver package's build script: on a Windows host, for a Windows target, wdk-build
//! configures the kernel-mode link of `ktimer.sys`. What to do is decided by
//! `ktimer_build_plan::plan` from the values Cargo passes (the target, never the profile),
//! a function whose every row is unit-tested on Linux (driver/build-plan); only the call into
//! wdk-build itself needs a Windows host.

use ktimer_build_plan::{BuildEnv, Plan, TYPE_CHECK_ONLY_WARNING, plan};

fn main() {
    let env = BuildEnv::from_cargo(|key| std::env::var(key).ok(), cfg!(windows));
    match plan(&env) {
        Ok(Plan::NothingToLink) => {}
        Ok(Plan::TypeCheckOnly) => println!("cargo::warning={TYPE_CHECK_ONLY_WARNING}"),
        Ok(Plan::KernelDriver) => configure_kernel_link(),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}

/// `/DRIVER`, `/SUBSYSTEM:NATIVE`, `/ENTRY:FxDriverEntry`, the WDK library paths, ...: the
/// link arguments wdk-build derives from the workspace's `[workspace.metadata.wdk]`.
#[cfg(windows)]
fn configure_kernel_link() {
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        eprintln!("ktimer: wdk-build could not configure the kernel-mode link: {error:?}");
        std::process::exit(1);
    }
}

/// The plan never asks for the kernel link off a Windows host (`Plan::TypeCheckOnly`).
#[cfg(not(windows))]
fn configure_kernel_link() {
    unreachable!("ktimer_build_plan::plan chose the kernel link on a non-Windows host");
}
