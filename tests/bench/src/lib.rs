//! Benchmarks of the ktimer driver on the simulator (`cargo bench -p ktimer-bench`; the
//! program is `benches/ktimer.rs`, the figures and the machine are in `BENCHMARKS.md`).
//! This library is empty: it exists so the package has a target besides the benchmark.
