//! Tests: every scenario against the driver's service on the kernel simulator in virtual time:
//! deterministic (time moves only when a scenario lets it pass) and fast. Each test checks
//! the scenario passed with the exact counts virtual time makes certain, and that the
//! driver then unloads with no bug check and no leaked pool.
//!
//! The last tests tamper with what the driver returns (records dropped, a status changed, a
//! clock that lies) and check that the scenarios notice: a scenario that cannot fail would
//! prove nothing.

use std::time::Duration;

use crate::app::{Backend, Progress, run_scenarios};
use crate::device::{Device, Handle, IoFailure, OpenError, PendingRequest, Reply};
use crate::scenario::{self, Env, ScenarioResult};
use crate::sim::virtual_backend;
use crate::stats::Lateness;
use ktimer_abi::ExpiryRecord;
use ktimer_abi::codec::{WaitBatch, encode_wait_response, wait_response_len};
use ktimer_abi::ioctl::IOCTL_KTIMER_WAIT;
use ktimer_abi::status::{STATUS_INVALID_HANDLE, STATUS_NOT_FOUND};

/// The simulator's default tick (15.625 ms) in 100 ns units.
const TICK: i64 = 156_250;

fn backend() -> Backend {
    virtual_backend().expect("the simulated driver loads")
}

fn run_on(backend: &Backend, name: &str) -> ScenarioResult {
    let scenario = scenario::find(name).expect("scenario exists");
    let env = Env {
        device: backend.device.as_ref(),
        clock: backend.clock.as_ref(),
        user_timer: None,
        slack: Duration::ZERO,
        progress: &|_| {},
    };
    scenario::run_one(scenario, &env)
}

/// Runs `name` on a fresh simulated driver, checks it passed and that the driver unloads
/// cleanly, and returns its result.
fn passes(name: &str) -> ScenarioResult {
    let backend = backend();
    let result = run_on(&backend, name);
    assert!(result.passed, "{name} failed: {}", result.reason);
    let unload = backend
        .device
        .unload()
        .expect("the simulator checks unload");
    assert!(unload.is_ok(), "{name}: {unload:?}");
    result
}

fn counts(result: &ScenarioResult) -> (Option<u64>, Option<u64>) {
    (result.expected, result.observed)
}

/// The lateness a tick-driven timer has for each of `due_times` (100 ns, armed at interrupt
/// time 0, where a fresh simulated kernel starts): it fires on the first tick at or after
/// its due time. The scenarios' delays: 4 ticks rounded up to whole milliseconds = 63 ms.
fn tick_driven(due_times: impl IntoIterator<Item = i64>) -> Option<Lateness> {
    let samples: Vec<i64> = due_times
        .into_iter()
        .map(|due: i64| (TICK - due.rem_euclid(TICK)) % TICK)
        .collect();
    Lateness::of(&samples)
}

/// The base delay of the scenarios on a 15.625 ms tick: 62.5 ms rounded up to 63 ms.
const DELAY: i64 = 630_000;

#[test]
fn handshake() {
    let result = passes("handshake");
    assert!(result.reason.contains("ABI 1"), "{}", result.reason);
    assert!(
        result.reason.contains("tick 15.625 ms"),
        "{}",
        result.reason
    );
}

#[test]
fn one_shot_relative() {
    let result = passes("one-shot-relative");
    assert_eq!(counts(&result), (Some(1), Some(1)));
    // Due at 63 ms, fired on the tick at 78.125 ms.
    assert_eq!(result.lateness, tick_driven([DELAY]));
    assert_eq!(result.lateness.map(|lateness| lateness.max), Some(151_250));
}

#[test]
fn one_shot_absolute() {
    let result = passes("one-shot-absolute");
    assert_eq!(counts(&result), (Some(1), Some(1)));
    // The driver's system time + 63 ms: the same instant as the relative case.
    assert_eq!(result.lateness, tick_driven([DELAY]));
}

#[test]
fn periodic() {
    let result = passes("periodic");
    assert_eq!(counts(&result), (Some(25), Some(25)));
    // Period 32 ms (two ticks rounded up), expiration k due at k × 32 ms.
    assert_eq!(result.lateness, tick_driven((1..=25).map(|k| k * 320_000)));
    // No user-mode timer in virtual time: no comparison.
    assert!(result.comparison.is_none());
}

#[test]
fn cancel_before_expiry() {
    assert_eq!(counts(&passes("cancel-before-expiry")), (Some(0), Some(0)));
}

#[test]
fn cancel_periodic() {
    assert_eq!(counts(&passes("cancel-periodic")), (Some(0), Some(0)));
}

#[test]
fn re_arm() {
    assert_eq!(counts(&passes("re-arm")), (Some(2), Some(2)));
}

#[test]
fn signaled_state() {
    assert_eq!(counts(&passes("signaled-state")), (Some(2), Some(2)));
}

#[test]
fn coalescable() {
    let result = passes("coalescable");
    assert_eq!(counts(&result), (Some(1), Some(1)));
    // The simulator does not use the tolerable delay to move the expiry.
    assert_eq!(result.lateness, tick_driven([DELAY]));
}

#[test]
fn high_resolution() {
    let result = passes("high-resolution");
    assert_eq!(counts(&result), (Some(1), Some(1)));
    // Armed on a tick (virtual time starts at 0) and due half a tick after one: a
    // tick-driven timer would be half a tick late; this one fires at its due time.
    assert_eq!(result.lateness.map(|lateness| lateness.max), Some(0));
    assert_eq!(
        tick_driven([DELAY + TICK / 2]).map(|lateness| lateness.max),
        Some(73_125)
    );
}

#[test]
fn concurrent_thousand() {
    let result = passes("concurrent-1000");
    assert_eq!(counts(&result), (Some(1000), Some(1000)));
    // Due times spread evenly over [63 ms, 126 ms).
    assert_eq!(
        result.lateness,
        tick_driven((0..1000).map(|i| DELAY + DELAY * i / 1000))
    );
}

#[test]
fn batched_waits() {
    assert_eq!(counts(&passes("batched-waits")), (Some(8), Some(8)));
}

#[test]
fn overrun() {
    let result = passes("overrun");
    // 1,024 timers × 6 periods into a ring of 4,096.
    assert_eq!(counts(&result), (Some(6144), Some(6144)));
    assert!(
        result.reason.contains("4096 kept, 2048 dropped"),
        "{}",
        result.reason
    );
}

#[test]
fn handle_isolation() {
    passes("handle-isolation");
}

#[test]
fn close_with_pending_waits() {
    passes("close-with-pending-waits");
}

#[test]
fn bad_input() {
    let result = passes("bad-input");
    assert!(result.reason.starts_with("all "), "{}", result.reason);
}

#[test]
fn limits() {
    let result = passes("limits");
    assert!(result.reason.contains("1024 timers"), "{}", result.reason);
}

/// The whole program path (report included) on one simulated driver, every scenario.
#[test]
fn every_scenario_passes_in_one_run_and_the_report_says_so() {
    let backend = backend();
    let all: Vec<_> = scenario::all().iter().collect();
    let report = run_scenarios(&backend, &all, None, Duration::ZERO, &Progress::new(false));
    let failures: Vec<_> = report
        .results
        .iter()
        .filter(|result| !result.passed)
        .map(|result| format!("{}: {}", result.name, result.reason))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(report.results.len(), scenario::names().len());
    assert!(report.success());
    assert!(matches!(report.unload, Some(Ok(_))), "{:?}", report.unload);
    let json = report.to_json();
    let totals = format!(
        r#""success":true,"passed":{},"failed":0,"skipped":0,"#,
        scenario::all().len()
    );
    assert!(json.contains(&totals), "{json}");
}

// ---- the scenarios notice a misbehaving driver ----------------------------------------------

/// What a tampering wrapper does to the driver's answers.
#[derive(Clone, Copy)]
enum Tamper {
    /// Every wait completes with its records removed.
    DropRecords,
    /// Every record reports its timer two ticks later than it fired.
    LateByTwoTicks,
    /// `STATUS_NOT_FOUND` is reported as `STATUS_INVALID_HANDLE`.
    StaleAsForeign,
}

struct TamperDevice {
    inner: Box<dyn Device>,
    tamper: Tamper,
}

struct TamperHandle {
    inner: Box<dyn Handle>,
    tamper: Tamper,
}

struct TamperRequest {
    inner: Box<dyn PendingRequest>,
    tamper: Tamper,
    is_wait: bool,
}

impl Device for TamperDevice {
    fn open(&self) -> Result<Box<dyn Handle>, OpenError> {
        Ok(Box::new(TamperHandle {
            inner: self.inner.open()?,
            tamper: self.tamper,
        }))
    }

    fn describe(&self) -> String {
        "tampered".into()
    }

    fn unload(&self) -> Option<Result<String, String>> {
        self.inner.unload()
    }
}

fn tamper_failure(tamper: Tamper, failure: IoFailure) -> IoFailure {
    match (tamper, failure) {
        (Tamper::StaleAsForeign, IoFailure::Status(STATUS_NOT_FOUND)) => {
            IoFailure::Status(STATUS_INVALID_HANDLE)
        }
        _ => failure,
    }
}

impl Handle for TamperHandle {
    fn control(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoFailure> {
        self.inner
            .control(code, input, output)
            .map_err(|failure| tamper_failure(self.tamper, failure))
    }

    fn submit(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn PendingRequest>, IoFailure> {
        let inner = self.inner.submit(code, input, output_len)?;
        Ok(Box::new(TamperRequest {
            inner,
            tamper: self.tamper,
            is_wait: code == IOCTL_KTIMER_WAIT,
        }))
    }

    fn close(self: Box<Self>) {
        self.inner.close();
    }
}

impl PendingRequest for TamperRequest {
    fn wait(&mut self, timeout: Duration) -> Option<Reply> {
        let completion = self.inner.wait(timeout)?;
        Some(match (self.tamper, completion) {
            (Tamper::DropRecords | Tamper::LateByTwoTicks, Reply::Done(bytes)) if self.is_wait => {
                let batch = WaitBatch::decode(&bytes).expect("the driver's response decodes");
                let records: Vec<ExpiryRecord> = match self.tamper {
                    Tamper::LateByTwoTicks => batch
                        .records()
                        .map(|record| ExpiryRecord {
                            fire_time: record.fire_time + 2 * TICK,
                            lateness: record.lateness + 2 * TICK,
                            ..record
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let mut out = vec![0; wait_response_len(records.len().max(1)).expect("small")];
                let (_, written) =
                    encode_wait_response(batch.response.overruns, records.into_iter(), &mut out)
                        .expect("room for the records");
                out.truncate(written);
                Reply::Done(out)
            }
            (tamper, Reply::Failed(failure)) => Reply::Failed(tamper_failure(tamper, failure)),
            (_, done) => done,
        })
    }

    fn cancel(&self) {
        self.inner.cancel();
    }
}

fn run_tampered(name: &str, tamper: Tamper) -> ScenarioResult {
    let real = backend();
    let tampered = Backend {
        device: Box::new(TamperDevice {
            inner: real.device,
            tamper,
        }),
        clock: real.clock,
    };
    run_on(&tampered, name)
}

#[test]
fn lost_records_fail_the_one_shot_scenario() {
    let result = run_tampered("one-shot-relative", Tamper::DropRecords);
    assert!(!result.passed);
    assert_eq!(counts(&result), (Some(1), Some(0)));
    assert!(
        result.reason.contains("expected 1 expiration, got 0"),
        "{}",
        result.reason
    );
}

#[test]
fn lost_records_fail_the_periodic_scenario() {
    let result = run_tampered("periodic", Tamper::DropRecords);
    assert!(!result.passed);
    assert!(
        result.reason.contains("records cover 0 expirations"),
        "{}",
        result.reason
    );
}

#[test]
fn a_wrong_status_fails_the_bad_input_scenario() {
    let result = run_tampered("bad-input", Tamper::StaleAsForeign);
    assert!(!result.passed);
    assert!(result.reason.contains("stale id"), "{}", result.reason);
    assert!(
        result.reason.contains("STATUS_INVALID_HANDLE"),
        "{}",
        result.reason
    );
    assert!(
        result.reason.contains("instead of STATUS_NOT_FOUND"),
        "{}",
        result.reason
    );
}

#[test]
fn late_expirations_fail_the_tolerance_check() {
    let result = run_tampered("one-shot-relative", Tamper::LateByTwoTicks);
    assert!(!result.passed);
    assert_eq!(counts(&result), (Some(1), Some(1)));
    assert!(result.reason.contains("late, outside"), "{}", result.reason);
}
