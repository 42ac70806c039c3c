//! What to tell the user when no ktimer device can be opened: the driver package is not
//! installed, or it is installed but the device did not start (unsigned, failed to load,
//! ...). The Windows backend asks the configuration manager about devices of the driver's
//! hardware id (`Root\KTimer`) and hands what it found here; the wording lives here, in
//! portable code, so that it is tested on every host.
//!
//! Problem codes and their meanings are from Microsoft's "Device Manager error messages"
//! and `CM_PROB_*` (cfg.h); the commands are from Microsoft's `PnPUtil` documentation
//! ("`PnPUtil` examples": `pnputil /enum-devices /problem`). None of it has been seen on a
//! Windows machine by this project.

/// The hardware id in the INF (`inf/ktimer.inx`), as `devgen /hardwareid` creates it.
pub const HARDWARE_ID: &str = r"Root\KTimer";

/// What the configuration manager reports for one device with the driver's hardware id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Present and started (`DN_STARTED`), yet its interface and link were not found.
    Started,
    /// Present with a problem code (`DN_HAS_PROBLEM`, `CM_Get_DevNode_Status`).
    Problem(u32),
    /// Present, not started, no problem code.
    NotStarted,
    /// Known to the system but not present (a phantom: removed, or not created since).
    NotPresent,
}

/// One device instance with the driver's hardware id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledDevice {
    /// Its device instance id (e.g. `ROOT\SYSTEM\0001`).
    pub instance_id: String,
    /// Its state.
    pub state: DeviceState,
}

/// How to install the package, when no device of the hardware id exists.
pub const INSTALL_HINT: &str = "install the ktimer driver package (pnputil /add-driver \
     ktimer.inf /install, then create the root-enumerated device; see docs/WINDOWS.md) and \
     retry";

/// How to look at a device's problem code yourself.
pub const PROBLEM_CODE_HINT: &str = "to see the device's problem code: Device Manager \
     (the device's Properties, General tab, Device status), or pnputil /enum-devices \
     /problem (not verified on Windows by this project)";

/// The meaning of a problem code, and what to do, for the codes a first install meets.
#[must_use]
pub fn problem_meaning(code: u32) -> &'static str {
    match code {
        52 => {
            "CM_PROB_UNSIGNED_DRIVER: Windows cannot verify the driver's signature; on a test \
             machine turn test signing on (bcdedit /set testsigning on, reboot) and trust the \
             package's test certificate (docs/WINDOWS.md)"
        }
        39 => {
            "CM_PROB_DRIVER_FAILED_LOAD: Windows could not load the driver (missing or \
             corrupt ktimer.sys, or a KMDF version the system lacks: docs/WINDOWS.md)"
        }
        37 => "CM_PROB_FAILED_DRIVER_ENTRY: the driver's DriverEntry returned a failure",
        31 => "CM_PROB_FAILED_ADD: the driver's EvtDriverDeviceAdd failed",
        28 => {
            "CM_PROB_FAILED_INSTALL: no driver is installed for it (pnputil /add-driver \
             ktimer.inf /install)"
        }
        22 => "CM_PROB_DISABLED: the device is disabled (pnputil /enable-device)",
        10 => "CM_PROB_FAILED_START: the device failed to start",
        _ => "see Microsoft's Device Manager error messages for this code",
    }
}

/// The line for "no device could be opened", given the devices of the driver's hardware id
/// the system knows (empty: none, or the query failed).
#[must_use]
pub fn missing_device_line(what_was_missing: &str, devices: &[InstalledDevice]) -> String {
    let Some(device) = devices
        .iter()
        .find(|device| device.state != DeviceState::NotPresent)
        .or_else(|| devices.first())
    else {
        return format!("no ktimer device found ({what_was_missing} is missing): {INSTALL_HINT}");
    };
    let id = &device.instance_id;
    match device.state {
        DeviceState::Problem(code) => format!(
            "the ktimer driver is installed but its device {id} did not start: problem code \
             {code} ({}); {PROBLEM_CODE_HINT}",
            problem_meaning(code)
        ),
        DeviceState::NotStarted => format!(
            "the ktimer device {id} is present but not started and reports no problem code; \
             {PROBLEM_CODE_HINT}"
        ),
        DeviceState::Started => format!(
            "the ktimer device {id} is started, but {what_was_missing} is missing: is this \
             ktimer driver the version this app expects? {PROBLEM_CODE_HINT}"
        ),
        DeviceState::NotPresent => format!(
            "a ktimer device ({id}) was installed but is not present now (removed?): create \
             the root-enumerated device again (devgen /add /bus ROOT /hardwareid \
             \"{HARDWARE_ID}\", docs/WINDOWS.md) and retry"
        ),
    }
}

/// Whether a `REG_MULTI_SZ` list of hardware ids (UTF-16, NUL-separated, ending in an empty
/// entry) names the driver's hardware id. Hardware ids compare case-insensitively.
#[must_use]
pub fn names_hardware_id(multi_sz: &[u16]) -> bool {
    multi_sz
        .split(|&unit| unit == 0)
        .take_while(|entry| !entry.is_empty())
        .any(|entry| String::from_utf16_lossy(entry).eq_ignore_ascii_case(HARDWARE_ID))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(state: DeviceState) -> InstalledDevice {
        InstalledDevice {
            instance_id: r"ROOT\SYSTEM\0001".into(),
            state,
        }
    }

    #[test]
    fn no_device_of_the_hardware_id_says_to_install_the_package() {
        let line = missing_device_line(r"symbolic link \\.\KTimer", &[]);
        assert!(line.starts_with("no ktimer device found"), "{line}");
        assert!(
            line.contains("pnputil /add-driver ktimer.inf /install"),
            "{line}"
        );
    }

    #[test]
    fn an_unsigned_driver_is_reported_with_code_52_not_as_missing() {
        let line = missing_device_line("x", &[device(DeviceState::Problem(52))]);
        assert!(
            !line.contains("install the ktimer driver package"),
            "{line}"
        );
        assert!(line.contains(r"ROOT\SYSTEM\0001"), "{line}");
        assert!(
            line.contains("problem code 52 (CM_PROB_UNSIGNED_DRIVER"),
            "{line}"
        );
        assert!(line.contains("testsigning"), "{line}");
        assert!(line.contains("pnputil /enum-devices /problem"), "{line}");
        assert!(line.contains("Device Manager"), "{line}");
    }

    #[test]
    fn a_driver_that_failed_to_load_is_reported_with_code_39() {
        let line = missing_device_line("x", &[device(DeviceState::Problem(39))]);
        assert!(
            line.contains("problem code 39 (CM_PROB_DRIVER_FAILED_LOAD"),
            "{line}"
        );
    }

    #[test]
    fn an_unknown_code_is_still_shown_with_where_to_look() {
        let line = missing_device_line("x", &[device(DeviceState::Problem(99))]);
        assert!(line.contains("problem code 99"), "{line}");
        assert!(line.contains("Device Manager"), "{line}");
    }

    #[test]
    fn a_present_device_wins_over_a_phantom_one() {
        let phantom = InstalledDevice {
            instance_id: r"ROOT\SYSTEM\0000".into(),
            state: DeviceState::NotPresent,
        };
        let line = missing_device_line("x", &[phantom.clone(), device(DeviceState::Problem(52))]);
        assert!(line.contains(r"ROOT\SYSTEM\0001"), "{line}");
        let line = missing_device_line("x", &[phantom]);
        assert!(line.contains("not present now"), "{line}");
        assert!(line.contains("devgen /add /bus ROOT"), "{line}");
    }

    #[test]
    fn started_and_not_started_devices_say_what_they_are() {
        assert!(
            missing_device_line("the link", &[device(DeviceState::Started)])
                .contains("is started, but the link is missing")
        );
        assert!(
            missing_device_line("x", &[device(DeviceState::NotStarted)])
                .contains("present but not started")
        );
    }

    #[test]
    fn hardware_ids_match_case_insensitively_in_a_multi_string() {
        let multi = |text: &str| -> Vec<u16> { text.encode_utf16().collect() };
        assert!(names_hardware_id(&multi("root\\ktimer\0\0")));
        assert!(names_hardware_id(&multi("Other\\Id\0Root\\KTimer\0\0")));
        assert!(!names_hardware_id(&multi("Root\\KTimerX\0\0")));
        assert!(
            !names_hardware_id(&multi("\0Root\\KTimer\0\0")),
            "ends at the empty entry"
        );
        assert!(!names_hardware_id(&[]));
    }
}
