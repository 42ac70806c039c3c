//! The `--sim` backend: the driver's timer service loaded in-process on the kernel
//! simulator through the driver's host (`ktimer::host`), which stands in for the I/O
//! manager: the same dispatch entry as the KMDF shell, the same byte buffers as
//! `DeviceIoControl`, pending waits cancellable like `CancelIoEx`.
//!
//! `ktimer-test --sim` runs it on the simulator's real-time clock (a clock-interrupt thread
//! ticking every 15.625 ms, Windows' default tick). The tests run it on the virtual clock,
//! where letting time pass is `Kernel::advance`: deterministic and fast.

use std::time::Duration;

use kernel_sim::{Config, Kernel};
use ktimer::host::{Host, HostCompletion, HostHandle, HostIo};
use ktimer::service::ServiceConfig;
use ktimer_abi::status::{STATUS_CANCELLED, nt_success};

use crate::app::Backend;
use crate::client::status_name;
use crate::clock::Clock;
use crate::device::{Completion, Device, Handle, IoFailure, OpenError, PendingRequest};

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
    let host = Host::load(&kernel, ServiceConfig::default()).map_err(|status| {
        OpenError::Failed(format!(
            "the simulated driver did not load: {}",
            status_name(status)
        ))
    })?;
    let clock_name = if virtual_time { "virtual" } else { "real-time" };
    let device = SimDevice {
        host,
        virtual_time,
        description: format!(
            "simulator: the driver's timer service in-process on kernel-sim ({clock_name} \
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

/// The service loaded on the simulator.
struct SimDevice {
    host: Host,
    virtual_time: bool,
    description: String,
}

impl Device for SimDevice {
    fn open(&self) -> Result<Box<dyn Handle>, OpenError> {
        let handle = self.host.open().map_err(|status| {
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
        self.host.unload();
        let kernel = self.host.kernel();
        if let Some(bug_check) = kernel.bug_check() {
            return Some(Err(format!(
                "the simulated kernel bug-checked: {bug_check:?}"
            )));
        }
        Some(match kernel.unload() {
            Ok(()) => Ok("driver unloaded: no bug check, no leaked pool".to_owned()),
            Err(bug_check) => Err(format!("driver unload failed the verifier: {bug_check:?}")),
        })
    }
}

/// One handle opened through the host.
struct SimHandle {
    handle: HostHandle,
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
                .unwrap_or(Completion::Failed(IoFailure::Status(STATUS_CANCELLED)))
        });
        match completion {
            Completion::Done(bytes) => {
                let length = bytes.len().min(output.len());
                if let (Some(target), Some(source)) =
                    (output.get_mut(..length), bytes.get(..length))
                {
                    target.copy_from_slice(source);
                }
                Ok(length)
            }
            Completion::Failed(failure) => Err(failure),
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

/// A request sent through the host.
struct SimRequest(HostIo);

fn completion_of(done: HostCompletion) -> Completion {
    if nt_success(done.status) {
        Completion::Done(done.output)
    } else {
        Completion::Failed(IoFailure::Status(done.status))
    }
}

impl PendingRequest for SimRequest {
    fn wait(&mut self, timeout: Duration) -> Option<Completion> {
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
