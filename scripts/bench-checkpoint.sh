#!/usr/bin/env bash
# Resetting a test fixture: `triefs checkpoint restore` against what a
# test suite does without checkpoints, measured side by side in one run.
# Called by scripts/bench.sh (section `checkpoint`); runs alone too.
# Needs root (tmpfs) and /dev/fuse.
#
# Usage: scripts/bench-checkpoint.sh [ROUNDS] [ENTRIES...]
#   ROUNDS   alternating rounds per method (default 5); medians are shown
#   ENTRIES  fixture sizes (default 100000). The fixture is /usr/include and
#            /usr/share/doc copied again and again into numbered directories
#            until ENTRIES entries; above 200,000 entries every file is cut
#            to its first 1 KiB (BENCH_FIXTURE_CAP=BYTES sets the cut), so
#            that three copies (a pristine one, the tmpfs one, the triefs
#            one) fit in memory.
# Each round, a "test" changes 1% of the fixture (appends a line to every
# 100th file, removes every 1000th file, creates 10 files), then the reset
# is timed:
#   tmpfs rm+cp     rm -rf WORK && cp -a PRISTINE WORK, both on tmpfs
#   tmpfs rsync     rsync -a --delete PRISTINE/ WORK/, both on tmpfs
#   triefs rm+cp, triefs rsync   the same with both trees on one triefs mount
#   restore         triefs checkpoint restore MNT fixture, on a mount of its
#                   own (the command's wall time, which includes having the
#                   kernel write back the test's cached writes first)
# and, once, a restore after the test replaced every file.
# Also reported: save time, and the daemon's memory per checkpoint (RSS
# growth per entry after the save and after its spare copy is made).
# BENCH_CHECKPOINT_PEERS="tmpfs" leaves out the triefs resets without
# checkpoints and the restore after a rewrite of every file (minutes at a
# million entries); default "tmpfs triefs".
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
PEERS=" ${BENCH_CHECKPOINT_PEERS:-tmpfs triefs} "
peer() { [[ "$PEERS" == *" $1 "* ]]; }
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000)

cargo build --release --quiet --bin triefs
bin=${TRIEFS_BIN:-target/release/triefs}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
work=$(make_workdir tckpt)
trap 'cleanup_workdir "$work" "$work/t" "$work/f" "$work/g"' EXIT
mkdir -p "$work/t" "$work/f" "$work/g"
cp "$bin" "$work/triefs"
bin=$work/triefs

median() { sort -g | awk '{a[NR]=$1} END { if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
now() { date +%s.%N; }
secs_of() { local t0; t0=$(now); "$@" >/dev/null; awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f", b-a }'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# fixture DIR N CAP: the fixture tree at DIR (CAP > 0: files cut to CAP bytes).
fixture() {
  local dir=$1 n=$2 cap=$3 src=$work/src
  rm -rf "$src"; mkdir -p "$src" "$dir"
  cp -a /usr/include /usr/share/doc "$src"/
  if [ "$cap" -gt 0 ]; then
    find "$src" -type f -size +"$cap"c -exec truncate -s "<$cap" {} +
  fi
  local per have=0 i=0
  per=$(find "$src" | wc -l)
  while [ "$have" -lt "$n" ]; do
    i=$((i + 1))
    cp -a "$src" "$dir/c$i"
    have=$((have + per))
  done
  rm -rf "$src"
}

# change DIR ROUND: what a test does to 1% of the fixture.
change() {
  local dir=$1 r=$2
  (cd "$dir" && find . -type f | sort > "$work/files")
  awk 'NR % 100 == 1' "$work/files" | (cd "$dir" && while IFS= read -r f; do echo "round $r" >> "$f"; done)
  awk 'NR % 1000 == 7' "$work/files" | (cd "$dir" && xargs -r -d '\n' rm -f)
  for k in $(seq 10); do echo new > "$dir/c1/new-$r-$k"; done
}

for n in "${SIZES[@]}"; do
  cap=${BENCH_FIXTURE_CAP:-0}
  [ "$n" -gt 200000 ] && cap=${BENCH_FIXTURE_CAP:-1024}
  echo "== fixture of $n entries (files cut at ${cap} bytes; 0: whole)" >&2
  mount -t tmpfs -o size=90%,nr_inodes=0 tmpfs "$work/t"
  fixture "$work/t/pristine" "$n" "$cap"
  entries=$(find "$work/t/pristine" | wc -l)
  bytes=$(du -sb "$work/t/pristine" | cut -f1)
  cp -a "$work/t/pristine" "$work/t/work"
  # Without checkpoints: pristine and work on one mount.
  fpid=
  if peer triefs; then
    start_daemon "$work/f" "$bin" -f -o size=0,nr_inodes=0 "$work/f"
    fpid=$daemon_pid
    cp -a "$work/t/pristine" "$work/f/pristine"
    cp -a "$work/t/pristine" "$work/f/work"
  fi
  # With checkpoints: the fixture alone, on a mount of its own, so that
  # only what the test changes separates it from its checkpoint.
  start_daemon "$work/g" "$bin" -f -o size=0,nr_inodes=0 "$work/g"
  gpid=$daemon_pid
  cp -a "$work/t/pristine/." "$work/g"
  sync
  # Saves: the first, then a few more (deleted again) for the median.
  rss0=$(rss_kib "$gpid")
  save1=$(secs_of "$bin" checkpoint save "$work/g" fixture)
  rss1=$(rss_kib "$gpid")
  sleep 2 # the spare copy is made in the background
  rss2=$(rss_kib "$gpid")
  : > "$work/save"
  for r in $(seq "$ROUNDS"); do
    secs_of "$bin" checkpoint save "$work/g" "extra$r" >> "$work/save"; echo >> "$work/save"
    "$bin" checkpoint delete "$work/g" "extra$r"
  done
  sleep 2
  : > "$work/t_rmcp"; : > "$work/t_rsync"; : > "$work/f_rmcp"; : > "$work/f_rsync"; : > "$work/restore"
  for r in $(seq "$ROUNDS"); do
    echo "   round $r/$ROUNDS" >&2
    change "$work/t/work" "$r"
    secs_of sh -c "rm -rf '$work/t/work' && cp -a '$work/t/pristine' '$work/t/work'" >> "$work/t_rmcp"; echo >> "$work/t_rmcp"
    if peer triefs; then
      change "$work/f/work" "$r"
      secs_of sh -c "rm -rf '$work/f/work' && cp -a '$work/f/pristine' '$work/f/work'" >> "$work/f_rmcp"; echo >> "$work/f_rmcp"
    fi
    change "$work/t/work" "$r"
    secs_of rsync -a --delete "$work/t/pristine/" "$work/t/work/" >> "$work/t_rsync"; echo >> "$work/t_rsync"
    if peer triefs; then
      change "$work/f/work" "$r"
      secs_of rsync -a --delete "$work/f/pristine/" "$work/f/work/" >> "$work/f_rsync"; echo >> "$work/f_rsync"
    fi
    change "$work/g" "$r"
    secs_of "$bin" checkpoint restore "$work/g" fixture >> "$work/restore"; echo >> "$work/restore"
    # Let the background copy for the next restore finish, as it would
    # while the next test runs.
    sleep 1
  done
  # A test that rewrote the whole tree: every inode the kernel holds
  # changed, so the restore has the kernel forget all of them (left out
  # with the slow triefs peers).
  full="not measured"
  if peer triefs; then
    rm -rf "${work:?}/g/"* && cp -a "$work/t/pristine/." "$work/g"
    full="$(secs_of "$bin" checkpoint restore "$work/g" fixture) s"
  fi
  stop_daemon "$work/g" || true
  if [ -n "$fpid" ]; then
    daemon_pid=$fpid
    stop_daemon "$work/f" || true
  fi
  umount "$work/t"
  t_rmcp=$(median < "$work/t_rmcp"); t_rsync=$(median < "$work/t_rsync")
  f_rmcp=$(median < "$work/f_rmcp"); f_rsync=$(median < "$work/f_rsync")
  rest=$(median < "$work/restore"); save=$(median < "$work/save")
  best_t=$(awk -v a="$t_rmcp" -v b="$t_rsync" 'BEGIN { print (a < b) ? a : b }')
  best_f=$(awk -v a="$f_rmcp" -v b="$f_rsync" 'BEGIN { if (a == "n/a") print "n/a"; else print (a < b) ? a : b }')
  per=$(awk -v a="$rss0" -v b="$rss1" -v c="$rss2" -v e="$entries" 'BEGIN { printf "%.0f / %.0f", (b-a)*1024/e, (c-a)*1024/e }')
  echo
  echo "### Fixture reset, $entries entries ($((bytes / 1048576)) MiB), median of $ROUNDS rounds"
  echo
  echo "| reset | seconds | restore is faster by |"
  echo "|---|---:|---:|"
  for row in "tmpfs: rm -rf + cp -a|$t_rmcp" "tmpfs: rsync -a --delete|$t_rsync" \
             "triefs: rm -rf + cp -a|$f_rmcp" "triefs: rsync -a --delete|$f_rsync" \
             "triefs checkpoint restore|$rest"; do
    name=${row%%|*}; s=${row##*|}
    x=$(awk -v a="$s" -v b="$rest" 'BEGIN { if (a == "n/a") print "-"; else printf "%.0fx", a/b }')
    echo "| $name | $s | $x |"
  done
  echo
  echo "- restore vs the fastest tmpfs reset: $(awk -v a="$best_t" -v b="$rest" 'BEGIN { printf "%.0fx", a/b }'); vs the fastest triefs reset without checkpoints: $(awk -v a="$best_f" -v b="$rest" 'BEGIN { if (a == "n/a") print "not measured"; else printf "%.0fx", a/b }')"
  echo "- save: $save s (the first: $save1 s)"
  echo "- restore after the test replaced every file (rm -rf + cp -a of the fixture; one round): $full"
  echo "- daemon memory per entry for the checkpoint: $per bytes (after the save / with its spare copy for the next restore)"
done
