#!/usr/bin/env bash
# Runs the pjdfstest POSIX suite (Rust port, installed with cargo install)
# on a fresh tmpfs and on a fresh triefs mount (-o allow_other, since the
# suite switches users), and fails if any case that passes on tmpfs fails on
# triefs. Needs root. Usage: scripts/pjdfstest.sh [path/to/triefs]
set -euo pipefail
cd "$(dirname "$0")/.."
triefs=${1:-target/release/triefs}
version=0.2.2

if ! command -v pjdfstest >/dev/null 2>&1 || ! pjdfstest --version 2>/dev/null | grep -q "$version"; then
  echo "== installing pjdfstest $version"
  cargo install --locked --quiet --version "$version" pjdfstest
fi
export PATH="$HOME/.cargo/bin:$PATH"

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
work=$(make_workdir pjd)
tm="$work/t" fm="$work/f"
trap 'cleanup_workdir "$work" "$tm" "$fm"' EXIT
mkdir -p "$tm" "$fm"
# The suite switches to unprivileged users, who must be able to reach it.
chmod 0755 "$work"

# Debian has no "tests" user: name two users/groups that exist everywhere.
cat > "$work/conf.toml" <<'CONF'
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
[settings]
naptime = 0.05
[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
CONF

# pjdfstest 0.2.2 builds its PATH_MAX case from the base path length and
# overflows when (4095 - len) is a multiple of 127; pad the path if so.
run_suite() {
  local dir=$1 out=$2
  local base="$dir/p"
  if [ $(( (4095 - ${#base}) % 127 )) -eq 0 ]; then base="$dir/pp"; fi
  mkdir -p "$base" && chmod 0755 "$base"
  (cd "$base" && pjdfstest -c "$work/conf.toml" -p "$base") >"$out" 2>&1 || true
  grep -E '^Summary' "$out" || { echo "no summary in $out"; tail -20 "$out"; return 1; }
}

mount -t tmpfs -o mode=0755 tmpfs "$tm"
echo "== pjdfstest on tmpfs"
run_suite "$tm" "$work/tmpfs.txt"
unmount "$tm"

start_daemon "$fm" "$triefs" -f -o allow_other "$fm"
echo "== pjdfstest on triefs"
run_suite "$fm" "$work/triefs.txt"
stop_daemon "$fm"

failed() { { grep -E '[[:space:]]FAILED$' "$1" || true; } | awk '{print $1}' | sort; }
failed "$work/tmpfs.txt" > "$work/tmpfs.failed"
failed "$work/triefs.txt" > "$work/triefs.failed"
regressions=$(comm -13 "$work/tmpfs.failed" "$work/triefs.failed")
if [ -n "$regressions" ]; then
  echo "cases that pass on tmpfs but fail on triefs:"
  echo "$regressions"
  for c in $regressions; do grep -A8 -F "$c" "$work/triefs.txt" | head -12; done
  exit 1
fi
echo "== pjdfstest: triefs passes every case tmpfs passes"
