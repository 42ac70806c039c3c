//! The binary's command-line contract: usage errors exit 2 with the usage text, `--list`
//! and `--help` exit 0, a missing device exits 3 with one line; never a panic.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ktimer-test"))
        .args(args)
        .output()
        .expect("the ktimer-test binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn unknown_flag_prints_usage_and_exits_2() {
    let output = run(&["--frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unknown argument: --frobnicate"),
        "{stderr}"
    );
    assert!(stderr.contains("usage: ktimer-test"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn unknown_scenario_prints_usage_and_exits_2() {
    let output = run(&["--sim", "--scenario", "no-such-scenario"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unknown scenario: no-such-scenario"),
        "{stderr}"
    );
    assert!(stderr.contains("usage: ktimer-test"), "{stderr}");
}

#[test]
fn missing_scenario_name_exits_2() {
    assert_eq!(run(&["--scenario"]).status.code(), Some(2));
}

#[test]
fn list_names_every_scenario_and_exits_0() {
    let output = run(&["--list"]);
    assert_eq!(output.status.code(), Some(0));
    let names: Vec<String> = text(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(names, ktimer_test::scenario::names());
    assert_eq!(names.len(), 17);
}

#[test]
fn help_exits_0() {
    let output = run(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).starts_with("usage: ktimer-test"));
}

#[cfg(not(windows))]
#[test]
fn no_device_outside_windows_exits_3_with_one_line() {
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--sim"), "{stderr}");
    assert!(output.stdout.is_empty());
}
