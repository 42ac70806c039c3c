//! Chooses which binding the seam (`src/kernel/sys.rs`) uses and, for the real driver,
//! lets wdk-build configure the kernel-mode link.
//!
//! | target      | features         | `ktimer_seam` | what is built                        |
//! |-------------|------------------|---------------|--------------------------------------|
//! | not Windows | any              | `sim`         | portable core on the kernel simulator |
//! | Windows     | `sim`            | `sim`         | same, for ktimer-test `--sim`         |
//! | Windows     | `kmdf` (default) | `wdk`         | the KMDF driver (`.sys`)              |
//!
//! `kmdf` and `sim` together on a Windows target mean a workspace-wide build unified the
//! driver's features with the companion app's: that would silently build a driver bound to
//! the simulator, so it is refused. Build one package at a time (`cargo make` does).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ktimer_seam, values(\"sim\", \"wdk\", \"windows_sys\"))");
    let target_windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    let sim = std::env::var_os("CARGO_FEATURE_SIM").is_some();
    let kmdf = std::env::var_os("CARGO_FEATURE_KMDF").is_some();

    let seam = if !target_windows || sim {
        assert!(
            !(target_windows && kmdf),
            "ktimer: features `kmdf` and `sim` were both enabled for a Windows target (a \
             workspace-wide build unified the driver with ktimer-test). Build the packages \
             one at a time: `cargo make` in the repository root, or `cargo build -p ktimer`."
        );
        "sim"
    } else if kmdf {
        "wdk"
    } else {
        panic!("ktimer: a Windows target needs feature `kmdf` (the driver) or `sim`");
    };
    println!("cargo::rustc-cfg=ktimer_seam=\"{seam}\"");

    #[cfg(all(windows, feature = "kmdf"))]
    if seam == "wdk" {
        if let Err(error) = wdk_build::configure_wdk_binary_build() {
            panic!("wdk-build could not configure the driver build: {error:?}");
        }
    }
}
