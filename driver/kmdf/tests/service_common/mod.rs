//! Shared rig for the service tests: a virtual-time simulated kernel, the driver loaded on
//! it through `DriverEntry` and kernel-sim's KMDF model (one device), typed IOCTL helpers,
//! and the end-of-test verifier checks.

#![allow(
    dead_code,
    reason = "each test file uses a different subset of the helpers"
)]

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kernel_sim::wdf::{DeviceNode, Framework, FrameworkConfig, Io, IoOutcome, UserHandle};
use kernel_sim::{Config, Kernel};
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
use ktimer_kmdf::sim_hooks::{self, HandleCounts};
use ktimer_service::ServiceConfig;

/// 100 ns units per millisecond.
pub const MS: i64 = 10_000;
/// The default simulated clock tick (15.625 ms).
pub const TICK: i64 = 156_250;

/// The driver loaded through `DriverEntry` with one device, and the handles opened on it.
pub struct Driver {
    pub kernel: Kernel,
    pub framework: Framework,
    pub device: DeviceNode,
    opened: Mutex<Vec<Weak<UserHandle>>>,
}

/// An open handle (a file object of the device). Dropping the last clone closes it.
#[derive(Clone)]
pub struct Handle {
    kernel: Kernel,
    file: Arc<UserHandle>,
}

impl Driver {
    /// Loads the driver on `kernel` with the service limits `config`.
    pub fn load(kernel: &Kernel, config: ServiceConfig) -> Self {
        {
            let _entered = kernel.enter();
            sim_hooks::set_service_config(config);
        }
        let framework = Framework::new(kernel, &FrameworkConfig::default());
        framework
            .load(ktimer_kmdf::DRIVER_ENTRY)
            .expect("DriverEntry succeeds");
        let device = framework.add_device().expect("the device starts");
        Self {
            kernel: kernel.clone(),
            framework,
            device,
            opened: Mutex::new(Vec::new()),
        }
    }

    /// Opens a handle (`CreateFileW`).
    pub fn open(&self) -> Result<Handle, NtStatus> {
        let file = Arc::new(self.framework.open(self.device, None)?);
        self.opened.lock().unwrap().push(Arc::downgrade(&file));
        Ok(Handle {
            kernel: self.kernel.clone(),
            file,
        })
    }

    /// Handles open in the service.
    pub fn open_handle_count(&self) -> usize {
        let _entered = self.kernel.enter();
        // SAFETY: the device lives until `unload`, which takes `self`.
        unsafe { sim_hooks::open_handle_count(self.device.handle()) }
    }

    /// Unloads the driver as the system does when the test's process ends: every handle
    /// still open is closed, the device is removed, `EvtDriverUnload` runs, then the
    /// framework's and the kernel's unload checks.
    pub fn unload(&self) -> Result<(), kernel_sim::BugCheck> {
        for file in self.opened.lock().unwrap().drain(..) {
            if let Some(file) = file.upgrade() {
                file.close();
            }
        }
        self.framework.remove_device(self.device);
        self.framework.unload()
    }
}

impl Handle {
    /// Sends an IOCTL without waiting.
    pub fn submit(&self, code: u32, input: &[u8], output_len: usize) -> Io {
        self.file.submit(code, input, output_len)
    }

    /// A synchronous `DeviceIoControl`.
    pub fn control(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
        self.file.control(code, input, output)
    }

    /// `CloseHandle`.
    pub fn close(self) {
        self.file.close();
    }

    /// `IRP_MJ_CLEANUP` only (`EvtFileCleanup`): the handle stays usable to send requests
    /// that race its close; the close follows when the last clone is dropped.
    pub fn begin_cleanup(&self) {
        self.file.begin_cleanup();
    }

    fn counts(&self) -> HandleCounts {
        if self.file.is_closed() {
            return HandleCounts::default();
        }
        let _entered = self.kernel.enter();
        // SAFETY: the handle is open and this value keeps it so for the call.
        unsafe { sim_hooks::handle_counts(self.file.file_object()) }.unwrap_or_default()
    }

    /// Moves this handle's free timer slots forward to id generation `generation`
    /// (`ktimer_kmdf::sim_hooks::skip_timer_id_generations`).
    pub fn skip_timer_id_generations(&self, generation: u32) {
        assert!(!self.file.is_closed(), "the handle is open");
        let _entered = self.kernel.enter();
        // SAFETY: the handle is open and this value keeps it so for the call.
        let skipped =
            unsafe { sim_hooks::skip_timer_id_generations(self.file.file_object(), generation) };
        assert!(skipped, "the handle has a service handle");
    }

    /// Live timers of this handle (0 once closed).
    pub fn timer_count(&self) -> usize {
        self.counts().timers
    }

    /// Records ready in this handle's event ring (0 once closed).
    pub fn ready_records(&self) -> usize {
        self.counts().ready_records
    }

    /// Waits pending on this handle (0 once closed).
    pub fn pending_waits(&self) -> usize {
        self.counts().pending_waits
    }
}

/// A kernel, the driver on it, and the checks every test ends with.
pub struct Rig {
    pub kernel: Kernel,
    pub driver: Driver,
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
        let driver = Driver::load(&kernel, service_config);
        Self { kernel, driver }
    }

    pub fn open(&self) -> Handle {
        self.driver.open().expect("a handle opens")
    }

    pub fn advance_ms(&self, ms: u64) {
        self.kernel.advance(Duration::from_millis(ms));
    }

    /// Interrupt time now, 100 ns units.
    pub fn now(&self) -> i64 {
        i64::try_from(self.kernel.interrupt_time()).unwrap()
    }

    /// Closes every handle, removes the device, unloads the driver and runs the verifier's
    /// unload pass: no bug check, no framework object or pool left.
    pub fn finish(self) {
        assert_eq!(
            self.kernel.bug_check(),
            None,
            "no bug check during the test"
        );
        assert_eq!(
            self.driver.unload(),
            Ok(()),
            "the unload verifier finds nothing"
        );
        let pool = self.kernel.pool_stats();
        assert_eq!(pool.outstanding_allocations, 0, "no pool left: {pool:?}");
        assert_eq!(self.driver.framework.live_objects(), 0);
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
pub fn raw(handle: &Handle, code: u32, input: &[u8], output_len: usize) -> IoOutcome {
    handle
        .submit(code, input, output_len)
        .result()
        .expect("completes at once")
}

pub fn create_with(handle: &Handle, request: &CreateRequest) -> Result<u64, NtStatus> {
    let done = raw(handle, IOCTL_KTIMER_CREATE, &encode(request), 16);
    if done.status != STATUS_SUCCESS {
        return Err(done.status);
    }
    Ok(CreateResponse::decode(&done.output).unwrap().timer_id)
}

pub fn create(handle: &Handle, schedule: Schedule) -> u64 {
    create_with(handle, &create_request(schedule)).expect("create succeeds")
}

pub fn set(handle: &Handle, timer_id: u64, schedule: Schedule) -> Result<bool, NtStatus> {
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

pub fn cancel(handle: &Handle, timer_id: u64) -> Result<bool, NtStatus> {
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

pub fn query(handle: &Handle, timer_id: u64) -> Result<QueryResponse, NtStatus> {
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

pub fn close_timer(handle: &Handle, timer_id: u64) -> Result<(), NtStatus> {
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

pub fn info(handle: &Handle) -> InfoResponse {
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
pub fn submit_wait(handle: &Handle, min_records: u32, capacity: usize) -> Io {
    handle.submit(
        IOCTL_KTIMER_WAIT,
        &wait_request(min_records),
        wait_response_len(capacity).unwrap(),
    )
}

/// The records of a successful wait completion.
pub fn records_of(done: &IoOutcome) -> (WaitResponse, Vec<ExpiryRecord>) {
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
pub fn drain(handle: &Handle, capacity: usize) -> (WaitResponse, Vec<ExpiryRecord>) {
    let io = submit_wait(handle, 1, capacity);
    let done = io.result().expect("records were ready");
    records_of(&done)
}

impl Handle {
    /// The service's accounting of this handle, read under one lock: counted DPC runs,
    /// records in the ring, overruns not yet reported.
    pub fn accounting(&self) -> HandleCounts {
        self.counts()
    }
}
