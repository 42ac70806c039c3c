//! Shared rig for the service tests: a virtual-time simulated kernel, the service loaded on
//! it through the in-process host, typed IOCTL helpers, and the end-of-test verifier checks.

#![allow(
    dead_code,
    reason = "each test file uses a different subset of the helpers"
)]

use std::time::Duration;

use kernel_sim::{Config, Kernel};
use ktimer::host::{Host, HostCompletion, HostHandle, HostIo};
use ktimer::service::ServiceConfig;
use ktimer_abi::codec::{WaitBatch, wait_response_len};
use ktimer_abi::ioctl::{
    IOCTL_KTIMER_CANCEL, IOCTL_KTIMER_CLOSE, IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO,
    IOCTL_KTIMER_QUERY, IOCTL_KTIMER_SET, IOCTL_KTIMER_WAIT,
};
use ktimer_abi::status::{NtStatus, STATUS_SUCCESS};
use ktimer_abi::{
    ArmResponse, CreateRequest, CreateResponse, Decode, Encode, ExpiryRecord, Header, InfoResponse,
    MODE_ONE_SHOT, MODE_PERIODIC, QueryResponse, Schedule, SetRequest, TIMER_TYPE_NOTIFICATION,
    TimerRequest, WaitRequest, WaitResponse,
};

/// 100 ns units per millisecond.
pub const MS: i64 = 10_000;
/// The default simulated clock tick (15.625 ms).
pub const TICK: i64 = 156_250;

/// A kernel, the service on it, and the checks every test ends with.
pub struct Rig {
    pub kernel: Kernel,
    pub host: Host,
}

impl Rig {
    /// Default kernel (2 processors, 15.625 ms tick, virtual clock) and service limits.
    pub fn new() -> Self {
        Self::with(Config::default(), ServiceConfig::default())
    }

    /// A 1 ms tick, so due times in whole milliseconds expire exactly on time.
    pub fn fine() -> Self {
        Self::with(
            Config {
                time_increment: 10_000,
                ..Config::default()
            },
            ServiceConfig::default(),
        )
    }

    pub fn with(kernel_config: Config, service_config: ServiceConfig) -> Self {
        let kernel = Kernel::new(kernel_config);
        let host = Host::load(&kernel, service_config).expect("the service loads");
        Self { kernel, host }
    }

    pub fn open(&self) -> HostHandle {
        self.host.open().expect("a handle opens")
    }

    pub fn advance_ms(&self, ms: u64) {
        self.kernel.advance(Duration::from_millis(ms));
    }

    /// Interrupt time now, 100 ns units.
    pub fn now(&self) -> i64 {
        i64::try_from(self.kernel.interrupt_time()).unwrap()
    }

    /// Unloads the service and runs the verifier's unload pass: no bug check, no pool left.
    pub fn finish(self) {
        self.host.unload();
        assert_eq!(
            self.kernel.bug_check(),
            None,
            "no bug check during the test"
        );
        assert_eq!(
            self.kernel.unload(),
            Ok(()),
            "the unload verifier finds nothing"
        );
        let pool = self.kernel.pool_stats();
        assert_eq!(pool.outstanding_allocations, 0, "no pool left: {pool:?}");
        assert_eq!(self.host.open_handle_count(), 0);
    }
}

pub fn encode<T: Encode>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let len = message.encode(&mut out).unwrap();
    out.truncate(len);
    out
}

pub fn schedule_once(due: i64) -> Schedule {
    Schedule {
        mode: MODE_ONE_SHOT,
        flags: 0,
        due_time: due,
        period_ms: 0,
        tolerable_delay_ms: 0,
    }
}

pub fn schedule_periodic(due: i64, period_ms: i32) -> Schedule {
    Schedule {
        mode: MODE_PERIODIC,
        flags: 0,
        due_time: due,
        period_ms,
        tolerable_delay_ms: 0,
    }
}

pub fn create_request(schedule: Schedule) -> CreateRequest {
    CreateRequest {
        header: Header::of::<CreateRequest>(),
        timer_type: TIMER_TYPE_NOTIFICATION,
        flags: 0,
        schedule,
    }
}

pub fn timer_request(timer_id: u64) -> TimerRequest {
    TimerRequest {
        header: Header::of::<TimerRequest>(),
        timer_id,
    }
}

/// Sends raw bytes; returns the status and the output.
pub fn raw(handle: &HostHandle, code: u32, input: &[u8], output_len: usize) -> HostCompletion {
    handle
        .submit(code, input, output_len)
        .result()
        .expect("completes at once")
}

pub fn create_with(handle: &HostHandle, request: &CreateRequest) -> Result<u64, NtStatus> {
    let done = raw(handle, IOCTL_KTIMER_CREATE, &encode(request), 16);
    if done.status != STATUS_SUCCESS {
        return Err(done.status);
    }
    Ok(CreateResponse::decode(&done.output).unwrap().timer_id)
}

pub fn create(handle: &HostHandle, schedule: Schedule) -> u64 {
    create_with(handle, &create_request(schedule)).expect("create succeeds")
}

pub fn set(handle: &HostHandle, timer_id: u64, schedule: Schedule) -> Result<bool, NtStatus> {
    let request = SetRequest {
        header: Header::of::<SetRequest>(),
        timer_id,
        schedule,
    };
    let done = raw(handle, IOCTL_KTIMER_SET, &encode(&request), 16);
    if done.status != STATUS_SUCCESS {
        return Err(done.status);
    }
    Ok(ArmResponse::decode(&done.output).unwrap().was_armed == 1)
}

pub fn cancel(handle: &HostHandle, timer_id: u64) -> Result<bool, NtStatus> {
    let done = raw(
        handle,
        IOCTL_KTIMER_CANCEL,
        &encode(&timer_request(timer_id)),
        16,
    );
    if done.status != STATUS_SUCCESS {
        return Err(done.status);
    }
    Ok(ArmResponse::decode(&done.output).unwrap().was_armed == 1)
}

pub fn query(handle: &HostHandle, timer_id: u64) -> Result<QueryResponse, NtStatus> {
    let done = raw(
        handle,
        IOCTL_KTIMER_QUERY,
        &encode(&timer_request(timer_id)),
        104,
    );
    if done.status != STATUS_SUCCESS {
        return Err(done.status);
    }
    Ok(QueryResponse::decode(&done.output).unwrap())
}

pub fn close_timer(handle: &HostHandle, timer_id: u64) -> Result<(), NtStatus> {
    let done = raw(
        handle,
        IOCTL_KTIMER_CLOSE,
        &encode(&timer_request(timer_id)),
        0,
    );
    if done.status == STATUS_SUCCESS {
        Ok(())
    } else {
        Err(done.status)
    }
}

pub fn info(handle: &HostHandle) -> InfoResponse {
    let done = raw(handle, IOCTL_KTIMER_GET_INFO, &[], 72);
    assert_eq!(done.status, STATUS_SUCCESS);
    InfoResponse::decode(&done.output).unwrap()
}

pub fn wait_request(min_records: u32) -> Vec<u8> {
    encode(&WaitRequest {
        header: Header::of::<WaitRequest>(),
        min_records,
        reserved: 0,
    })
}

/// Submits a wait for at least `min_records`, with room for `capacity` records.
pub fn submit_wait(handle: &HostHandle, min_records: u32, capacity: usize) -> HostIo {
    handle.submit(
        IOCTL_KTIMER_WAIT,
        &wait_request(min_records),
        wait_response_len(capacity).unwrap(),
    )
}

/// The records of a successful wait completion.
pub fn records_of(done: &HostCompletion) -> (WaitResponse, Vec<ExpiryRecord>) {
    assert_eq!(
        done.status,
        STATUS_SUCCESS,
        "wait failed: {:#x}",
        done.status.cast_unsigned()
    );
    let batch = WaitBatch::decode(&done.output).unwrap();
    (batch.response, batch.records().collect())
}

/// Everything that is ready now (a wait for one record that must complete at once).
pub fn drain(handle: &HostHandle, capacity: usize) -> (WaitResponse, Vec<ExpiryRecord>) {
    let io = submit_wait(handle, 1, capacity);
    let done = io.result().expect("records were ready");
    records_of(&done)
}
