//! Links the front end as a kernel-mode image when it is built for a Windows target: native
//! subsystem, driver image, `DriverEntry` as the entry point, no C runtime (tests/wine/rt
//! supplies the few symbols one would). The linker itself (rust-lld in lld-link mode) is
//! chosen by tests/wine/run.sh.

fn main() {
    let target_windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if target_windows {
        for argument in [
            "/NODEFAULTLIB",
            "/SUBSYSTEM:NATIVE",
            "/DRIVER",
            "/ENTRY:DriverEntry",
        ] {
            println!("cargo::rustc-cdylib-link-arg={argument}");
        }
    }
}
