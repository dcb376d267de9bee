#!/usr/bin/env bash
# Prints the cargo target directory of this repository, as the harness resolves it
# (harness/src/host/cargo_target.rs): `cargo metadata`'s target_directory, which honours
# CARGO_TARGET_DIR and build.target-dir; without a working cargo, $CARGO_TARGET_DIR
# (relative: to the repository root), else ./target. Scripts use it instead of ./target.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)
if [ -z "$dir" ]; then
  dir="${CARGO_TARGET_DIR:-target}"
  case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
fi
printf '%s\n' "$dir"
