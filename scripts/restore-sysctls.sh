#!/usr/bin/env bash
# Restores every sysctl that a test or harness run saved before changing it. Each file in the
# save directory is named after the sysctl key (e.g. fs.inotify.max_queued_events) and holds
# the original value; it is removed once restored. Run by scripts/test.sh in an EXIT trap, so
# even a killed test run leaves the machine as it was.
set -uo pipefail
dir="${1:-${SYNCER_SYSCTL_SAVE_DIR:-}}"
[ -n "$dir" ] && [ -d "$dir" ] || exit 0
for f in "$dir"/*; do
  [ -f "$f" ] || continue
  key=$(basename "$f")
  value=$(cat "$f")
  proc="/proc/sys/${key//.//}"
  if [ -w "$proc" ] && printf '%s\n' "$value" > "$proc"; then
    rm -f "$f"
    echo "restore-sysctls: $key restored to $value" >&2
  else
    echo "restore-sysctls: could not restore $key to $value (run: sysctl -w $key=$value)" >&2
  fi
done
