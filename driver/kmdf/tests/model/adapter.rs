//! The model-based test's only contact with the driver's front end: load the driver, open
//! and close handles, send IOCTLs as byte buffers, submit waits, cancel them like
//! `CancelIoEx`, remove the device and unload. Everything else in the test speaks bytes and
//! NTSTATUS values.
//!
//! The driver is loaded through `ktimer_kmdf::DRIVER_ENTRY` on kernel-sim's KMDF model (one
//! device), so every request goes through the KMDF shell: `EvtIoDeviceControl`,
//! `EvtRequestCancel`, the file callbacks and the device cleanup.

use kernel_sim::wdf::{DeviceNode, Framework, FrameworkConfig, UserHandle};
use kernel_sim::{BugCheck, Kernel};
use ktimer_abi::status::NtStatus;
use ktimer_kmdf::sim_hooks;
use ktimer_service::ServiceConfig;

/// The driver loaded on a simulated kernel, with one device.
pub struct Driver {
    framework: Framework,
    device: DeviceNode,
}

/// An open handle (a file object of the device).
pub struct Handle {
    file: UserHandle,
}

/// A submitted (overlapped) request.
pub struct Io {
    io: kernel_sim::wdf::Io,
}

impl Driver {
    /// Loads the driver (`DriverEntry`) with the service limits `config` and starts its
    /// device (`EvtDriverDeviceAdd`).
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
        Self { framework, device }
    }

    /// `CreateFileW` on the device.
    pub fn open(&self) -> Result<Handle, NtStatus> {
        self.framework
            .open(self.device, None)
            .map(|file| Handle { file })
    }

    /// Removes the device with handles still open (a surprise removal): every pending wait
    /// is cancelled and handles still held refuse every request; the device, and with it
    /// the service, goes when the last handle closes.
    pub fn remove(&self) {
        self.framework.remove_device(self.device);
    }

    /// `EvtDriverUnload`, then the framework's and the kernel's unload checks. Every handle
    /// must be closed and the device removed first.
    pub fn unload(&self) -> Result<(), BugCheck> {
        self.framework.unload()
    }
}

impl Handle {
    /// An overlapped `DeviceIoControl`: complete at once, or pending in the driver.
    pub fn submit(&self, code: u32, input: &[u8], output_len: usize) -> Io {
        Io {
            io: self.file.submit(code, input, output_len),
        }
    }

    /// `CloseHandle`.
    pub fn close(self) {
        self.file.close();
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
