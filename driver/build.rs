//! Chooses which binding the seam (`src/kernel/sys.rs`) uses and, for the real driver,
//! lets wdk-build configure the kernel-mode link.
//!
//! The binding follows the **target**, not features that other packages could unify:
//!
//! | target      | features                      | `ktimer_seam` | what is built                            |
//! |-------------|-------------------------------|---------------|------------------------------------------|
//! | not Windows | any                           | `sim`         | portable core on the kernel simulator    |
//! | Windows     | `kmdf` (default)              | `wdk`         | the KMDF driver (`.sys`)                 |
//! | Windows     | `wdm-windows-sys`, no `kmdf`  | `windows_sys` | portable core for the Wine WDM front end |
//!
//! Nothing in the root workspace turns on `wdm-windows-sys`: only the Wine front end does, and
//! it is a workspace of its own (`tests/wine`, built by `tests/wine/run.sh`), so a
//! workspace-wide command at the root cannot bind the driver to two kernels. The simulator
//! consumers (ktimer-test's `--sim`, the fuzz harness, the benchmarks) depend on this crate
//! only off Windows, where the seam is always the simulator.
//!
//! `windows_sys` is a test binding (docs/WINE.md): the `.sys` is `tests/wine/wdm`'s, which
//! links this crate's rlib. Cargo still links this package's `cdylib` for every dependent;
//! in that binding it is an unused by-product (tests/wine/rt lets it link). Link arguments
//! for it cannot be set here: Cargo passes a dependency's cdylib link arguments on to its
//! dependents' cdylibs, so they would reach the front end's `.sys` as well.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ktimer_seam, values(\"sim\", \"wdk\", \"windows_sys\"))");
    let target_windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    let kmdf = std::env::var_os("CARGO_FEATURE_KMDF").is_some();
    let windows_sys = std::env::var_os("CARGO_FEATURE_WDM_WINDOWS_SYS").is_some();

    let seam = match (target_windows, kmdf, windows_sys) {
        (false, _, _) => "sim",
        (true, true, false) => "wdk",
        (true, false, true) => "windows_sys",
        (true, true, true) => panic!(
            "ktimer: features `kmdf` and `wdm-windows-sys` exclude each other on a Windows \
             target: the driver would be bound to two kernels. Only the Wine front end \
             (tests/wine, its own workspace) enables `wdm-windows-sys`, with \
             `default-features = false`; build it with `bash tests/wine/run.sh`, and the \
             driver with `cargo wdk build` or `cargo build -p ktimer`."
        ),
        (true, false, false) => panic!(
            "ktimer: a Windows target needs feature `kmdf` (the driver, on by default) or \
             `wdm-windows-sys` (the Wine test front end). The kernel simulator binding exists \
             only off Windows (Linux, WSL)."
        ),
    };
    println!("cargo::rustc-cfg=ktimer_seam=\"{seam}\"");

    #[cfg(all(windows, feature = "kmdf"))]
    if seam == "wdk" {
        if let Err(error) = configure_wdk_link() {
            panic!("wdk-build could not configure the driver build: {error:?}");
        }
    }
}

/// The kernel-mode link (entry point, subsystem, WDK library paths) for a driver build. A
/// panic=unwind build (test and bench profiles, as a dependency of test targets: never a
/// driver, see src/lib.rs) is a user-mode by-product: it gets only the WDK library paths, so
/// that wdk-sys' link directives resolve.
#[cfg(all(windows, feature = "kmdf"))]
fn configure_wdk_link() -> Result<(), wdk_build::ConfigError> {
    if std::env::var("CARGO_CFG_PANIC").is_ok_and(|panic| panic == "abort") {
        return wdk_build::configure_wdk_binary_build();
    }
    for path in wdk_build::Config::from_env_auto()?.library_paths()? {
        println!("cargo::rustc-link-search={}", path.display());
    }
    Ok(())
}
