# shellcheck shell=bash
# Shared code of the scripts that mount triefs (bench.sh, pjdfstest.sh,
# fsx.sh): a private work directory, starting a foreground FUSE daemon and
# waiting for its mount, unmounting by path, and cleaning up at exit.
#
# Source it from a script in scripts/, after `cd` to the repository root:
#   # shellcheck source=scripts/lib.sh
#   . scripts/lib.sh
#   work=$(make_workdir NAME)
#   trap 'cleanup_workdir "$work" "$work/mnt"' EXIT
#   start_daemon "$work/mnt" target/release/triefs -f "$work/mnt"
#   ...
#   stop_daemon "$work/mnt"
#
# Paths given to these functions must be absolute and free of symlinks
# (make_workdir returns such a path): they are compared with the mount
# table as the kernel writes it.

# The PID of the daemon started by start_daemon, empty when none runs.
daemon_pid=
# Set to 1 to keep the work directory at exit (cleanup_workdir prints it).
keep_work=0

# make_workdir NAME: creates a private directory /tmp/NAME.XXXXXX and
# prints its canonical path.
make_workdir() {
  local dir
  dir=$(mktemp -d "/tmp/$1.XXXXXX")
  realpath "$dir"
}

# mount_table_path PATH: PATH as /proc/self/mountinfo spells it (space,
# tab, newline and backslash escaped as octal).
mount_table_path() {
  local p=$1 nl=$'\n' tab=$'\t'
  p=${p//\\/\\134}
  p=${p// /\\040}
  p=${p//$tab/\\011}
  p=${p//$nl/\\012}
  printf '%s' "$p"
}

# is_mounted DIR: whether DIR is a mount point. Reads the mount table, so
# it neither blocks nor fails on a mount whose daemon is gone.
is_mounted() {
  awk -v p="$(mount_table_path "$1")" '$5 == p { found = 1 } END { exit !found }' \
    /proc/self/mountinfo
}

# mounted_under DIR: whether anything is mounted at DIR or below it.
mounted_under() {
  awk -v p="$(mount_table_path "$1")" \
    '$5 == p || index($5, p "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# unmount DIR: unmounts DIR if it is mounted; when it is busy, detaches it
# lazily (umount -l). Fails only if both fail.
unmount() {
  if is_mounted "$1"; then
    umount "$1" 2>/dev/null || umount -l "$1"
  fi
}

# find_peer: the memfs_ll of BENCH_PEER (a libfuse build or source dir) in
# $peer, or empty without BENCH_PEER; exits when BENCH_PEER has none.
# shellcheck disable=SC2034  # peer is for the caller
find_peer() {
  peer=
  [ -n "${BENCH_PEER:-}" ] || return 0
  local c
  for c in "$BENCH_PEER/example/memfs_ll" "$BENCH_PEER/build/example/memfs_ll"; do
    [ -x "$c" ] && { peer=$c; return 0; }
  done
  echo "no example/memfs_ll under $BENCH_PEER (BENCH_PEER)" >&2
  exit 1
}

# start_daemon DIR CMD [ARGS...]: runs CMD, a FUSE daemon serving DIR in
# the foreground, in the background (PID in $daemon_pid) and waits until DIR
# is mounted: up to MOUNT_WAIT seconds (default 20). Fails, with a message,
# when the daemon exits first or the mount does not appear in time.
start_daemon() {
  local mnt=$1 tries i
  shift
  "$@" </dev/null &
  daemon_pid=$!
  tries=$(( ${MOUNT_WAIT:-20} * 20 ))
  for ((i = 0; i < tries; i++)); do
    is_mounted "$mnt" && return 0
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
      wait "$daemon_pid" 2>/dev/null || true
      daemon_pid=
      echo "$(basename "$0"): $1 exited before mounting $mnt" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "$(basename "$0"): $1 did not mount $mnt within ${MOUNT_WAIT:-20} s" >&2
  return 1
}

# wait_daemon [SECS]: waits for the daemon started by start_daemon to exit
# and returns its exit status. With SECS, it is sent SIGTERM (by its PID)
# if it is still running after SECS seconds. Returns 0 when none runs.
wait_daemon() {
  local pid=$daemon_pid rc=0 i
  [ -n "$pid" ] || return 0
  if [ $# -gt 0 ]; then
    for ((i = 0; i < $1 * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
  fi
  wait "$pid" || rc=$?
  daemon_pid=
  return "$rc"
}

# stop_daemon DIR: unmounts DIR and waits for the daemon started by
# start_daemon; returns the daemon's exit status.
stop_daemon() {
  unmount "$1" || true
  wait_daemon
}

# cleanup_workdir WORK [MOUNT...]: for an EXIT trap. Unmounts each MOUNT,
# stops the daemon of start_daemon (SIGTERM if it has not exited 10 s after
# the unmount), and removes WORK, unless keep_work=1 or something is still
# mounted under it (then it says so and leaves it).
cleanup_workdir() {
  local work=$1 m
  shift
  for m in "$@"; do
    unmount "$m" || true
  done
  wait_daemon 10 2>/dev/null || true
  if [ "$keep_work" = 1 ]; then
    echo "$(basename "$0"): files kept in $work" >&2
  elif mounted_under "$work"; then
    echo "$(basename "$0"): $work still has a mount in it; not removed" >&2
  else
    rm -rf "$work"
  fi
}
