//! Command-line parsing. Hand-written: a handful of flags, and the exact behaviour on bad
//! input (usage + exit code 2, never a panic) is part of the app's contract.

use std::fmt;

use crate::scenario::Platform;

/// Exit code: at least one scenario passed and none failed (skipped ones excepted).
pub const EXIT_PASSED: u8 = 0;
/// Exit code: at least one scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad command line (unknown flag or scenario name).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no ktimer device (driver not installed / not started).
pub const EXIT_NO_DEVICE: u8 = 3;
/// Exit code: the device exists but could not be used (e.g. access denied).
pub const EXIT_DEVICE_ERROR: u8 = 4;
/// Exit code: nothing failed but nothing passed either (every selected scenario was
/// skipped): a run that checked nothing must not read as "all passed".
pub const EXIT_NOTHING_PASSED: u8 = 5;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print the usage text and exit 0.
    Help,
    /// Print the scenario names and exit 0.
    List,
    /// Run scenarios.
    Run(RunOptions),
}

/// Options of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent on/off command-line flags, not a state machine"
)]
pub struct RunOptions {
    /// Use the in-process simulator instead of the real device.
    pub sim: bool,
    /// Print the report as JSON instead of tables.
    pub json: bool,
    /// Suppress the progress line on stderr.
    pub quiet: bool,
    /// Scenarios to run, in the order given; empty = all.
    pub scenarios: Vec<String>,
    /// Scenarios not to run, each with the reason it cannot hold on this backend (for
    /// example under Wine); reported as skipped, never as passed.
    pub skips: Vec<(String, String)>,
    /// `--skip-known PLATFORM`: do not run the scenarios that declare they cannot hold on
    /// this platform; each is reported as skipped with the reason it declares.
    pub skip_known: Option<Platform>,
    /// `--lateness-tolerance-ms`: the host-scheduling allowance, in milliseconds, added on
    /// the late side to the kernel rule in real time, instead of the default (5 ms on the
    /// device, 30 ms with `--sim`). `None` = the default.
    pub lateness_tolerance_ms: Option<u32>,
    /// `--warm-up`: arm one timer and wait for its record before the scenarios.
    pub warm_up: bool,
}

/// The largest `--lateness-tolerance-ms` accepted: beyond a second a "timing" check checks
/// nothing useful.
pub const MAX_LATENESS_TOLERANCE_MS: u32 = 1_000;

/// A command-line error: reported with the usage text, exit code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The usage text.
#[must_use]
pub fn usage() -> String {
    "\
usage: ktimer-test [--sim] [--json] [--quiet] [--scenario NAME]... [--skip NAME=REASON]...
                   [--skip-known PLATFORM] [--lateness-tolerance-ms N] [--warm-up]
       ktimer-test --list
       ktimer-test --help

Drives the ktimer driver through its IOCTLs and reports pass/fail per scenario.

  --sim            run against the driver's timer service in-process on the kernel
                   simulator (real-time clock) instead of the installed device
                   (Linux and WSL builds of the app only)
  --json           print the report as JSON on stdout
  --quiet          no progress line on stderr
  --scenario NAME  run only this scenario (repeatable; see --list)
  --skip NAME=REASON
                   do not run this scenario: report it as skipped, with the reason it
                   cannot hold on this backend (repeatable; never counted as passed)
  --skip-known PLATFORM
                   do not run the scenarios that declare they cannot hold on PLATFORM
                   (wine): report each as skipped with the reason it declares
  --lateness-tolerance-ms N
                   allow N ms (0..=1000) of host scheduling delay on the late side of
                   every expiration, on top of the kernel rule (1 tick early, 2 ticks
                   late), instead of the default 5 ms (30 ms with --sim); waits for a
                   record last that much longer. Counts, order and statuses are still
                   checked exactly. The report's header states the bound in force.
  --warm-up        before the scenarios, arm one one-shot and wait (up to 2 s past its
                   due time) for its record: one-time start-up costs of the timer
                   machinery fall on it. Its lateness is reported, not judged; a missing
                   or extra record fails the run
  --list           list the scenarios and exit
  --help           this text

exit codes: 0 at least one scenario passed and none failed (skips excepted),
            1 a scenario failed, 2 bad command line, 3 no ktimer device,
            4 the device could not be opened,
            5 nothing passed: every selected scenario was skipped
"
    .to_owned()
}

/// Parses the arguments after the program name. `known` are the valid scenario names.
///
/// # Errors
/// [`UsageError`] for an unknown flag, a missing value or an unknown scenario name.
pub fn parse<I, S>(args: I, known: &[&str]) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let mut options = RunOptions::default();
    let mut list = false;
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str().map(str::to_owned) else {
            return Err(UsageError(format!(
                "argument is not valid Unicode: {}",
                arg.display()
            )));
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--list" => list = true,
            "--sim" => options.sim = true,
            "--json" => options.json = true,
            "--warm-up" => options.warm_up = true,
            "--quiet" | "-q" => options.quiet = true,
            "--scenario" | "-s" => {
                let name = args
                    .next()
                    .and_then(|value| value.to_str().map(str::to_owned))
                    .ok_or_else(|| UsageError(format!("{arg} needs a scenario name")))?;
                options.scenarios.push(name);
            }
            "--lateness-tolerance-ms" => {
                let value = args
                    .next()
                    .and_then(|value| value.to_str().map(str::to_owned))
                    .ok_or_else(|| UsageError(format!("{arg} needs a number of milliseconds")))?;
                options.lateness_tolerance_ms = Some(tolerance_ms(&value)?);
            }
            "--skip-known" => {
                let value = args
                    .next()
                    .and_then(|value| value.to_str().map(str::to_owned))
                    .ok_or_else(|| UsageError(format!("{arg} needs a platform")))?;
                options.skip_known = Some(platform(&value)?);
            }
            "--skip" => {
                let value = args
                    .next()
                    .and_then(|value| value.to_str().map(str::to_owned))
                    .ok_or_else(|| UsageError("--skip needs NAME=REASON".to_owned()))?;
                options.skips.push(skip(&value)?);
            }
            other => {
                if let Some(value) = other.strip_prefix("--skip-known=") {
                    options.skip_known = Some(platform(value)?);
                } else if let Some(value) = other.strip_prefix("--skip=") {
                    options.skips.push(skip(value)?);
                } else if let Some(value) = other.strip_prefix("--lateness-tolerance-ms=") {
                    options.lateness_tolerance_ms = Some(tolerance_ms(value)?);
                } else if let Some(name) = other.strip_prefix("--scenario=") {
                    options.scenarios.push(name.to_owned());
                } else {
                    return Err(UsageError(format!("unknown argument: {other}")));
                }
            }
        }
    }
    for name in options
        .scenarios
        .iter()
        .chain(options.skips.iter().map(|(name, _)| name))
    {
        if !known.contains(&name.as_str()) {
            return Err(UsageError(format!(
                "unknown scenario: {name} (ktimer-test --list shows the names)"
            )));
        }
    }
    if list {
        return Ok(Command::List);
    }
    Ok(Command::Run(options))
}

/// Parses a `--lateness-tolerance-ms` value: whole milliseconds, at most
/// [`MAX_LATENESS_TOLERANCE_MS`].
fn tolerance_ms(value: &str) -> Result<u32, UsageError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|ms| *ms <= MAX_LATENESS_TOLERANCE_MS)
        .ok_or_else(|| {
            UsageError(format!(
                "--lateness-tolerance-ms needs whole milliseconds from 0 to \
                 {MAX_LATENESS_TOLERANCE_MS}, got: {value}"
            ))
        })
}

/// Parses a `--skip-known` value: a [`Platform`]'s name.
fn platform(value: &str) -> Result<Platform, UsageError> {
    Platform::from_name(value).ok_or_else(|| {
        let names: Vec<&str> = Platform::ALL
            .iter()
            .map(|platform| platform.name())
            .collect();
        UsageError(format!(
            "--skip-known needs a platform ({}), got: {value}",
            names.join(", ")
        ))
    })
}

/// Splits a `--skip` value into the scenario name and a non-empty reason.
fn skip(value: &str) -> Result<(String, String), UsageError> {
    match value.split_once('=') {
        Some((name, reason)) if !name.is_empty() && !reason.trim().is_empty() => {
            Ok((name.to_owned(), reason.trim().to_owned()))
        }
        _ => Err(UsageError(format!(
            "--skip needs NAME=REASON with a reason, got: {value}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of the tests' own: the parser checks names against the list it is given.
    const KNOWN: &[&str] = &["first", "second"];

    fn run(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().copied(), KNOWN)
    }

    #[test]
    fn no_arguments_runs_everything_on_the_device() {
        assert_eq!(run(&[]), Ok(Command::Run(RunOptions::default())));
    }

    #[test]
    fn flags_and_repeated_scenarios() {
        let parsed = run(&[
            "--sim",
            "--json",
            "-q",
            "--scenario",
            "second",
            "--scenario=first",
        ]);
        assert_eq!(
            parsed,
            Ok(Command::Run(RunOptions {
                sim: true,
                json: true,
                quiet: true,
                scenarios: vec!["second".into(), "first".into()],
                skips: Vec::new(),
                skip_known: None,
                lateness_tolerance_ms: None,
                warm_up: false,
            }))
        );
    }

    #[test]
    fn warm_up_is_a_flag() {
        assert_eq!(
            run(&["--warm-up"]),
            Ok(Command::Run(RunOptions {
                warm_up: true,
                ..RunOptions::default()
            }))
        );
    }

    #[test]
    fn lateness_tolerance_takes_bounded_whole_milliseconds() {
        for args in [
            &["--lateness-tolerance-ms", "100"][..],
            &["--lateness-tolerance-ms=100"][..],
        ] {
            assert_eq!(
                run(args),
                Ok(Command::Run(RunOptions {
                    lateness_tolerance_ms: Some(100),
                    ..RunOptions::default()
                }))
            );
        }
        assert_eq!(
            run(&["--lateness-tolerance-ms=0"]),
            Ok(Command::Run(RunOptions {
                lateness_tolerance_ms: Some(0),
                ..RunOptions::default()
            }))
        );
        for bad in ["", "-1", "1.5", "1001", "ms"] {
            let error = run(&["--lateness-tolerance-ms", bad]).expect_err(bad);
            assert!(error.0.contains("--lateness-tolerance-ms"), "{error}");
        }
        assert!(run(&["--lateness-tolerance-ms"]).is_err());
    }

    #[test]
    fn skips_carry_their_reasons_and_need_one() {
        assert_eq!(
            run(&["--skip", "first=not here", "--skip=second=a = b"]),
            Ok(Command::Run(RunOptions {
                skips: vec![
                    ("first".into(), "not here".into()),
                    ("second".into(), "a = b".into()),
                ],
                ..RunOptions::default()
            }))
        );
        assert!(run(&["--skip", "first"]).is_err());
        assert!(run(&["--skip", "first= "]).is_err());
        assert!(run(&["--skip"]).is_err());
        let error = run(&["--skip", "nope=why"]).expect_err("unknown scenario");
        assert!(error.0.contains("nope"), "{error}");
    }

    #[test]
    fn skip_known_takes_a_platform() {
        for args in [&["--skip-known", "wine"][..], &["--skip-known=wine"][..]] {
            assert_eq!(
                run(args),
                Ok(Command::Run(RunOptions {
                    skip_known: Some(Platform::Wine),
                    ..RunOptions::default()
                }))
            );
        }
        let error = run(&["--skip-known", "dos"]).expect_err("unknown platform");
        assert!(
            error.0.contains("wine") && error.0.contains("dos"),
            "{error}"
        );
        assert!(run(&["--skip-known"]).is_err());
    }

    #[test]
    fn list_and_help() {
        assert_eq!(run(&["--list"]), Ok(Command::List));
        assert_eq!(run(&["--sim", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let error = run(&["--simulate"]).expect_err("unknown flag");
        assert!(error.0.contains("--simulate"), "{error}");
    }

    #[test]
    fn unknown_scenario_is_a_usage_error() {
        let error = run(&["--scenario", "nope"]).expect_err("unknown scenario");
        assert!(error.0.contains("nope"), "{error}");
        // Also when only listing: a wrong name is a mistake worth reporting.
        assert!(run(&["--list", "--scenario=nope"]).is_err());
    }

    #[test]
    fn scenario_without_a_name_is_a_usage_error() {
        assert!(run(&["--scenario"]).is_err());
    }
}
