#!/usr/bin/env bash
# Type-check and lint the KMDF shell on this host (see src/lib.rs). Exit status is clippy's.
set -euo pipefail
cd "$(dirname "$0")"
cargo clippy --all-targets -- -D warnings
