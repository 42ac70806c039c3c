//! An in-process stand-in for the I/O manager, on the kernel simulator: load the service,
//! open handles, send synchronous and asynchronous IOCTLs, cancel them like `CancelIoEx`,
//! close handles like `CloseHandle`, unload. It goes through the same [`dispatch`](crate::ioctl::dispatch) entry as
//! the KMDF shell, with byte buffers exactly as `DeviceIoControl` passes them. Used by the
//! companion app's `--sim` backend, the tests and the fuzzer.
//!
//! Every call binds the calling thread to the host's simulated kernel at `PASSIVE_LEVEL` for
//! its duration, so any thread may use the host. With a virtual clock, time moves only when
//! the caller runs `kernel_sim::Kernel::advance`: wait for pending requests with
//! [`HostIo::result`](crate::host::HostIo::result) after advancing, not with a blocking [`HostIo::wait`](crate::host::HostIo::wait).
//!
//! The request model mirrors KMDF's: a pended request is marked cancelable; cancelling it runs
//! the "cancel routine" ([`Service::cancel_wait`](crate::service::Service::cancel_wait)) unless the service has already claimed it.
//! So the host exercises the same claim protocol the real driver relies on.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use std::vec::Vec;

use kernel_sim::Kernel;
use ktimer_abi::status::{NtStatus, STATUS_CANCELLED, nt_success};

use crate::ioctl::{IoRequest, dispatch};
use crate::kernel::irql::PassiveLevel;
use crate::service::{FileHandle, Service, ServiceConfig};

/// The service loaded in-process on a simulated kernel. Dropping it unloads the service.
pub struct Host {
    kernel: Kernel,
    service: Arc<Service<HostRequest>>,
}

/// An open handle. Dropping it closes it (like the process exiting).
pub struct HostHandle {
    kernel: Kernel,
    service: Arc<Service<HostRequest>>,
    file: Option<FileHandle<HostRequest>>,
}

/// An asynchronous request (an `OVERLAPPED` I/O): completed at once, or pending in the driver.
pub struct HostIo {
    kernel: Kernel,
    service: Arc<Service<HostRequest>>,
    slot: Arc<IoSlot>,
}

/// How a request completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCompletion {
    /// The NTSTATUS the driver completed it with.
    pub status: NtStatus,
    /// The output bytes the driver reported (`information` of them).
    pub output: Vec<u8>,
}

/// The host's request: the I/O manager's copy of the buffers and the request's state.
pub struct HostRequest {
    input: Vec<u8>,
    output: Vec<u8>,
    slot: Arc<IoSlot>,
}

/// Request states, as the I/O manager sees them.
const FRESH: u8 = 0;
/// Marked cancelable by the driver (parked).
const CANCELABLE: u8 = 1;
/// Claimed back by the driver: the driver completes it.
const CLAIMED: u8 = 2;
/// The cancel routine owns it.
const CANCEL_OWNED: u8 = 3;
/// Cancelled before the driver marked it cancelable.
const CANCEL_REQUESTED: u8 = 4;

/// Shared between a request, its [`HostIo`] and the completion.
struct IoSlot {
    state: AtomicU8,
    completion: Mutex<Option<HostCompletion>>,
    done: Condvar,
    /// The handle the request was sent on, for its cancel routine, until it completes: like
    /// an `OVERLAPPED`, a completed request keeps nothing of the driver (the handle's core
    /// is pool memory, which must be gone when the driver unloads). `None` for a request
    /// made on a closed handle.
    file: Mutex<Option<FileHandle<HostRequest>>>,
}

impl IoSlot {
    /// Records the completion and lets go of the handle. Called where the driver completes
    /// the request (a thread bound to the kernel, outside the service's locks), or by the
    /// host on a bound thread.
    fn finish(&self, status: NtStatus, output: Vec<u8>) {
        let mut completion = self
            .completion
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if completion.is_none() {
            *completion = Some(HostCompletion { status, output });
        }
        drop(completion);
        let file = self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(file);
        self.done.notify_all();
    }

    /// The handle, while the request has not completed.
    fn file(&self) -> Option<FileHandle<HostRequest>> {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl IoRequest for HostRequest {
    fn input(&self) -> &[u8] {
        &self.input
    }

    fn output(&mut self) -> &mut [u8] {
        &mut self.output
    }

    fn complete(mut self, status: NtStatus, information: usize) {
        self.output.truncate(information);
        let output = core::mem::take(&mut self.output);
        self.slot.finish(status, output);
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.slot).addr()
    }

    fn mark_cancelable(&mut self) -> bool {
        self.slot
            .state
            .compare_exchange(FRESH, CANCELABLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn claim(&mut self) -> bool {
        self.slot
            .state
            .compare_exchange(CANCELABLE, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Runs `f` on this thread bound to `kernel` at `PASSIVE_LEVEL`.
fn at_passive<T>(kernel: &Kernel, f: impl FnOnce(&PassiveLevel) -> T) -> Option<T> {
    let _entered = kernel.enter();
    PassiveLevel::current().map(|passive| f(&passive))
}

impl Host {
    /// Loads the service on `kernel` (`DriverEntry`).
    ///
    /// # Errors
    /// The service's status if it refuses the config or cannot allocate.
    pub fn load(kernel: &Kernel, config: ServiceConfig) -> Result<Self, NtStatus> {
        let service = at_passive(kernel, |passive| Service::new(config, passive))
            .unwrap_or(Err(STATUS_CANCELLED))?;
        Ok(Self {
            kernel: kernel.clone(),
            service: Arc::new(service),
        })
    }

    /// The simulated kernel the service runs on.
    #[must_use]
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Handles open in the service (opened, not closed, not torn down by unload).
    #[must_use]
    pub fn open_handle_count(&self) -> usize {
        at_passive(&self.kernel, |_| self.service.open_handle_count()).unwrap_or(0)
    }

    /// Opens a handle (`CreateFileW`).
    ///
    /// # Errors
    /// The service's status (limits, unloading).
    pub fn open(&self) -> Result<HostHandle, NtStatus> {
        let file = at_passive(&self.kernel, |passive| self.service.open(passive))
            .unwrap_or(Err(STATUS_CANCELLED))?;
        Ok(HostHandle {
            kernel: self.kernel.clone(),
            service: Arc::clone(&self.service),
            file: Some(file),
        })
    }

    /// Unloads the service: every handle's pending waits complete with `STATUS_CANCELLED`,
    /// every timer is destroyed and freed. Handles still held refuse every request after
    /// this. Follow with `kernel.unload()` for the verifier's leak check.
    pub fn unload(&self) {
        at_passive(&self.kernel, |passive| self.service.unload(passive));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.unload();
    }
}

impl HostHandle {
    /// Sends an IOCTL and waits for its completion (a synchronous `DeviceIoControl`).
    /// Returns the bytes written to `output` on success.
    ///
    /// A request the driver pends (a wait) blocks this call until it completes: with a
    /// virtual clock that needs another thread advancing time; prefer [`HostHandle::submit`].
    ///
    /// # Errors
    /// The failure status.
    pub fn control(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, NtStatus> {
        let io = self.submit(code, input, output.len());
        let completion = io.wait(None).unwrap_or(HostCompletion {
            status: STATUS_CANCELLED,
            output: Vec::new(),
        });
        if !nt_success(completion.status) {
            return Err(completion.status);
        }
        let written = completion.output.len().min(output.len());
        if let (Some(target), Some(source)) =
            (output.get_mut(..written), completion.output.get(..written))
        {
            target.copy_from_slice(source);
        }
        Ok(written)
    }

    /// Sends an IOCTL without waiting (an overlapped `DeviceIoControl`): the returned request
    /// is complete at once or pending in the driver.
    #[must_use]
    pub fn submit(&self, code: u32, input: &[u8], output_len: usize) -> HostIo {
        let slot = Arc::new(IoSlot {
            state: AtomicU8::new(FRESH),
            completion: Mutex::new(None),
            done: Condvar::new(),
            file: Mutex::new(self.file.clone()),
        });
        let io = HostIo {
            kernel: self.kernel.clone(),
            service: Arc::clone(&self.service),
            slot: Arc::clone(&slot),
        };
        let Some(file) = self.file.as_ref() else {
            slot.finish(STATUS_CANCELLED, Vec::new());
            return io;
        };
        let request = HostRequest {
            input: input.to_vec(),
            output: std::vec![0; output_len],
            slot: Arc::clone(&slot),
        };
        let dispatched = at_passive(&self.kernel, |passive| {
            dispatch(&self.service, file, code, request, passive)
        });
        if dispatched.is_none() {
            let _entered = self.kernel.enter();
            slot.finish(STATUS_CANCELLED, Vec::new());
        }
        io
    }

    /// Live timers of this handle (0 once closed).
    #[must_use]
    pub fn timer_count(&self) -> usize {
        self.inspect(FileHandle::timer_count)
    }

    /// Records ready in this handle's event ring (0 once closed).
    #[must_use]
    pub fn ready_records(&self) -> usize {
        self.inspect(FileHandle::ready_records)
    }

    /// Waits pending on this handle (0 once closed).
    #[must_use]
    pub fn pending_waits(&self) -> usize {
        self.inspect(FileHandle::pending_waits)
    }

    fn inspect(&self, read: impl FnOnce(&FileHandle<HostRequest>) -> usize) -> usize {
        self.file
            .as_ref()
            .and_then(|file| at_passive(&self.kernel, |_| read(file)))
            .unwrap_or(0)
    }

    /// Closes the handle (`CloseHandle`): cleanup cancels its pending waits and destroys its
    /// timers, then the handle is forgotten. Pending requests stay waitable.
    pub fn close(mut self) {
        self.close_now();
    }

    fn close_now(&mut self) {
        if let Some(file) = self.file.take() {
            at_passive(&self.kernel, |passive| self.service.close(file, passive));
        }
    }
}

impl Drop for HostHandle {
    fn drop(&mut self) {
        self.close_now();
    }
}

impl HostIo {
    /// The completion, if the request has completed (`GetOverlappedResult` without waiting).
    #[must_use]
    pub fn result(&self) -> Option<HostCompletion> {
        self.slot
            .completion
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the request has completed.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.result().is_some()
    }

    /// Blocks until the request completes or `timeout` passes (`None`: no limit), in wall
    /// time. With a virtual clock, only another thread advancing time can complete a
    /// pending wait.
    #[must_use]
    pub fn wait(&self, timeout: Option<Duration>) -> Option<HostCompletion> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut completion = self
            .slot
            .completion
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(done) = completion.as_ref() {
                return Some(done.clone());
            }
            completion = match deadline {
                None => self
                    .slot
                    .done
                    .wait(completion)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.slot
                        .done
                        .wait_timeout(completion, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Cancels the request (`CancelIoEx`): if it is parked in the driver and not yet claimed,
    /// the cancel routine completes it with `STATUS_CANCELLED`; if it has not been parked
    /// yet, the driver completes it with `STATUS_CANCELLED` when it tries to park it; a
    /// completed or claimed request is not affected. Still wait for it afterwards.
    pub fn cancel(&self) {
        loop {
            let state = self.slot.state.load(Ordering::Acquire);
            let next = match state {
                FRESH => CANCEL_REQUESTED,
                CANCELABLE => CANCEL_OWNED,
                _ => return,
            };
            if self
                .slot
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            if next == CANCEL_OWNED {
                self.run_cancel_routine();
            }
            return;
        }
    }

    /// The cancel routine: it owns the request now.
    fn run_cancel_routine(&self) {
        let key = Arc::as_ptr(&self.slot).addr();
        let _entered = self.kernel.enter();
        let file = self.slot.file();
        let parked = file.as_ref().and_then(|file| {
            at_passive(&self.kernel, |_| self.service.cancel_wait(file, key)).flatten()
        });
        match parked {
            Some(request) => request.complete(STATUS_CANCELLED, 0),
            // The service took it out and lost the claim: this routine completes it.
            None => self.slot.finish(STATUS_CANCELLED, Vec::new()),
        }
        // Dropped while bound: if the handle was closed meanwhile, this may be its last owner.
        drop(file);
    }
}
