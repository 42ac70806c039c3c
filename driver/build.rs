//! Chooses which binding the seam (`src/kernel/sys.rs`) uses and, for the real driver,
//! lets wdk-build configure the kernel-mode link.
//!
//! | target      | features           | `ktimer_seam` | what is built                              |
//! |-------------|--------------------|---------------|--------------------------------------------|
//! | not Windows | any                | `sim`         | portable core on the kernel simulator       |
//! | Windows     | `sim`              | `sim`         | same, for ktimer-test `--sim`               |
//! | Windows     | `kmdf` (default)   | `wdk`         | the KMDF driver (`.sys`)                    |
//! | Windows     | `wdm-windows-sys`  | `windows_sys` | portable core for the Wine WDM front end    |
//!
//! `windows_sys` is a test binding (docs/WINE.md): the `.sys` is `tests/wine/wdm`'s, which
//! links this crate's rlib. Cargo still links this package's `cdylib` for every dependent;
//! in that binding it is an unused by-product (tests/wine/rt lets it link). Link arguments
//! for it cannot be set here: Cargo passes a dependency's cdylib link arguments on to its
//! dependents' cdylibs, so they would reach the front end's `.sys` as well.
//!
//! Any two of `kmdf`, `sim` and `wdm-windows-sys` together on a Windows target mean a
//! workspace-wide build unified the features of several packages: that would silently build
//! a driver bound to the wrong kernel, so it is refused. Build one package at a time
//! (`cargo make` does; so does `tests/wine/run.sh`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ktimer_seam, values(\"sim\", \"wdk\", \"windows_sys\"))");
    let target_windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    let sim = std::env::var_os("CARGO_FEATURE_SIM").is_some();
    let kmdf = std::env::var_os("CARGO_FEATURE_KMDF").is_some();
    let windows_sys = std::env::var_os("CARGO_FEATURE_WDM_WINDOWS_SYS").is_some();

    assert!(
        !target_windows || usize::from(sim) + usize::from(kmdf) + usize::from(windows_sys) <= 1,
        "ktimer: features `kmdf`, `sim` and `wdm-windows-sys` exclude each other on a Windows \
         target (a workspace-wide build unified the driver with ktimer-test or the Wine front \
         end). Build the packages one at a time: `cargo make` in the repository root, \
         `cargo build -p ktimer`, or `bash tests/wine/run.sh`."
    );
    let seam = if !target_windows || sim {
        "sim"
    } else if kmdf {
        "wdk"
    } else if windows_sys {
        "windows_sys"
    } else {
        panic!(
            "ktimer: a Windows target needs feature `kmdf` (the driver), `sim` or \
             `wdm-windows-sys` (the Wine test front end)"
        );
    };
    println!("cargo::rustc-cfg=ktimer_seam=\"{seam}\"");

    #[cfg(all(windows, feature = "kmdf"))]
    if seam == "wdk" {
        if let Err(error) = wdk_build::configure_wdk_binary_build() {
            panic!("wdk-build could not configure the driver build: {error:?}");
        }
    }
}
