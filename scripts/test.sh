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

# Random-operation storms (harness chaos, scenarios/chaos.toml): a fixed budget of seeds,
# 4 cases at once, release builds (a storm must outrun the syncer to find its races; .ci/run
# builds release next anyway). Any failing case fails this script; its seed, the command that
# replays it and its op log are printed. HARNESS_CHAOS_SEEDS / _RSYNC_SEEDS change the budget.
echo "== random-operation storms (harness chaos)" >&2
cargo build --release -p syncer -p harness
chaos_out="$(mktemp -d -t harness-chaos-XXXXXX)"
# Others may enter (not list) it: source-perm cases run their syncer as user nobody.
chmod 711 "$chaos_out"
trap 'rm -rf "$smoke_out" "$chaos_out"; scripts/restore-sysctls.sh "$SYNCER_SYSCTL_SAVE_DIR"' EXIT
chaos() {
  HARNESS_SYNCER_BIN="$target_dir/release/syncer" "$target_dir/release/harness" chaos \
    scenarios/chaos.toml --ops 300 --jobs 4 --backend inotify,fanotify "$@"
}
started=$SECONDS
chaos --seeds "${HARNESS_CHAOS_SEEDS:-40}" --target local --out "$chaos_out/local"
chaos --seeds "${HARNESS_CHAOS_RSYNC_SEEDS:-10}" --target rsync --out "$chaos_out/rsync"
echo "== chaos: $((SECONDS - started)) s" >&2

# Fault scenarios (scenarios/faults/: the storm with SIGKILLed and SIGSTOPped syncers, a
# SIGKILLed daemon, a full or read-only replica disk, unreadable source entries): every case
# must converge with nothing lost. After each, nothing the harness started may be left
# running or lying in its work dir. HARNESS_FAULT_SEEDS changes
# the budget.
echo "== fault scenarios (harness chaos scenarios/faults/)" >&2
started=$SECONDS
for scenario in scenarios/faults/*.toml; do
  name="$(basename "$scenario" .toml)"
  work="$chaos_out/work-$name"
  mkdir -p "$work"
  HARNESS_SYNCER_BIN="$target_dir/release/syncer" "$target_dir/release/harness" chaos \
    "$scenario" --seeds "${HARNESS_FAULT_SEEDS:-2}" --jobs 3 --workdir "$work" \
    --out "$chaos_out/faults-$name"
  # pgrep only looks: a process whose command line names the work dir was left behind.
  if pgrep -f -- "$work" >/dev/null; then
    echo "fault scenario $name left processes running:" >&2
    pgrep -a -f -- "$work" >&2
    exit 1
  fi
  if [ -n "$(ls -A "$work")" ]; then
    echo "fault scenario $name left files in its work dir $work:" >&2
    ls -A "$work" >&2
    exit 1
  fi
done
echo "== fault scenarios: $((SECONDS - started)) s" >&2
