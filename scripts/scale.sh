#!/usr/bin/env bash
# Scale run: one big data set served by triefs, each step timed. Needs root
# (for the mount as it is measured everywhere else) and /dev/fuse; not part
# of the test suite.
#
# Usage: scripts/scale.sh N [KIND]
#   N     entries (see scripts/datasets.sh; e.g. 10000000)
#   KIND  data set of scripts/datasets.sh: usr, keys (default) or flat
#
# Generates the list, mounts it with `--paths FILE -o nr_inodes=0` and an
# image file, and reports as a Markdown table: load time and paths/s, the
# daemon's RSS and bytes per entry above an empty daemon, `ls-prefix` of a
# prefix, `find` of a small subtree, `ls` of the biggest directory, `stat`
# of a deep path, mkdir+rmdir inside the biggest directory, the image save
# at unmount and its size, the image load into a new daemon and its RSS,
# and `ls-prefix` of the same prefix on it. Always unmounts.
#
# Environment:
#   SCALE_DIR=DIR       where the list and the image go (default: a new
#                       directory in /tmp; they take about 75 and 40 bytes
#                       per entry)
#   SCALE_OPTS=OPTS     -o options of both mounts (default nr_inodes=0)
#   SCALE_KEEP=1        keep the list and the image at exit
#   TRIEFS_BIN=PATH     measure another build (default: target/release/triefs)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 N [usr|keys|flat]" >&2
  exit 2
fi
n=$1 kind=${2:-keys}
case "$kind" in usr | keys | flat) ;; *) echo "$0: KIND is usr, keys or flat" >&2; exit 2 ;; esac
opts=${SCALE_OPTS:-nr_inodes=0}

cargo build --release --quiet --bin triefs
bin=${TRIEFS_BIN:-target/release/triefs}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
if [ -n "${SCALE_DIR:-}" ]; then
  mkdir -p "$SCALE_DIR"
  work=$(mktemp -d "$(realpath "$SCALE_DIR")/tscale.XXXXXX")
else
  work=$(make_workdir tscale)
fi
[ "${SCALE_KEEP:-0}" = 1 ] && keep_work=1
trap 'cleanup_workdir "$work" "$work/m"' EXIT
mkdir "$work/m"
list=$work/paths.txt img=$work/image.tfs mnt=$work/m
export MOUNT_WAIT=${MOUNT_WAIT:-3600}

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
rss_kib() { awk "/^$1:/ {print \$2}" "/proc/$daemon_pid/status"; } # rss_kib VmRSS|VmHWM
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
per_entry() { awk -v k="$1" -v b="$erss" -v e="$entries" 'BEGIN { printf "%.0f", (k - b) * 1024 / e }'; }
summary() { awk -F'\t' -v k="$1" '$1 == k {print $2}' "$work/summary"; }
rows=()
row() { # row STEP SECONDS RESULT
  rows+=("| $1 | $2 | $3 |")
  echo "scale.sh: $1: ${2:+$2 s, }$3" >&2
}

# An empty daemon, for what the entries cost above it.
start_daemon "$mnt" "$bin" -f -o "$opts" "$mnt"
erss=$(rss_kib VmRSS)
stop_daemon "$mnt"

t=$(now)
DATASETS_SUMMARY=$work/summary scripts/datasets.sh "$kind" "$n" "$list"
entries=$(summary entries) lines=$(summary lines)
prefix=$(summary prefix) subtree=$(summary subtree) bigdir=$(summary bigdir) deep=$(summary deep)
row "generate: \`scripts/datasets.sh $kind $n\`" "$(since "$t")" \
  "$entries entries from $lines lines, $(stat -c %s "$list") bytes, average path $(summary avg_path) bytes, name $(summary avg_name) bytes"

t=$(now)
start_daemon "$mnt" "$bin" -f --paths "$list" --image "$img" -o "$opts" "$mnt"
s=$(since "$t")
row "load: mount with \`--paths\` until ready" "$s" \
  "$(awk -v l="$lines" -v s="$s" 'BEGIN { printf "%.0f paths/s", l / s }')"
rss=$(rss_kib VmRSS) hwm=$(rss_kib VmHWM)
row "daemon memory after the load" "" \
  "RSS $(mib "$rss") ($(per_entry "$rss") bytes/entry above the empty daemon's $(mib "$erss")), peak $(mib "$hwm")"

t=$(now)
lp=$("$bin" ls-prefix "$mnt" "$prefix" | wc -l)
row "\`triefs ls-prefix MNT $prefix\` (sorted)" "$(since "$t")" "$lp leaves"

t=$(now)
c=$(find "$mnt$subtree" | wc -l)
row "\`find MNT$subtree\` (cold)" "$(since "$t")" "$c entries"

t=$(now)
# shellcheck disable=SC2012 # ls is what is measured; the names are plain
c=$(ls -U "$mnt$bigdir" | wc -l)
row "\`ls -U MNT$bigdir\` (cold)" "$(since "$t")" "$c names"
t=$(now)
# shellcheck disable=SC2012
c=$(ls -l "$mnt$bigdir" | wc -l)
row "\`ls -l MNT$bigdir\`" "$(since "$t")" "$((c - 1)) names"

t=$(now)
stat -c %i "$mnt$deep" > /dev/null
row "\`stat\` of a deep path (cold): $deep" "$(since "$t")" "$(awk -F/ '{print NF - 1}' <<< "$deep") components"

t=$(now)
ms=$(python3 - "$mnt$bigdir" <<'PY'
import os, sys, time
d = sys.argv[1]
t = time.perf_counter()
for i in range(1000):
    p = os.path.join(d, f"scale-{i}")
    os.mkdir(p); os.rmdir(p)
print(f"{(time.perf_counter() - t):.3f}")
PY
)
row "1,000 mkdir+rmdir in MNT$bigdir" "$(since "$t")" "$(awk -v s="$ms" 'BEGIN { printf "%.3f ms per pair", s }')"
rss=$(rss_kib VmRSS)
row "daemon memory after the steps above" "" "RSS $(mib "$rss") ($(per_entry "$rss") bytes/entry)"

t=$(now)
unmount "$mnt"
rc=0; wait_daemon || rc=$?
row "unmount, saving the image" "$(since "$t")" "exit $rc, image $(stat -c %s "$img") bytes ($(awk -v s="$(stat -c %s "$img")" -v e="$entries" 'BEGIN { printf "%.1f", s / e }') bytes/entry)"

t=$(now)
start_daemon "$mnt" "$bin" -f --image "$img" -o "$opts" "$mnt"
row "load the image: mount with \`--image\` until ready" "$(since "$t")" ""
rss=$(rss_kib VmRSS) hwm=$(rss_kib VmHWM)
row "daemon memory after the image load" "" \
  "RSS $(mib "$rss") ($(per_entry "$rss") bytes/entry), peak $(mib "$hwm")"
t=$(now)
lp2=$("$bin" ls-prefix "$mnt" "$prefix" | wc -l)
same="the same as before the save"
[ "$lp2" = "$lp" ] || same="DIFFERENT from $lp before the save"
row "\`triefs ls-prefix MNT $prefix\` on the loaded image" "$(since "$t")" "$lp2 leaves, $same"

t=$(now)
unmount "$mnt"
rc=0; wait_daemon || rc=$?
row "unmount, saving again" "$(since "$t")" "exit $rc"

echo
echo "### scripts/scale.sh $n $kind ($entries entries; -o $opts)"
echo
echo "| step | seconds | result |"
echo "|---|---:|---|"
printf '%s\n' "${rows[@]}"
