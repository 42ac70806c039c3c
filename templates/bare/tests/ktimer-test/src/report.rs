//! The results of a run, and their two forms: text for people, JSON for machines. The JSON
//! is written by hand (the report is small and flat; a dependency would buy nothing).

use std::fmt::Write as _;

/// The driver the report is about.
pub const DRIVER: &str = "ktimer";

/// One scenario's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The scenario's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it saw, or what went wrong.
    pub detail: String,
}

impl Entry {
    /// The entry for `outcome`: passed with its detail, or failed with what went wrong.
    #[must_use]
    pub fn new(name: &str, outcome: Result<String, String>) -> Self {
        let passed = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|problem| problem);
        Self {
            name: name.to_owned(),
            passed,
            detail,
        }
    }
}

/// A run's results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The backend that ran them.
    pub backend: String,
    /// One entry per scenario, in order (the simulator adds its unload).
    pub entries: Vec<Entry>,
}

impl Report {
    /// How many entries passed.
    #[must_use]
    pub fn passed(&self) -> usize {
        self.entries.iter().filter(|entry| entry.passed).count()
    }

    /// How many entries failed.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.entries.len() - self.passed()
    }

    /// One line per entry, then the summary and the backend.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let width = self.entries.iter().map(|entry| entry.name.len()).max();
        for entry in &self.entries {
            let verdict = if entry.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(
                text,
                "{verdict} {:<width$}  {}",
                entry.name,
                entry.detail,
                width = width.unwrap_or(0)
            );
        }
        let _ = writeln!(text, "{} passed, {} failed", self.passed(), self.failed());
        let _ = writeln!(text, "driver {DRIVER}, backend: {}", self.backend);
        text
    }

    /// The report as one JSON object:
    /// `{"driver", "backend", "scenarios": [{"name", "passed", "detail"}], "passed", "failed"}`.
    #[must_use]
    pub fn to_json(&self) -> String {
        let entries: Vec<String> = self
            .entries
            .iter()
            .map(|entry| {
                format!(
                    "{{\"name\":{},\"passed\":{},\"detail\":{}}}",
                    json_string(&entry.name),
                    entry.passed,
                    json_string(&entry.detail)
                )
            })
            .collect();
        format!(
            "{{\"driver\":{},\"backend\":{},\"scenarios\":[{}],\"passed\":{},\"failed\":{}}}",
            json_string(DRIVER),
            json_string(&self.backend),
            entries.join(","),
            self.passed(),
            self.failed()
        )
    }
}

/// `text` as a JSON string literal: quotes, backslashes and every control character escaped
/// (RFC 8259 section 7); everything else, non-ASCII included, as is (JSON is UTF-8).
#[must_use]
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(json_string("\n\r\t\u{1}\u{1f}"), r#""\n\r\t\u0001\u001f""#);
        assert_eq!(json_string("é ✓ \u{7f}"), "\"é ✓ \u{7f}\"");
    }

    #[test]
    fn reports_count_and_serialize() {
        let entry = |name: &str, passed| {
            let detail = format!("said \"{name}\"\n");
            Entry::new(name, if passed { Ok(detail) } else { Err(detail) })
        };
        let report = Report {
            backend: "fake\\backend".to_owned(),
            entries: vec![entry("a", true), entry("bb", false)],
        };
        assert_eq!((report.passed(), report.failed()), (1, 1));
        assert_eq!(
            report.to_json(),
            format!(
                "{{\"driver\":\"{DRIVER}\",\"backend\":\"fake\\\\backend\",\"scenarios\":[\
                 {{\"name\":\"a\",\"passed\":true,\"detail\":\"said \\\"a\\\"\\n\"}},\
                 {{\"name\":\"bb\",\"passed\":false,\"detail\":\"said \\\"bb\\\"\\n\"}}],\
                 \"passed\":1,\"failed\":1}}"
            )
        );
        let text = report.to_text();
        assert!(text.starts_with("PASS a   said"), "{text}");
        assert!(text.contains("\nFAIL bb  said"), "{text}");
        assert!(text.contains("1 passed, 1 failed\n"), "{text}");
    }
}
