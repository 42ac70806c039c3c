//! Misuse of the safe kernel layer that must not compile (trybuild). Each case in `ui/`
//! has the compiler's expected diagnostic next to it.

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

#[test]
#[cfg_attr(
    miri,
    ignore = "trybuild runs rustc in a subprocess, which Miri cannot do"
)]
fn misuse_of_the_kernel_layer_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
