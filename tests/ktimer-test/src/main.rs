//! `ktimer-test`: see the library crate and docs/TEST-APP.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(ktimer_test::app::main(std::env::args_os().skip(1)))
}
