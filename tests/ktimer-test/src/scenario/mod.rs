//! The scenario framework: what a scenario is, the environment it runs in, and the runner
//! that times each one and turns its outcome into a [`ScenarioResult`] for the report.
//!
//! A scenario is written once, against [`Env`]: a [`Device`] to open handles on and a
//! [`Clock`] to let time pass. The same body runs on the real device, on the simulator in
//! real time (`--sim`) and on the simulator in virtual time (`cargo test`).

mod checks;
mod scenarios;
// The scenarios' tests run them on the simulator, which the app has only off Windows.
#[cfg(all(test, not(windows)))]
mod tests;

use std::time::{Duration, Instant};

pub use checks::Tolerance;
pub use scenarios::{driver_version, warm_up};

use crate::clock::Clock;
use crate::device::Device;
use crate::stats::Lateness;
use crate::user_timer::UserTimer;

/// One scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Its name on the command line (`--scenario NAME`).
    pub name: &'static str,
    /// What it checks, one line.
    pub summary: &'static str,
    /// The platforms on which it is known not to hold although the driver is right, each
    /// with the reason (measured there). `--skip-known PLATFORM` skips it with that reason.
    pub limitations: &'static [Limitation],
    run: fn(&Env<'_>) -> Result<Outcome, String>,
}

impl Scenario {
    /// Why this scenario cannot hold on `platform`, if it declares that it cannot.
    #[must_use]
    pub fn limitation(&self, platform: Platform) -> Option<&'static str> {
        self.limitations
            .iter()
            .find(|limitation| limitation.platform == platform)
            .map(|limitation| limitation.reason)
    }

    /// A scenario for the app's own tests: `run` is its whole body.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn for_tests(
        name: &'static str,
        limitations: &'static [Limitation],
        run: fn(&Env<'_>) -> Result<Outcome, String>,
    ) -> Self {
        Self {
            name,
            summary: "a scenario of the app's own tests",
            limitations,
            run,
        }
    }
}

/// A platform the device can run on where some scenarios cannot hold although the driver is
/// right: the platform lacks a kernel routine or behaves differently from Windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// Wine (tests/wine/run.sh, docs/WINE.md): the driver's timer service behind Wine's I/O
    /// manager, on Wine's kernel routines.
    Wine,
}

impl Platform {
    /// Every platform, for the usage text and error messages.
    pub const ALL: &[Self] = &[Self::Wine];

    /// Its name on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Wine => "wine",
        }
    }

    /// The platform called `name` on the command line.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|platform| platform.name() == name)
    }
}

/// A scenario's declaration that it cannot hold on a platform, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limitation {
    /// Where.
    pub platform: Platform,
    /// Why, one line: reported with the scenario's SKIP.
    pub reason: &'static str,
}

/// Why `scenario` is not run: the command line's own `--skip NAME=REASON` for it, else the
/// reason it declares for `platform` (`--skip-known PLATFORM`); `None` = run it.
#[must_use]
pub fn skip_reason<'a>(
    scenario: &Scenario,
    skips: &'a [(String, String)],
    platform: Option<Platform>,
) -> Option<&'a str> {
    skips
        .iter()
        .find(|(name, _)| name == scenario.name)
        .map(|(_, reason)| reason.as_str())
        .or_else(|| platform.and_then(|platform| scenario.limitation(platform)))
}

/// Every scenario, in run order (the handshake first).
#[must_use]
pub fn all() -> &'static [Scenario] {
    scenarios::ALL
}

/// The names of every scenario.
#[must_use]
pub fn names() -> Vec<&'static str> {
    all().iter().map(|scenario| scenario.name).collect()
}

/// What a scenario runs against.
pub struct Env<'a> {
    /// The device to open handles on.
    pub device: &'a dyn Device,
    /// Device time.
    pub clock: &'a dyn Clock,
    /// The user-mode timer for the periodic comparison; `None` in virtual time (a user-mode
    /// timer cannot follow a virtual clock).
    pub user_timer: Option<&'a dyn UserTimer>,
    /// Extra lateness allowed on top of the kernel's one-tick rule, for host scheduling
    /// delays in real time (zero in virtual time).
    pub slack: Duration,
    /// Reports progress inside a long scenario (one short phrase).
    pub progress: &'a dyn Fn(&str),
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("slack", &self.slack)
            .finish_non_exhaustive()
    }
}

/// What a scenario observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether every check held.
    pub passed: bool,
    /// Why it passed (what was verified) or the first check that failed.
    pub reason: String,
    /// Expirations the scenario expected, where counting applies.
    pub expected: Option<u64>,
    /// Expirations observed.
    pub observed: Option<u64>,
    /// Lateness samples (100 ns units) of the observed expirations.
    pub lateness: Vec<i64>,
    /// For the periodic scenario: the same schedule on a user-mode timer.
    pub comparison: Option<Comparison>,
}

impl Outcome {
    /// A pass with its reason.
    #[must_use]
    pub fn pass(reason: impl Into<String>) -> Self {
        Self {
            passed: true,
            reason: reason.into(),
            ..Self::default()
        }
    }

    /// A verdict on counted expirations: passes iff `problem` is `None`.
    #[must_use]
    pub fn counted(
        expected: u64,
        observed: u64,
        lateness: Vec<i64>,
        problem: Option<String>,
        verified: impl Into<String>,
    ) -> Self {
        let passed = problem.is_none();
        Self {
            passed,
            reason: problem.unwrap_or_else(|| verified.into()),
            expected: Some(expected),
            observed: Some(observed),
            lateness,
            comparison: None,
        }
    }
}

/// Kernel timer and user-mode timer on the same periodic schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// The schedule's period.
    pub period: Duration,
    /// Expirations scheduled.
    pub count: u32,
    /// The driver's periodic timer.
    pub kernel: TimerLine,
    /// The user-mode timer, or why it could not run.
    pub user: Result<TimerLine, String>,
}

/// One timer's row in a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerLine {
    /// What timer.
    pub name: String,
    /// Expirations expected.
    pub expected: u64,
    /// Expirations observed.
    pub observed: u64,
    /// Lateness summary.
    pub lateness: Option<Lateness>,
}

/// A scenario's result as reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: &'static str,
    /// Scenario summary.
    pub summary: &'static str,
    /// Pass or fail. A skipped scenario did not pass.
    pub passed: bool,
    /// Not run: the command line said it cannot hold on this backend (`--skip`); `reason`
    /// says why. Counted neither as passed nor as failed.
    pub skipped: bool,
    /// Why.
    pub reason: String,
    /// Expected expirations, where counting applies.
    pub expected: Option<u64>,
    /// Observed expirations.
    pub observed: Option<u64>,
    /// Lateness of the observed expirations.
    pub lateness: Option<Lateness>,
    /// Wall-clock duration of the scenario.
    pub duration: Duration,
    /// Periodic comparison with a user-mode timer.
    pub comparison: Option<Comparison>,
}

/// Runs one scenario, timing it.
#[must_use]
pub fn run_one(scenario: &Scenario, env: &Env<'_>) -> ScenarioResult {
    let started = Instant::now();
    let outcome = (scenario.run)(env).unwrap_or_else(|reason| Outcome {
        reason,
        ..Outcome::default()
    });
    ScenarioResult {
        name: scenario.name,
        summary: scenario.summary,
        passed: outcome.passed,
        skipped: false,
        reason: outcome.reason,
        expected: outcome.expected,
        observed: outcome.observed,
        lateness: Lateness::of(&outcome.lateness),
        duration: started.elapsed(),
        comparison: outcome.comparison,
    }
}

/// The result of a scenario that was not run because it cannot hold on this backend.
#[must_use]
pub fn skipped(scenario: &Scenario, reason: &str) -> ScenarioResult {
    ScenarioResult {
        name: scenario.name,
        summary: scenario.summary,
        passed: false,
        skipped: true,
        reason: reason.to_owned(),
        expected: None,
        observed: None,
        lateness: None,
        duration: Duration::ZERO,
        comparison: None,
    }
}

/// Looks a scenario up by name.
#[must_use]
pub fn find(name: &str) -> Option<&'static Scenario> {
    all().iter().find(|scenario| scenario.name == name)
}

#[cfg(test)]
mod declarations {
    //! What holds for any scenario table, and how declared limitations turn into skips.

    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        let table = all();
        assert!(!table.is_empty());
        for (index, scenario) in table.iter().enumerate() {
            assert!(
                !scenario.name.is_empty() && !scenario.name.contains(char::is_whitespace),
                "{scenario:?}"
            );
            assert!(!scenario.summary.trim().is_empty(), "{}", scenario.name);
            assert!(
                table[..index]
                    .iter()
                    .all(|earlier| earlier.name != scenario.name),
                "{} twice",
                scenario.name
            );
            for (at, limitation) in scenario.limitations.iter().enumerate() {
                assert!(
                    !limitation.reason.trim().is_empty() && !limitation.reason.contains('\n'),
                    "{}: a limitation needs a one-line reason",
                    scenario.name
                );
                assert!(
                    scenario.limitations[..at]
                        .iter()
                        .all(|earlier| earlier.platform != limitation.platform),
                    "{}: {} declared twice",
                    scenario.name,
                    limitation.platform.name()
                );
            }
        }
    }

    #[test]
    fn platforms_are_named_on_the_command_line() {
        for platform in Platform::ALL {
            assert_eq!(Platform::from_name(platform.name()), Some(*platform));
        }
        assert_eq!(Platform::from_name("wine"), Some(Platform::Wine));
        assert_eq!(Platform::from_name("Wine"), None);
        assert_eq!(Platform::from_name("windows"), None);
    }

    #[test]
    fn a_declared_limitation_skips_only_on_its_platform_and_an_explicit_skip_wins() {
        const LIMITED: Scenario = Scenario::for_tests(
            "limited",
            &[Limitation {
                platform: Platform::Wine,
                reason: "the platform lacks a routine",
            }],
            |_| Err("not run in this test".into()),
        );
        const FREE: Scenario =
            Scenario::for_tests("free", &[], |_| Err("not run in this test".into()));
        assert_eq!(
            LIMITED.limitation(Platform::Wine),
            Some("the platform lacks a routine")
        );
        assert_eq!(FREE.limitation(Platform::Wine), None);
        let none: &[(String, String)] = &[];
        assert_eq!(
            skip_reason(&LIMITED, none, Some(Platform::Wine)),
            Some("the platform lacks a routine")
        );
        assert_eq!(skip_reason(&LIMITED, none, None), None);
        assert_eq!(skip_reason(&FREE, none, Some(Platform::Wine)), None);
        let explicit = [("limited".to_owned(), "said on the command line".to_owned())];
        assert_eq!(
            skip_reason(&LIMITED, &explicit, Some(Platform::Wine)),
            Some("said on the command line")
        );
        assert_eq!(skip_reason(&FREE, &explicit, Some(Platform::Wine)), None);
    }
}
