//! The fuzzer's interpreter without libFuzzer: the committed seed corpus reaches the states it
//! is meant to reach and stays clean, and a fixed-seed random batch of inputs runs clean. The
//! campaign itself is `cargo +nightly fuzz run` (docs/EVIDENCE.md).
//!
//! Two ignored tests are tools (this crate has no binaries: a binary next to the test harness
//! makes cargo build `ktimer` with both panic strategies into one unhashed cdylib/rlib name):
//! - `cargo test -p ktimer-fuzz --test replay -- --ignored write_seed_corpus` regenerates
//!   `tests/fuzz/corpus/ioctl/seed-*` from [`seeds::all`];
//! - `KTIMER_FUZZ_REPLAY=<file or directory> cargo test --release -p ktimer-fuzz --test replay
//!   -- --ignored --nocapture replay_inputs` runs inputs (a crash artifact, a corpus) on stable.
//!   With `KTIMER_FUZZ_THREADED=1` the kernel uses processor threads: a bug check inside a DPC
//!   then halts a simulated processor and fails the replay with the bug check, instead of
//!   stopping the process as inline execution does.

#![cfg(not(windows))]

use std::path::{Path, PathBuf};
use std::time::Instant;

use ktimer_fuzz::{Fuzzer, Outcome, seeds};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn seed(name: &str) -> Vec<u8> {
    seeds::all()
        .into_iter()
        .find(|(seed_name, _)| *seed_name == name)
        .map(|(_, script)| script)
        .unwrap()
}

fn corpus_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ioctl")
}

#[test]
#[ignore = "a tool: regenerates the committed seed corpus"]
fn write_seed_corpus() {
    let directory = corpus_directory();
    std::fs::create_dir_all(&directory).unwrap();
    for (name, script) in seeds::all() {
        std::fs::write(directory.join(format!("seed-{name}")), script).unwrap();
    }
}

#[test]
#[ignore = "a tool: replays the inputs named by KTIMER_FUZZ_REPLAY"]
fn replay_inputs() {
    // A relative path is taken from the workspace root (cargo runs tests in the package's).
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(std::env::var_os("KTIMER_FUZZ_REPLAY").expect("KTIMER_FUZZ_REPLAY"));
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        files
    } else {
        vec![path]
    };
    let fuzzer = Fuzzer::from_env();
    let started = Instant::now();
    let mut total = Outcome::default();
    for file in &files {
        println!("{}", file.display());
        let outcome = fuzzer.run(&std::fs::read(file).unwrap());
        total.requests += outcome.requests;
        total.successes += outcome.successes;
        total.pended += outcome.pended;
        total.records += outcome.records;
    }
    println!(
        "{} inputs clean in {:.2?}: {total:?}",
        files.len(),
        started.elapsed()
    );
}

#[test]
fn the_committed_corpus_is_the_generator_output() {
    let directory = corpus_directory();
    for (name, script) in seeds::all() {
        let committed = std::fs::read(directory.join(format!("seed-{name}"))).unwrap();
        assert_eq!(
            committed, script,
            "seed-{name} is stale: regenerate the corpus"
        );
    }
}

#[test]
fn every_committed_input_replays_clean() {
    // Every file in the corpus, whatever it holds: the seeds and any regressions the fuzzer
    // found (`regression-*`, kept as found). The fuzzer panics on a broken guarantee.
    let directory = corpus_directory();
    let fuzzer = Fuzzer::new();
    let mut replayed = Vec::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let _outcome = fuzzer.run(&std::fs::read(&path).unwrap());
        replayed.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    // At least the seed corpus was among them.
    for (name, _) in seeds::all() {
        let file = format!("seed-{name}");
        assert!(replayed.contains(&file), "{file} was not replayed");
    }
}

#[test]
fn seeds_reach_their_states() {
    let fuzzer = Fuzzer::new();
    let periodic = fuzzer.run(&seed("periodic-with-pending-wait"));
    // One 1 ms periodic timer due at 2 ms, 10 ms advanced: a wait for 3 completes with 3.
    assert_eq!(periodic.created, 1);
    assert_eq!(periodic.pended, 1);
    assert_eq!(periodic.records, 3);

    let closed = fuzzer.run(&seed("one-shot-cancel-query-close"));
    // create, cancel, query and close succeed; the query after the close fails (stale id).
    assert_eq!((closed.requests, closed.successes), (5, 4));

    let handles = fuzzer.run(&seed("handle-close-with-pending-waits"));
    assert_eq!(handles.created, 3);
    assert_eq!(handles.pended, 2);

    let quota = fuzzer.run(&seed("quota-and-overrun"));
    // Two timers allowed, one pending wait allowed.
    assert_eq!(quota.created, 2);
    assert_eq!(quota.pended, 1);

    let unload = fuzzer.run(&seed("unload-mid-flight"));
    assert_eq!(unload.created, 2, "the create after unload is refused");

    for (name, script) in seeds::all() {
        let outcome = fuzzer.run(&script);
        assert!(outcome.steps > 0, "seed {name} runs");
    }
}

#[test]
fn random_inputs_run_clean() {
    let fuzzer = Fuzzer::new();
    let corpus = seeds::all();
    let mut rng = XorShift(0x005E_ED0F_F022);
    let mut total = Outcome::default();
    for round in 0..1500 {
        // Like a fuzzer's mutations: a seed with a few bytes changed and random bytes after
        // it, or (every fourth input) random bytes only.
        let mut input = if round % 4 == 0 {
            Vec::new()
        } else {
            let pick = usize::try_from(rng.next() % corpus.len() as u64).unwrap();
            corpus[pick].1.clone()
        };
        for _ in 0..rng.next() % 4 {
            if !input.is_empty() {
                let at = usize::try_from(rng.next() % input.len() as u64).unwrap();
                input[at] = rng.next().to_le_bytes()[5];
            }
        }
        let tail = rng.next() % 120;
        input.extend((0..tail).map(|_| rng.next().to_le_bytes()[3]));
        let outcome = fuzzer.run(&input);
        total.requests += outcome.requests;
        total.successes += outcome.successes;
        total.pended += outcome.pended;
        total.records += outcome.records;
    }
    // The batch exercises the service, not only its input checks.
    assert!(total.successes > 1000, "{total:?}");
    assert!(total.pended > 0 && total.records > 0, "{total:?}");
}
