#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs missing packages, then format,
# lint and the whole test suite. Sysctls changed by tests are restored on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

export SYNCER_SYSCTL_SAVE_DIR="${SYNCER_SYSCTL_SAVE_DIR:-$PWD/target/sysctl-saved}"
mkdir -p "$SYNCER_SYSCTL_SAVE_DIR"
trap 'scripts/restore-sysctls.sh "$SYNCER_SYSCTL_SAVE_DIR"' EXIT

scripts/install-deps.sh

echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --workspace
echo "== cargo test (fanotify backend)" >&2
SYNCER_TEST_BACKEND=fanotify cargo test -p syncer --test it

# DESIGN: CI runs the smoke scenario end to end, every syncer it lists (a missing tool is
# skipped, a baseline's expected failure is reported but not fatal). Results go to a temp
# dir, not results/; a failed run of our syncer fails this script. It uses the debug binaries
# `cargo test` just built: smoke checks correctness, not speed, and a clean release build
# took 2m46s on this 2-core machine. HARNESS_SMOKE_PROFILE=release measures release builds.
echo "== harness smoke scenario" >&2
profile="${HARNESS_SMOKE_PROFILE:-dev}"
# The binaries are where cargo put them (CARGO_TARGET_DIR or build.target-dir respected).
target_dir="$(scripts/target-dir.sh)"
bin_dir="$target_dir/debug"
[ "$profile" = dev ] || bin_dir="$target_dir/$profile"
cargo build --profile "$profile" -p syncer -p harness
smoke_out="$(mktemp -d -t harness-smoke-XXXXXX)"
trap 'rm -rf "$smoke_out"; scripts/restore-sysctls.sh "$SYNCER_SYSCTL_SAVE_DIR"' EXIT
HARNESS_SYNCER_BIN="$bin_dir/syncer" \
  "$bin_dir/harness" run scenarios/smoke.toml --out "$smoke_out" --workdir "$smoke_out"
