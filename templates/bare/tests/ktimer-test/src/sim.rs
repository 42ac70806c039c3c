//! The `--sim` backend: the driver loaded in-process through its `DriverEntry`
//! (`ktimer_kmdf::DRIVER_ENTRY`) on kernel-sim's model of KMDF, with one root-enumerated
//! device added through `EvtDriverDeviceAdd`; handles opened through the simulated I/O
//! manager; every IOCTL sent to `EvtIoDeviceControl` with the byte buffers of
//! `DeviceIoControl`. At the end the device is removed and the driver unloaded, with the
//! simulator's verifier checking for bug checks, leaked pool and leaked framework objects.
//!
//! A bug check is a panic with a `kernel_sim::BugCheck` payload. The tests unwind and catch
//! it; the app's profiles abort on panic, so in the app a bug check ends the process with
//! the simulator's one-line message, as a real one would stop the machine.

use kernel_sim::wdf::{DeviceNode, Framework, FrameworkConfig, UserHandle};
use kernel_sim::{Config, Kernel, catch_bug_check};
use ktimer_abi::status::{NtStatus, STATUS_INVALID_HANDLE};

use crate::device::{Device, Handle, show_status};

/// The driver on the simulator, with its device.
pub struct SimDevice {
    framework: Framework,
    /// `None` once removed.
    device: Option<DeviceNode>,
    /// Open handles by [`Handle`] number; `None` once closed.
    handles: Vec<Option<UserHandle>>,
}

impl SimDevice {
    /// A new simulated kernel with the driver loaded and its device added.
    ///
    /// # Errors
    /// `DriverEntry` or `EvtDriverDeviceAdd` failed, or the kernel bug-checked.
    pub fn load() -> Result<Self, String> {
        let kernel = Kernel::new(Config::default());
        let framework = Framework::new(&kernel, &FrameworkConfig::default());
        let loaded = catch_bug_check(|| {
            framework.load(ktimer_kmdf::DRIVER_ENTRY)?;
            framework.add_device()
        });
        match loaded {
            Ok(Ok(device)) => Ok(Self {
                framework,
                device: Some(device),
                handles: Vec::new(),
            }),
            Ok(Err(status)) => Err(format!(
                "the simulated driver did not load: {}",
                show_status(status)
            )),
            Err(bug_check) => Err(format!(
                "the simulated kernel bug-checked while loading the driver: {bug_check}"
            )),
        }
    }

    /// Closes every handle, removes the device and unloads the driver (once).
    fn tear_down(&mut self) -> Option<Result<String, String>> {
        let device = self.device.take()?;
        for handle in self.handles.drain(..).flatten() {
            handle.close();
        }
        if let Err(bug_check) = catch_bug_check(|| self.framework.remove_device(device)) {
            return Some(Err(format!(
                "the simulated kernel bug-checked removing the device: {bug_check}"
            )));
        }
        Some(match self.framework.unload() {
            Ok(()) => Ok(
                "device removed, EvtDriverUnload called: no bug check, no leaked \
                          pool or framework object"
                    .to_owned(),
            ),
            Err(bug_check) => Err(format!("unload failed the verifier: {bug_check}")),
        })
    }
}

impl Device for SimDevice {
    fn backend(&self) -> String {
        "simulator (the driver through DriverEntry on kernel-sim's KMDF model)".to_owned()
    }

    fn pings_before(&self) -> Option<u64> {
        Some(0)
    }

    fn open(&mut self) -> Result<Handle, String> {
        let device = self.device.ok_or("the device was removed")?;
        let handle = self
            .framework
            .open(device, None)
            .map_err(|status| format!("open refused: {}", show_status(status)))?;
        self.handles.push(Some(handle));
        Ok(Handle(self.handles.len() - 1))
    }

    fn control(
        &mut self,
        handle: Handle,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Vec<u8>, NtStatus> {
        let file = self
            .handles
            .get(handle.0)
            .and_then(Option::as_ref)
            .ok_or(STATUS_INVALID_HANDLE)?;
        let mut output = vec![0; output_len];
        let written = file.control(code, input, &mut output)?;
        output.truncate(written);
        Ok(output)
    }

    fn close(&mut self, handle: Handle) {
        if let Some(file) = self.handles.get_mut(handle.0).and_then(Option::take) {
            file.close();
        }
    }

    fn finish(&mut self) -> Option<Result<String, String>> {
        self.tear_down()
    }
}

impl Drop for SimDevice {
    /// A device dropped before [`Device::finish`] is still removed and unloaded; a failure
    /// then has no report to go to, so it goes to stderr.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(Err(problem)) = self.tear_down() {
            eprintln!("ktimer-test: {problem}");
        }
    }
}
