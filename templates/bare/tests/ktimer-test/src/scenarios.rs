//! The scenarios: each a name, a one-line description and a check with exact expectations
//! (every status, every count), so that a driver answering wrongly makes it fail.
//!
//! The handle counts are exact because every scenario opens its own handles. The device
//! count is exact from the count last seen ([`Session`]): a freshly loaded driver starts at
//! 0; an installed device's first reply sets the baseline (another process pinging it at the
//! same time would make the device counts fail).

use ktimer_abi::ABI_VERSION;
use ktimer_abi::ioctl::{
    FILE_DEVICE_KTIMER, FILE_READ_DATA, IOCTL_KTIMER_PING, METHOD_BUFFERED, METHOD_NEITHER,
    ctl_code,
};
use ktimer_abi::ping::{PING_RESPONSE_SIZE, PingRequest, PingResponse};
use ktimer_abi::status::{
    NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER, STATUS_REVISION_MISMATCH, STATUS_SUCCESS,
};

use crate::device::{Device, Handle, show_status};

/// What a scenario found: `Ok(detail)` when it passed, `Err(what went wrong)`.
pub type Outcome = Result<String, String>;

/// How a scenario checks the driver.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// A function of its own.
    Run(fn(&mut Session) -> Outcome),
    /// One request with this fault on a fresh handle: refused with exactly its status.
    Refused(Fault),
}

/// One scenario: its name (`--list`, the report), what it checks, and how.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// The name.
    pub name: &'static str,
    /// What it checks, in one line.
    pub description: &'static str,
    check: Check,
}

/// A fault in a ping request (the scenarios' descriptions say which), in the order of the
/// driver's checks (`ktimer_abi::ping`'s table), then the codes that are not the driver's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    ShortInput,
    LongInput,
    EmptyInput,
    WrongSize,
    WrongVersion,
    ReservedSet,
    ShortOutput,
    UnknownCode,
    MethodNeither,
}

/// An IOCTL to send, and the status the driver must complete it with.
#[derive(Clone, Debug)]
struct Request {
    code: u32,
    input: Vec<u8>,
    output_len: usize,
    status: NtStatus,
}

impl Request {
    /// A valid ping with `cookie`, room for one response; it must succeed.
    fn ping(cookie: u64) -> Self {
        let input = PingRequest::new(cookie).to_bytes().to_vec();
        let (code, output_len, status) = (IOCTL_KTIMER_PING, PING_RESPONSE_SIZE, STATUS_SUCCESS);
        Self {
            code,
            input,
            output_len,
            status,
        }
    }

    /// A ping with `fault`, and the status that must refuse it.
    fn faulty(fault: Fault) -> Self {
        let mut ping = PingRequest::new(9);
        let mut request = Self::ping(0);
        let other_code =
            |function, method| ctl_code(FILE_DEVICE_KTIMER, function, method, FILE_READ_DATA);
        request.status = match fault {
            Fault::ShortInput | Fault::LongInput | Fault::EmptyInput | Fault::WrongSize => {
                STATUS_INFO_LENGTH_MISMATCH
            }
            Fault::WrongVersion => STATUS_REVISION_MISMATCH,
            Fault::ReservedSet => STATUS_INVALID_PARAMETER,
            Fault::ShortOutput => STATUS_BUFFER_TOO_SMALL,
            Fault::UnknownCode | Fault::MethodNeither => STATUS_INVALID_DEVICE_REQUEST,
        };
        match fault {
            Fault::WrongSize => ping.size = 16,
            Fault::WrongVersion => ping.version = ABI_VERSION + 1,
            Fault::ReservedSet => ping.reserved = 1,
            Fault::ShortOutput => request.output_len -= 1,
            Fault::UnknownCode => request.code = other_code(0x801, METHOD_BUFFERED),
            Fault::MethodNeither => request.code = other_code(0x800, METHOD_NEITHER),
            Fault::ShortInput | Fault::LongInput | Fault::EmptyInput => {}
        }
        request.input = ping.to_bytes().to_vec();
        match fault {
            Fault::ShortInput => drop(request.input.pop()),
            Fault::LongInput => request.input.push(0),
            Fault::EmptyInput => request.input.clear(),
            _ => {}
        }
        request
    }
}

/// The scenarios' view of the device: tracks the handles a scenario opened (closed when it
/// ends, whatever its outcome) and the device's ping count last seen.
pub struct Session<'a> {
    device: &'a mut dyn Device,
    /// Pings the device has answered, when known.
    device_pings: Option<u64>,
    opened: Vec<Handle>,
}

impl<'a> Session<'a> {
    /// A session on `device`, before its first scenario.
    pub fn new(device: &'a mut dyn Device) -> Self {
        let device_pings = device.pings_before();
        Self {
            device,
            device_pings,
            opened: Vec::new(),
        }
    }

    /// The device this session drives.
    pub fn device(&mut self) -> &mut dyn Device {
        &mut *self.device
    }

    fn open(&mut self) -> Result<Handle, String> {
        let handle = self.device.open()?;
        self.opened.push(handle);
        Ok(handle)
    }

    fn close_all(&mut self) {
        for handle in std::mem::take(&mut self.opened) {
            self.device.close(handle);
        }
    }

    /// Sends a request; a reply that reads as a ping response moves the device count it
    /// reports to, so that one wrong count fails one scenario, not every later one.
    fn control(&mut self, handle: Handle, request: &Request) -> Result<Vec<u8>, NtStatus> {
        let reply = self
            .device
            .control(handle, request.code, &request.input, request.output_len);
        if let Some(response) = reply.as_deref().ok().and_then(PingResponse::decode) {
            self.device_pings = Some(response.device_pings);
        }
        reply
    }

    /// A valid ping with `cookie` on `handle`, which must echo the cookie and report
    /// `handle_pings` and one more device ping than last seen.
    fn ping(&mut self, handle: Handle, cookie: u64, handle_pings: u64) -> Result<String, String> {
        let expected_device = self.device_pings.map(|seen| seen + 1);
        let bytes = self
            .control(handle, &Request::ping(cookie))
            .map_err(|status| format!("ping refused with {}", show_status(status)))?;
        let response = PingResponse::decode(&bytes).ok_or_else(|| {
            format!(
                "a reply of {} bytes is not a version {ABI_VERSION} response of \
                 {PING_RESPONSE_SIZE} bytes",
                bytes.len()
            )
        })?;
        // An unknown device count (an installed device's first reply) is the baseline.
        let device_pings = expected_device.unwrap_or(response.device_pings);
        let wanted = (cookie, handle_pings, device_pings);
        let got = (
            response.cookie,
            response.handle_pings,
            response.device_pings,
        );
        let show = |(cookie, handle, device): (u64, u64, u64)| {
            format!("cookie {cookie:#x}, handle_pings {handle}, device_pings {device}")
        };
        if got != wanted {
            return Err(format!("expected {}; got {}", show(wanted), show(got)));
        }
        Ok(format!("handle {}, device {}", got.1, got.2))
    }

    /// Sends `refusal` on `handle`; it must fail with exactly its status.
    fn refused(&mut self, handle: Handle, refusal: &Request) -> Outcome {
        let wanted = show_status(refusal.status);
        match self.control(handle, refusal) {
            Err(status) if status == refusal.status => Ok(format!("refused with {wanted}")),
            Err(status) => Err(format!(
                "refused with {}, expected {wanted}",
                show_status(status)
            )),
            Ok(bytes) => Err(format!(
                "succeeded with {} bytes back, expected {wanted}",
                bytes.len()
            )),
        }
    }
}

impl Scenario {
    /// Runs the scenario in `session`, then closes the handles it opened.
    ///
    /// # Errors
    /// What went wrong: an unexpected status, value or reply, or a handle that would not
    /// open.
    pub fn run(&self, session: &mut Session) -> Outcome {
        let outcome = match self.check {
            Check::Run(run) => run(session),
            Check::Refused(fault) => session
                .open()
                .and_then(|handle| session.refused(handle, &Request::faulty(fault))),
        };
        session.close_all();
        outcome
    }
}

fn ping(session: &mut Session) -> Outcome {
    let handle = session.open()?;
    let counts = session.ping(handle, 0x0123_4567_89AB_CDEF, 1)?;
    Ok(format!("cookie echoed; {counts}"))
}

fn counts(session: &mut Session) -> Outcome {
    let (first, second) = (session.open()?, session.open()?);
    let one = session.ping(first, 1, 1)?;
    let two = session.ping(first, 2, 2)?;
    let three = session.ping(second, 3, 1)?;
    Ok(format!("first handle: {one}; {two}; second: {three}"))
}

fn refusals_count_nothing(session: &mut Session) -> Outcome {
    let handle = session.open()?;
    for scenario in SCENARIOS {
        if let Check::Refused(fault) = scenario.check {
            let refused = session.refused(handle, &Request::faulty(fault));
            refused.map_err(|problem| format!("{}: {problem}", scenario.name))?;
        }
    }
    let counts = session.ping(handle, 0xC0FF_EE00, 1)?;
    Ok(format!("next ping: {counts}"))
}

const fn scenario(name: &'static str, description: &'static str, check: Check) -> Scenario {
    Scenario {
        name,
        description,
        check,
    }
}

/// Every scenario, in the order they run.
pub const SCENARIOS: [Scenario; 12] = [
    scenario(
        "ping",
        "a ping echoes its cookie; a new handle counts 1, the device 1 more",
        Check::Run(ping),
    ),
    scenario(
        "counts",
        "two handles: the first counts 1 then 2, the second 1; the device all 3",
        Check::Run(counts),
    ),
    scenario(
        "short-input",
        "an input one byte short: STATUS_INFO_LENGTH_MISMATCH",
        Check::Refused(Fault::ShortInput),
    ),
    scenario(
        "long-input",
        "an input one byte longer: STATUS_INFO_LENGTH_MISMATCH",
        Check::Refused(Fault::LongInput),
    ),
    scenario(
        "empty-input",
        "no input: STATUS_INFO_LENGTH_MISMATCH",
        Check::Refused(Fault::EmptyInput),
    ),
    scenario(
        "wrong-size",
        "a size field that is not the request's: STATUS_INFO_LENGTH_MISMATCH",
        Check::Refused(Fault::WrongSize),
    ),
    scenario(
        "wrong-version",
        "another ABI version: STATUS_REVISION_MISMATCH",
        Check::Refused(Fault::WrongVersion),
    ),
    scenario(
        "reserved-set",
        "a nonzero reserved field: STATUS_INVALID_PARAMETER",
        Check::Refused(Fault::ReservedSet),
    ),
    scenario(
        "short-output",
        "room for one byte less than a response: STATUS_BUFFER_TOO_SMALL",
        Check::Refused(Fault::ShortOutput),
    ),
    scenario(
        "unknown-code",
        "a function the driver does not have: STATUS_INVALID_DEVICE_REQUEST",
        Check::Refused(Fault::UnknownCode),
    ),
    scenario(
        "method-neither",
        "the ping as METHOD_NEITHER: STATUS_INVALID_DEVICE_REQUEST",
        Check::Refused(Fault::MethodNeither),
    ),
    scenario(
        "refusals-count-nothing",
        "after every refusal above on one handle, its next ping is its first",
        Check::Run(refusals_count_nothing),
    ),
];
