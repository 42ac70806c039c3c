//! `ktimer-test`: see the library crate and docs/TEST-APP.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = ktimer_test::app::main(
        std::env::args_os().skip(1),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
