//! The program: parse the command line, pick the backend, run the selected scenarios with a
//! progress line, print the report, and turn the outcome into the documented exit code.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use crate::cli::{
    self, Command, EXIT_DEVICE_ERROR, EXIT_FAILED, EXIT_NO_DEVICE, EXIT_PASSED, EXIT_USAGE,
    RunOptions,
};
use crate::client::Client;
use crate::clock::Clock;
use crate::device::{Device, OpenError};
use crate::report::Report;
use crate::scenario::{self, Env, Scenario};
use crate::user_timer::{UserTimer, platform_timer};

/// A device with the clock its time runs on.
pub struct Backend {
    /// The device.
    pub device: Box<dyn Device>,
    /// Its clock.
    pub clock: Box<dyn Clock>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.device.describe())
    }
}

/// Extra lateness allowed for host scheduling in real-time runs. The driver measures
/// lateness in its DPC, so on Windows only DPC latency counts; under `--sim` the simulated
/// clock interrupt and DPCs are host threads competing for the CPU with everything else.
fn real_time_slack(sim: bool) -> Duration {
    if sim {
        Duration::from_millis(30)
    } else {
        Duration::from_millis(5)
    }
}

/// Runs the program with `args` (without the program name); returns the exit code.
#[must_use]
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    let names = scenario::names();
    match cli::parse(args, &names) {
        Err(error) => {
            eprintln!("ktimer-test: {error}\n\n{}", cli::usage());
            EXIT_USAGE
        }
        Ok(Command::Help) => {
            print!("{}", cli::usage());
            EXIT_PASSED
        }
        Ok(Command::List) => {
            for scenario in scenario::all() {
                println!("{:<26} {}", scenario.name, scenario.summary);
            }
            EXIT_PASSED
        }
        Ok(Command::Run(options)) => run(&options),
    }
}

fn run(options: &RunOptions) -> u8 {
    let backend = match open_backend(options.sim) {
        Ok(backend) => backend,
        Err(OpenError::NotFound(line)) => {
            eprintln!("ktimer-test: {line}");
            return EXIT_NO_DEVICE;
        }
        Err(OpenError::Failed(line)) => {
            eprintln!("ktimer-test: {line}");
            return EXIT_DEVICE_ERROR;
        }
    };
    let selected: Vec<&Scenario> = if options.scenarios.is_empty() {
        scenario::all().iter().collect()
    } else {
        options
            .scenarios
            .iter()
            .filter_map(|name| scenario::find(name))
            .collect()
    };
    let user_timer = platform_timer(options.sim);
    let progress = Progress::new(!options.quiet);
    let report = run_scenarios(
        &backend,
        &selected,
        Some(user_timer.as_ref()),
        real_time_slack(options.sim),
        &progress,
    );
    progress.finish();
    if options.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.success() { EXIT_PASSED } else { EXIT_FAILED }
}

/// The backend the options ask for.
///
/// # Errors
/// [`OpenError`] if the device is missing or cannot be opened.
pub fn open_backend(sim: bool) -> Result<Backend, OpenError> {
    if sim {
        return crate::sim::real_time_backend();
    }
    device_backend()
}

#[cfg(windows)]
fn device_backend() -> Result<Backend, OpenError> {
    let device = crate::windows::WindowsDevice::locate()?;
    Ok(Backend {
        device: Box::new(device),
        clock: Box::new(crate::clock::RealClock),
    })
}

#[cfg(not(windows))]
fn device_backend() -> Result<Backend, OpenError> {
    Err(OpenError::NotFound(
        "no ktimer device: the driver runs only on Windows; use --sim to run the scenarios \
         against the driver's timer service on the kernel simulator"
            .to_owned(),
    ))
}

/// Runs `scenarios` on `backend`, then unloads the driver where the backend can check the
/// unload, and builds the report. In virtual time the user-mode comparison timer is not used
/// (it cannot follow a virtual clock).
#[must_use]
pub fn run_scenarios(
    backend: &Backend,
    scenarios: &[&Scenario],
    user_timer: Option<&dyn UserTimer>,
    slack: Duration,
    progress: &Progress,
) -> Report {
    let virtual_time = backend.clock.is_virtual();
    let driver = Client::open(backend.device.as_ref())
        .ok()
        .and_then(|client| client.info().ok())
        .map(|info| {
            format!(
                "version {}, ABI {}, clock tick {}",
                scenario::driver_version(&info),
                info.header.abi_version,
                crate::stats::format_ms(i64::from(info.clock_increment))
            )
        });
    let mut results = Vec::new();
    let total = scenarios.len();
    for (index, scenario) in scenarios.iter().enumerate() {
        let label = format!("[{}/{total}] {}", index + 1, scenario.name);
        progress.show(&label);
        let report_phase = |phase: &str| progress.show(&format!("{label}: {phase}"));
        let env = Env {
            device: backend.device.as_ref(),
            clock: backend.clock.as_ref(),
            user_timer: if virtual_time { None } else { user_timer },
            slack: if virtual_time { Duration::ZERO } else { slack },
            progress: &report_phase,
        };
        results.push(scenario::run_one(scenario, &env));
    }
    let unload = backend.device.unload();
    Report {
        backend: backend.device.describe(),
        driver,
        results,
        unload,
    }
}

/// The progress line on stderr: rewritten in place on a terminal, one line per update
/// otherwise (logs), nothing when disabled.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    terminal: bool,
}

impl Progress {
    /// A progress line; `enabled = false` prints nothing.
    #[must_use]
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `text` as the current progress.
    pub fn show(&self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(stderr, "\r\x1b[2K{text}")
        } else {
            writeln!(stderr, "{text}")
        };
        let _ = stderr.flush();
    }

    /// Clears the progress line before the report is printed.
    pub fn finish(&self) {
        if self.enabled && self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}
