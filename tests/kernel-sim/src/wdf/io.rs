//! The simulated I/O manager and `PnP` manager: load a driver through its `DriverEntry`, add
//! a root-enumerated device (`EvtDriverDeviceAdd`), open handles (`IRP_MJ_CREATE` →
//! `EvtDeviceFileCreate`), send IOCTLs synchronously and asynchronously
//! (`EvtIoDeviceControl`), cancel them (`CancelIoEx`), close handles (`IRP_MJ_CLEANUP` /
//! `IRP_MJ_CLOSE`), remove the device, unload (`EvtDriverUnload`, then the framework's and
//! the kernel's leak checks).
//!
//! Every call into the driver runs on a *driver thread*: one per calling thread and loaded
//! driver, bound to the kernel at `PASSIVE_LEVEL`. A bug check raised inside a driver
//! callback stops that thread (the driver's `extern "C"` frames cannot be unwound), and the
//! caller, which waits for it, raises the same bug check in its own thread instead, where
//! [`crate::catch_bug_check`] sees it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::ddi::{drop_init, new_init};
use super::model::{
    Callback, Data, DriverMemory, Fault, File, Fx, IoOutcome, Irp, Kind, Request, RequestKind,
    RequestState, call_driver, device_mut, device_of, file_mut, handle_pointer, queue_mut,
};
use super::types::{
    _DRIVER_OBJECT, NT_SUCCESS, PCUNICODE_STRING, PDRIVER_OBJECT, STATUS_NO_SUCH_DEVICE,
    UNICODE_STRING, WDFDEVICE, WDFFILEOBJECT,
};
use crate::bugcheck::{BugCheck, codes};
use crate::kernel::{InlineDriverCalls, Kernel, SendPtr, wall_time_budget};
use crate::types::{
    NTSTATUS, STATUS_DELETE_PENDING, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_HANDLE, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, ULONG,
};

/// A driver's `DriverEntry`.
pub type DriverEntry = unsafe extern "system" fn(PDRIVER_OBJECT, PCUNICODE_STRING) -> NTSTATUS;

/// How the framework model behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameworkConfig {
    /// How long (wall time) device removal waits for the driver to complete the requests
    /// it owns before the simulator's `WDF_VIOLATION` (`WDF_SIM_REQUEST_OWNED_AT_REMOVAL`).
    /// Default 10 s ([`crate::wall_time_budget`]: longer under Miri).
    pub removal_timeout: Duration,
    /// Call the driver on the calling thread instead of handing each call to a driver
    /// thread: much cheaper per request, but a bug check raised inside a driver callback
    /// then aborts the process (printed first) instead of reaching the caller as a
    /// [`BugCheck`] panic. For the fuzzer (libFuzzer reports an abort as a crash) and the
    /// benchmarks; tests that expect bug checks keep the default (`false`).
    pub inline_driver_calls: bool,
}

impl Default for FrameworkConfig {
    fn default() -> Self {
        Self {
            removal_timeout: wall_time_budget(Duration::from_secs(10)),
            inline_driver_calls: false,
        }
    }
}

/// One driver loaded into the framework model on a simulated kernel.
#[derive(Debug)]
pub struct Framework {
    fx: Arc<Fx>,
    /// The `DRIVER_OBJECT` the driver gets (one element; the model uses only its address).
    driver_object: DriverMemory<_DRIVER_OBJECT>,
    loaded: AtomicBool,
}

/// A device instance the `PnP` manager added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNode(usize);

impl DeviceNode {
    /// The device's `WDFDEVICE` handle.
    #[must_use]
    pub fn handle(self) -> WDFDEVICE {
        handle_pointer(self.0)
    }
}

/// An open handle (a file object).
#[derive(Debug)]
pub struct UserHandle {
    fx: Arc<Fx>,
    file: usize,
    closed: AtomicBool,
}

/// An I/O request sent on a handle (an `OVERLAPPED` `DeviceIoControl`).
#[derive(Debug)]
pub struct Io {
    fx: Arc<Fx>,
    irp: Arc<Irp>,
}

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    static WORKERS: RefCell<HashMap<u64, mpsc::Sender<Job>>> = RefCell::new(HashMap::new());
}

impl Fx {
    /// Runs `job` on this caller's driver thread and waits for it. If the machine
    /// bug-checks meanwhile, raises that bug check here.
    fn on_driver_thread<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&Arc<Fx>) -> T + Send + 'static,
    ) -> T {
        if let Some(bug_check) = self.kernel.bug_check() {
            std::panic::panic_any(bug_check);
        }
        if self.inline_driver_calls {
            let _entered = self.kernel.enter();
            let _inline = InlineDriverCalls::enter();
            return job(self);
        }
        let (reply, result) = mpsc::channel();
        let fx = Arc::clone(self);
        let job: Job = Box::new(move || {
            let _entered = fx.kernel.enter();
            let value = job(&fx);
            let _ = reply.send(value);
        });
        let sender = WORKERS.with(|workers| {
            workers
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(spawn_worker)
                .clone()
        });
        assert!(
            sender.send(job).is_ok(),
            "kernel-sim: the driver thread is gone"
        );
        loop {
            match result.recv_timeout(Duration::from_millis(20)) {
                Ok(value) => return value,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(bug_check) = self.kernel.bug_check() {
                        std::panic::panic_any(bug_check);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let bug_check = self.kernel.bug_check();
                    match bug_check {
                        Some(bug_check) => std::panic::panic_any(bug_check),
                        None => panic!("kernel-sim: the driver thread failed"),
                    }
                }
            }
        }
    }
}

fn spawn_worker() -> mpsc::Sender<Job> {
    let (sender, jobs) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("kernel-sim driver thread".into())
        .spawn(move || {
            while let Ok(job) = jobs.recv() {
                job();
            }
        });
    assert!(spawned.is_ok(), "kernel-sim: cannot start a driver thread");
    sender
}

impl Framework {
    /// A framework on `kernel`, with no driver loaded yet.
    #[must_use]
    pub fn new(kernel: &Kernel, config: &FrameworkConfig) -> Self {
        let fx = Fx::new(
            kernel.clone(),
            config.removal_timeout,
            config.inline_driver_calls,
        );
        let driver_object = DriverMemory::new(Box::new([_DRIVER_OBJECT::default()]));
        super::model::register(driver_object.as_mut_ptr().addr(), &fx);
        Self {
            fx,
            driver_object,
            loaded: AtomicBool::new(false),
        }
    }

    /// The simulated kernel.
    #[must_use]
    pub fn kernel(&self) -> &Kernel {
        &self.fx.kernel
    }

    /// Makes the next use of `fault` fail with `status` (once).
    pub fn fail_next(&self, fault: Fault, status: NTSTATUS) {
        self.fx.lock().faults.insert(fault, status);
    }

    /// Lets device removal skip the queue purge (not KMDF behaviour: for tests of a
    /// driver's own ordering, where cancellation reaches the driver during device cleanup).
    pub fn set_purge_on_removal(&self, purge: bool) {
        self.fx.lock().purge_on_removal = purge;
    }

    /// Holds the next `EvtRequestCancel` at its first DDI call until the returned value is
    /// released or dropped (see [`super::CancelHold`]).
    #[must_use]
    pub fn hold_next_cancel_routine(&self) -> super::CancelHold {
        super::CancelHold::arm(&self.fx)
    }

    /// The driver callbacks the framework has called so far, in order.
    #[must_use]
    pub fn callback_log(&self) -> Vec<Callback> {
        self.fx.lock().log.clone()
    }

    /// Live framework objects (driver, devices, queues, file objects, requests).
    #[must_use]
    pub fn live_objects(&self) -> usize {
        self.fx.lock().objects.len()
    }

    /// The device's registered interfaces (while it is started).
    #[must_use]
    pub fn interfaces(&self, device: DeviceNode) -> Vec<super::types::GUID> {
        let st = self.fx.lock();
        device_of(&st, device.0)
            .filter(|d| d.started)
            .map(|d| d.interfaces.clone())
            .unwrap_or_default()
    }

    /// The device's symbolic link (while it is started), as text.
    #[must_use]
    pub fn symbolic_link(&self, device: DeviceNode) -> Option<String> {
        let st = self.fx.lock();
        device_of(&st, device.0)
            .filter(|d| d.started)
            .and_then(|d| d.symbolic_link.as_ref())
            .map(|link| String::from_utf16_lossy(link))
    }

    /// Loads the driver: calls `entry` with the simulated `DRIVER_OBJECT`. A failure status
    /// unloads what the framework made (no `EvtDriverUnload`: the driver never loaded).
    ///
    /// # Errors
    /// `DriverEntry`'s failure status.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn load(&self, entry: DriverEntry) -> Result<(), NTSTATUS> {
        let driver_object = SendPtr(self.driver_object.as_mut_ptr());
        let status = self.fx.on_driver_thread(move |fx| {
            let path: Vec<u16> = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\ktimer"
                .encode_utf16()
                .collect();
            let length = u16::try_from(path.len() * 2).unwrap_or(0);
            let registry_path = UNICODE_STRING {
                Length: length,
                MaximumLength: length,
                Buffer: path.as_ptr().cast_mut(),
            };
            let status = call_driver(|| {
                // SAFETY: the driver's entry point, with a driver object and registry path
                // that stay valid for the call.
                unsafe { entry(driver_object.get(), &raw const registry_path) }
            });
            if !NT_SUCCESS(status) {
                let driver = fx.lock().driver;
                if let Some(driver) = driver {
                    fx.delete_object(driver, true);
                }
            }
            status
        });
        if NT_SUCCESS(status) {
            self.loaded.store(true, Ordering::Release);
            Ok(())
        } else {
            Err(status)
        }
    }

    /// Adds a root-enumerated device: `EvtDriverDeviceAdd` with a fresh `WDFDEVICE_INIT`,
    /// then starts it (interfaces enabled). If the callback fails after `WdfDeviceCreate`,
    /// the device is deleted (its cleanup callbacks run).
    ///
    /// # Errors
    /// `EvtDriverDeviceAdd`'s failure status (`STATUS_UNSUCCESSFUL` if it reported success
    /// without creating a device, or if no driver is loaded).
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn add_device(&self) -> Result<DeviceNode, NTSTATUS> {
        self.fx.on_driver_thread(|fx| {
            let (driver, add) = {
                let st = fx.lock();
                (st.driver, st.device_add)
            };
            let (Some(driver), Some(add)) = (driver, add) else {
                return Err(STATUS_UNSUCCESSFUL);
            };
            let init = new_init(fx);
            fx.log(Callback::DeviceAdd);
            // SAFETY: the driver's callback with its driver and a live init block.
            let status = call_driver(|| unsafe { add(handle_pointer(driver), init) });
            let created = drop_init(fx, init);
            match (NT_SUCCESS(status), created) {
                (true, Some(device)) => {
                    if let Some(d) = device_mut(&mut fx.lock(), device) {
                        d.started = true;
                    }
                    Ok(DeviceNode(device))
                }
                (ok, created) => {
                    if let Some(device) = created {
                        fx.delete_device(device);
                    }
                    Err(if ok { STATUS_UNSUCCESSFUL } else { status })
                }
            }
        })
    }

    /// Removes the device (a surprise removal, then the remove once every handle is
    /// closed): interfaces and symbolic link go; the queue stops accepting (new requests
    /// get `STATUS_INVALID_DEVICE_STATE`); its driver-cancelable requests get
    /// `EvtRequestCancel`; the call waits until the driver has completed every request it
    /// owns; then, once no handle is open, the device is deleted (queue cleanup, then the
    /// device's cleanup callback).
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks, including the simulator's
    /// `WDF_SIM_REQUEST_OWNED_AT_REMOVAL` when the driver keeps a request past
    /// [`FrameworkConfig::removal_timeout`].
    pub fn remove_device(&self, device: DeviceNode) {
        self.fx.on_driver_thread(move |fx| {
            let queue = {
                let mut st = fx.lock();
                let purge = st.purge_on_removal;
                let Some(d) = device_mut(&mut st, device.0) else {
                    return;
                };
                if d.removing {
                    return;
                }
                d.removing = true;
                d.started = false;
                let queue = d.default_queue;
                if let Some(q) = queue.and_then(|queue| queue_mut(&mut st, queue)) {
                    q.accepting = false;
                    if purge {
                        q.cancel_dispatched = true;
                        let cancelable = std::mem::take(&mut q.cancelable);
                        q.cancelled.extend(cancelable.iter().copied());
                        for request in cancelable {
                            if let Some(r) = super::model::request_mut(&mut st, request) {
                                r.state = RequestState::CancelPending;
                                r.cancelled = true;
                            }
                        }
                    }
                }
                if purge { queue } else { None }
            };
            if let Some(queue) = queue {
                fx.dispatch_if_idle(queue);
                let drained = fx.wait_until(fx.removal_timeout, |st| {
                    match st.objects.get(&queue).map(|o| &o.data) {
                        Some(Data::Queue(q)) => q.owned.is_empty(),
                        _ => true,
                    }
                });
                if !drained {
                    let owned = {
                        let mut st = fx.lock();
                        queue_mut(&mut st, queue)
                            .and_then(|q| q.owned.first().copied())
                            .unwrap_or(0)
                    };
                    if fx.kernel.bug_check().is_none() {
                        super::model::violation([
                            codes::WDF_SIM_REQUEST_OWNED_AT_REMOVAL,
                            owned as u64,
                            0,
                            0,
                        ]);
                    }
                    return;
                }
            }
            let delete_now = {
                let mut st = fx.lock();
                match device_mut(&mut st, device.0) {
                    Some(d) if d.open_files == 0 => true,
                    Some(d) => {
                        d.deleted_when_closed = true;
                        false
                    }
                    None => false,
                }
            };
            if delete_now {
                fx.delete_device(device.0);
            }
        });
    }

    /// Opens a handle to the device (`CreateFileW` on `\\.\KTimer` plus `file_name`, e.g.
    /// `Some("\\anything")`): the framework makes a file object, and
    /// `EvtDeviceFileCreate` completes the create request.
    ///
    /// # Errors
    /// The create's failure status; `STATUS_NO_SUCH_DEVICE` for a removed device;
    /// an injected [`Fault::FileObjectCreate`].
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn open(
        &self,
        device: DeviceNode,
        file_name: Option<&str>,
    ) -> Result<UserHandle, NTSTATUS> {
        let name: Vec<u16> = file_name.unwrap_or("").encode_utf16().collect();
        let file = self
            .fx
            .on_driver_thread(move |fx| open_on_driver_thread(fx, device.0, name))?;
        Ok(UserHandle {
            fx: Arc::clone(&self.fx),
            file,
            closed: AtomicBool::new(false),
        })
    }

    /// Unloads the driver: waits for deferred work, calls `EvtDriverUnload`, deletes the
    /// driver object (its cleanup callback); then every framework object still alive is
    /// `WDF_VIOLATION` `WDF_OBJECT_ERROR`; then the kernel's unload checks
    /// ([`Kernel::unload`]). Devices must have been removed and handles closed first.
    ///
    /// # Errors
    /// The bug check raised (or an earlier one).
    pub fn unload(&self) -> Result<(), BugCheck> {
        if let Some(bug_check) = self.fx.kernel.bug_check() {
            return Err(bug_check);
        }
        let leaked = crate::catch_bug_check(|| {
            self.fx.on_driver_thread(|fx| {
                fx.wait_until(wall_time_budget(Duration::from_secs(10)), |st| {
                    st.work_items == 0
                });
                let (driver, unload) = {
                    let st = fx.lock();
                    (st.driver, st.driver_unload)
                };
                if let Some(driver) = driver {
                    if let Some(unload) = unload {
                        fx.log(Callback::DriverUnload);
                        // SAFETY: the driver's callback with its driver handle.
                        call_driver(|| unsafe { unload(handle_pointer(driver)) });
                    }
                    fx.delete_object(driver, true);
                }
                let st = fx.lock();
                st.objects
                    .iter()
                    .next()
                    .map(|(handle, object)| (*handle, object.kind.code(), st.objects.len()))
            })
        })?;
        self.loaded.store(false, Ordering::Release);
        if let Some((handle, kind, count)) = leaked {
            let bug_check = BugCheck::new(
                codes::WDF_VIOLATION,
                [codes::WDF_OBJECT_ERROR, handle as u64, kind, count as u64],
            );
            let _entered = self.fx.kernel.enter();
            return crate::catch_bug_check(|| crate::kernel::current().fail_now(bug_check));
        }
        self.fx.kernel.unload()
    }
}

impl Drop for Framework {
    fn drop(&mut self) {
        super::model::unregister(self.driver_object.as_mut_ptr().addr());
        let _ = WORKERS.try_with(|workers| workers.borrow_mut().remove(&self.fx.id));
    }
}

/// `IRP_MJ_CREATE`, on a driver thread.
fn open_on_driver_thread(fx: &Arc<Fx>, device: usize, name: Vec<u16>) -> Result<usize, NTSTATUS> {
    let (create, file, request, irp) = {
        let mut st = fx.lock();
        let Some(d) = device_of(&st, device) else {
            return Err(STATUS_NO_SUCH_DEVICE);
        };
        if d.removing || !d.started {
            return Err(STATUS_DELETE_PENDING);
        }
        let config = d.file_config;
        let file_attributes = d.file_attributes;
        let request_attributes = d.request_attributes;
        if let Some(status) = Fx::take_fault(&mut st, Fault::FileObjectCreate) {
            return Err(status);
        }
        let name_buffer = DriverMemory::new(name.into_boxed_slice());
        let bytes = u16::try_from(name_buffer.len() * 2).unwrap_or(0);
        let name = DriverMemory::new(Box::new([UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: name_buffer.as_mut_ptr(),
        }]));
        let file = fx.add_object(
            &mut st,
            Kind::File,
            Some(device),
            file_attributes.as_ref(),
            Data::File(File {
                device,
                name_units: name_buffer,
                name,
                outstanding: 0,
                cleanup_started: false,
                cleanup_done: false,
                close_started: false,
            }),
        );
        let irp = Arc::new(Irp::default());
        let request = fx.add_object(
            &mut st,
            Kind::Request,
            None,
            request_attributes.as_ref(),
            Data::Request(Request {
                kind: RequestKind::Create,
                irp: Arc::clone(&irp),
                queue: None,
                file,
                state: RequestState::DriverOwned,
                cancel_routine: None,
                cancelled: false,
                buffer: DriverMemory::new(Box::new([])),
                input_length: 0,
                output_length: 0,
                returned: Vec::new(),
                completing: false,
            }),
        );
        {
            let mut irp_state = irp.lock();
            irp_state.request = Some(request);
            irp_state.file = file;
        }
        if let Some(d) = device_mut(&mut st, device) {
            d.open_files += 1;
        }
        (
            config.and_then(|c| c.EvtDeviceFileCreate),
            file,
            request,
            irp,
        )
    };
    match create {
        Some(create) => {
            fx.log(Callback::FileCreate(file));
            // SAFETY: the driver's callback with its device, create request and new file.
            call_driver(|| unsafe {
                create(
                    handle_pointer(device),
                    handle_pointer(request),
                    handle_pointer(file),
                );
            });
        }
        None => fx.complete(request, STATUS_SUCCESS, 0),
    }
    let status = wait_irp(fx, &irp).status;
    if NT_SUCCESS(status) {
        return Ok(file);
    }
    discard_failed_create(fx, device, file);
    Err(status)
}

/// A failed create: the file object goes without cleanup or close.
fn discard_failed_create(fx: &Arc<Fx>, device: usize, file: usize) {
    fx.delete_object(file, false);
    fx.release_device_of_closed_file(device);
}

/// Waits (wall time, polling for a bug check) for an IRP's completion.
fn wait_irp(fx: &Fx, irp: &Irp) -> IoOutcome {
    let mut state = irp.lock();
    loop {
        if let Some(done) = state.completion.clone() {
            return done;
        }
        if let Some(bug_check) = fx.kernel.bug_check() {
            drop(state);
            std::panic::panic_any(bug_check);
        }
        state = irp
            .done
            .wait_timeout(state, Duration::from_millis(20))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

impl UserHandle {
    /// The file object's handle (for tests that call DDIs on it).
    #[must_use]
    pub fn file_object(&self) -> WDFFILEOBJECT {
        handle_pointer(self.file)
    }

    /// Sends an IOCTL (`METHOD_BUFFERED`) without waiting: the request is presented to
    /// `EvtIoDeviceControl` on the driver thread; the returned [`Io`] is complete or pending.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    #[must_use]
    pub fn submit(&self, code: ULONG, input: &[u8], output_length: usize) -> Io {
        let irp = Arc::new(Irp::default());
        if self.closed.load(Ordering::Acquire) {
            irp.finish(IoOutcome {
                status: STATUS_INVALID_HANDLE,
                information: 0,
                output: Vec::new(),
            });
        } else {
            let input = input.to_vec();
            let file = self.file;
            let job_irp = Arc::clone(&irp);
            self.fx.on_driver_thread(move |fx| {
                send_on_driver_thread(fx, file, code, &input, output_length, &job_irp);
            });
        }
        Io {
            fx: Arc::clone(&self.fx),
            irp,
        }
    }

    /// A synchronous `DeviceIoControl`: the output bytes written on success. A request the
    /// driver pends blocks until it completes (another thread must let time pass).
    ///
    /// # Errors
    /// The failure status.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn control(&self, code: ULONG, input: &[u8], output: &mut [u8]) -> Result<usize, NTSTATUS> {
        let io = self.submit(code, input, output.len());
        let done = wait_irp(&self.fx, &io.irp);
        if !NT_SUCCESS(done.status) {
            return Err(done.status);
        }
        let length = done.output.len().min(output.len());
        if let (Some(target), Some(source)) = (output.get_mut(..length), done.output.get(..length))
        {
            target.copy_from_slice(source);
        }
        Ok(length)
    }

    /// `CancelIoEx(handle, NULL)`: cancels every request of this handle still pending.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn cancel_all(&self) {
        let file = self.file;
        self.fx.on_driver_thread(move |fx| {
            let irps: Vec<Arc<Irp>> = {
                let st = fx.lock();
                st.objects
                    .values()
                    .filter_map(|object| match &object.data {
                        Data::Request(r)
                            if r.file == file && r.kind == RequestKind::DeviceControl =>
                        {
                            Some(Arc::clone(&r.irp))
                        }
                        _ => None,
                    })
                    .collect()
            };
            for irp in irps {
                fx.cancel_irp(&irp);
            }
        });
    }

    /// `CloseHandle`: `IRP_MJ_CLEANUP` (`EvtFileCleanup`), then, once every request of the
    /// handle has completed, `IRP_MJ_CLOSE` (`EvtFileClose`; here if nothing is pending,
    /// else later on another thread). Once closed, requests on this value complete with
    /// `STATUS_INVALID_HANDLE` without reaching the driver; closing again does nothing.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn close(&self) {
        self.close_now();
    }

    /// Whether [`UserHandle::close`] has been called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// `IRP_MJ_CLEANUP` only, keeping this value usable to send a request that races the
    /// close (`submit` afterwards models an I/O issued on the handle as it closes). The
    /// close follows when this value is dropped or closed.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn begin_cleanup(&self) {
        let file = self.file;
        self.fx
            .on_driver_thread(move |fx| cleanup_on_driver_thread(fx, file, false));
    }

    fn close_now(&self) {
        if self.closed.swap(true, Ordering::AcqRel) || self.fx.kernel.bug_check().is_some() {
            return;
        }
        let file = self.file;
        self.fx
            .on_driver_thread(move |fx| cleanup_on_driver_thread(fx, file, true));
    }
}

impl Drop for UserHandle {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.close_now();
        }
    }
}

/// `IRP_MJ_CLEANUP` (once), then the close if `close` and nothing is outstanding.
fn cleanup_on_driver_thread(fx: &Arc<Fx>, file: usize, close: bool) {
    let cleanup = {
        let mut st = fx.lock();
        let Some(f) = file_mut(&mut st, file) else {
            return;
        };
        let first = !f.cleanup_started;
        f.cleanup_started = true;
        let device = f.device;
        let callback = device_of(&st, device)
            .and_then(|d| d.file_config)
            .and_then(|c| c.EvtFileCleanup);
        if first {
            callback.map(Some)
        } else {
            Some(None)
        }
    };
    if let Some(Some(cleanup)) = cleanup {
        fx.log(Callback::FileCleanup(file));
        // SAFETY: the driver's callback with its live file object.
        call_driver(|| unsafe { cleanup(handle_pointer(file)) });
    }
    if !close {
        return;
    }
    let close_now = {
        let mut st = fx.lock();
        match file_mut(&mut st, file) {
            Some(f) => {
                f.cleanup_done = true;
                if f.outstanding == 0 && !f.close_started {
                    f.close_started = true;
                    true
                } else {
                    false
                }
            }
            None => false,
        }
    };
    if close_now {
        fx.close_file(file);
    }
}

/// `IRP_MJ_DEVICE_CONTROL`, on a driver thread: presented to `EvtIoDeviceControl`, then
/// the queue's cancellations delivered (this thread is in the dispatch loop meanwhile).
fn send_on_driver_thread(
    fx: &Arc<Fx>,
    file: usize,
    code: ULONG,
    input: &[u8],
    output_length: usize,
    irp: &Arc<Irp>,
) {
    let refuse = |status: NTSTATUS| {
        irp.finish(IoOutcome {
            status,
            information: 0,
            output: Vec::new(),
        });
    };
    let presented = {
        let mut st = fx.lock();
        let Some(f) = file_mut(&mut st, file) else {
            drop(st);
            return refuse(STATUS_INVALID_HANDLE);
        };
        let device = f.device;
        let Some(d) = device_of(&st, device) else {
            drop(st);
            return refuse(STATUS_INVALID_DEVICE_STATE);
        };
        let request_attributes = d.request_attributes;
        let Some(queue) = d.default_queue else {
            drop(st);
            return refuse(STATUS_INVALID_DEVICE_REQUEST);
        };
        let Some(q) = queue_mut(&mut st, queue) else {
            drop(st);
            return refuse(STATUS_INVALID_DEVICE_STATE);
        };
        if !q.accepting {
            drop(st);
            return refuse(STATUS_INVALID_DEVICE_STATE);
        }
        let Some(callback) = q.io_device_control else {
            drop(st);
            return refuse(STATUS_INVALID_DEVICE_REQUEST);
        };
        // METHOD_NEITHER from user mode: refused by the framework.
        if code & 3 == 3 {
            drop(st);
            return refuse(STATUS_INVALID_DEVICE_REQUEST);
        }
        let mut system_buffer = vec![0_u8; input.len().max(output_length)].into_boxed_slice();
        if let Some(target) = system_buffer.get_mut(..input.len()) {
            target.copy_from_slice(input);
        }
        let buffer = DriverMemory::new(system_buffer);
        q.dispatching += 1;
        let request = fx.add_object(
            &mut st,
            Kind::Request,
            None,
            request_attributes.as_ref(),
            Data::Request(Request {
                kind: RequestKind::DeviceControl,
                irp: Arc::clone(irp),
                queue: Some(queue),
                file,
                state: RequestState::DriverOwned,
                cancel_routine: None,
                cancelled: false,
                buffer,
                input_length: input.len(),
                output_length,
                returned: Vec::with_capacity(output_length),
                completing: false,
            }),
        );
        if let Some(q) = queue_mut(&mut st, queue) {
            q.owned.push(request);
        }
        if let Some(f) = file_mut(&mut st, file) {
            f.outstanding += 1;
        }
        {
            let mut irp_state = irp.lock();
            irp_state.request = Some(request);
            irp_state.file = file;
        }
        (queue, request, callback)
    };
    let (queue, request, callback) = presented;
    fx.log(Callback::IoDeviceControl(request));
    // SAFETY: the driver's callback with its queue and a request it now owns.
    call_driver(|| unsafe {
        callback(
            handle_pointer(queue),
            handle_pointer(request),
            output_length,
            input.len(),
            code,
        );
    });
    fx.drain_cancelled(queue);
}

impl Io {
    /// The completion, if the request has completed.
    #[must_use]
    pub fn result(&self) -> Option<IoOutcome> {
        self.irp.lock().completion.clone()
    }

    /// Waits up to `timeout` (wall time; `None`: no limit) for the completion.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks while waiting.
    #[must_use]
    pub fn wait(&self, timeout: Option<Duration>) -> Option<IoOutcome> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut state = self.irp.lock();
        loop {
            if let Some(done) = state.completion.clone() {
                return Some(done);
            }
            if let Some(bug_check) = self.fx.kernel.bug_check() {
                drop(state);
                std::panic::panic_any(bug_check);
            }
            let step = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    left.min(Duration::from_millis(20))
                }
                None => Duration::from_millis(20),
            };
            state = self
                .irp
                .done
                .wait_timeout(state, step)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// `CancelIoEx(handle, &overlapped)` for this request: if the driver holds it
    /// cancelable, its cancel routine runs (on this caller's driver thread unless another
    /// thread is in the queue's dispatch loop, which then delivers it).
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks.
    pub fn cancel(&self) {
        if self.result().is_some() {
            return;
        }
        let irp = Arc::clone(&self.irp);
        self.fx.on_driver_thread(move |fx| fx.cancel_irp(&irp));
    }
}
