#!/usr/bin/env bash
# Runs xfstests (fstests, https://github.com/kdave/xfstests) on a tmpfs and
# on triefs, and writes a per-test table of both results.
#
# Usage: scripts/xfstests.sh XFSTESTS_DIR [tmpfs|triefs|both] [GROUP|TEST...]
#   XFSTESTS_DIR  a built xfstests tree (`make` done), kept outside this
#                 repository; it is not modified
#   tmpfs|triefs|both  which filesystems to test (default: both)
#   GROUP|TEST    what to run: a test such as generic/001 (a file under
#                 XFSTESTS_DIR/tests), or else a group such as generic/quick
#                 (default: generic/quick)
#
# Environment:
#   TRIEFS_BIN=path/to/triefs  the triefs binary (default:
#       $CARGO_TARGET_DIR/release/triefs or target/release/triefs)
#   XFSTESTS_RESULTS=DIR       where results go (default: a new
#       /tmp/xfstests-results.XXXXXX); must not exist or be empty
#   XFSTESTS_CHECK_ARGS="..."  extra options for xfstests' ./check
#   TRIEFS_MOUNT_OPTIONS=...   triefs's -o options (default: allow_other,size=1G,
#       as the issue that asked for this run set them)
#   XFSTESTS_FUSE_SIZED=1      give xfstests' _try_scratch_mkfs_sized a case for
#       FSTYP=fuse, like its tmpfs case (the size becomes a size= mount
#       option); xfstests has none, so those tests do not run without it
#   XFSTESTS_EXCLUDE="..."     tests not to run (default: generic/449, which
#       sets 1 KiB xattrs one setfattr at a time until the filesystem is
#       full: hours on a tmpfs, whose default nr_inodes (half the RAM's
#       pages, 1 KiB of xattr space each) is large on a machine with many GB)
#
# Needs root, /dev/fuse, overlayfs, unshare(1), and xfstests' test users
# (fsgqa, fsgqa2, 123456-fsgqa, group fsgqa; see xfstests' README).
#
# Each filesystem runs in a private mount and PID namespace, so nothing
# mounted by a run outlives it (not even after Ctrl-C: when the run ends,
# the kernel kills what is left in its PID namespace and drops its mounts)
# and nothing changes outside it:
# - triefs is mounted by mount(8) as `-t fuse.triefs`, which runs the helper
#   /sbin/mount.fuse.triefs; inside the namespace a read-only overlay on
#   /sbin (/usr/sbin on merged-/usr systems) adds that helper, a link to
#   TRIEFS_BIN, on top of the real directory (so an installed helper is
#   neither used nor touched);
# - xfstests' `_fs_type` reports a FUSE mount as `fuse.SUBTYPE` while
#   FSTYP=fuse, and then refuses the mount; a copy of common/rc that counts
#   `fuse.triefs` as `fuse` is bound over common/rc inside the namespace.
#
# Results in XFSTESTS_RESULTS: tmpfs/ and triefs/ (xfstests' result
# directories: check.log, *.out.bad, *.full, *.notrun), tmpfs.log and
# triefs.log (./check's output), results.tsv (test, tmpfs, triefs: pass,
# fail, notrun, excluded, or - when not run by this script), summary.md (counts) and
# differences.md (the tests whose results differ, with the failure's first
# differing output line or the notrun reason, triefs' when it did not pass). Wall times are printed
# and written to times.txt, apart from the files meant for diffing.
#
# Exit status: 0 when the runs completed (whatever the tests' results), 2 on
# a setup error, 130 when interrupted.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$0")/.."
prog=$(basename "$0")

die() {
  echo "$prog: $*" >&2
  exit 2
}

# ---------------------------------------------------------------------------
# Inside the namespace (the script runs itself again through unshare):
#   xfstests.sh --in-namespace FS WORK XFSTESTS_DIR RESULT_BASE CHECK_ARGS...
if [ "${1:-}" = --in-namespace ]; then
  fs=$2 work=$3 xt=$4 results=$5
  shift 5
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  # Unmount what xfstests left mounted, so the daemons exit on their own
  # before the namespace's end kills them.
  trap 'unmount "$work/s" || true; unmount "$work/t" || true' EXIT
  trap 'exit 130' INT TERM
  if [ "$fs" = triefs ]; then
    # mount(8) looks for helpers in /sbin: /usr/sbin where /sbin links there.
    sbin=$(realpath /sbin)
    mount -t overlay -o "ro,lowerdir=$work/helper:$sbin" triefs-helper "$sbin"
  fi
  mount --bind "$work/rc" "$xt/common/rc"
  cd "$xt"
  rc=0
  HOST_OPTIONS="$work/$fs.config" RESULT_BASE="$results" ./check "$@" || rc=$?
  exit "$rc"
fi

# ---------------------------------------------------------------------------
# Arguments and prerequisites (each failure is one line).
[ $# -ge 1 ] || die "usage: $prog XFSTESTS_DIR [tmpfs|triefs|both] [GROUP|TEST...]"
xt=$1
shift
which=both
case "${1:-}" in
  tmpfs | triefs | both)
    which=$1
    shift
    ;;
esac
[ -d "$xt" ] || die "$xt: no such directory (give a built xfstests tree)"
xt=$(realpath "$xt")
if [ ! -f "$xt/check" ] || [ ! -f "$xt/common/rc" ] || [ ! -d "$xt/tests/generic" ]; then
  die "$xt: not an xfstests tree (no check, common/rc or tests/generic)"
fi
if [ ! -x "$xt/ltp/fsx" ] || [ ! -x "$xt/src/feature" ]; then
  die "$xt: xfstests is not built (no ltp/fsx or src/feature): run make in it"
fi
[ "$(id -u)" = 0 ] || die "needs root (xfstests mounts, switches users and drops caches)"
for u in fsgqa fsgqa2 123456-fsgqa; do
  id -u "$u" >/dev/null 2>&1 ||
    die "user $u missing: useradd -m fsgqa; useradd 123456-fsgqa; useradd fsgqa2 (see xfstests' README)"
done
getent group fsgqa >/dev/null || die "group fsgqa missing: groupadd fsgqa"
command -v unshare >/dev/null || die "unshare not found (package util-linux)"

case $which in
  both) filesystems="tmpfs triefs" ;;
  *) filesystems=$which ;;
esac
if [ "$which" != tmpfs ]; then
  bin=${TRIEFS_BIN:-${CARGO_TARGET_DIR:-target}/release/triefs}
  [ -x "$bin" ] || die "$bin: no triefs binary (cargo build --release, or set TRIEFS_BIN)"
  bin=$(realpath "$bin")
  [ -c /dev/fuse ] || die "/dev/fuse missing"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
    die "overlayfs unavailable (needed to add the mount helper inside the namespace)"
fi

# What to run: tests by name, anything else as a group.
check_args=()
[ $# -gt 0 ] || set -- generic/quick
for a in "$@"; do
  case $a in
    -*) die "$a: give groups or tests; options go in XFSTESTS_CHECK_ARGS" ;;
  esac
  if [ -f "$xt/tests/$a" ]; then
    check_args+=("$a")
  else
    check_args+=(-g "$a")
  fi
done
read -r -a extra <<<"${XFSTESTS_CHECK_ARGS:-}"
check_args=("${extra[@]}" "${check_args[@]}")
exclude=${XFSTESTS_EXCLUDE-generic/449}
[ -z "$exclude" ] || check_args=(-e "$exclude" "${check_args[@]}")

out=${XFSTESTS_RESULTS:-}
if [ -z "$out" ]; then
  out=$(mktemp -d /tmp/xfstests-results.XXXXXX)
elif [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  die "$out: exists and is not empty"
fi
mkdir -p "$out"
out=$(realpath "$out")

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
work=$(make_workdir xfst)
trap 'cleanup_workdir "$work"' EXIT
trap 'exit 130' INT TERM
# xfstests switches to its test users, who must reach the mount points.
chmod 0755 "$work"
mkdir "$work/t" "$work/s" "$work/helper"

# common/rc with `_fs_type` counting fuse.triefs as fuse: the upstream
# function is kept under another name and wrapped, so this does not depend
# on its body.
cp "$xt/common/rc" "$work/rc"
cat >>"$work/rc" <<'RC'

# Added by triefs' scripts/xfstests.sh (a copy bound over common/rc while it
# runs): a FUSE mount of type fuse.triefs counts as FSTYP=fuse.
eval "$(declare -f _fs_type | sed '1s/^_fs_type /_fs_type_upstream /')"
_fs_type()
{
	_fs_type_upstream "$@" | sed -e 's/^fuse\.triefs$/fuse/'
}
RC
echo "== common/rc: _fs_type counts fuse.triefs as fuse (a patched copy bound over it during the run; $xt is not modified)"
if [ "${XFSTESTS_FUSE_SIZED:-0}" = 1 ]; then
  cat >>"$work/rc" <<'RC'

# Added by triefs' scripts/xfstests.sh with XFSTESTS_FUSE_SIZED=1: a sized
# scratch filesystem for FSTYP=fuse is a size= mount option, as for tmpfs.
eval "$(declare -f _try_scratch_mkfs_sized | sed '1s/^_try_scratch_mkfs_sized /_try_scratch_mkfs_sized_upstream /')"
_try_scratch_mkfs_sized()
{
	if [ "$FSTYP" != fuse ]; then
		_try_scratch_mkfs_sized_upstream "$@"
		return
	fi
	export MOUNT_OPTIONS="$MOUNT_OPTIONS -o size=$1"
}
RC
  echo "== common/rc: _try_scratch_mkfs_sized mounts FSTYP=fuse with size= (XFSTESTS_FUSE_SIZED=1)"
fi

for fs in $filesystems; do
  case $fs in
    tmpfs)
      cat >"$work/tmpfs.config" <<CONF
export FSTYP=tmpfs
export TEST_DEV=tmpfs-test
export TEST_DIR=$work/t
export SCRATCH_DEV=tmpfs-scratch
export SCRATCH_MNT=$work/s
CONF
      ;;
    triefs)
      ln -s "$bin" "$work/helper/mount.fuse.triefs"
      cat >"$work/triefs.config" <<CONF
export FSTYP=fuse
export FUSE_SUBTYP=.triefs
export TEST_DEV=triefs-test
export TEST_DIR=$work/t
export SCRATCH_DEV=triefs-scratch
export SCRATCH_MNT=$work/s
export FUSE_MOUNT_OPTIONS="-o ${TRIEFS_MOUNT_OPTIONS:-allow_other,size=1G}"
CONF
      ;;
  esac
done

# ---------------------------------------------------------------------------
# The runs.
: >"$out/times.txt"
for fs in $filesystems; do
  echo "== xfstests on $fs: ./check ${check_args[*]} (output in $out/$fs.log)"
  [ "$fs" = tmpfs ] || echo "   triefs binary: $bin"
  start=$(date +%s)
  rc=0
  unshare --mount --propagation private --pid --fork --mount-proc \
    "$self" --in-namespace "$fs" "$work" "$xt" "$out/$fs" "${check_args[@]}" \
    >"$out/$fs.log" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))
  printf '%s: %dm%02ds (check exit %d)\n' "$fs" $((secs / 60)) $((secs % 60)) "$rc" |
    tee -a "$out/times.txt"
  [ "$rc" != 130 ] || exit 130
  if [ ! -f "$out/$fs/check.log" ]; then
    tail -20 "$out/$fs.log" >&2
    die "no $out/$fs/check.log: ./check did not run on $fs (its output is above)"
  fi
done

# ---------------------------------------------------------------------------
# The table.

# statuses FS: "test<TAB>pass|fail|notrun|excluded" for each test ./check
# tried on FS, from the last summary in its check.log ("Ran:" lists every
# test tried, the not-run ones included), and for each test it skipped as
# excluded (from its output).
statuses() {
  [ -f "$out/$1/check.log" ] || return 0
  {
    awk '
      /^Ran:/ { delete st; delete ran; for (i = 2; i <= NF; i++) ran[$i] = 1 }
      /^Not run:/ { for (i = 3; i <= NF; i++) st[$i] = "notrun" }
      /^Failures:/ { for (i = 2; i <= NF; i++) st[$i] = "fail" }
      END { for (t in ran) print t "\t" ((t in st) ? st[t] : "pass") }
    ' "$out/$1/check.log"
    awk '$2 == "[expunged]" { print $1 "\texcluded" }' "$out/$1.log"
  } | LC_ALL=C sort -u
}

# detail FS TEST STATUS: one line saying why: a notrun reason, or the first
# line where a failed test's output differs from the expected output.
# Always succeeds.
detail() {
  local base=$out/$1/$2 line
  case $3 in
    notrun) if [ -f "$base.notrun" ]; then head -1 "$base.notrun"; fi ;;
    fail)
      if [ -f "$base.out.bad" ] && [ -f "$xt/tests/$2.out" ]; then
        line=$(diff "$xt/tests/$2.out" "$base.out.bad" | grep -m1 '^[<>]' || true)
        printf '%s' "${line:-output matches; see $2.full or dmesg}"
      else
        printf 'no output file; see %s.full' "$2"
      fi
      ;;
  esac
  return 0
}

statuses tmpfs >"$work/tmpfs.st"
statuses triefs >"$work/triefs.st"
{
  printf 'test\ttmpfs\ttriefs\n'
  LC_ALL=C join -t "$(printf '\t')" -a1 -a2 -e - -o 0,1.2,2.2 "$work/tmpfs.st" "$work/triefs.st"
} >"$out/results.tsv"

{
  echo "| filesystem | pass | fail | notrun | excluded |"
  echo "|---|---|---|---|---|"
  for fs in $filesystems; do
    awk -F '\t' -v fs="$fs" '
      { n[$2]++ }
      END { printf "| %s | %d | %d | %d | %d |\n", fs, n["pass"], n["fail"], n["notrun"], n["excluded"] }
    ' "$work/$fs.st"
  done
} >"$out/summary.md"

{
  echo "| test | tmpfs | triefs | detail |"
  echo "|---|---|---|---|"
  tail -n +2 "$out/results.tsv" | while IFS=$'\t' read -r t a b; do
    [ "$a" != "$b" ] || continue
    case $b in
      fail | notrun) d=$(detail triefs "$t" "$b") ;;
      *) d="tmpfs: $(detail tmpfs "$t" "$a")" ;;
    esac
    # Work paths change from run to run: name them as xfstests does.
    d=${d//"$work/t"/TEST_DIR}
    d=${d//"$work/s"/SCRATCH_MNT}
    d=$(printf '%s' "$d" | tr '|' '/')
    printf '| %s | %s | %s | %s |\n' "$t" "$a" "$b" "${d//\`/\'}"
  done
} >"$out/differences.md"

echo
cat "$out/summary.md"
echo
if [ "$which" = both ]; then
  echo "results: $out (results.tsv, summary.md, differences.md: $(($(wc -l <"$out/differences.md") - 2)) tests differ)"
else
  echo "results: $out (results.tsv, summary.md)"
fi
