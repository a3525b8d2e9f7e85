#!/usr/bin/env bash
# Kernel requests per user-level operation, counted by the filesystem:
# triefs through `triefs trace` (every request that reaches the daemon),
# libfuse's memfs_ll (BENCH_PEER, as in bench.sh) through its debug log.
# A regression shows up as a number. Needs root and /dev/fuse.
#
# Usage: scripts/requests.sh [K]
#   K  repetitions of each operation (default 100); the table shows
#      requests per operation and the request kinds behind them.
# Environment:
#   BENCH_PEER=DIR      a libfuse source or build directory with example/memfs_ll
#                       built (see bench.sh); measured with -o
#                       no_timeout,default_permissions (the fair peer)
#   TRIEFS_BIN=path     measure another build (default: target/release/triefs)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-100}
cargo build --release --quiet --bin triefs
bin=${TRIEFS_BIN:-target/release/triefs}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
work=$(make_workdir treq)
trap 'cleanup_workdir "$work" "$work/m"' EXIT
mkdir -p "$work/m"
command -v tar >/dev/null || { echo "tar is needed" >&2; exit 1; }

find_peer

# A small archive for the tar step: 2 directories, K files of 4 KiB.
mkdir -p "$work/src/a" "$work/src/b"
for i in $(seq "$K"); do head -c 4096 /dev/urandom > "$work/src/a/f$i"; done
tar -C "$work/src" -cf "$work/small.tar" a b

# run_ops LOG KIND: runs every operation on $work/m; after each one waits
# for the log to settle, then records the requests it grew by, by kind.
# KIND is "trace" (triefs trace lines) or "fuse" (libfuse debug lines).
run_ops() {
  python3 - "$work/m" "$1" "$2" "$K" "$work/small.tar" <<'PY'
import collections, os, re, subprocess, sys, time
mnt, log, kind, k, tarball = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
pat = re.compile(r" \d+ \S+ \d+ (\w+) " if kind == "trace" else r"opcode: (\w+) ")

def reqs():
    with open(log, errors="replace") as f:
        return [m.group(1).lower() for m in map(pat.search, f) if m]

def settle():
    # Requests the kernel sends on its own (forget, release) come late.
    n, same = -1, 0
    while same < 3:
        time.sleep(0.1)
        m = len(reqs())
        same = same + 1 if m == n else 0
        n = m

def measure(name, per, fn):
    settle()
    before = len(reqs())
    fn()
    settle()
    new = reqs()[before:]
    kinds = collections.Counter(new)
    detail = " ".join(f"{op} {n / per:.2g}" for op, n in sorted(kinds.items(), key=lambda x: -x[1]))
    print(f"{name}\t{len(new) / per:.2f}\t{detail}")

d = os.path.join(mnt, "w")
os.mkdir(d)
settle()
measure("mkdir", k, lambda: [os.mkdir(os.path.join(d, f"d{i}")) for i in range(k)])
def create():
    for i in range(k):
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(b"x" * 4096)
measure("create+write+close (4 KiB)", k, create)
p = os.path.join(d, "f0")
os.stat(p)
measure("stat of a cached file", k, lambda: [os.stat(p) for _ in range(k)])
# fsbench's deep chains: mkdir + open of each level (coreutils mkdir -p),
# then stats of the 64-deep leaf: the first right after, then warm ones.
deep = os.path.join(mnt, "deep")
os.mkdir(deep)
def chain():
    cur = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for lvl in range(64):
        nm = "c" if lvl == 0 else "l%02d" % lvl
        os.mkdir(nm, 0o755, dir_fd=cur)
        nfd = os.open(nm, os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur)
        os.close(cur)
        cur = nfd
    os.close(cur)
measure("mkdir -p of a 64-deep chain, per level", 64, chain)
leaf = os.path.join(deep, "c", *["l%02d" % l for l in range(1, 64)])
measure("stat of the 64-deep leaf, first after the chain", 1, lambda: os.stat(leaf))
measure("stat of the 64-deep leaf, warm", k, lambda: [os.stat(leaf) for _ in range(k)])
def read_all():
    for i in range(k):
        with open(os.path.join(d, f"f{i}"), "rb") as f:
            f.read()
measure("open+read+close (written before)", k, read_all)
measure("rename", k, lambda: [os.rename(os.path.join(d, f"f{i}"), os.path.join(d, f"g{i}")) for i in range(k)])
measure("unlink", k, lambda: [os.unlink(os.path.join(d, f"g{i}")) for i in range(k)])
big = os.path.join(mnt, "big")
os.mkdir(big)
for i in range(2000):
    open(os.path.join(big, f"e{i:04}"), "wb").close()
measure("readdir of 2,000 entries (ls -l)", 1, lambda: subprocess.run(["ls", "-l", big], stdout=subprocess.DEVNULL, check=True))
t = os.path.join(mnt, "t")
os.mkdir(t)
measure("tar -x, per entry", k + 2, lambda: subprocess.run(["tar", "-C", t, "-xf", tarball], check=True))
PY
}

echo "== triefs" >&2
start_daemon "$work/m" "$bin" -f "$work/m"
"$bin" trace "$work/m" > "$work/triefs.log" &
tracer=$!
sleep 0.5
run_ops "$work/triefs.log" trace > "$work/triefs.tsv"
kill -INT "$tracer"; wait "$tracer" || true
stop_daemon "$work/m"

if [ -n "$peer" ]; then
  echo "== memfs_ll" >&2
  start_daemon "$work/m" "$peer" -d -o no_timeout,default_permissions "$work/m" 2> "$work/peer.log"
  run_ops "$work/peer.log" fuse > "$work/peer.tsv"
  stop_daemon "$work/m"
fi

echo
echo "### Kernel requests per operation (K=$K; request kinds per operation in brackets)"
echo
if [ -n "$peer" ]; then
  echo "| operation | triefs | memfs_ll fair |"
  echo "|---|---|---|"
  paste "$work/triefs.tsv" "$work/peer.tsv" |
    awk -F'\t' '{ printf "| %s | %s (%s) | %s (%s) |\n", $1, $2, $3, $5, $6 }'
else
  echo "| operation | triefs |"
  echo "|---|---|"
  awk -F'\t' '{ printf "| %s | %s (%s) |\n", $1, $2, $3 }' "$work/triefs.tsv"
fi
