//! The report: a table with one row per scenario (expected vs observed expirations, lateness
//! p50/p99/max, duration, verdict), each scenario's reason, and the periodic scenario's
//! kernel-vs-user-mode comparison; or the same as JSON for machines.

use std::fmt::Write as _;
use std::time::Duration;

use crate::json::JsonWriter;
use crate::scenario::{Comparison, ScenarioResult, TimerLine};
use crate::stats::{Lateness, format_ms};

/// Everything a run reports.
#[derive(Clone, Debug)]
pub struct Report {
    /// Which backend and device ran the scenarios.
    pub backend: String,
    /// The driver as get-info described it, if it answered.
    pub driver: Option<String>,
    /// The lateness bound every expiration was checked against, described (the kernel rule
    /// per timer kind, plus the host-scheduling allowance in real time).
    pub tolerance: Option<String>,
    /// The warm-up before the scenarios (`--warm-up`), if one ran: what it saw, or why it
    /// failed (which fails the run).
    pub warm_up: Option<Result<String, String>>,
    /// One result per scenario, in run order.
    pub results: Vec<ScenarioResult>,
    /// The driver's unload after the run, where the backend can check it (simulator).
    pub unload: Option<Result<String, String>>,
}

impl Report {
    /// Scenarios that passed.
    #[must_use]
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|result| result.passed).count()
    }

    /// Scenarios that failed (skipped ones did not fail).
    #[must_use]
    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|result| !result.passed && !result.skipped)
            .count()
    }

    /// Scenarios skipped on the command line's say-so (`--skip`), each with its reason.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.results.iter().filter(|result| result.skipped).count()
    }

    /// Whether at least one scenario passed, none failed (skipped ones excepted), and the
    /// warm-up and the unload (where checked) were clean. A run that passed nothing is not
    /// a success, even if nothing failed.
    #[must_use]
    pub fn success(&self) -> bool {
        self.clean() && self.passed() > 0
    }

    /// Nothing failed, but nothing passed either: every scenario was skipped (or none was
    /// selected).
    #[must_use]
    pub fn nothing_passed(&self) -> bool {
        self.clean() && self.passed() == 0
    }

    /// No failed scenario, warm-up or unload.
    fn clean(&self) -> bool {
        self.failed() == 0
            && !matches!(self.unload, Some(Err(_)))
            && !matches!(self.warm_up, Some(Err(_)))
    }

    /// The human-readable report.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "ktimer-test report");
        let _ = writeln!(out, "backend: {}", self.backend);
        if let Some(driver) = &self.driver {
            let _ = writeln!(out, "driver:  {driver}");
        }
        if let Some(tolerance) = &self.tolerance {
            let _ = writeln!(out, "timing:  {tolerance}");
        }
        match &self.warm_up {
            Some(Ok(seen)) => {
                let _ = writeln!(out, "warm-up: {seen}");
            }
            Some(Err(problem)) => {
                let _ = writeln!(out, "warm-up: FAIL {problem}");
            }
            None => {}
        }
        let _ = writeln!(out);
        let name_width = self
            .results
            .iter()
            .map(|result| result.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            out,
            "{:<name_width$}  {:<6} {:>8} {:>8} {:>11} {:>11} {:>11} {:>10}",
            "scenario",
            "result",
            "expected",
            "observed",
            "late p50",
            "late p99",
            "late max",
            "duration"
        );
        let _ = writeln!(
            out,
            "{}",
            "-".repeat(name_width + 2 + 6 + 1 + 8 + 1 + 8 + 3 * 12 + 11)
        );
        for result in &self.results {
            let (p50, p99, max) = lateness_columns(result.lateness.as_ref());
            let _ = writeln!(
                out,
                "{:<name_width$}  {:<6} {:>8} {:>8} {p50:>11} {p99:>11} {max:>11} {:>10}",
                result.name,
                verdict(result).to_uppercase(),
                count(result.expected),
                count(result.observed),
                duration(result.duration),
            );
        }
        let _ = writeln!(out);
        for result in &self.results {
            let _ = writeln!(
                out,
                "{} {}: {}",
                if result.passed || result.skipped {
                    verdict(result)
                } else {
                    "FAIL"
                },
                result.name,
                result.reason
            );
        }
        for comparison in self
            .results
            .iter()
            .filter_map(|result| result.comparison.as_ref())
        {
            let _ = writeln!(out);
            out.push_str(&comparison_text(comparison));
        }
        let _ = writeln!(out);
        match &self.unload {
            Some(Ok(detail)) => {
                let _ = writeln!(out, "unload: {detail}");
            }
            Some(Err(problem)) => {
                let _ = writeln!(out, "unload FAILED: {problem}");
            }
            None => {}
        }
        let _ = writeln!(out, "{}", self.result_line());
        out
    }

    /// The text report's last line: the counts, and a warning when nothing passed.
    fn result_line(&self) -> String {
        let mut line = format!("result: {} passed, {} failed", self.passed(), self.failed());
        if self.skipped() > 0 {
            let _ = write!(line, ", {} skipped", self.skipped());
        }
        if self.nothing_passed() {
            line.push_str(": nothing passed");
        }
        line
    }

    /// The report as one JSON object.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut json = JsonWriter::new();
        json.begin_object();
        json.key("backend").string(&self.backend);
        json.key("driver");
        match &self.driver {
            Some(driver) => json.string(driver),
            None => json.null(),
        };
        json.key("tolerance");
        match &self.tolerance {
            Some(tolerance) => json.string(tolerance),
            None => json.null(),
        };
        json.key("warm_up");
        match &self.warm_up {
            Some(Ok(seen)) => {
                json.begin_object();
                json.key("passed").bool(true);
                json.key("detail").string(seen);
                json.end_object();
            }
            Some(Err(problem)) => {
                json.begin_object();
                json.key("passed").bool(false);
                json.key("detail").string(problem);
                json.end_object();
            }
            None => {
                json.null();
            }
        }
        json.key("success").bool(self.success());
        json.key("passed").int(count_i128(self.passed()));
        json.key("failed").int(count_i128(self.failed()));
        json.key("skipped").int(count_i128(self.skipped()));
        json.key("scenarios").begin_array();
        for result in &self.results {
            json.begin_object();
            json.key("name").string(result.name);
            json.key("summary").string(result.summary);
            json.key("passed").bool(result.passed);
            json.key("skipped").bool(result.skipped);
            json.key("reason").string(&result.reason);
            json.key("expected");
            optional_int(&mut json, result.expected);
            json.key("observed");
            optional_int(&mut json, result.observed);
            json.key("lateness_us");
            lateness_json(&mut json, result.lateness.as_ref());
            json.key("duration_ms")
                .float(result.duration.as_secs_f64() * 1000.0);
            json.key("comparison");
            match &result.comparison {
                Some(comparison) => comparison_json(&mut json, comparison),
                None => {
                    json.null();
                }
            }
            json.end_object();
        }
        json.end_array();
        json.key("unload");
        match &self.unload {
            Some(outcome) => {
                json.begin_object();
                json.key("clean").bool(outcome.is_ok());
                json.key("detail")
                    .string(outcome.as_ref().unwrap_or_else(|problem| problem));
                json.end_object();
            }
            None => {
                json.null();
            }
        }
        json.end_object();
        json.finish()
    }
}

/// "pass", "fail" or "skip".
fn verdict(result: &ScenarioResult) -> &'static str {
    if result.skipped {
        "skip"
    } else if result.passed {
        "pass"
    } else {
        "fail"
    }
}

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn count_i128(value: usize) -> i128 {
    i128::try_from(value).unwrap_or(i128::MAX)
}

fn duration(value: Duration) -> String {
    let millis = value.as_secs_f64() * 1000.0;
    if millis >= 1000.0 {
        format!("{:.2} s", millis / 1000.0)
    } else {
        format!("{millis:.1} ms")
    }
}

fn lateness_columns(lateness: Option<&Lateness>) -> (String, String, String) {
    lateness.map_or_else(
        || ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        |summary| {
            (
                format_ms(summary.p50),
                format_ms(summary.p99),
                format_ms(summary.max),
            )
        },
    )
}

fn comparison_text(comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "periodic schedule, {} × {} ms, side by side:",
        comparison.count,
        comparison.period.as_millis()
    );
    let rows: Vec<(&str, Result<&TimerLine, &String>)> = vec![
        ("kernel", Ok(&comparison.kernel)),
        ("user", comparison.user.as_ref()),
    ];
    let _ = writeln!(
        out,
        "  {:<6} {:>8} {:>8} {:>11} {:>11} {:>11}  timer",
        "side", "expected", "observed", "late p50", "late p99", "late max"
    );
    for (side, row) in rows {
        match row {
            Ok(line) => {
                let (p50, p99, max) = lateness_columns(line.lateness.as_ref());
                let _ = writeln!(
                    out,
                    "  {side:<6} {:>8} {:>8} {p50:>11} {p99:>11} {max:>11}  {}",
                    line.expected, line.observed, line.name
                );
            }
            Err(why) => {
                let _ = writeln!(out, "  {side:<6} did not run: {why}");
            }
        }
    }
    out
}

fn optional_int(json: &mut JsonWriter, value: Option<u64>) {
    match value {
        Some(value) => json.int(value),
        None => json.null(),
    };
}

/// 100 ns units as microseconds.
fn micros(units: i64) -> f64 {
    // Lateness values are far below 2^53, so the conversion is exact in practice.
    #[expect(
        clippy::cast_precision_loss,
        reason = "lateness is far below 2^53 units"
    )]
    let value = units as f64;
    value / 10.0
}

fn lateness_json(json: &mut JsonWriter, lateness: Option<&Lateness>) {
    match lateness {
        Some(summary) => {
            json.begin_object();
            json.key("samples").int(count_i128(summary.samples));
            json.key("min").float(micros(summary.min));
            json.key("p50").float(micros(summary.p50));
            json.key("p99").float(micros(summary.p99));
            json.key("max").float(micros(summary.max));
            json.end_object();
        }
        None => {
            json.null();
        }
    }
}

fn timer_line_json(json: &mut JsonWriter, line: &TimerLine) {
    json.begin_object();
    json.key("timer").string(&line.name);
    json.key("expected").int(line.expected);
    json.key("observed").int(line.observed);
    json.key("lateness_us");
    lateness_json(json, line.lateness.as_ref());
    json.end_object();
}

fn comparison_json(json: &mut JsonWriter, comparison: &Comparison) {
    json.begin_object();
    json.key("period_ms")
        .float(comparison.period.as_secs_f64() * 1000.0);
    json.key("count").int(comparison.count);
    json.key("kernel");
    timer_line_json(json, &comparison.kernel);
    json.key("user");
    match &comparison.user {
        Ok(line) => timer_line_json(json, line),
        Err(why) => {
            json.begin_object().key("error").string(why).end_object();
        }
    }
    json.end_object();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &'static str, passed: bool) -> ScenarioResult {
        ScenarioResult {
            name,
            summary: "summary",
            passed,
            skipped: false,
            reason: format!("{name} reason"),
            expected: Some(3),
            observed: Some(if passed { 3 } else { 2 }),
            lateness: Lateness::of(&[10_000, 20_000, 156_250]),
            duration: Duration::from_millis(42),
            comparison: None,
        }
    }

    #[test]
    fn text_report_has_a_row_and_a_reason_per_scenario_and_the_totals() {
        let report = Report {
            backend: "test".into(),
            driver: Some("0.1.0".into()),
            tolerance: Some("kernel rule + 100.000 ms host allowance".into()),
            warm_up: Some(Ok("fired 34.000 ms late".into())),
            results: vec![result("alpha", true), result("beta", false)],
            unload: Some(Ok("clean".into())),
        };
        let text = report.to_text();
        assert!(text.contains(
            "\ntiming:  kernel rule + 100.000 ms host allowance\nwarm-up: fired 34.000 ms late\n"
        ));
        assert!(text.lines().any(|line| line.starts_with("alpha")
            && line.contains("PASS")
            && line.contains("2.000 ms")
            && line.contains("15.625 ms")));
        assert!(
            text.lines()
                .any(|line| line.starts_with("beta") && line.contains("FAIL"))
        );
        assert!(text.contains("FAIL beta: beta reason"));
        assert!(text.ends_with("unload: clean\nresult: 1 passed, 1 failed\n"));
        assert!(!report.success());
    }

    #[test]
    fn a_skip_is_neither_passed_nor_failed_and_shows_its_reason() {
        let skipped = crate::scenario::skipped(
            &crate::scenario::Scenario::for_tests("gamma", &[], |_| Err("not run".into())),
            "not on this platform",
        );
        let report = Report {
            backend: "test".into(),
            driver: None,
            tolerance: None,
            warm_up: None,
            results: vec![result("alpha", true), skipped],
            unload: None,
        };
        assert_eq!(
            (report.passed(), report.failed(), report.skipped()),
            (1, 0, 1)
        );
        let text = report.to_text();
        assert!(
            text.lines()
                .any(|line| line.starts_with("gamma") && line.contains("SKIP"))
        );
        assert!(text.contains("skip gamma: not on this platform"));
        assert!(text.ends_with("result: 1 passed, 0 failed, 1 skipped\n"));
        let json = report.to_json();
        assert!(json.contains(r#""passed":1,"failed":0,"skipped":1,"#));
        assert!(json.contains(r#""passed":false,"skipped":true,"reason":"not on this platform""#));
    }

    #[test]
    fn json_report_carries_every_field() {
        let report = Report {
            backend: "b".into(),
            driver: None,
            tolerance: Some("t".into()),
            warm_up: Some(Err("no record".into())),
            results: vec![result("alpha", true)],
            unload: Some(Err("leak".into())),
        };
        let json = report.to_json();
        assert!(json.starts_with(
            r#"{"backend":"b","driver":null,"tolerance":"t","warm_up":{"passed":false,"detail":"no record"},"success":false,"passed":1,"failed":0,"skipped":0,"scenarios":[{"name":"alpha""#
        ));
        assert!(json.contains(r#""lateness_us":{"samples":3,"min":1000.000,"p50":2000.000,"p99":15625.000,"max":15625.000}"#));
        assert!(json.contains(r#""expected":3,"observed":3"#));
        assert!(json.ends_with(r#""comparison":null}],"unload":{"clean":false,"detail":"leak"}}"#));
    }
}
