//! The `--sim` backend: the driver loaded in-process on the kernel simulator through its
//! `DriverEntry` (`ktimer_kmdf::DRIVER_ENTRY`) and the simulator's KMDF model
//! (`kernel_sim::wdf::Framework`): a root-enumerated device added through
//! `EvtDriverDeviceAdd`, handles opened through `EvtDeviceFileCreate`, every IOCTL sent to
//! `EvtIoDeviceControl` with the byte buffers of `DeviceIoControl`, pending waits cancelled
//! like `CancelIoEx`, unload by removing the device and calling `EvtDriverUnload`.
//!
//! `ktimer-test --sim` runs it on the simulator's real-time clock (a clock-interrupt thread
//! ticking every 15.625 ms, Windows' default tick). The tests run it on the virtual clock,
//! where letting time pass is `Kernel::advance`: deterministic and fast.

use std::time::Duration;

use kernel_sim::wdf::{DeviceNode, Framework, FrameworkConfig, Io, UserHandle};
use kernel_sim::{Config, Kernel, catch_bug_check};
use ktimer_abi::status::{STATUS_CANCELLED, nt_success};

use crate::app::Backend;
use crate::client::status_name;
use crate::clock::Clock;
use crate::device::{Device, Handle, IoFailure, OpenError, PendingRequest, Reply};

/// The tick of `--sim`: Windows' default clock interrupt period.
pub const REAL_TIME_TICK: Duration = Duration::from_micros(15_625);

/// The service on the simulator's real-time clock (`--sim`).
///
/// # Errors
/// [`OpenError::Failed`] if the service refuses to load.
pub fn real_time_backend() -> Result<Backend, OpenError> {
    backend(Config::real_time(REAL_TIME_TICK))
}

/// The service on the simulator's virtual clock (`cargo test`): time moves only when a
/// scenario lets it pass.
///
/// # Errors
/// [`OpenError::Failed`] if the service refuses to load.
pub fn virtual_backend() -> Result<Backend, OpenError> {
    backend(Config {
        trace: false,
        ..Config::default()
    })
}

/// The service on a kernel built from `config`.
///
/// # Errors
/// [`OpenError::Failed`] if the service refuses to load.
pub fn backend(config: Config) -> Result<Backend, OpenError> {
    let virtual_time = config.clock == kernel_sim::Clock::Virtual;
    let tick = config.time_increment;
    let kernel = Kernel::new(config);
    let framework = Framework::new(&kernel, &FrameworkConfig::default());
    let loaded = catch_bug_check(|| {
        framework.load(ktimer_kmdf::DRIVER_ENTRY)?;
        framework.add_device()
    });
    let device = match loaded {
        Ok(Ok(device)) => device,
        Ok(Err(status)) => {
            return Err(OpenError::Failed(format!(
                "the simulated driver did not load: {}",
                status_name(status)
            )));
        }
        Err(bug_check) => {
            return Err(OpenError::Failed(format!(
                "the simulated kernel bug-checked while loading the driver: {bug_check}"
            )));
        }
    };
    let clock_name = if virtual_time { "virtual" } else { "real-time" };
    let device = SimDevice {
        framework,
        device,
        virtual_time,
        description: format!(
            "simulator: the driver through DriverEntry on kernel-sim's KMDF model ({clock_name} \
             clock, tick {})",
            crate::stats::format_ms(i64::from(tick))
        ),
    };
    Ok(Backend {
        device: Box::new(device),
        clock: Box::new(SimClock {
            kernel,
            virtual_time,
        }),
    })
}

/// The simulated kernel's clock.
struct SimClock {
    kernel: Kernel,
    virtual_time: bool,
}

impl Clock for SimClock {
    fn let_pass(&self, duration: Duration) {
        if self.virtual_time {
            self.kernel.advance(duration);
        } else {
            std::thread::sleep(duration);
        }
    }

    fn is_virtual(&self) -> bool {
        self.virtual_time
    }
}

/// The driver loaded on the simulator, with its one device.
struct SimDevice {
    framework: Framework,
    device: DeviceNode,
    virtual_time: bool,
    description: String,
}

impl Device for SimDevice {
    fn open(&self) -> Result<Box<dyn Handle>, OpenError> {
        let handle = catch_bug_check(|| self.framework.open(self.device, None))
            .map_err(|bug_check| {
                OpenError::Failed(format!("the simulated kernel bug-checked: {bug_check}"))
            })?
            .map_err(|status| {
                OpenError::Failed(format!("open refused: {}", status_name(status)))
            })?;
        Ok(Box::new(SimHandle {
            handle,
            virtual_time: self.virtual_time,
        }))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn unload(&self) -> Option<Result<String, String>> {
        let removed = catch_bug_check(|| self.framework.remove_device(self.device));
        if let Err(bug_check) = removed {
            return Some(Err(format!(
                "the simulated kernel bug-checked: {bug_check}"
            )));
        }
        Some(match self.framework.unload() {
            Ok(()) => Ok("driver unloaded (device removed, EvtDriverUnload): no bug check, no leaked framework object or pool".to_owned()),
            Err(bug_check) => Err(format!("driver unload failed the verifier: {bug_check:?}")),
        })
    }
}

/// One handle opened through the simulated I/O manager.
struct SimHandle {
    handle: UserHandle,
    virtual_time: bool,
}

/// How long a synchronous request may block in real time before it is cancelled.
const SYNC_LIMIT: Duration = Duration::from_secs(30);

impl Handle for SimHandle {
    fn control(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoFailure> {
        let mut request = SimRequest(self.handle.submit(code, input, output.len()));
        // Virtual time: nothing can complete a request that pended (no one advances the
        // clock during a synchronous call); real time: it may still complete.
        let limit = if self.virtual_time {
            Duration::ZERO
        } else {
            SYNC_LIMIT
        };
        let completion = request.wait(limit).unwrap_or_else(|| {
            request.cancel();
            request
                .wait(SYNC_LIMIT)
                .unwrap_or(Reply::Failed(IoFailure::Status(STATUS_CANCELLED)))
        });
        match completion {
            Reply::Done(bytes) => {
                let length = bytes.len().min(output.len());
                if let (Some(target), Some(source)) =
                    (output.get_mut(..length), bytes.get(..length))
                {
                    target.copy_from_slice(source);
                }
                Ok(length)
            }
            Reply::Failed(failure) => Err(failure),
        }
    }

    fn submit(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn PendingRequest>, IoFailure> {
        Ok(Box::new(SimRequest(
            self.handle.submit(code, input, output_len),
        )))
    }

    fn close(self: Box<Self>) {
        self.handle.close();
    }
}

/// A request sent through the simulated I/O manager.
struct SimRequest(Io);

fn completion_of(done: kernel_sim::wdf::IoOutcome) -> Reply {
    if nt_success(done.status) {
        Reply::Done(done.output)
    } else {
        Reply::Failed(IoFailure::Status(done.status))
    }
}

impl PendingRequest for SimRequest {
    fn wait(&mut self, timeout: Duration) -> Option<Reply> {
        let done = if timeout.is_zero() {
            self.0.result()
        } else {
            self.0.wait(Some(timeout))
        };
        done.map(completion_of)
    }

    fn cancel(&self) {
        self.0.cancel();
    }
}
