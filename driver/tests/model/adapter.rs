//! The model-based test's only contact with the driver's front-end API: load the driver,
//! open and close handles, send IOCTLs as byte buffers, submit waits, cancel them like
//! `CancelIoEx`, unload. Everything else in the test speaks bytes and NTSTATUS values.
//!
//! Today this drives `ktimer::host` (the in-process I/O path); when the KMDF shell runs on a
//! simulated KMDF, only this module changes.

use kernel_sim::Kernel;
use ktimer::host::{Host, HostHandle, HostIo};
use ktimer::service::ServiceConfig;
use ktimer_abi::status::NtStatus;

/// The driver loaded on a simulated kernel.
pub struct Driver {
    host: Host,
}

/// An open handle.
pub struct Handle {
    handle: HostHandle,
}

/// A submitted (overlapped) request.
pub struct Io {
    io: HostIo,
}

impl Driver {
    /// Loads the driver (`DriverEntry`).
    pub fn load(kernel: &Kernel, config: ServiceConfig) -> Self {
        let host = Host::load(kernel, config).expect("the driver loads");
        Self { host }
    }

    /// `CreateFileW` on the device.
    pub fn open(&self) -> Result<Handle, NtStatus> {
        self.host.open().map(|handle| Handle { handle })
    }

    /// Unloads the driver; handles still held refuse every request afterwards.
    pub fn unload(&self) {
        self.host.unload();
    }
}

impl Handle {
    /// An overlapped `DeviceIoControl`: complete at once, or pending in the driver.
    pub fn submit(&self, code: u32, input: &[u8], output_len: usize) -> Io {
        Io {
            io: self.handle.submit(code, input, output_len),
        }
    }

    /// `CloseHandle`.
    pub fn close(self) {
        self.handle.close();
    }
}

impl Io {
    /// The completion (status, output bytes), if the request has completed.
    pub fn result(&self) -> Option<(NtStatus, Vec<u8>)> {
        self.io.result().map(|done| (done.status, done.output))
    }

    /// `CancelIoEx` on this request.
    pub fn cancel(&self) {
        self.io.cancel();
    }
}
