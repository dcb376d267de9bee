#!/usr/bin/env bash
# Measures the syncer on N empty files created flat in SOURCE as fast as one process goes,
# against a plain `cp -a` of the same final tree in the same run (the issue's yardstick:
# converge within 2x the cp -a time, syncer RSS under 64 MiB).
#   [BACKEND=auto|inotify|fanotify] scripts/bench-flat-create.sh [N=100000] [WORKDIR=/tmp]
# Prints one summary block; everything it creates is removed at the end (creates before
# deletes: mass deletes slow later creates on this machine's journal-less ext4).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
base="${2:-/tmp}"
backend="${BACKEND:-auto}"
cargo build -q --release -p syncer
work=$(mktemp -d "$base/syncer-bench.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -p "$work/src"
"$(scripts/target-dir.sh)/release/syncer" -q --backend "$backend" --state-dir "$work/state" --status "$work/status.json" "$work/src" "$work/dst" 2>"$work/syncer.log" &
pid=$!
python3 - "$work" "$n" "$pid" <<'PY'
import json, os, sys, time, subprocess
work, n, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
status = os.path.join(work, "status.json")
def read_status():
    try:
        with open(status) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
deadline = time.time() + 60
while not read_status().get("ready"):
    if time.time() > deadline:
        sys.exit("syncer not ready within 60 s")
    time.sleep(0.01)
src, dst = os.path.join(work, "src"), os.path.join(work, "dst")
t0 = time.monotonic()
# perl's open/close: one process, C-speed syscalls (xargs touch adds a utimensat per file and
# a fork per few thousand files; a Python loop is slower still).
subprocess.run(["perl", "-e", f"for (0..{n - 1}) {{ open(my $f, '>', $_) or die $!; close($f) }}"], cwd=src, check=True)
t_storm = time.monotonic()
want = set(str(i) for i in range(n))
while True:
    names = os.listdir(dst)
    if len(names) >= n and want.issubset(names) and len(names) == n:
        break
    if time.monotonic() - t0 > 600:
        sys.exit("no convergence within 600 s")
    time.sleep(0.005)
t_conv = time.monotonic()
time.sleep(1.2)  # one more status write, so the peak RSS includes the whole storm
st = read_status()
t1 = time.monotonic()
subprocess.run(["cp", "-a", src, os.path.join(work, "cp-copy")], check=True)
t_cp = time.monotonic() - t1
conv = t_conv - t0
print(f"backend                  {st.get('backend')}")
print(f"files                    {n}")
print(f"storm (create) time      {t_storm - t0:.3f} s  ({n / (t_storm - t0):,.0f} files/s)")
print(f"syncer converged         {conv:.3f} s after storm start, {t_conv - t_storm:.3f} s after storm end")
print(f"cp -a of the final tree  {t_cp:.3f} s")
print(f"ratio syncer / cp -a     {conv / t_cp:.2f}  (goal <= 2.0)")
print(f"syncer peak RSS          {st.get('max_rss_kib', 0) / 1024:.1f} MiB  (goal < 64)")
print(f"events / reads           {st.get('events')} / {st.get('reads')}  overflows {st.get('overflows')}")
print(f"batches                  {st.get('targets', [{}])[0].get('batches')}  copies {st.get('ops', {}).get('copy')}")
PY
