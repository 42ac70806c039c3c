//! libFuzzer target: one input is one IOCTL script on the simulator (see `ktimer_fuzz`).
//! `KTIMER_FUZZ_THREADED=1` runs it on the threaded simulator instead (the rate before
//! inline execution; see docs/EVIDENCE.md).
#![no_main]

use std::sync::OnceLock;

use ktimer_fuzz::Fuzzer;
use libfuzzer_sys::fuzz_target;

/// One simulated kernel for the whole process; every input proves it is left empty.
static FUZZER: OnceLock<Fuzzer> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let _outcome = FUZZER.get_or_init(Fuzzer::from_env).run(data);
});
