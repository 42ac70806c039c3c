//! No import circle among the modules of a product crate (issue 18, "Done when").
//!
//! For every crate under `driver/` (`driver/src`, `driver/*/src`), each `.rs` file directly
//! in `src/` is a module (`lib.rs` the crate root). A file imports module `m` when a code
//! line (not a comment) names `crate::m`, `super::m` (the files are top-level modules, so
//! `super` is the crate root) or, in the root, `self::m`; a path to an item of the root
//! (`crate::Service`) is an import of the root. `mod m;` declarations are not imports. The
//! test fails with the cycle it finds. Text-based on purpose: cheap, no parser dependency,
//! and the product's modules are flat, so this is the whole module graph.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The modules of one crate and the modules each imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn crate_dirs(driver: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![driver.join("src")];
    let mut children: Vec<PathBuf> = fs::read_dir(driver)
        .expect("driver/ is readable")
        .map(|entry| entry.expect("a directory entry").path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    children.sort();
    dirs.extend(children);
    dirs
}

/// The code of a line: without a `//` comment (doc comments included).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |at| &line[..at])
}

/// The code lines of a file that are part of the product: without comments, and without
/// inline test modules (`#[cfg(…test…)] mod … { … }`) (unit tests may import what they like; inside
/// them `super` is the file's own module).
fn product_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut test_gate = false;
    let mut depth = 0_usize;
    for line in text.lines().map(code) {
        if depth > 0 {
            depth = depth + line.matches('{').count() - line.matches('}').count().min(depth);
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("#[cfg(") && trimmed.contains("test") {
            test_gate = true;
            continue;
        }
        if test_gate && trimmed.starts_with("mod ") && trimmed.ends_with('{') {
            depth = line.matches('{').count() - line.matches('}').count();
            test_gate = false;
            continue;
        }
        test_gate = false;
        lines.push(line);
    }
    lines
}

/// The identifiers that follow `prefix` in `line` (`crate::{a, b::c}` gives `a`, `b`).
fn targets(line: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        // `$crate::` and `foo_crate::` are other paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                if !first.is_empty() {
                    found.push(first.to_owned());
                }
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                found.push(ident);
            }
        }
    }
    found
}

fn graph_of(src: &Path) -> Graph {
    let mut files: Vec<PathBuf> = fs::read_dir(src)
        .expect("src/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let root = if modules.contains("lib") {
        "lib"
    } else {
        "main"
    };
    let mut graph = Graph::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(path).expect("a source file is readable");
        let mut edges = BTreeSet::new();
        for line in product_lines(&text) {
            let mut names = targets(line, "crate::");
            names.extend(targets(line, "super::"));
            if name == root {
                names.extend(targets(line, "self::"));
            }
            for target in names {
                let module = if modules.contains(&target) && target != root {
                    target
                } else {
                    root.to_owned()
                };
                if module != name {
                    edges.insert(module);
                }
            }
        }
        graph.insert(name, edges);
    }
    graph
}

/// A cycle of `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_product_crates_have_no_import_circle() {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../driver");
    let mut checked = 0;
    for src in crate_dirs(&driver) {
        let graph = graph_of(&src);
        if let Some(cycle) = find_cycle(&graph) {
            panic!("import circle in {}: {}", src.display(), cycle.join(" -> "));
        }
        checked += 1;
    }
    assert!(checked >= 6, "found only {checked} crates under driver/");
}

#[test]
fn the_check_sees_a_circle() {
    let mut graph = Graph::new();
    graph.insert("a".into(), BTreeSet::from(["b".into()]));
    graph.insert("b".into(), BTreeSet::from(["lib".into()]));
    graph.insert("lib".into(), BTreeSet::from(["a".into()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "lib".into(), "a".into()])
    );
    assert_eq!(
        targets(
            "use crate::{FileHandle, waits::Parking}; $crate::x",
            "crate::"
        ),
        vec!["FileHandle".to_owned(), "waits".to_owned()]
    );
}
