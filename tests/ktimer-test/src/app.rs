//! The program: parse the command line, pick the backend, run the selected scenarios with a
//! progress line, print the report, and turn the outcome into the documented exit code.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use crate::cli::{
    self, Command, EXIT_DEVICE_ERROR, EXIT_FAILED, EXIT_NO_DEVICE, EXIT_NOTHING_PASSED,
    EXIT_PASSED, EXIT_USAGE, RunOptions,
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

/// Extra lateness allowed for host scheduling in real-time runs, unless
/// `--lateness-tolerance-ms` sets it. The driver measures lateness in its DPC, so on Windows
/// only DPC latency counts; under `--sim` the simulated clock interrupt and DPCs are host
/// threads competing for the CPU with everything else. Under Wine (tests/wine/run.sh sets
/// the flag) timer callbacks are Linux thread-pool threads: see docs/WINE.md.
fn real_time_slack(options: &RunOptions) -> Duration {
    match options.lateness_tolerance_ms {
        Some(ms) => Duration::from_millis(ms.into()),
        None if options.sim => Duration::from_millis(30),
        None => Duration::from_millis(5),
    }
}

/// Runs the program with `args` (without the program name), printing the report to `out`
/// and diagnostics to `err`; returns the exit code.
#[must_use]
pub fn main(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    main_with(scenario::all(), args, out, err)
}

/// [`main`] with `table` as the scenarios (the tests' own tables).
fn main_with(
    table: &[Scenario],
    args: impl IntoIterator<Item = std::ffi::OsString>,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    // Output errors (a closed pipe) cannot be reported anywhere better: ignored.
    let names: Vec<&str> = table.iter().map(|scenario| scenario.name).collect();
    match cli::parse(args, &names) {
        Err(error) => {
            let _ = writeln!(err, "ktimer-test: {error}\n\n{}", cli::usage());
            EXIT_USAGE
        }
        Ok(Command::Help) => {
            let _ = write!(out, "{}", cli::usage());
            EXIT_PASSED
        }
        Ok(Command::List) => {
            for scenario in table {
                let _ = writeln!(out, "{:<26} {}", scenario.name, scenario.summary);
            }
            EXIT_PASSED
        }
        Ok(Command::Run(options)) => run(table, &options, out, err),
    }
}

fn run(
    table: &[Scenario],
    options: &RunOptions,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let backend = match open_backend(options.sim) {
        Ok(backend) => backend,
        Err(OpenError::NotFound(line)) => {
            let _ = writeln!(err, "ktimer-test: {line}");
            return EXIT_NO_DEVICE;
        }
        Err(OpenError::Failed(line)) => {
            let _ = writeln!(err, "ktimer-test: {line}");
            return EXIT_DEVICE_ERROR;
        }
    };
    let selected: Vec<&Scenario> = if options.scenarios.is_empty() {
        table.iter().collect()
    } else {
        options
            .scenarios
            .iter()
            .filter_map(|name| table.iter().find(|scenario| scenario.name == name))
            .collect()
    };
    // `--skip NAME=REASON`, else the scenario's own declaration for `--skip-known PLATFORM`.
    let skip_reason =
        |scenario: &Scenario| scenario::skip_reason(scenario, &options.skips, options.skip_known);
    let to_run: Vec<&Scenario> = selected
        .iter()
        .copied()
        .filter(|scenario| skip_reason(scenario).is_none())
        .collect();
    let user_timer = platform_timer(options.sim);
    let progress = Progress::new(!options.quiet);
    let warm_up = options.warm_up.then(|| {
        progress.show("warm-up");
        let no_progress = |_: &str| {};
        scenario::warm_up(&Env {
            device: backend.device.as_ref(),
            clock: backend.clock.as_ref(),
            user_timer: None,
            slack: real_time_slack(options),
            progress: &no_progress,
        })
    });
    let mut report = run_scenarios(
        &backend,
        &to_run,
        Some(user_timer.as_ref()),
        real_time_slack(options),
        &progress,
    );
    progress.finish();
    report.warm_up = warm_up;
    if let Some(tolerance) = report.tolerance.as_mut() {
        tolerance.push_str(if options.lateness_tolerance_ms.is_some() {
            " (set by --lateness-tolerance-ms)"
        } else {
            " (default)"
        });
    }
    // Skipped scenarios take their place in the selection order, unrun.
    let mut ran = std::mem::take(&mut report.results).into_iter();
    report.results = selected
        .iter()
        .filter_map(|scenario| match skip_reason(scenario) {
            Some(reason) => Some(scenario::skipped(scenario, reason)),
            None => ran.next(),
        })
        .collect();
    let _ = if options.json {
        writeln!(out, "{}", report.to_json())
    } else {
        write!(out, "{}", report.to_text())
    };
    if report.success() {
        EXIT_PASSED
    } else if report.nothing_passed() {
        EXIT_NOTHING_PASSED
    } else {
        EXIT_FAILED
    }
}

/// The backend the options ask for.
///
/// # Errors
/// [`OpenError`] if the device is missing or cannot be opened.
pub fn open_backend(sim: bool) -> Result<Backend, OpenError> {
    if sim {
        return sim_backend();
    }
    device_backend()
}

#[cfg(not(windows))]
fn sim_backend() -> Result<Backend, OpenError> {
    crate::sim::real_time_backend()
}

/// On a Windows host the app is built without the driver's simulator binding (the driver's
/// Windows build is the KMDF driver): `--sim` points to where it runs.
#[cfg(windows)]
fn sim_backend() -> Result<Backend, OpenError> {
    Err(OpenError::Failed(
        "--sim: the simulator backend is for Linux/WSL (on Windows the driver builds as the \
         KMDF driver, not on the kernel simulator); run `ktimer-test --sim` there, or run \
         `ktimer-test` without --sim against the installed device"
            .to_owned(),
    ))
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
    let tolerance = if virtual_time {
        "kernel rule only (virtual time: no host allowance)".to_owned()
    } else {
        format!(
            "kernel rule + {} host allowance on the late side",
            crate::stats::format_ms(crate::clock::units_100ns(slack))
        )
    };
    Report {
        backend: backend.device.describe(),
        driver,
        tolerance: Some(tolerance),
        warm_up: None,
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
    /// Characters of the line currently shown (terminal only), to blank it out.
    shown: std::cell::Cell<usize>,
}

impl Progress {
    /// A progress line; `enabled = false` prints nothing.
    #[must_use]
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            shown: std::cell::Cell::new(0),
        }
    }

    /// Shows `text` as the current progress.
    pub fn show(&self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            // Carriage return and space padding, not ANSI erase sequences: a classic Windows
            // console would print those literally.
            let width = self.shown.replace(text.chars().count());
            write!(stderr, "\r{text:<width$}")
        } else {
            writeln!(stderr, "{text}")
        };
        let _ = stderr.flush();
    }

    /// Blanks the progress line before the report is printed.
    pub fn finish(&self) {
        if self.enabled && self.terminal {
            let width = self.shown.replace(0);
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{:width$}\r", "");
            let _ = stderr.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The program's command-line contract, in-process: usage errors exit 2 with the usage
    //! text, `--list` and `--help` exit 0, a missing device exits 3 with one line.

    use super::*;

    /// Runs the program; returns (exit code, stdout, stderr).
    fn run(args: &[&str]) -> (u8, String, String) {
        run_table(scenario::all(), args)
    }

    /// Runs the program on the scenarios `table`; returns (exit code, stdout, stderr).
    fn run_table(table: &[Scenario], args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = main_with(
            table,
            args.iter().map(std::ffi::OsString::from),
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8_lossy(&out).into(),
            String::from_utf8_lossy(&err).into(),
        )
    }

    #[test]
    fn unknown_flag_prints_usage_and_exits_2() {
        let (code, out, err) = run(&["--frobnicate"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(
            err.starts_with("ktimer-test: unknown argument: --frobnicate\n"),
            "{err}"
        );
        assert!(err.contains("usage: ktimer-test"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_scenario_prints_usage_and_exits_2() {
        let (code, out, err) = run(&["--sim", "--scenario", "no-such-scenario"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("unknown scenario: no-such-scenario"), "{err}");
        assert!(err.contains("usage: ktimer-test"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn missing_scenario_name_exits_2() {
        assert_eq!(run(&["--scenario"]).0, EXIT_USAGE);
    }

    #[test]
    fn list_names_every_scenario_and_exits_0() {
        let (code, out, _) = run(&["--list"]);
        assert_eq!(code, EXIT_PASSED);
        let names: Vec<&str> = out
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert_eq!(names, scenario::names());
        assert!(!names.is_empty());
        for (line, scenario) in out.lines().zip(scenario::all()) {
            assert!(line.ends_with(scenario.summary), "{line}");
        }
    }

    #[test]
    fn help_exits_0() {
        let (code, out, _) = run(&["--help"]);
        assert_eq!(code, EXIT_PASSED);
        assert!(out.starts_with("usage: ktimer-test"));
        assert!(out.contains("3 no ktimer device"));
    }

    #[cfg(not(windows))]
    #[test]
    fn no_device_outside_windows_exits_3_with_one_line() {
        let (code, out, err) = run(&[]);
        assert_eq!(code, EXIT_NO_DEVICE);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--sim"), "{err}");
        assert!(out.is_empty());
    }

    #[cfg(windows)]
    #[test]
    fn sim_on_windows_says_where_the_simulator_runs() {
        let (code, out, err) = run(&["--sim", "--quiet", "--scenario", "handshake"]);
        assert_eq!(code, EXIT_DEVICE_ERROR);
        assert!(err.contains("Linux/WSL"), "{err}");
        assert!(out.is_empty(), "{out}");
    }

    #[cfg(not(windows))]
    #[test]
    fn a_selected_scenario_runs_on_the_simulator_and_exits_0() {
        // Real time, but the handshake lets no time pass.
        let (code, out, err) = run(&["--sim", "--quiet", "--scenario", "handshake"]);
        assert_eq!(code, EXIT_PASSED, "{out}{err}");
        assert!(out.contains("result: 1 passed, 0 failed"), "{out}");
        assert!(
            out.contains("unload: driver unloaded (device removed, EvtDriverUnload): no bug check, no leaked framework object or pool"),
            "{out}"
        );
        assert!(err.is_empty(), "{err}");
    }

    #[cfg(not(windows))]
    #[test]
    fn a_run_in_which_every_scenario_was_skipped_does_not_exit_0() {
        let (code, out, _) = run(&[
            "--sim",
            "--quiet",
            "--scenario",
            "handshake",
            "--skip",
            "handshake=not on this backend",
        ]);
        assert_eq!(code, EXIT_NOTHING_PASSED, "{out}");
        assert!(
            out.contains("result: 0 passed, 0 failed, 1 skipped: nothing passed"),
            "{out}"
        );
        let (code, out, _) = run(&[
            "--sim",
            "--json",
            "--quiet",
            "--scenario",
            "handshake",
            "--skip",
            "handshake=not on this backend",
        ]);
        assert_eq!(code, EXIT_NOTHING_PASSED, "{out}");
        assert!(out.contains("\"success\":false,\"passed\":0"), "{out}");
    }

    /// `--skip-known` skips exactly the scenarios that declare a limitation there, with the
    /// reason they declare, in their place in the report; the others run.
    #[cfg(not(windows))]
    #[test]
    fn skip_known_skips_the_declared_scenarios_with_their_reasons() {
        use crate::scenario::{Limitation, Outcome, Platform};
        const TABLE: &[Scenario] = &[
            Scenario::for_tests("first", &[], |_| Ok(Outcome::pass("ran"))),
            Scenario::for_tests(
                "limited",
                &[Limitation {
                    platform: Platform::Wine,
                    reason: "declared by the scenario",
                }],
                |_| Err("ran although its platform was given".into()),
            ),
            Scenario::for_tests("last", &[], |_| Ok(Outcome::pass("ran"))),
        ];
        let (code, out, err) = run_table(TABLE, &["--sim", "--quiet", "--skip-known", "wine"]);
        assert_eq!(code, EXIT_PASSED, "{out}{err}");
        let rows: Vec<(&str, &str)> = out
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                Some((words.next()?, words.next()?))
            })
            .filter(|(name, _)| TABLE.iter().any(|scenario| scenario.name == *name))
            .collect();
        assert_eq!(
            rows,
            [("first", "PASS"), ("limited", "SKIP"), ("last", "PASS")],
            "{out}"
        );
        assert!(
            out.contains("skip limited: declared by the scenario"),
            "{out}"
        );
        assert!(
            out.contains("result: 2 passed, 0 failed, 1 skipped"),
            "{out}"
        );
        // Without the platform the declaration changes nothing: the scenario runs (and here
        // fails, which is how this test knows it ran).
        let (code, out, _) = run_table(TABLE, &["--sim", "--quiet"]);
        assert_eq!(code, EXIT_FAILED, "{out}");
        assert!(
            out.contains("FAIL limited: ran although its platform was given"),
            "{out}"
        );
    }

    #[test]
    fn json_output_is_one_object() {
        let (code, out, _) = run(&["--sim", "--json", "-q", "--scenario=handshake"]);
        assert_eq!(code, EXIT_PASSED);
        assert!(out.starts_with("{\"backend\":\"simulator"), "{out}");
        assert!(out.trim_end().ends_with('}'), "{out}");
        assert!(
            out.contains("\"success\":true,\"passed\":1,\"failed\":0"),
            "{out}"
        );
    }
}
