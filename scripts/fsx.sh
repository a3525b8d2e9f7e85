#!/usr/bin/env bash
# Runs fsx (the File System eXerciser, Rust port from crates.io) against a
# fresh triefs mount, after a run against a tmpfs that shows the settings are
# sane on a reference filesystem. Installs fsx with `cargo install --locked
# fsx` when it is missing. Every op type fsx has is enabled: pread/pwrite,
# mmap reads and writes (msync after each), msync(MS_INVALIDATE), ftruncate,
# fsync, fdatasync, posix_fallocate, punch hole, sendfile, posix_fadvise,
# copy_file_range and close/reopen.
#
# Usage: scripts/fsx.sh [TRIEFS_BINARY]
#   (default: $CARGO_TARGET_DIR/release/triefs or target/release/triefs,
#   built with cargo when missing)
#
# Environment:
#   FSX_OPS=N       operations per run (default 100000)
#   FSX_SEED=N      RNG seed (default: random, printed)
#   FSX_FLEN=N      largest file size in bytes (default 1048576)
#   FSX_TMPFS=0     skip the tmpfs reference run (needs root otherwise)
#
# Exit status: 0 when both runs pass, 1 when fsx finds a problem (its log and
# the .fsxgood/.fsxbad files are kept in the printed directory), 2 on a setup
# error.
set -euo pipefail
cd "$(dirname "$0")/.."

ops=${FSX_OPS:-100000}
seed=${FSX_SEED:-$(( (RANDOM << 15) | RANDOM ))}
flen=${FSX_FLEN:-1048576}
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v fsx >/dev/null 2>&1; then
  echo "== installing fsx (cargo install --locked fsx)"
  cargo install --locked fsx
fi

bin=${1:-${CARGO_TARGET_DIR:-target}/release/triefs}
if [ ! -x "$bin" ]; then
  if [ $# -gt 0 ]; then
    echo "fsx.sh: $bin is not an executable" >&2
    exit 2
  fi
  echo "== building triefs"
  cargo build --release
fi

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
work=$(make_workdir fsx)
mnt=$work/mnt
tmnt=$work/tmpfs
mkdir -p "$mnt" "$tmnt" "$work/artifacts"
trap 'cleanup_workdir "$work" "$mnt" "$tmnt"' EXIT

cat > "$work/fsx.toml" <<EOF
flen = $flen

[opsize]
max = 65536

[weights]
close_open = 1
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 5
fsync = 1
fdatasync = 1
posix_fallocate = 2
punch_hole = 2
sendfile = 2
posix_fadvise = 2
copy_file_range = 2
EOF

# run_fsx NAME DIR: runs fsx on DIR/fsx.file, logs to $work/NAME.log.
run_fsx() {
  local name=$1 dir=$2 start end rc=0
  start=$(date +%s.%N)
  fsx -N "$ops" -S "$seed" -f "$work/fsx.toml" -P "$work/artifacts" "$dir/fsx.file" \
    >"$work/$name.log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" -eq 0 ]; then
    echo "$name: $ops ops OK in ${secs}s ($(tail -n 1 "$work/$name.log"))"
  else
    keep_work=1
    echo "$name: FAILED (exit $rc) after ${secs}s; seed $seed; last lines of the log:" >&2
    tail -n 40 "$work/$name.log" >&2
    echo "replay: FSX_SEED=$seed FSX_OPS=$ops FSX_FLEN=$flen scripts/fsx.sh $bin" >&2
  fi
  return "$rc"
}

echo "== fsx: $ops ops, seed $seed, max file size $flen"
status=0
if [ "${FSX_TMPFS:-1}" != 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "fsx.sh: the tmpfs reference run needs root (set FSX_TMPFS=0 to skip)" >&2
    exit 2
  fi
  mount -t tmpfs -o mode=0755 tmpfs "$tmnt"
  run_fsx tmpfs "$tmnt" || status=1
  unmount "$tmnt"
fi

start_daemon "$mnt" "$bin" -f "$mnt" || exit 2

run_fsx triefs "$mnt" || status=1
rc=0
stop_daemon "$mnt" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "fsx.sh: triefs exited with status $rc after unmount" >&2
  status=1
fi
exit "$status"
