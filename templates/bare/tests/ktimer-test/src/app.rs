//! The command line: options, the choice of backend, the run, where the report goes, and
//! the exit code. Every failure is a message on stderr and an exit code, never a panic.

use std::ffi::OsString;
use std::io::Write;

use crate::device::Device;
use crate::report::{Entry, Report};
use crate::scenarios::{self, Session};

/// Every scenario passed.
pub const EXIT_PASSED: u8 = 0;
/// A scenario (or the simulator's unload) failed.
pub const EXIT_FAILED: u8 = 1;
/// A usage error, or the device could not be opened or loaded.
pub const EXIT_USAGE: u8 = 2;

/// The usage text (`--help`).
pub const USAGE: &str = "\
usage: ktimer-test [--sim] [--json] [--quiet] [--list] [--help]

Runs the ktimer driver's scenarios and reports PASS/FAIL for each.

  --sim     the driver loaded in-process on the kernel simulator (Linux); without it, the
            installed device (Windows, elevated)
  --json    the report as JSON on stdout (the text report, unless --quiet, goes to stderr)
  --quiet   no text report
  --list    list the scenarios and exit
  --help    this text

exit codes: 0 all passed, 1 a scenario failed, 2 usage error or no device
";

/// What the command line asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// Run the scenarios.
    #[default]
    Run,
    /// `--list`: list them.
    List,
    /// `--help`: the usage text (wins over `--list`).
    Help,
}

/// The parsed command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--sim`.
    pub sim: bool,
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// `--list` or `--help`, else run.
    pub action: Action,
}

/// Parses the arguments (without the program name).
///
/// # Errors
/// The message for an unknown or non-UTF-8 argument.
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Options, String> {
    let mut options = Options::default();
    for arg in args {
        let arg: OsString = arg.into();
        match arg.to_str() {
            Some("--sim") => options.sim = true,
            Some("--json") => options.json = true,
            Some("--quiet") => options.quiet = true,
            Some("--list") if options.action == Action::Run => options.action = Action::List,
            Some("--list") => {}
            Some("--help") => options.action = Action::Help,
            Some(other) => return Err(format!("unknown argument `{other}`")),
            None => return Err(format!("argument {} is not UTF-8", arg.display())),
        }
    }
    Ok(options)
}

/// The app: parses `args`, runs the scenarios, writes the report; returns the exit code.
pub fn main(
    args: impl IntoIterator<Item = impl Into<OsString>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => {
            let _ = write!(err, "ktimer-test: {message}\n\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    if options.action == Action::Help {
        let _ = write!(out, "{USAGE}");
        return EXIT_PASSED;
    }
    if options.action == Action::List {
        let scenarios = scenarios::SCENARIOS;
        let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for scenario in scenarios {
            let _ = writeln!(out, "{:<width$}  {}", scenario.name, scenario.description);
        }
        return EXIT_PASSED;
    }
    let mut device = match open_backend(options.sim) {
        Ok(device) => device,
        Err(message) => {
            let _ = writeln!(err, "ktimer-test: {message}");
            return EXIT_USAGE;
        }
    };
    let report = run(device.as_mut());
    write_report(&report, options, out, err)
}

/// Writes `report` as `options` ask; returns the exit code it earns.
pub fn write_report(
    report: &Report,
    options: Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    if !options.quiet {
        // With --json, stdout is the JSON document alone.
        let text_to: &mut dyn Write = if options.json { err } else { out };
        let _ = write!(text_to, "{}", report.to_text());
    }
    if options.json {
        let _ = writeln!(out, "{}", report.to_json());
    }
    if report.failed() == 0 {
        EXIT_PASSED
    } else {
        EXIT_FAILED
    }
}

/// Runs every scenario on `device`, then ends the session (the simulator's unload is one
/// more entry).
pub fn run(device: &mut dyn Device) -> Report {
    let backend = device.backend();
    let mut session = Session::new(device);
    let mut entries: Vec<Entry> = scenarios::SCENARIOS
        .iter()
        .map(|scenario| Entry::new(scenario.name, scenario.run(&mut session)))
        .collect();
    if let Some(outcome) = session.device().finish() {
        entries.push(Entry::new("unload", outcome));
    }
    Report { backend, entries }
}

/// The backend `--sim` selects, opened or loaded.
///
/// # Errors
/// Why it cannot be used here, or could not be opened or loaded.
pub fn open_backend(sim: bool) -> Result<Box<dyn Device>, String> {
    #[cfg(not(windows))]
    {
        if sim {
            Ok(Box::new(crate::sim::SimDevice::load()?))
        } else {
            Err(
                "the real device needs Windows (this build is not for Windows); \
                 run `ktimer-test --sim` to test the driver on the kernel simulator"
                    .to_owned(),
            )
        }
    }
    #[cfg(windows)]
    {
        if sim {
            Err(
                "--sim: the simulator backend is for Linux; on Windows, run ktimer-test \
                 without --sim, elevated, against the installed device"
                    .to_owned(),
            )
        } else {
            Ok(Box::new(crate::windows::WindowsDevice::find()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_app(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = main(args.iter().copied(), &mut out, &mut err);
        let text = |bytes| String::from_utf8(bytes).unwrap();
        (code, text(out), text(err))
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [&["--bogus"][..], &["--sim", "extra"], &["-q"], &[""]] {
            let (code, out, err) = run_app(args);
            assert_eq!(code, EXIT_USAGE, "{args:?}");
            assert!(out.is_empty(), "{args:?}: {out}");
            assert!(err.starts_with("ktimer-test: unknown argument `"), "{err}");
            assert!(err.contains("usage: ktimer-test"), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_argument_is_a_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        let arg = OsString::from_vec(vec![b'-', 0xFF]);
        assert!(parse([arg]).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn flags_parse_in_any_order() {
        let o = parse(["--quiet", "--json", "--sim"]).unwrap();
        assert_eq!(
            (o.sim, o.json, o.quiet, o.action),
            (true, true, true, Action::Run)
        );
        assert_eq!(parse(Vec::<String>::new()), Ok(Options::default()));
        let help = parse(["--list", "--help", "--list"]).unwrap();
        assert_eq!(help.action, Action::Help);
    }

    #[test]
    fn help_and_list_need_no_device() {
        let (code, out, _) = run_app(&["--help"]);
        assert_eq!((code, out.as_str()), (EXIT_PASSED, USAGE));
        let (code, out, _) = run_app(&["--list"]);
        assert_eq!(code, EXIT_PASSED);
        assert_eq!(out.lines().count(), scenarios::SCENARIOS.len());
        assert!(out.starts_with("ping "), "{out}");
    }

    #[cfg(not(windows))]
    #[test]
    fn without_sim_the_real_device_needs_windows() {
        let (code, out, err) = run_app(&["--json"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(out.is_empty());
        assert!(
            err.contains("needs Windows") && err.contains("--sim"),
            "{err}"
        );
    }
}
