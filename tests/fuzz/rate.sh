#!/usr/bin/env bash
# Measures the IOCTL fuzzer's rate (inputs/s) in each configuration, alternating, and prints
# a Markdown table: docs/EVIDENCE.md section 1 quotes its output.
#
#   bash tests/fuzz/rate.sh [SECONDS_PER_RUN [ROUNDS]]      (defaults: 30 s, 2 rounds)
#
# Configurations (one libFuzzer process each, from a scratch copy of the committed corpus,
# -seed=1, -max_len=512):
#   threaded + ASan    the threaded simulator, cargo-fuzz's default build: the rate before
#                      inline execution (KTIMER_FUZZ_THREADED=1)
#   inline + ASan      the default build (what the CI pass runs)
#   inline + campaign  the long campaign's build: no sanitizer, no compare tracing
#                      (-s none --no-trace-compares), debug assertions and overflow checks on
# Needs: cargo-fuzz and the nightly toolchain (docs/EVIDENCE.md, "Setup").
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
rounds=${2:-2}
out=target/fuzz-rate
mkdir -p "$out"

build() { # name, extra cargo-fuzz flags...
    local name=$1
    shift
    cargo +nightly fuzz build --fuzz-dir tests/fuzz "$@" ioctl >"$out/build-$name.log" 2>&1 ||
        { cat "$out/build-$name.log"; exit 1; }
    cp tests/fuzz/target/x86_64-unknown-linux-gnu/release/ioctl "$out/ioctl-$name"
}
build asan
build campaign -s none --no-trace-compares

run() { # label, binary, threaded (0/1)
    local corpus="$out/corpus"
    rm -rf "$corpus" && mkdir -p "$corpus"
    local env=()
    [ "$3" = 1 ] && env=(KTIMER_FUZZ_THREADED=1)
    local rate
    rate=$(env "${env[@]}" "$out/ioctl-$2" "$corpus" tests/fuzz/corpus/ioctl \
        -max_total_time="$seconds" -max_len=512 -timeout=10 -seed=1 -print_final_stats=1 2>&1 |
        sed -n 's/^stat::average_exec_per_sec: *//p')
    echo "| $1 | $rate |"
}

echo "machine: $(nproc) logical CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD); $(date -u '+%Y-%m-%d %H:%M UTC'); $seconds s per run"
echo
echo "| configuration | inputs/s |"
echo "| --- | ---: |"
for _ in $(seq "$rounds"); do
    run "threaded + ASan (before inline execution)" asan 1
    run "inline + ASan (default build, CI pass)" asan 0
    run "inline + campaign build (-s none --no-trace-compares)" campaign 0
done
