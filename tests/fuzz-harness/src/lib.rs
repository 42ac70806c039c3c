//! The IOCTL fuzzer's interpreter: arbitrary bytes become a script of device-control traffic
//! on the kernel simulator, and every guarantee the ABI documents is checked as it runs.
//!
//! One input is a script. It loads the driver through `DriverEntry` on kernel-sim's KMDF
//! model ([`kernel_sim::wdf::Framework`], one device) with service limits the
//! first byte picks, opens two handles, then runs steps until the bytes run out (at most
//! [`MAX_STEPS`]): IOCTLs with structured-but-fuzzed, mutated or raw input buffers and any
//! output size on any of up to [`MAX_HANDLES`] handles; asynchronous waits left pending;
//! `CancelIoEx`; handle close and reopen; virtual-time advances (with and without running the
//! queued DPCs); and unload mid-flight. Missing bytes read as zero, so every input is valid.
//!
//! Checked at every step (a violation panics, which libFuzzer reports as a crash):
//! - every completion status is one the ABI documents for that IOCTL (`docs/PROTOCOL.md`), an
//!   unknown code gets exactly `STATUS_INVALID_DEVICE_REQUEST`, and only a wait pends;
//! - a failure writes no output; a success writes exactly the response's size, and the bytes
//!   decode as that response (a wait response's records are whole and well-formed);
//! - a record is only ever delivered to the handle that created its timer;
//! - a pending wait ends with `STATUS_SUCCESS` (with records) or `STATUS_CANCELLED`.
//!
//! Checked at the end of every input: after every handle closed and the service unloaded, no
//! wait is left pending, the simulator recorded no bug check, its unload verifier finds no
//! timer set, no DPC queued or running and no pool block outstanding, and time moved on
//! afterwards runs no DPC.
//!
//! The simulated kernel is made once per process and reused ([`Fuzzer`]). Reuse is sound
//! because the end-of-input checks prove the kernel is back to an empty state (no timer, no
//! DPC, no pool). Each input loads the driver through `DriverEntry` on the KMDF model. The
//! default rig runs with inline execution (`kernel_sim::Execution::Inline`) and inline driver
//! calls: DPCs and driver callbacks run on the fuzzing thread, with no thread hand-off per DPC
//! or request; a bug check inside a DPC routine or a driver callback then stops the process
//! with the bug check printed, which libFuzzer reports as a crash.
//!
//! Off Windows only: the simulator binding of the driver exists there (driver/build.rs). On
//! a Windows host this crate is empty, so that workspace-wide commands at the root build.
#![cfg(not(windows))]

pub mod seeds;

use std::time::Duration;

use kernel_sim::wdf::{DeviceNode, Framework, FrameworkConfig, Io, IoOutcome, UserHandle};
use kernel_sim::{
    Clock, Config, Execution, Kernel, STATUS_DELETE_PENDING, STATUS_INVALID_DEVICE_STATE,
    STATUS_NO_SUCH_DEVICE,
};
use ktimer_abi::codec::{Decode, Encode, WaitBatch, wait_response_len};
use ktimer_abi::ioctl::{
    ALL_CODES, IOCTL_KTIMER_CANCEL, IOCTL_KTIMER_CLOSE, IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO,
    IOCTL_KTIMER_QUERY, IOCTL_KTIMER_SET, IOCTL_KTIMER_WAIT, Ioctl, IoctlVisitor, spec_of, visit,
};
use ktimer_abi::status::{
    NtStatus, STATUS_CANCELLED, STATUS_INVALID_DEVICE_REQUEST, STATUS_PENDING,
    STATUS_QUOTA_EXCEEDED, STATUS_SUCCESS,
};
use ktimer_abi::{
    ABI_VERSION, ArmResponse, CreateRequest, CreateResponse, Header, InfoResponse, QueryResponse,
    Schedule, SetRequest, TimerRequest, WaitRequest,
};
use ktimer_service::ServiceConfig;

/// Steps one input runs at most (keeps one input cheap; libFuzzer's inputs are short anyway).
pub const MAX_STEPS: usize = 96;
/// Handle slots a script can use (two are open at the start).
pub const MAX_HANDLES: usize = 3;
/// The simulated clock tick: 1 ms, so millisecond periods and due times are exact.
pub const TICK_100NS: u32 = 10_000;

/// What one input did, for the fuzzer's statistics and the tests' sanity checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Steps run.
    pub steps: usize,
    /// IOCTLs sent (synchronous and asynchronous).
    pub requests: usize,
    /// Requests that succeeded.
    pub successes: usize,
    /// Waits that were pended by the driver.
    pub pended: usize,
    /// Records delivered by successful waits.
    pub records: usize,
    /// Timers created.
    pub created: usize,
}

/// The process-wide fuzzing rig: one simulated kernel, reused across inputs.
pub struct Fuzzer {
    kernel: Kernel,
    execution: Execution,
}

impl Default for Fuzzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Fuzzer {
    /// Boots the simulated kernel the inputs run on: 2 processors, 1 ms tick, virtual clock,
    /// inline execution, no event log (it would grow across inputs).
    #[must_use]
    pub fn new() -> Self {
        Self::with_execution(Execution::Inline)
    }

    /// As [`Fuzzer::new`] with the given execution mode (the benchmark compares the two).
    /// `Execution::Threaded` also calls the driver on the KMDF model's driver threads (no
    /// inline driver calls), so that no bug check stops the process.
    #[must_use]
    pub fn with_execution(execution: Execution) -> Self {
        Self {
            kernel: Kernel::new(Config {
                processors: 2,
                time_increment: TICK_100NS,
                clock: Clock::Virtual,
                execution,
                trace: false,
                ..Config::default()
            }),
            execution,
        }
    }

    /// As [`Fuzzer::new`], or threaded ([`Fuzzer::with_execution`]) when the environment
    /// variable `KTIMER_FUZZ_THREADED` is set: how the fuzz target and the corpus replay
    /// choose, so a rate can be measured, and a crash replayed, on the threaded rig.
    #[must_use]
    pub fn from_env() -> Self {
        if std::env::var_os("KTIMER_FUZZ_THREADED").is_some() {
            Self::with_execution(Execution::Threaded)
        } else {
            Self::new()
        }
    }

    /// The simulated kernel.
    #[must_use]
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Runs one input as a script and checks it (see the crate documentation).
    ///
    /// # Panics
    /// On any violated guarantee, with a message naming it.
    #[must_use = "the outcome says what the input exercised"]
    pub fn run(&self, data: &[u8]) -> Outcome {
        let mut bytes = Bytes::new(data);
        let config = service_config(bytes.u8());
        {
            let _entered = self.kernel.enter();
            ktimer_kmdf::sim_hooks::set_service_config(config);
        }
        // Inline driver calls with inline execution: no thread hand-off per request; a bug
        // check inside a driver callback aborts the process, which libFuzzer reports as a
        // crash. Threaded (the replay's KTIMER_FUZZ_THREADED) calls the driver on framework
        // threads too, so such a bug check fails the replay instead.
        let framework = Framework::new(
            &self.kernel,
            &FrameworkConfig {
                inline_driver_calls: self.execution == Execution::Inline,
                ..FrameworkConfig::default()
            },
        );
        framework
            .load(ktimer_kmdf::DRIVER_ENTRY)
            .expect("DriverEntry succeeds");
        let device = framework.add_device().expect("the device starts");
        let mut script = Script {
            kernel: &self.kernel,
            framework: &framework,
            device,
            config,
            handles: std::array::from_fn(|_| None),
            pending: Vec::new(),
            unloaded: false,
            outcome: Outcome::default(),
        };
        for slot in 0..2 {
            script.open(slot);
        }
        while !bytes.is_empty() && script.outcome.steps < MAX_STEPS {
            script.step(&mut bytes);
            script.outcome.steps += 1;
        }
        script.finish()
    }
}

/// The service limits for one input: mostly small, so quotas, full rings and id reuse are
/// reachable in a few steps; sometimes the driver's defaults.
fn service_config(selector: u8) -> ServiceConfig {
    match selector % 4 {
        0 => ServiceConfig::default(),
        1 => ServiceConfig {
            max_handles: 2,
            max_timers_per_handle: 2,
            max_pending_waits_per_handle: 1,
            event_ring_capacity: 1,
            min_period_ms: 1,
            ..ServiceConfig::default()
        },
        2 => ServiceConfig {
            max_handles: 4,
            max_timers_per_handle: 8,
            max_pending_waits_per_handle: 4,
            event_ring_capacity: 8,
            min_period_ms: 2,
            ..ServiceConfig::default()
        },
        _ => ServiceConfig {
            max_handles: 8,
            max_timers_per_handle: 32,
            max_pending_waits_per_handle: 16,
            event_ring_capacity: 64,
            min_period_ms: 1,
            ..ServiceConfig::default()
        },
    }
}

/// A reader over the input that yields zeros once it runs out.
struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        out[..n].copy_from_slice(head);
        self.data = rest;
        out
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    /// Up to `len` raw bytes.
    fn slice(&mut self, len: usize) -> Vec<u8> {
        let n = len.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.to_vec()
    }
}

/// A wait left pending, and the handle slot it was sent on.
struct Pending {
    io: Io,
    slot: usize,
}

/// An open handle and the timer ids it was given.
struct Open {
    handle: UserHandle,
    /// Ids of its live timers.
    ids: Vec<u64>,
    /// Every id it was given, closed or not (a closed timer's records stay in the ring).
    issued: Vec<u64>,
}

/// One input's state while it runs.
struct Script<'k> {
    kernel: &'k Kernel,
    framework: &'k Framework,
    device: DeviceNode,
    config: ServiceConfig,
    handles: [Option<Open>; MAX_HANDLES],
    pending: Vec<Pending>,
    unloaded: bool,
    outcome: Outcome,
}

/// How a request's input buffer was made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A well-formed request for the code with fuzzed field values.
    Structured,
    /// A structured request with one byte changed.
    Mutated,
    /// Raw bytes of a fuzzed length.
    Raw,
}

impl Script<'_> {
    fn open(&mut self, slot: usize) {
        if self.handles[slot].is_some() {
            return;
        }
        match self.framework.open(self.device, None) {
            Ok(handle) => {
                self.handles[slot] = Some(Open {
                    handle,
                    ids: Vec::new(),
                    issued: Vec::new(),
                });
            }
            Err(status) => assert!(
                status == STATUS_QUOTA_EXCEEDED
                    || (self.unloaded
                        && (status == STATUS_DELETE_PENDING || status == STATUS_NO_SUCH_DEVICE)),
                "open failed with an undocumented status {status:#x} (unloaded: {})",
                self.unloaded
            ),
        }
    }

    fn step(&mut self, bytes: &mut Bytes<'_>) {
        let op = bytes.u8();
        let slot = usize::from(bytes.u8()) % MAX_HANDLES;
        match op % 16 {
            0..=3 => self.request(slot, Shape::Structured, bytes),
            4 => self.request(slot, Shape::Mutated, bytes),
            5 => self.request(slot, Shape::Raw, bytes),
            6 | 7 => self.wait(slot, bytes),
            8 => self.cancel_pending(bytes),
            9 | 10 => self.advance(bytes, true),
            11 => self.advance(bytes, false),
            12 => self.close(slot),
            13 => self.open(slot),
            14 => self.kernel.run_until_idle(),
            _ => {
                // Device removal mid-flight is rare: everything after it is refused.
                if bytes.u8().is_multiple_of(8) {
                    self.unload();
                }
            }
        }
        self.collect_completed();
    }

    /// A timer id for a request: one of this handle's, another handle's, or arbitrary.
    fn timer_id(&self, slot: usize, bytes: &mut Bytes<'_>) -> u64 {
        let choice = bytes.u8();
        let own = self.handles[slot].as_ref().map(|open| open.ids.as_slice());
        let other = self.handles[(slot + 1) % MAX_HANDLES]
            .as_ref()
            .map(|open| open.ids.as_slice());
        let pick = |ids: Option<&[u64]>| {
            ids.filter(|ids| !ids.is_empty())
                .map(|ids| ids[usize::from(choice >> 2) % ids.len()])
        };
        match choice % 8 {
            0..=4 => pick(own).unwrap_or(0),
            5 => pick(other).unwrap_or(1),
            6 => pick(own).map_or(0, |id| id ^ (1 << (choice % 64))),
            _ => bytes.u64(),
        }
    }

    fn schedule(&self, bytes: &mut Bytes<'_>) -> Schedule {
        let selector = bytes.u8();
        let mode = match selector % 8 {
            0..=3 => 0,
            4..=6 => 1,
            _ => bytes.u32(),
        };
        let flags = if (selector >> 3) % 8 == 7 {
            bytes.u32() & 0x3
        } else {
            0
        };
        let due_time = match (selector >> 6) % 4 {
            0 | 1 => i64::from(bytes.u8() % 40) * 10_000,
            2 => {
                // Near the driver's system time: absolute schedules pass the range check.
                let base = self.kernel.system_time();
                base.saturating_add(i64::from(bytes.u16()) * 1000 - 10_000_000)
            }
            _ => i64::from_le_bytes(bytes.u64().to_le_bytes()),
        };
        let period_selector = bytes.u8();
        let period_ms = match period_selector % 4 {
            0 => 0,
            1 | 2 => i32::from(period_selector >> 2) % 12,
            _ => i32::from_le_bytes(bytes.u32().to_le_bytes()),
        };
        let delay_selector = bytes.u8();
        let tolerable_delay_ms = match delay_selector % 8 {
            0..=5 => 0,
            6 => u32::from(delay_selector >> 3),
            _ => bytes.u32(),
        };
        Schedule {
            mode,
            flags,
            due_time,
            period_ms,
            tolerable_delay_ms,
        }
    }

    /// A header: usually right for `T`, sometimes with a wrong version or size.
    fn header<T>(bytes: &mut Bytes<'_>) -> Header {
        let mut header = Header::of::<T>();
        match bytes.u8() % 16 {
            0 => header.abi_version = bytes.u32(),
            1 => header.size = bytes.u32(),
            2 => header.abi_version = ABI_VERSION + 1,
            _ => {}
        }
        header
    }

    /// A well-formed request for `code` with fuzzed fields (empty for an IOCTL without input
    /// and for unknown codes). The timer IOCTLs have generators that know their fields; any
    /// other declared IOCTL gets the generic one ([`Generic`]).
    fn structured(&self, code: u32, slot: usize, bytes: &mut Bytes<'_>) -> Vec<u8> {
        match code {
            IOCTL_KTIMER_CREATE => {
                let header = Self::header::<CreateRequest>(bytes);
                let kind = bytes.u8();
                encode(&CreateRequest {
                    header,
                    timer_type: match kind % 8 {
                        0..=4 => 0,
                        5 | 6 => 1,
                        _ => bytes.u32(),
                    },
                    flags: match (kind >> 3) % 8 {
                        0..=4 => 0,
                        5 | 6 => 1,
                        _ => bytes.u32(),
                    },
                    schedule: self.schedule(bytes),
                })
            }
            IOCTL_KTIMER_SET => encode(&SetRequest {
                header: Self::header::<SetRequest>(bytes),
                timer_id: self.timer_id(slot, bytes),
                schedule: self.schedule(bytes),
            }),
            IOCTL_KTIMER_CANCEL | IOCTL_KTIMER_QUERY | IOCTL_KTIMER_CLOSE => {
                encode(&TimerRequest {
                    header: Self::header::<TimerRequest>(bytes),
                    timer_id: self.timer_id(slot, bytes),
                })
            }
            IOCTL_KTIMER_WAIT => encode(&wait_request(bytes)),
            _ => visit(code, Generic { bytes }).unwrap_or_default(),
        }
    }

    /// An IOCTL code: mostly one of the ABI's, sometimes any value.
    fn code(bytes: &mut Bytes<'_>) -> u32 {
        let selector = bytes.u8();
        if selector % 16 == 15 {
            bytes.u32()
        } else {
            ALL_CODES[usize::from(selector) % ALL_CODES.len()]
        }
    }

    /// An output size: the response's, around it, zero, or large.
    fn output_len(code: u32, bytes: &mut Bytes<'_>) -> usize {
        let exact = response_len(code);
        let selector = bytes.u8();
        match selector % 8 {
            0..=3 => exact,
            4 => exact.saturating_sub(usize::from(selector >> 3) % 9),
            5 => exact + usize::from(selector >> 3),
            6 => 0,
            _ => usize::from(bytes.u16()),
        }
    }

    fn request(&mut self, slot: usize, shape: Shape, bytes: &mut Bytes<'_>) {
        let code = Self::code(bytes);
        let mut input = match shape {
            Shape::Raw => {
                let len = usize::from(bytes.u8() % 64);
                bytes.slice(len)
            }
            Shape::Structured | Shape::Mutated => self.structured(code, slot, bytes),
        };
        if shape == Shape::Mutated && !input.is_empty() {
            let at = usize::from(bytes.u8()) % input.len();
            input[at] ^= bytes.u8() | 1;
        }
        let output_len = Self::output_len(code, bytes);
        self.send(slot, code, &input, output_len);
    }

    fn wait(&mut self, slot: usize, bytes: &mut Bytes<'_>) {
        let request = wait_request(bytes);
        let capacity = usize::from(bytes.u8() % 12);
        let output_len = wait_response_len(capacity).unwrap_or(0);
        self.send(slot, IOCTL_KTIMER_WAIT, &encode(&request), output_len);
    }

    /// Sends one request; checks an immediate completion, or keeps a pended wait.
    fn send(&mut self, slot: usize, code: u32, input: &[u8], output_len: usize) {
        let Some(open) = self.handles[slot].as_ref() else {
            return;
        };
        let io = open.handle.submit(code, input, output_len);
        self.outcome.requests += 1;
        if let Some(done) = io.result() {
            self.check_completion(slot, code, input, &done, false);
        } else {
            assert_eq!(code, IOCTL_KTIMER_WAIT, "only a wait may pend");
            self.outcome.pended += 1;
            self.pending.push(Pending { io, slot });
        }
    }

    /// Checks a completion against the ABI; records new timer ids.
    fn check_completion(
        &mut self,
        slot: usize,
        code: u32,
        input: &[u8],
        done: &IoOutcome,
        was_pending: bool,
    ) {
        let status = done.status;
        assert_ne!(status, STATUS_PENDING, "a completion never says pending");
        assert!(
            documented(code, status) || (self.unloaded && status == STATUS_INVALID_DEVICE_STATE),
            "code {code:#x} completed with {status:#x}, which the ABI does not document for it \
             (input {input:02x?})"
        );
        if was_pending {
            assert!(
                status == STATUS_SUCCESS || status == STATUS_CANCELLED,
                "a pended wait ended with {status:#x}"
            );
        }
        if status != STATUS_SUCCESS {
            assert!(done.output.is_empty(), "a failure wrote output");
            return;
        }
        self.outcome.successes += 1;
        let output = done.output.as_slice();
        match code {
            IOCTL_KTIMER_GET_INFO => {
                let info = InfoResponse::decode(output).expect("an info response");
                assert_eq!(info.header.abi_version, ABI_VERSION);
                assert_eq!(
                    usize::try_from(info.event_ring_capacity).ok(),
                    Some(self.config.event_ring_capacity)
                );
            }
            IOCTL_KTIMER_CREATE => {
                let created = CreateResponse::decode(output).expect("a create response");
                assert_ne!(created.timer_id, 0, "timer ids are never 0");
                let open = self.handles[slot].as_mut().expect("sent on an open handle");
                assert!(
                    open.ids.len() < self.config.max_timers_per_handle,
                    "more live timers than the limit"
                );
                open.ids.push(created.timer_id);
                open.issued.push(created.timer_id);
                self.outcome.created += 1;
            }
            IOCTL_KTIMER_SET | IOCTL_KTIMER_CANCEL => {
                let arm = ArmResponse::decode(output).expect("an arm response");
                assert!(arm.was_armed <= 1);
            }
            IOCTL_KTIMER_QUERY => {
                let query = QueryResponse::decode(output).expect("a query response");
                assert!(query.expirations >= query.dpc_runs);
            }
            IOCTL_KTIMER_CLOSE => {
                assert!(output.is_empty(), "close returns no output");
                let closed = TimerRequest::decode(input).expect("a close that succeeded");
                if let Some(open) = self.handles[slot].as_mut() {
                    open.ids.retain(|id| *id != closed.timer_id);
                }
            }
            IOCTL_KTIMER_WAIT => self.check_records(slot, output),
            // Any other declared IOCTL: its output decodes as its declared response.
            _ => match visit(code, CheckOutput { output }) {
                Some(Ok(())) => {}
                Some(Err(error)) => panic!(
                    "code {code:#x} succeeded with an output that does not decode: {error:?}"
                ),
                None => unreachable!("an unknown code succeeded: {code:#x}"),
            },
        }
    }

    fn check_records(&mut self, slot: usize, output: &[u8]) {
        let batch = WaitBatch::decode(output).expect("a well-formed wait response");
        let count = usize::try_from(batch.response.record_count).unwrap_or(usize::MAX);
        assert!(count >= 1, "a successful wait carries a record");
        self.outcome.records += count;
        // A record names a timer this handle created: ids never cross handles. (The slot may
        // hold a reopened handle by now only if the wait was pending across a close, and such a
        // wait completes with STATUS_CANCELLED, not with records.)
        let issued = self.handles[slot]
            .as_ref()
            .map(|open| open.issued.as_slice());
        for record in batch.records() {
            assert!(record.expirations >= 1);
            assert_eq!(record.lateness, record.fire_time - record.due_time);
            if let Some(issued) = issued {
                assert!(
                    issued.contains(&record.timer_id),
                    "record for timer {:#x} delivered to a handle that did not create it",
                    record.timer_id
                );
            }
        }
    }

    fn cancel_pending(&mut self, bytes: &mut Bytes<'_>) {
        if self.pending.is_empty() {
            return;
        }
        let index = usize::from(bytes.u8()) % self.pending.len();
        self.pending[index].io.cancel();
    }

    fn advance(&mut self, bytes: &mut Bytes<'_>, run_dpcs: bool) {
        let millis = u64::from(bytes.u8() % 48);
        let duration = Duration::from_millis(millis);
        if run_dpcs {
            self.kernel.advance(duration);
        } else {
            self.kernel.advance_without_running_dpcs(duration);
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(open) = self.handles[slot].take() {
            open.handle.close();
        }
    }

    /// A surprise removal of the device with handles open: the framework cancels the
    /// pending waits and waits for them; the queue refuses everything after it
    /// (`STATUS_INVALID_DEVICE_STATE`), and no handle opens (`STATUS_DELETE_PENDING`, or
    /// `STATUS_NO_SUCH_DEVICE` once the last handle closed and the device is gone).
    fn unload(&mut self) {
        self.framework.remove_device(self.device);
        self.unloaded = true;
        self.collect_completed();
        assert!(
            self.pending.is_empty(),
            "removal left {} waits pending",
            self.pending.len()
        );
    }

    /// Checks and forgets the pended waits that have completed.
    fn collect_completed(&mut self) {
        let mut index = 0;
        while index < self.pending.len() {
            if let Some(done) = self.pending[index].io.result() {
                let Pending { slot, .. } = self.pending.swap_remove(index);
                self.check_completion(slot, IOCTL_KTIMER_WAIT, &[], &done, true);
            } else {
                index += 1;
            }
        }
    }

    /// The end-of-input checks (see the crate documentation).
    fn finish(mut self) -> Outcome {
        self.kernel.run_until_idle();
        self.collect_completed();
        for slot in 0..MAX_HANDLES {
            self.close(slot);
        }
        self.collect_completed();
        assert!(
            self.pending.is_empty(),
            "{} waits still pending after every handle closed",
            self.pending.len()
        );
        self.framework.remove_device(self.device);
        assert_eq!(self.kernel.bug_check(), None, "no bug check");
        assert_eq!(
            self.framework.unload(),
            Ok(()),
            "the unload verifiers (framework objects, kernel) find nothing"
        );
        let pool = self.kernel.pool_stats();
        assert_eq!(pool.outstanding_allocations, 0, "no pool left: {pool:?}");
        let runs = self.kernel.stats().dpc_runs;
        self.kernel.advance(Duration::from_millis(50));
        assert_eq!(self.kernel.stats().dpc_runs, runs, "no DPC after unload");
        self.outcome
    }
}

fn wait_request(bytes: &mut Bytes<'_>) -> WaitRequest {
    let selector = bytes.u8();
    WaitRequest {
        header: Script::header::<WaitRequest>(bytes),
        min_records: match selector % 8 {
            0..=5 => u32::from(selector >> 3) % 6,
            6 => u32::from(selector >> 3),
            _ => bytes.u32(),
        },
        reserved: if selector % 32 == 31 { bytes.u32() } else { 0 },
    }
}

fn encode<T: Encode>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    let len = message.encode(&mut out).expect("a request fits 128 bytes");
    out.truncate(len);
    out
}

/// The size of the response to `code` (a wait: the header and four records), from its
/// declaration.
fn response_len(code: u32) -> usize {
    if code == IOCTL_KTIMER_WAIT {
        wait_response_len(4).unwrap_or(0)
    } else {
        spec_of(code).map_or(0, |spec| spec.output_size)
    }
}

/// Whether `docs/PROTOCOL.md` documents `status` for a request with `code`: the checks of
/// the IOCTL's shape (steps 2-6), `STATUS_CANCELLED` for a request after cleanup or unload,
/// and the operation's own statuses, all from the IOCTL's declaration
/// ([`ktimer_abi::ioctl::IoctlSpec::documents`]); for an unknown code exactly
/// `STATUS_INVALID_DEVICE_REQUEST`.
#[must_use]
pub fn documented(code: u32, status: NtStatus) -> bool {
    spec_of(code).map_or(status == STATUS_INVALID_DEVICE_REQUEST, |spec| {
        spec.documents(status)
    })
}

/// The generic input generator of a declared IOCTL: a header (usually right, sometimes with a
/// wrong version or size) followed by fuzzed bytes for every other field; empty for an IOCTL
/// without input. Missing bytes read as zero, as everywhere in a script.
struct Generic<'b, 'a> {
    bytes: &'b mut Bytes<'a>,
}

impl IoctlVisitor for Generic<'_, '_> {
    type Output = Vec<u8>;

    fn visit<I: Ioctl>(self) -> Vec<u8> {
        let size = size_of::<I::Input>();
        if size == 0 {
            return Vec::new();
        }
        let mut input = encode(&Script::header::<I::Input>(self.bytes));
        let fields = size.saturating_sub(input.len());
        let mut rest = self.bytes.slice(fields);
        rest.resize(fields, 0);
        input.extend_from_slice(&rest);
        input.truncate(size);
        input
    }
}

/// Checks a successful output against the IOCTL's declared response.
struct CheckOutput<'o> {
    output: &'o [u8],
}

impl IoctlVisitor for CheckOutput<'_> {
    type Output = Result<(), ktimer_abi::DecodeError>;

    fn visit<I: Ioctl>(self) -> Self::Output {
        I::Output::decode(self.output).map(drop)
    }
}
