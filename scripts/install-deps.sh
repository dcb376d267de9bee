#!/usr/bin/env bash
# Installs the Debian packages the tests and the harness need, only when they are missing:
# rsync (daemon target and baselines), inotify-tools (the classic script's inotifywait),
# lsyncd (baseline), e2fsprogs (loop-mounted ext4 sources in the delete-guard tests), nftables (loss and
# partitions inside the network namespaces of the net fault scenarios). Safe to run again; needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v inotifywait >/dev/null 2>&1 || need+=(inotify-tools)
command -v lsyncd >/dev/null 2>&1 || need+=(lsyncd)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v nft >/dev/null 2>&1 || need+=(nftables)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "install-deps: missing ${need[*]} and not root: install them with: apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
