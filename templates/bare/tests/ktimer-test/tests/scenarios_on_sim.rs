//! The scenarios against the driver on the simulator: all pass; and against the same driver
//! behind a fake that answers wrongly, exactly the scenarios that check the wrong answer
//! fail (so the checks can fail).

// The simulator backend exists only off Windows.
#![cfg(not(windows))]

use ktimer_abi::ABI_VERSION;
use ktimer_abi::ping::{PingRequest, PingResponse};
use ktimer_abi::status::{NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_PARAMETER};
use ktimer_test::app::{self, EXIT_FAILED, EXIT_PASSED, Options};
use ktimer_test::device::{Device, Handle};
use ktimer_test::report::Report;
use ktimer_test::scenarios;
use ktimer_test::sim::SimDevice;

type Reply = Result<Vec<u8>, NtStatus>;

/// The simulated driver with its replies rewritten by `fault` (given the input and the
/// real reply).
struct Faulty {
    inner: SimDevice,
    fault: fn(&[u8], Reply) -> Reply,
}

impl Device for Faulty {
    fn backend(&self) -> String {
        format!("faulty {}", self.inner.backend())
    }
    fn pings_before(&self) -> Option<u64> {
        self.inner.pings_before()
    }
    fn open(&mut self) -> Result<Handle, String> {
        self.inner.open()
    }
    fn control(&mut self, handle: Handle, code: u32, input: &[u8], output_len: usize) -> Reply {
        (self.fault)(input, self.inner.control(handle, code, input, output_len))
    }
    fn close(&mut self, handle: Handle) {
        self.inner.close(handle);
    }
    fn finish(&mut self) -> Option<Result<String, String>> {
        self.inner.finish()
    }
}

fn failed(report: &Report) -> Vec<&str> {
    let failed = report.entries.iter().filter(|entry| !entry.passed);
    failed.map(|entry| entry.name.as_str()).collect()
}

fn run_faulty(fault: fn(&[u8], Reply) -> Reply) -> Report {
    let inner = SimDevice::load().expect("the driver loads");
    app::run(&mut Faulty { inner, fault })
}

/// A successful reply with its response changed by `change`.
fn changed(reply: Reply, change: fn(&mut PingResponse)) -> Reply {
    let mut response = PingResponse::decode(&reply?).expect("a valid response");
    change(&mut response);
    let mut bytes = vec![0; 32];
    response.encode(&mut bytes).unwrap();
    Ok(bytes)
}

#[test]
fn every_scenario_passes_on_the_simulated_driver() {
    let report = app::run(&mut SimDevice::load().expect("the driver loads"));
    assert_eq!(failed(&report), Vec::<&str>::new(), "{}", report.to_text());
    // Every scenario, then the unload.
    assert_eq!(report.entries.len(), scenarios::SCENARIOS.len() + 1);
    assert_eq!(report.entries.last().unwrap().name, "unload");
    let ping = &report.entries[0];
    assert_eq!(ping.detail, "cookie echoed; handle 1, device 1");
    assert!(report.backend.starts_with("simulator"));
}

#[test]
fn the_app_reports_as_text_and_json() {
    let run = |args: &[&str]| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = app::main(args.iter().copied(), &mut out, &mut err);
        let text = |bytes| String::from_utf8(bytes).unwrap();
        (code, text(out), text(err))
    };
    let total = scenarios::SCENARIOS.len() + 1;
    let (code, text, err) = run(&["--sim"]);
    assert_eq!((code, err.as_str()), (EXIT_PASSED, ""));
    assert!(
        text.contains(&format!("\n{total} passed, 0 failed\n")),
        "{text}"
    );
    assert!(text.lines().all(|line| !line.starts_with("FAIL")), "{text}");
    let (code, json, err) = run(&["--sim", "--json", "--quiet"]);
    assert_eq!((code, err.as_str()), (EXIT_PASSED, ""));
    assert!(
        json.starts_with("{\"driver\":\"ktimer\",\"backend\":\"simulator"),
        "{json}"
    );
    assert!(
        json.ends_with(&format!("],\"passed\":{total},\"failed\":0}}\n")),
        "{json}"
    );
    assert_eq!(json.lines().count(), 1);
    // --json without --quiet: the text goes to stderr, stdout stays one JSON document.
    let (_, json, text) = run(&["--json", "--sim"]);
    assert!(json.starts_with('{') && text.contains("passed, 0 failed"));
}

#[test]
fn a_driver_accepting_a_bad_version_fails_those_scenarios() {
    let report = run_faulty(|input, reply| {
        if input.len() != 24 || input[..4] == ABI_VERSION.to_ne_bytes() {
            return reply;
        }
        // A response as if the request had been answered.
        let response = PingResponse {
            version: ABI_VERSION,
            size: 32,
            ..Default::default()
        };
        let mut bytes = vec![0; 32];
        response.encode(&mut bytes).unwrap();
        Ok(bytes)
    });
    assert_eq!(failed(&report), ["wrong-version", "refusals-count-nothing"]);
    let entry = report
        .entries
        .iter()
        .find(|e| e.name == "wrong-version")
        .unwrap();
    assert_eq!(
        entry.detail,
        "succeeded with 32 bytes back, expected STATUS_REVISION_MISMATCH"
    );
    assert_eq!(
        app::write_report(
            &report,
            Options::default(),
            &mut Vec::new(),
            &mut Vec::new()
        ),
        EXIT_FAILED
    );
}

#[test]
fn a_wrong_count_or_cookie_fails_the_ping_scenarios() {
    let report = run_faulty(|_, reply| changed(reply, |r| r.handle_pings += 1));
    assert_eq!(
        failed(&report),
        ["ping", "counts", "refusals-count-nothing"]
    );
    assert!(
        report.entries[0]
            .detail
            .contains("handle_pings 1, device_pings 1; got")
    );
    let report = run_faulty(|_, reply| changed(reply, |r| r.device_pings *= 2));
    assert_eq!(
        failed(&report),
        ["ping", "counts", "refusals-count-nothing"]
    );
    let report = run_faulty(|_, reply| changed(reply, |r| r.cookie ^= 1));
    assert_eq!(
        failed(&report),
        ["ping", "counts", "refusals-count-nothing"]
    );
}

#[test]
fn a_wrong_status_or_a_short_reply_fails() {
    let report = run_faulty(|_, reply| match reply {
        Err(STATUS_BUFFER_TOO_SMALL) => Err(STATUS_INVALID_PARAMETER),
        other => other,
    });
    assert_eq!(failed(&report), ["short-output", "refusals-count-nothing"]);
    let entry = report
        .entries
        .iter()
        .find(|e| e.name == "short-output")
        .unwrap();
    assert_eq!(
        entry.detail,
        "refused with STATUS_INVALID_PARAMETER, expected STATUS_BUFFER_TOO_SMALL"
    );
    let report = run_faulty(|_, reply| {
        reply.map(|mut bytes| {
            bytes.pop();
            bytes
        })
    });
    assert_eq!(
        failed(&report),
        ["ping", "counts", "refusals-count-nothing"]
    );
    assert!(
        report.entries[0].detail.contains("31 bytes"),
        "{}",
        report.entries[0].detail
    );
}

#[test]
fn handles_left_open_are_closed_before_unload() {
    let mut device = SimDevice::load().unwrap();
    let handle = device.open().unwrap();
    let reply = device.control(
        handle,
        ktimer_abi::ioctl::IOCTL_KTIMER_PING,
        &PingRequest::new(1).to_bytes(),
        32,
    );
    assert_eq!(
        PingResponse::decode(&reply.unwrap()).unwrap().handle_pings,
        1
    );
    let _still_open = device.open().unwrap();
    assert!(device.finish().unwrap().is_ok());
    assert_eq!(device.finish(), None, "once");
    assert!(device.open().is_err());
}
