//! The seam's one list of kernel names against each binding that is not compiled by every
//! `cargo test` on Linux.
//!
//! - kernel-sim: the seam's `pub use kernel_sim::…` of the list is compiled by every build
//!   here, so a missing name fails to compile.
//! - wdk-sys: compiled against bindings generated from the public KMDF headers by
//!   `tests/wdk-real-headers/check.sh` (out of CI: it needs the headers).
//! - The Wine rig's stand-in for wdk-sys (`tests/wine/wdk-sys`): compiled only for a
//!   Windows target in its own workspace. This test reads its source and fails if it lacks
//!   a name of the list, or defines a kernel routine (`Ke*`, `Ex*`) the list does not have
//!   (dead code that would drift).
#![cfg(not(windows))]

use std::collections::BTreeSet;
use std::path::Path;

/// What a Rust source file defines at any depth.
#[derive(Debug, Default, PartialEq, Eq)]
struct Defined {
    /// Every `pub` function, type, constant, static, struct, union, enum and module, and
    /// `pub use … as NAME` renames.
    names: BTreeSet<String>,
    /// The `pub` functions among them.
    functions: BTreeSet<String>,
}

fn defined_names(source: &str) -> Defined {
    const KINDS: [&str; 8] = [
        "fn", "type", "const", "static", "struct", "union", "enum", "mod",
    ];
    let mut defined = Defined::default();
    for line in source.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("pub ") else {
            continue;
        };
        let rest = rest
            .trim_start_matches("unsafe ")
            .trim_start_matches("extern \"system\" ");
        if let Some(after_use) = rest.strip_prefix("use ") {
            if let Some((_, alias)) = after_use.rsplit_once(" as ") {
                defined
                    .names
                    .insert(alias.trim_end_matches(';').trim().to_owned());
            }
            continue;
        }
        for kind in KINDS {
            if let Some(after) = rest.strip_prefix(kind).and_then(|r| r.strip_prefix(' ')) {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    if kind == "fn" {
                        defined.functions.insert(name.clone());
                    }
                    defined.names.insert(name);
                }
            }
        }
    }
    defined
}

/// What is wrong with a binding that defines `defined` against the seam's `list`.
fn binding_errors(list: &[&str], defined: &Defined) -> Vec<String> {
    let listed: BTreeSet<&str> = list.iter().copied().collect();
    let mut errors: Vec<String> = list
        .iter()
        .filter(|name| !defined.names.contains(**name))
        .map(|name| format!("missing: {name}"))
        .collect();
    errors.extend(
        defined
            .functions
            .iter()
            .filter(|name| name.starts_with("Ke") || name.starts_with("Ex"))
            .filter(|name| !listed.contains(name.as_str()))
            .map(|name| format!("not in the seam's list: {name}")),
    );
    errors
}

#[test]
fn the_list_has_no_duplicates() {
    let unique: BTreeSet<&str> = ktimer_seam::KERNEL_NAMES.iter().copied().collect();
    assert_eq!(unique.len(), ktimer_seam::KERNEL_NAMES.len());
    assert!(ktimer_seam::KERNEL_NAMES.contains(&"KeSetTimerEx"));
}

#[test]
fn the_wine_rigs_binding_defines_exactly_the_seams_kernel_routines() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/wine/wdk-sys/src/binding.rs");
    let source = std::fs::read_to_string(&path).expect("the Wine rig's binding is in the tree");
    let errors = binding_errors(ktimer_seam::KERNEL_NAMES, &defined_names(&source));
    assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
}

#[test]
fn the_check_reports_a_missing_name_and_an_unlisted_routine() {
    let source = "pub type KIRQL = u8;\n\
                  pub use _TIMER_TYPE::Type as TIMER_TYPE;\n\
                  pub unsafe fn KeSetTimerEx() {}\n\
                  pub unsafe fn KeInsertQueueDpc() {}\n";
    let defined = defined_names(source);
    let set = |names: &[&str]| names.iter().copied().map(str::to_owned).collect();
    assert_eq!(
        defined,
        Defined {
            names: set(&["KIRQL", "KeInsertQueueDpc", "KeSetTimerEx", "TIMER_TYPE"]),
            functions: set(&["KeInsertQueueDpc", "KeSetTimerEx"]),
        }
    );
    let errors = binding_errors(
        &["KIRQL", "TIMER_TYPE", "KeSetTimerEx", "KeCancelTimer"],
        &defined,
    );
    assert_eq!(
        errors,
        [
            "missing: KeCancelTimer",
            "not in the seam's list: KeInsertQueueDpc"
        ]
    );
}
