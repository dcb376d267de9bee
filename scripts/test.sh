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
