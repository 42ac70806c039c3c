//! Entry of `cargo bench -p ktimer-bench`. The benchmarks (`ktimer.rs`) run the driver on the
//! kernel simulator, which the driver has only off Windows (driver/build.rs): on a Windows host
//! this program says so, so that workspace-wide commands at the root still build.

#[cfg(not(windows))]
#[path = "ktimer.rs"]
mod simulator;

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    simulator::main()
}

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    eprintln!(
        "ktimer-bench: the benchmarks run the driver on the kernel simulator, which exists \
         only off Windows: run `cargo bench -p ktimer-bench` on Linux or WSL"
    );
    std::process::ExitCode::FAILURE
}
