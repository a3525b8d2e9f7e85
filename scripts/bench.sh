#!/usr/bin/env bash
# Performance comparison of triefs against tmpfs, measured side by side in
# one run. Needs root (tmpfs, drop_caches) and /dev/fuse.
#
# Usage: scripts/bench.sh [RUNS] [N]
#   RUNS  rounds of the reference workload set, alternating tmpfs and triefs
#         (default 5); the table shows per-workload medians.
#   N     scale passed to fsbench.sh (default 10000).
# Environment:
#   FSBENCH=path/to/fsbench.sh   workload set (default: ../shared/bench/fsbench.sh
#                                 next to the repository)
#   BENCH_ENTRIES=1000000        entries for the ls-prefix and memory/load measurements
#                                 (memory: each data set of scripts/datasets.sh)
#   BENCH_WALK_ENTRIES=100000    directories in the tree-walk measurement
#   BENCH_TAR_ENTRIES=100000     entries of the fixture tree in the tar measurement
#   BENCH_CHECKPOINT_ENTRIES="100000 1000000"   fixture sizes of the checkpoint section
#   BENCH_DAY_SRC=/usr/include   the tree of the developer's-day section (untar, grep -r,
#                                 rm -rf), archived once into the work directory
#   BENCH_SKIP="fsbench floor readdir parallel walk lsprefix memory tar checkpoint day deep"   parts to skip
#   TRIEFS_ARGS="..."            extra triefs options (e.g. "--threads 1")
#   TRIEFS_BIN=path/to/triefs    measure another build (default: target/release/triefs)
#   BENCH_PEER=DIR               a libfuse source or build directory (kept outside the
#                                 repository) with example/memfs_ll built: the fsbench
#                                 rounds also run it, plain and with default_permissions
#                                 (the fair peer: triefs always has the kernel check
#                                 permissions), and the table gets their columns; the
#                                 deep and day sections run the fair peer too
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
N=${2:-10000}
FSBENCH=${FSBENCH:-../shared/bench/fsbench.sh}
ENTRIES=${BENCH_ENTRIES:-1000000}
WALK_ENTRIES=${BENCH_WALK_ENTRIES:-100000}
TAR_ENTRIES=${BENCH_TAR_ENTRIES:-100000}
SKIP=" ${BENCH_SKIP:-} "
skip() { [[ "$SKIP" == *" $1 "* ]]; }

cargo build --release --quiet --bin triefs --examples
bin=${TRIEFS_BIN:-target/release/triefs}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
work=$(make_workdir tbench)
trap 'cleanup_workdir "$work" "$work/t" "$work/f" "$work/n" "$work/p"' EXIT
mkdir -p "$work/t" "$work/f" "$work/n" "$work/p"

# The peer of BENCH_PEER: libfuse's memfs_ll, from a build or source dir.
find_peer
read -ra extra_args <<< "${TRIEFS_ARGS:-}"

# start_triefs MNT [ARGS...]: a foreground triefs on MNT, PID in $daemon_pid.
start_triefs() {
  local mnt=$1; shift
  start_daemon "$mnt" "$bin" -f "$@" "${extra_args[@]}" "$mnt"
}
stop_triefs() { stop_daemon "$1" || true; }

median() { sort -g | awk '{a[NR]=$1} END { if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

if ! skip fsbench; then
  [ -f "$FSBENCH" ] || { echo "fsbench.sh not found at $FSBENCH (set FSBENCH)" >&2; exit 1; }
  for r in $(seq "$RUNS"); do
    echo "== round $r/$RUNS: tmpfs" >&2
    mount -t tmpfs -o mode=0755 tmpfs "$work/t"
    bash "$FSBENCH" "$work/t" "$N" > "$work/tmpfs.$r" 2>/dev/null || true
    umount "$work/t"
    echo "== round $r/$RUNS: triefs" >&2
    start_triefs "$work/f"
    FSBENCH_PID=$daemon_pid bash "$FSBENCH" "$work/f" "$N" > "$work/triefs.$r" 2>/dev/null || true
    stop_triefs "$work/f"
    if [ -n "$peer" ]; then
      # Its fastest setting (no_timeout: entries and attributes cached
      # for ever), without and with the kernel checking permissions.
      for cfg in plain fair; do
        echo "== round $r/$RUNS: memfs_ll ($cfg)" >&2
        opts=no_timeout
        [ "$cfg" = fair ] && opts=no_timeout,default_permissions
        start_daemon "$work/p" "$peer" -f -o "$opts" "$work/p"
        FSBENCH_PID=$daemon_pid bash "$FSBENCH" "$work/p" "$N" > "$work/peer_$cfg.$r" 2>/dev/null || true
        stop_daemon "$work/p" || true
      done
    fi
  done
  echo
  echo "### fsbench, N=$N, median of $RUNS rounds (ratio = triefs / tmpfs; for *_time and tar_rmrf lower is better)"
  echo
  of() { # of NAME WORKLOAD: the median of NAME's rounds
    cat "$work/$1".* 2>/dev/null | awk -v w="$2" '$1==w && $2!="FAIL" {print $2}' | median
  }
  ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0>0) printf "%.2f", b/a; else print "-" }'; }
  if [ -n "$peer" ]; then
    echo "memfs_ll: libfuse's example, -o no_timeout; fair: also -o default_permissions, as triefs."
    echo
    echo "| workload | tmpfs | memfs_ll | memfs_ll fair | triefs | triefs/tmpfs | triefs/fair | unit |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
  else
    echo "| workload | tmpfs | triefs | ratio | unit |"
    echo "|---|---:|---:|---:|---|"
  fi
  awk '{print $1}' "$work/triefs.1" | while read -r w; do
    unit=$(awk -v w="$w" '$1==w {print $3; exit}' "$work/triefs.1")
    t=$(of tmpfs "$w")
    f=$(of triefs "$w")
    ratio=$(ratio_of "$t" "$f")
    [[ "$w" == daemon_* ]] && { t=-; ratio=-; }
    if [ -n "$peer" ]; then
      p=$(of peer_plain "$w")
      q=$(of peer_fair "$w")
      echo "| $w | $t | $p | $q | $f | $ratio | $(ratio_of "$q" "$f") | $unit |"
    else
      echo "| $w | $t | $f | $ratio | $unit |"
    fi
  done
fi

stat_loop() { # requests/s of stat(MNT/x) for 2 s
  python3 - "$1" <<'PY'
import os, sys, time
p = os.path.join(sys.argv[1], "x"); n = 0; t0 = time.perf_counter(); end = t0 + 2.0
while True:
    for _ in range(1000):
        os.stat(p)
    n += 1000
    t = time.perf_counter()
    if t >= end: break
print(f"{n / (t - t0):.0f}")
PY
}

if ! skip floor; then
  echo
  echo "### FUSE floor: stat of one name on a do-nothing filesystem (TTL 0: one LOOKUP per stat), median of 3"
  echo
  echo "| threads | requests/s |"
  echo "|---:|---:|"
  for th in 1 2; do
    rates=()
    for _ in 1 2 3; do
      start_daemon "$work/n" target/release/examples/nullfs "$work/n" "$th"
      rates+=("$(stat_loop "$work/n")")
      stop_daemon "$work/n" || true
    done
    echo "| $th | $(printf '%s\n' "${rates[@]}" | median) |"
  done
fi

list_rate() { # list_rate DIR: entries/s of the first listing, then of repeated ones
  python3 - "$1" <<'PY'
import os, sys, time
d = sys.argv[1]
t0 = time.perf_counter(); n = len(os.listdir(d)); first = n / (time.perf_counter() - t0)
total = 0; t0 = time.perf_counter()
while True:
    total += len(os.listdir(d))
    t = time.perf_counter() - t0
    if t >= 1.0: break
print(f"{n} {first:.0f} {total / t:.0f}")
PY
}

if ! skip readdir; then
  echo
  echo "### readdir scaling: one directory of N subdirectories (entries/s; first listing, then repeated)"
  echo
  echo "| N | tmpfs first | triefs first | tmpfs repeated | triefs repeated | ratio repeated |"
  echo "|---:|---:|---:|---:|---:|---:|"
  for n in 10000 100000 1000000; do
    python3 -c "import sys; [print(f'/big/e{i:07d}') for i in range($n)]" > "$work/big.txt"
    mount -t tmpfs -o mode=0755,nr_inodes=0 tmpfs "$work/t"
    python3 -c "import os,sys; os.mkdir('$work/t/big'); [os.mkdir(f'$work/t/big/e{i:07d}') for i in range($n)]"
    read -r _ tf tr < <(list_rate "$work/t/big")
    umount "$work/t"
    start_triefs "$work/f" --paths "$work/big.txt" -o nr_inodes=0
    read -r _ ff fr < <(list_rate "$work/f/big")
    stop_triefs "$work/f"
    echo "| $n | $tf | $ff | $tr | $fr | $(awk -v a="$tr" -v b="$fr" 'BEGIN { printf "%.2f", b/a }') |"
  done
fi

par_rate() { # par_rate DIR K KIND: aggregate ops/s of K client processes
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys, time
from multiprocessing import Process, Barrier, Queue
root, k, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
N = 4000
def worker(i, bar, q):
    d = os.path.join(root, f"par{i}")
    os.mkdir(d)
    buf = b"x" * (1 << 20)
    bar.wait()
    t = time.perf_counter()
    if kind == "meta":   # mkdir + stat + rmdir, then create + unlink
        for j in range(N):
            p = os.path.join(d, f"e{j}")
            os.mkdir(p); os.stat(p); os.rmdir(p)
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)); os.unlink(p)
        ops = 5 * N
    else:                # 1 MiB writes into a private file, 256 MiB each
        fd = os.open(os.path.join(d, "f"), os.O_CREAT | os.O_WRONLY, 0o644)
        for _ in range(256):
            os.write(fd, buf)
        os.close(fd)
        ops = 256
    q.put((ops, time.perf_counter() - t))
bar, q = Barrier(k), Queue()
ps = [Process(target=worker, args=(i, bar, q)) for i in range(k)]
for p in ps: p.start()
res = [q.get() for _ in ps]
for p in ps: p.join()
print(f"{sum(o for o, _ in res) / max(t for _, t in res):.0f}")
PY
}

if ! skip parallel; then
  echo
  echo "### Parallel clients: aggregate rate of 1 and 2 processes (metadata: ops/s of mkdir, stat, rmdir, create, unlink; data: MiB/s of 1 MiB writes to private files), median of 3"
  echo
  echo "| workload | tmpfs 1 | tmpfs 2 | triefs 1 | triefs 2 | triefs 2/1 |"
  echo "|---|---:|---:|---:|---:|---:|"
  for kind in meta data; do
    row=()
    for fs in tmpfs triefs; do
      for k in 1 2; do
        rates=()
        for _ in 1 2 3; do
          if [ "$fs" = tmpfs ]; then
            mount -t tmpfs -o mode=0755 tmpfs "$work/t"; rates+=("$(par_rate "$work/t" "$k" "$kind")"); umount "$work/t"
          else
            start_triefs "$work/f"; rates+=("$(par_rate "$work/f" "$k" "$kind")"); stop_triefs "$work/f"
          fi
        done
        row+=("$(printf '%s\n' "${rates[@]}" | median)")
      done
    done
    echo "| $kind | ${row[0]} | ${row[1]} | ${row[2]} | ${row[3]} | $(awk -v a="${row[2]}" -v b="${row[3]}" 'BEGIN { printf "%.2f", b/a }') |"
  done
fi

gen_paths() { # gen_paths FILE N: real-looking deep paths with shared prefixes
  scripts/datasets.sh flat "$2" "$1" 2>/dev/null
}

secs() { # secs CMD...: wall seconds of CMD (output discarded)
  local s e
  s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }'
}

if ! skip walk; then
  echo
  echo "### Tree walk: find over $WALK_ENTRIES directories (seconds; passes 1, 2, 3 on a fresh mount)"
  echo
  gen_paths "$work/walk.txt" "$WALK_ENTRIES"
  mount -t tmpfs -o mode=0755,nr_inodes=0 tmpfs "$work/t"
  python3 -c "
import os, sys
for l in open(sys.argv[1]): os.makedirs(sys.argv[2] + l.strip(), exist_ok=True)" "$work/walk.txt" "$work/t"
  t1=$(secs find "$work/t"); t2=$(secs find "$work/t"); t3=$(secs find "$work/t")
  umount "$work/t"
  start_triefs "$work/f" --paths "$work/walk.txt" -o nr_inodes=0
  f1=$(secs find "$work/f"); f2=$(secs find "$work/f"); f3=$(secs find "$work/f")
  lp=$(secs "$bin" ls-prefix -U "$work/f")
  stop_triefs "$work/f"
  echo "| | pass 1 | pass 2 | pass 3 |"
  echo "|---|---:|---:|---:|"
  echo "| tmpfs \`find\` | $t1 | $t2 | $t3 |"
  echo "| triefs \`find\` | $f1 | $f2 | $f3 |"
  echo "| ratio (tmpfs time / triefs time) | $(awk -v a="$t1" -v b="$f1" 'BEGIN { printf "%.2f", a/b }') | $(awk -v a="$t2" -v b="$f2" 'BEGIN { printf "%.2f", a/b }') | $(awk -v a="$t3" -v b="$f3" 'BEGIN { printf "%.2f", a/b }') |"
  echo "| triefs \`ls-prefix -U\` (leaves, from the trie) | $lp | | |"
fi

mkdir_latency() { # mkdir_latency DIR SECS: p50, p99 and max ms of mkdir+rmdir pairs
  python3 - "$1" "$2" <<'PY'
import os, sys, time
d, secs = sys.argv[1], float(sys.argv[2])
lat, end, i = [], time.monotonic() + secs, 0
while time.monotonic() < end:
    p = os.path.join(d, f"l{i}"); i += 1
    t = time.perf_counter(); os.mkdir(p); os.rmdir(p)
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.001)
lat.sort()
print(f"{lat[len(lat)//2]:.2f} {lat[len(lat)*99//100]:.2f} {lat[-1]:.2f}")
PY
}

if ! skip lsprefix; then
  echo
  echo "### ls-prefix under load: $ENTRIES paths plus a 40,000-deep chain; another process's mkdir+rmdir latency (ms) while ls-prefix runs in a loop, and the daemon's peak RSS"
  echo
  gen_paths "$work/lp.txt" "$ENTRIES"
  python3 -c "import sys; sys.stdout.write('/a' * 40000 + '\\n')" >> "$work/lp.txt"
  start_triefs "$work/f" --paths "$work/lp.txt" -o nr_inodes=0
  mkdir "$work/f/lat"
  read -r q50 q99 qmax <<< "$(mkdir_latency "$work/f/lat" 3)"
  echo 5 > "/proc/$daemon_pid/clear_refs"
  rest=$(awk '/VmRSS/ {print $2}' "/proc/$daemon_pid/status")
  ( end=$((SECONDS + 6)); n=0; while [ $SECONDS -lt $end ]; do "$bin" ls-prefix -U "$work/f" > /dev/null 2>&1 || true; n=$((n + 1)); done; echo "$n" > "$work/lp.n" ) &
  lp_pid=$!
  sleep 0.5
  read -r b50 b99 bmax <<< "$(mkdir_latency "$work/f/lat" 5)"
  wait "$lp_pid"
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$daemon_pid/status")
  stop_triefs "$work/f"
  echo "| | p50 | p99 | max |"
  echo "|---|---:|---:|---:|"
  echo "| mkdir+rmdir alone | $q50 | $q99 | $qmax |"
  echo "| mkdir+rmdir during ls-prefix | $b50 | $b99 | $bmax |"
  echo
  echo "ls-prefix listings in 6 s: $(cat "$work/lp.n"); daemon RSS at rest $((rest / 1024)) MiB, peak during the listings $((peak / 1024)) MiB"
fi

rss_kib() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; } # rss_kib PID VmRSS|VmHWM
summary() { awk -F'\t' -v k="$1" '$1 == k {print $2}' "$work/sum"; } # summary KEY: of datasets.sh

if ! skip memory; then
  echo
  echo "### Memory and load time: about $ENTRIES directory entries from --paths, per data set (scripts/datasets.sh)"
  echo
  # The empty daemon: what a mount costs before any entry.
  start_triefs "$work/f"
  erss=$(rss_kib "$daemon_pid" VmRSS)
  stop_triefs "$work/f"
  echo "| data set | entries | lines | avg path | avg name | mount ready | paths/s | daemon RSS | peak RSS | RSS after find | triefs bytes/entry | naive bytes/entry |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for kind in usr keys flat; do
    DATASETS_SUMMARY="$work/sum" scripts/datasets.sh "$kind" "$ENTRIES" "$work/paths.txt" 2>/dev/null
    t0=$(date +%s.%N)
    MOUNT_WAIT=600 start_triefs "$work/f" --paths "$work/paths.txt" -o nr_inodes=0
    t1=$(date +%s.%N)
    rss=$(rss_kib "$daemon_pid" VmRSS)
    hwm=$(rss_kib "$daemon_pid" VmHWM)
    # Counted through the kernel, after the RSS: the lookups find makes
    # are not what the entries cost.
    entries=$(find "$work/f" -mindepth 1 | wc -l)
    frss=$(rss_kib "$daemon_pid" VmRSS)
    stop_triefs "$work/f"
    read -r _ _ nentries _ _ _ naive <<< "$(target/release/examples/naive_paths "$work/paths.txt")"
    [ "$entries" = "$(summary entries)" ] && [ "$entries" = "$nentries" ] ||
      echo "bench.sh: $kind: entries differ: find $entries, datasets.sh $(summary entries), naive_paths $nentries" >&2
    awk -v k="$kind" -v e="$entries" -v l="$(summary lines)" -v ap="$(summary avg_path)" \
      -v an="$(summary avg_name)" -v r="$rss" -v h="$hwm" -v fr="$frss" -v b="$erss" \
      -v t0="$t0" -v t1="$t1" -v naive="$naive" 'BEGIN {
        printf "| %s | %d | %d | %s | %s | %.2f s | %.0f | %.1f MiB | %.1f MiB | %.1f MiB | %.0f | %.0f |\n",
          k, e, l, ap, an, t1 - t0, l / (t1 - t0), r / 1024, h / 1024, fr / 1024,
          (r - b) * 1024 / e, naive
      }'
  done
  echo
  echo "Empty daemon RSS: $(awk -v b="$erss" 'BEGIN { printf "%.1f", b / 1024 }') MiB. triefs bytes/entry: daemon RSS (right after the mount is ready) above the empty daemon's, per entry; naive: full path strings (intermediate directories included) in a hash set (examples/naive_paths.rs), per entry of the same count. Mount ready: from starting the daemon (-f) to the mount appearing, reading the list included."
fi

if ! skip tar; then
  echo
  echo "### Loading a tar archive: the $TAR_ENTRIES-entry fixture (scripts/datasets.sh), seconds, median of $RUNS rounds"
  echo
  scripts/datasets.sh fixture "$TAR_ENTRIES" "$work/fixture" 2>/dev/null
  tar -C "$work/fixture" -cf "$work/fixture.tar" .
  rm -rf "$work/fixture"
  tarbytes=$(stat -c %s "$work/fixture.tar")
  cat "$work/fixture.tar" > /dev/null # in the page cache for every round
  for ((r = 0; r < RUNS; r++)); do
    # Alternating: tar -xf into a fresh tmpfs; triefs --from-tar until the
    # mount is ready (start_daemon returns when it appears); tar -xf into
    # an empty triefs mount, for reference.
    mount -t tmpfs -o mode=0755,nr_inodes=0,size=0 tmpfs "$work/t"
    secs tar -xf "$work/fixture.tar" -C "$work/t" >> "$work/tar.tmpfs"
    echo >> "$work/tar.tmpfs"
    umount "$work/t"
    s0=$(date +%s.%N)
    MOUNT_WAIT=600 start_triefs "$work/f" --from-tar "$work/fixture.tar" -o nr_inodes=0,size=0
    s1=$(date +%s.%N)
    awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f\n", b - a }' >> "$work/tar.from"
    [ "$(find "$work/f" -mindepth 1 | wc -l)" = "$TAR_ENTRIES" ] ||
      echo "bench.sh: --from-tar: not $TAR_ENTRIES entries" >&2
    stop_triefs "$work/f"
    start_triefs "$work/f" -o nr_inodes=0,size=0
    secs tar -xf "$work/fixture.tar" -C "$work/f" >> "$work/tar.into"
    echo >> "$work/tar.into"
    stop_triefs "$work/f"
  done
  tt=$(median < "$work/tar.tmpfs")
  tf=$(median < "$work/tar.from")
  ti=$(median < "$work/tar.into")
  echo "| archive | tmpfs \`tar -xf\` | triefs \`--from-tar\` (to mount ready) | ratio (tmpfs / --from-tar) | \`tar -xf\` into triefs |"
  echo "|---|---:|---:|---:|---:|"
  awk -v n="$TAR_ENTRIES" -v b="$tarbytes" -v a="$tt" -v f="$tf" -v i="$ti" 'BEGIN {
    printf "| %d entries, %.0f MiB | %.2f | %.2f | %.2f | %.2f |\n", n, b / 2^20, a, f, a / f, i
  }'
  rm -f "$work/fixture.tar"
fi

# deep_round NAME MNT PID: fsbench's 64-deep chains (N/64 of them, made as
# coreutils mkdir -p does), then stats of the first chain's leaf: the first
# walk's milliseconds, the rate over the first 0.1 s and over 1 s, and the
# daemon's CPU milliseconds during that second (PID; 0 for tmpfs). Appends
# one line to $work/deep.NAME.
deep_round() {
  python3 - "$2" "$N" "$3" >> "$work/deep.$1" <<'PY'
import os, sys, time
mnt, n, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tick = os.sysconf("SC_CLK_TCK")
def cpu_ms():
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / tick
deep = os.path.join(mnt, "deep"); os.mkdir(deep)
flags = os.O_RDONLY | os.O_DIRECTORY
for c in range(max(1, n // 64)):
    cur = os.open(deep, flags)
    for lvl in range(64):
        nm = "c%05d" % c if lvl == 0 else "l%02d" % lvl
        os.mkdir(nm, 0o755, dir_fd=cur)
        nfd = os.open(nm, flags, dir_fd=cur)
        os.close(cur); cur = nfd
    os.close(cur)
leaf = os.path.join(deep, "c00000", *["l%02d" % l for l in range(1, 64)])
c0 = cpu_ms()
t0 = time.perf_counter(); os.stat(leaf); first = time.perf_counter() - t0
reps, early = 1, None
while True:
    for _ in range(16):
        os.stat(leaf)
    reps += 16
    dt = time.perf_counter() - t0
    if early is None and dt >= 0.1:
        early = reps / dt
    if dt >= 1.0:
        break
print(f"{first * 1000:.2f} {early:.0f} {reps / dt:.0f} {cpu_ms() - c0:.0f}")
PY
}

if ! skip deep; then
  for ((r = 0; r < RUNS; r++)); do
    mount -t tmpfs -o mode=0755,nr_inodes=0,size=0 tmpfs "$work/t"
    deep_round tmpfs "$work/t" 0
    umount "$work/t"
    start_triefs "$work/f"
    deep_round triefs "$work/f" "$daemon_pid"
    stop_triefs "$work/f"
    if [ -n "$peer" ]; then
      start_daemon "$work/p" "$peer" -f -o no_timeout,default_permissions "$work/p"
      deep_round peer "$work/p" "$daemon_pid"
      stop_daemon "$work/p" || true
    fi
  done
  echo
  echo "### Deep path walks: stat of a 64-deep leaf right after $((N / 64)) chains were made, median of $RUNS rounds"
  echo
  echo "| filesystem | first walk (ms) | stats/s, first 0.1 s | stats/s, 1 s | daemon CPU in that second (ms) |"
  echo "|---|---:|---:|---:|---:|"
  names="tmpfs triefs"
  [ -n "$peer" ] && names="$names peer"
  for fs in $names; do
    label=$fs; [ "$fs" = peer ] && label="memfs_ll fair"
    printf '| %s | %s | %s | %s | %s |\n' "$label" \
      "$(awk '{print $1}' "$work/deep.$fs" | median)" "$(awk '{print $2}' "$work/deep.$fs" | median)" \
      "$(awk '{print $3}' "$work/deep.$fs" | median)" "$(awk '{print $4}' "$work/deep.$fs" | median)"
  done
fi

# A developer's day: untar a real source tree, grep through it, remove it.
# day_step STEP MNT: one step (untar, grep or rm) on MNT.
day_step() {
  case $1 in
    untar) tar -C "$2" -xf "$work/day.tar" 2>/dev/null || true ;;
    grep) grep -r -c uint64_t "$2/$day_top" > /dev/null 2>&1 || true ;;
    rm) rm -rf "${2:?}/$day_top" ;;
  esac
}

# day_round NAME MNT: the three steps on MNT, one "untar grep rm" line of
# seconds appended to $work/day.NAME.
day_round() {
  local times=() step t0
  for step in untar grep rm; do
    t0=$(date +%s.%N)
    day_step "$step" "$2"
    times+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')")
  done
  echo "${times[*]}" >> "$work/day.$1"
}

# day_requests STEP: kernel requests of one step on a triefs mount, per
# entry of the archive, counted by `triefs trace` (one reader; the step
# runs while it reads).
day_requests() {
  local m=$work/f
  "$bin" trace "$m" > "$work/day.trace" &
  local tracer=$!
  sleep 0.5
  day_step "$1" "$m"
  sleep 0.5
  kill -INT "$tracer"; wait "$tracer" || true
  awk -v n="$day_entries" -v step="$1" '
    { c[$5]++; t++ }
    END {
      s = ""
      PROCINFO["sorted_in"] = "@val_num_desc"
      for (k in c) if (c[k] / n >= 0.01) s = s sprintf("%s%s %.2f", s == "" ? "" : ", ", k, c[k] / n)
      printf "| %s | %.2f | %s |\n", step, t / n, s
    }' "$work/day.trace"
}

if ! skip day; then
  src=${BENCH_DAY_SRC:-/usr/include}
  day_top=$(basename "$src")
  tar -C "$(dirname "$src")" -cf "$work/day.tar" "$day_top"
  day_entries=$(tar -tf "$work/day.tar" | wc -l)
  day_mib=$(du -m "$work/day.tar" | cut -f1)
  cat "$work/day.tar" > /dev/null # in the page cache for every round
  for ((r = 0; r < RUNS; r++)); do
    mount -t tmpfs -o mode=0755,nr_inodes=0,size=0 tmpfs "$work/t"
    day_round tmpfs "$work/t"
    umount "$work/t"
    start_triefs "$work/f"
    day_round triefs "$work/f"
    stop_triefs "$work/f"
    if [ -n "$peer" ]; then
      start_daemon "$work/p" "$peer" -f -o no_timeout,default_permissions "$work/p"
      day_round peer "$work/p"
      stop_daemon "$work/p" || true
    fi
  done
  echo
  echo "### A developer's day: \`tar -x\`, \`grep -r\`, \`rm -rf\` of $src ($day_entries entries, $day_mib MiB), seconds, median of $RUNS rounds"
  echo
  col() { awk -v i="$2" '{print $i}' "$work/day.$1" | median; }
  if [ -n "$peer" ]; then
    echo "| step | tmpfs | memfs_ll fair | triefs | triefs/tmpfs | triefs/fair |"
    echo "|---|---:|---:|---:|---:|---:|"
  else
    echo "| step | tmpfs | triefs | triefs/tmpfs |"
    echo "|---|---:|---:|---:|"
  fi
  i=1
  for step in untar grep rm; do
    t=$(col tmpfs $i); f=$(col triefs $i)
    if [ -n "$peer" ]; then
      q=$(col peer $i)
      awk -v s="$step" -v t="$t" -v q="$q" -v f="$f" 'BEGIN { printf "| %s | %.3f | %.3f | %.3f | %.1fx | %.2fx |\n", s, t, q, f, f / t, f / q }'
    else
      awk -v s="$step" -v t="$t" -v f="$f" 'BEGIN { printf "| %s | %.3f | %.3f | %.1fx |\n", s, t, f, f / t }'
    fi
    i=$((i + 1))
  done
  echo
  echo "Kernel requests per archive entry on triefs, each step counted by \`triefs trace\` (kinds under 0.01 per entry left out):"
  echo
  echo "| step | requests/entry | by kind |"
  echo "|---|---:|---|"
  start_triefs "$work/f"
  for step in untar grep rm; do day_requests "$step"; done
  stop_triefs "$work/f"
  rm -f "$work/day.tar" "$work/day.trace"
fi

if ! skip checkpoint; then
  # Resetting a test fixture with checkpoints, against rm -rf + cp -a and
  # rsync --delete on tmpfs and on triefs (scripts/bench-checkpoint.sh).
  # BENCH_CHECKPOINT_ENTRIES="100000 1000000" for the sizes.
  read -ra ck_sizes <<< "${BENCH_CHECKPOINT_ENTRIES:-100000}"
  TRIEFS_BIN=$bin bash scripts/bench-checkpoint.sh "$RUNS" "${ck_sizes[@]}"
fi
