#!/usr/bin/env bash
# Path lists to load with `triefs --paths` (and `-sizes` variants, lines
# `path<TAB>size`, for loading as sized files), for the memory and scale
# measurements, and a real tree of files (`fixture`). Deterministic: the
# same arguments give the same output (for `usr` and `fixture`, as long as
# this machine's /usr does not change).
#
# Usage:
#   scripts/datasets.sh KIND N OUT   write data set KIND of N entries to OUT
#   scripts/datasets.sh stats FILE   count what FILE creates
#
# N counts entries: every distinct path the file creates, intermediate
# directories included (what `find MNT -mindepth 1 | wc -l` counts after
# loading it), except for `flat`, where N is the number of lines, as it
# always was. Kinds:
#   usr        the real /usr tree (every file, directory and symlink, read
#              with `find /usr -mindepth 1` once, sorted) replicated under
#              /r0000, /r0001, ... until exactly N entries (a replica's
#              directory counts as one); every entry is one line.
#   usr-sizes  the same walk, but only what is not a directory, as
#              `path<TAB>size` with the size of the real file (a symlink:
#              the length of its target); directories are not listed (they
#              are created as parents), so empty ones are left out.
#   keys       an object-store key listing, in time order:
#              /logs/SERVICE/YYYY/MM/DD/host-NNNN/part-NNNNN.gz for 32
#              services of 4 to 120 hosts each, from 2019-01-01 on; each
#              host writes on 4 days of 5, from 1 to 20,000 parts a day
#              (heavy-tailed, a few dozen typically), so host directories
#              have many siblings (30 on average); the days covered grow
#              with N (a month per million entries; 10M reach November).
#              Stops before the key that would pass N entries (at most 5
#              short of N).
#   keys-sizes the same keys with a size column (log-uniform, 1 KiB-1 GiB).
#   fixture    not a list: a directory tree made at OUT (which must not
#              exist), the "test fixture" of the checkpoint and tar
#              benchmarks: numbered copies OUT/c0000, OUT/c0001, ... of
#              /usr/include (as cNNNN/include) and /usr/share/doc (as
#              cNNNN/share/doc), files with their data, symlinks, modes
#              and times (cp -a), the last copy cut so that OUT holds
#              exactly N entries (`find OUT -mindepth 1 | wc -l`). This
#              machine's copy has about 14,000 entries and 260 MB.
#   flat       the generator scripts/bench.sh has always used:
#              /TOP/project-BB/module_CCC/src-file-DDDD.d, 10 tops, 20
#              projects, 50 modules, N/10000 files per module (N lines,
#              rounded down to a multiple of 10,000; at least 10,000).
#
# The generator prints a summary on stderr (entries, lines, average path
# and name length). With DATASETS_SUMMARY=FILE it also writes it to FILE
# as `key<TAB>value` lines, with places worth measuring:
#   prefix     a prefix holding a few percent of the entries (for ls-prefix)
#   subtree    a small subtree (for find)
#   bigdir     the directory with the most children, and `bigdir_n` them
#   deep       one of the deepest paths
# DATASETS_SEED=N changes the pseudo-random choices of `keys` (default 11).
#
# `stats FILE` counts independently (sort -u on disk; slow for 100M lines):
# entries (distinct paths with their parents), lines, average path and
# name length over the entries, and for `-sizes` files the sum of sizes.
set -euo pipefail
export LC_ALL=C

usage() {
  echo "usage: $0 usr|usr-sizes|keys|keys-sizes|flat|fixture N OUT" >&2
  echo "       $0 stats FILE" >&2
  exit 2
}

stats() { # stats FILE: entries, lines, averages; sorting spills to $TMPDIR
  local file=$1
  [ -r "$file" ] || { echo "$0: cannot read $file" >&2; exit 2; }
  # Each line and its parents, normalized as triefs reads them (leading
  # '/', no empty or '.' components, no CR, a `<TAB>digits` size column
  # cut), each prefix shared with the previous line left out; sort -u does
  # the rest. The line count and the sizes go to fd 3.
  mawk -v sizes=/dev/fd/3 '
    {
      p = $0; sub(/\r$/, "", p)
      if (match(p, /\t[0-9]+$/)) { size += substr(p, RSTART + 1); sized++; p = substr(p, 1, RSTART - 1) }
      if (p ~ /^[ \t\n\v\f\r]*$/) next
      lines++
      n = split(p, c, "/"); k = 0; q = ""; same = 1
      for (i = 1; i <= n; i++) {
        if (c[i] == "" || c[i] == ".") continue
        q = q "/" c[i]; k++
        if (same && k <= pk && prev[k] == q) continue
        same = 0; prev[k] = q; print q
      }
      pk = k
    }
    END { printf "%d %d %.0f\n", lines, sized, size > sizes }
  ' "$file" 3> "$tmp/counts" | sort -u -S 512M -T "${TMPDIR:-/tmp}" | mawk '
    { n++; path += length($0); m = split($0, c, "/"); name += length(c[m]) }
    END { printf "%d %.0f %.0f\n", n, path, name }
  ' > "$tmp/entries"
  read -r lines sized size < "$tmp/counts"
  read -r entries path name < "$tmp/entries"
  awk -v f="$file" -v e="$entries" -v l="$lines" -v p="$path" -v n="$name" \
    -v s="$sized" -v z="$size" 'BEGIN {
      printf "%s: %d entries from %d lines, average path %.1f bytes, average name %.1f bytes\n",
        f, e, l, (e ? p / e : 0), (e ? n / e : 0)
      if (s > 0) printf "%s: %d lines with a size, %.0f bytes in all (%.2f GiB)\n", f, s, z, z / 2^30
    }'
}

[ $# -ge 1 ] || usage
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$1" = stats ]; then
  [ $# -eq 2 ] || usage
  stats "$2"
  exit 0
fi
[ $# -eq 3 ] || usage
kind=$1 n=$2 out=$3
case "$kind" in usr | usr-sizes | keys | keys-sizes | flat | fixture) ;; *) usage ;; esac
if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -eq 0 ]; then
  echo "$0: N must be a positive number" >&2
  exit 2
fi

fixture() { # fixture N OUT: the tree described above
  local n=$1 out=$2 per made=0 r=0 dir k
  if [ -e "$out" ]; then
    echo "$0: $out exists; the fixture is made in a new directory" >&2
    exit 2
  fi
  mkdir -p "$out"
  # One copy's entries below cNNNN, parents first (sorted): share before
  # share/doc, each directory before what is in it.
  (cd /usr && { printf 'share\0'; find include share/doc -print0; } | sort -z) > "$tmp/copy"
  per=$(tr -cd '\0' < "$tmp/copy" | wc -c)
  while [ "$made" -lt "$n" ]; do
    dir=$(printf '%s/c%04d' "$out" "$r")
    mkdir "$dir"
    made=$((made + 1))
    k=$((n - made))
    if [ "$k" -ge "$per" ]; then
      mkdir "$dir/share"
      cp -a /usr/include "$dir/include"
      cp -a /usr/share/doc "$dir/share/doc"
      made=$((made + per))
    elif [ "$k" -gt 0 ]; then
      # The first k entries of a copy (parents before children), through
      # tar, which keeps what cp -a keeps.
      head -z -n "$k" "$tmp/copy" |
        tar -C /usr --no-recursion --null -T - -cf - | tar -C "$dir" -xpf -
      made=$((made + k))
    fi
    r=$((r + 1))
  done
  echo "$out: fixture: $(find "$out" -mindepth 1 | wc -l) entries in $r copies ($per entries each)," \
    "$(du -sh "$out" | cut -f1)" >&2
}

if [ "$kind" = fixture ]; then
  fixture "$n" "$out"
  exit 0
fi

if [[ "$kind" == usr* ]]; then
  # Type, size and path of everything in /usr, NUL-separated.
  find /usr -mindepth 1 -printf '%y\t%s\t%P\0' > "$tmp/usr"
fi

python3 - "$kind" "$n" "$out" "$tmp/usr" <<'PY'
import math, os, random, sys

kind, want, out, usr_list = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sizes = kind.endswith("-sizes")
f = open(out, "wb", buffering=1 << 22)
# What the file creates: entries, lines, bytes of paths and of names.
st = {"entries": 0, "lines": 0, "path": 0, "name": 0}
places = {}


def usr():
    raw = open(usr_list, "rb").read().split(b"\0")
    items = []
    for rec in raw:
        if not rec:
            continue
        typ, size, rel = rec.split(b"\t", 2)
        # Names triefs cannot take from a line list; their subtrees share
        # the name, so nothing under them is listed either.
        if any(ch in rel for ch in (b"\n", b"\t", b"\r")):
            continue
        items.append((rel, typ == b"d", int(size)))
    items.sort()  # bytewise: every parent before its children
    rels = [b"/" + r for r, _, _ in items]
    isdir = [d for _, d, _ in items]
    size = [s for _, _, s in items]
    name_len = [len(r) - r.rfind(b"/") - 1 for r in rels]
    # Lines of one whole replica, without the /rNNNN prefix.
    if sizes:
        body = [b"%s\t%d\n" % (r, s) for r, d, s in zip(rels, isdir, size) if not d]
    else:
        body = [r + b"\n" for r in rels]
    index = {r: i for i, r in enumerate(rels)}
    parent = [index.get(r[: r.rfind(b"/")], -1) for r in rels]

    def created(k):
        """Entries (indexes) the first k items of a replica create."""
        if not sizes:
            return range(k)
        made = set()
        for i in range(k):
            if not isdir[i]:
                j = i
                while j >= 0 and j not in made:
                    made.add(j)
                    j = parent[j]
        return sorted(made)

    # Places to measure, from the first replica (whole, or as far as N goes).
    k0 = min(len(rels), want - 1)
    kids, sub = {}, {}
    for i in range(k0):
        p = parent[i]
        kids[p] = kids.get(p, 0) + 1
        while p >= 0:
            sub[p] = sub.get(p, 0) + 1
            p = parent[p]
    big = max(kids, key=lambda p: (kids[p], -p)) if kids else -1
    small = min(sub, key=lambda p: (abs(sub[p] - 5000), p)) if sub else -1
    deep = max(range(k0), key=lambda i: (rels[i].count(b"/"), -i)) if k0 else -1
    name = lambda i: "/r0000" + (rels[i].decode(errors="replace") if i >= 0 else "")
    places.update(prefix="/r0000", subtree=name(small), bigdir=name(big),
                  bigdir_n=kids.get(big, 0), deep=name(deep))

    full = created(len(rels))
    full_path = sum(len(rels[i]) for i in full)
    full_name = sum(name_len[i] for i in full)
    r = 0
    while st["entries"] < want:
        pre = b"/r%04d" % r
        k = min(len(rels), want - st["entries"] - 1)
        made = full if k == len(rels) else created(k)
        if not sizes:
            f.write(pre + b"\n")
            st["lines"] += 1
        elif not made:
            break  # nothing but directories left: a sizes list cannot show them
        st["entries"] += 1 + len(made)
        st["path"] += len(pre) * (1 + len(made)) + (
            full_path if k == len(rels) else sum(len(rels[i]) for i in made))
        st["name"] += len(pre) - 1 + (
            full_name if k == len(rels) else sum(name_len[i] for i in made))
        if sizes:
            lines = body if k == len(rels) else [
                b"%s\t%d\n" % (rels[i], size[i]) for i in range(k) if not isdir[i]]
        else:
            lines = body[:k]
        f.write(b"".join([pre + l for l in lines]))
        st["lines"] += len(lines)
        r += 1


SERVICES = [
    "api-gateway", "auth", "billing", "checkout", "search", "recommendations",
    "ingest", "payments", "notifications", "inventory", "shipping", "catalog",
    "user-profile", "sessions", "analytics", "ads", "cdn-edge", "image-resize",
    "video-transcode", "mail", "chat", "metrics", "scheduler", "etl-batch",
    "fraud", "ledger", "kyc", "geo", "pricing", "reviews", "support",
    "web-frontend",
]
PART = [b"part-%05d.gz" % i for i in range(20000)]


def keys():
    import datetime
    seed = int(os.environ.get("DATASETS_SEED", "11"))
    rng = random.Random(seed)
    size_rng = random.Random(seed + 1)  # keys-sizes lists the same keys
    # Per service: hosts (log-uniform 4-120) and a volume factor (0.3-3).
    svc = [(s, int(math.exp(rng.uniform(math.log(4), math.log(121)))),
            math.exp(rng.uniform(math.log(0.3), math.log(3)))) for s in SERVICES]
    lo, hi = math.log(1024), math.log(1 << 30)
    seen = set()  # service, year and month directories made so far

    def new_dir(path):
        st["entries"] += 1
        st["path"] += len(path)
        st["name"] += len(path) - path.rfind(b"/") - 1

    places.update(prefix="/logs/" + svc[0][0],
                  subtree="/logs/%s/2019/01/01" % svc[0][0], bigdir_n=0)
    day = datetime.date(2019, 1, 1)
    while True:
        y, m, d = b"%04d" % day.year, b"%02d" % day.month, b"%02d" % day.day
        for name, hosts, vol in svc:
            base = b"/logs/" + name.encode()
            day_dir = b"/".join((base, y, m, d))
            day_hosts = 0
            for h in range(hosts):
                # Draws are made whether or not the host writes, so the
                # listing of a day does not depend on what N cuts off.
                active = rng.random() < 0.8
                parts = min(20000, 1 + int(vol * math.exp(math.log(12) + rng.normalvariate(0, 1))))
                if not active:
                    continue
                host = b"%s/host-%04d" % (day_dir, h)
                dirs = [p for p in (b"/logs", base, base + b"/" + y, base + b"/" + y + b"/" + m)
                        if p not in seen]
                seen.update(dirs)
                if day_hosts == 0:
                    dirs.append(day_dir)
                dirs.append(host)
                room = want - st["entries"] - len(dirs)
                if room <= 0:
                    return
                for p in dirs:
                    new_dir(p)
                day_hosts += 1
                k = min(parts, room)
                pre = host + b"/"
                if sizes:
                    lines = [b"%s%s\t%d\n" % (pre, PART[i], int(math.exp(lo + (hi - lo) * size_rng.random())))
                             for i in range(k)]
                else:
                    lines = [pre + PART[i] + b"\n" for i in range(k)]
                f.write(b"".join(lines))
                st["entries"] += k
                st["lines"] += k
                st["path"] += k * (len(pre) + 13)
                st["name"] += k * 13
                if "deep" not in places:
                    places["deep"] = (pre + PART[0]).decode()
                if k > places["bigdir_n"]:
                    places.update(bigdir=host.decode(), bigdir_n=k)
                if day_hosts > places["bigdir_n"]:
                    places.update(bigdir=day_dir.decode(), bigdir_n=day_hosts)
                if k < parts:
                    return
        day += datetime.timedelta(days=1)


def flat():
    # Exactly the paths scripts/bench.sh has always generated.
    tops = ["usr", "var", "home", "srv", "opt", "etc", "data", "build", "mnt", "media"]
    per_top = max(1, want // len(tops))
    b_n = 20; c_n = 50; d_n = max(1, per_top // (b_n * c_n))
    files = [b"src-file-%04d.d\n" % d for d in range(d_n)]
    for a in tops:
        for b in range(b_n):
            for c in range(c_n):
                pre = b"/%s/project-%02d/module_%03d/" % (a.encode(), b, c)
                f.write(b"".join([pre + x for x in files]))
                st["path"] += d_n * len(pre) + sum(len(x) - 1 for x in files)
                st["name"] += sum(len(x) - 1 for x in files)
                st["path"] += len(pre) - 1
                st["name"] += 10
            st["path"] += len("/%s/project-%02d" % (a, b))
            st["name"] += 10
        st["path"] += len(a) + 1
        st["name"] += len(a)
    st["lines"] = len(tops) * b_n * c_n * d_n
    st["entries"] = st["lines"] + len(tops) * (1 + b_n * (1 + c_n))
    places.update(prefix="/usr/project-00", subtree="/usr/project-00/module_000",
                  deep="/usr/project-00/module_000/src-file-0000.d")
    if d_n >= c_n:
        places.update(bigdir="/usr/project-00/module_000", bigdir_n=d_n)
    else:
        places.update(bigdir="/usr/project-00", bigdir_n=c_n)


{"usr": usr, "usr-sizes": usr, "keys": keys, "keys-sizes": keys, "flat": flat}[kind]()
f.close()
e = max(1, st["entries"])
summary = dict(kind=kind, entries=st["entries"], lines=st["lines"],
               avg_path="%.1f" % (st["path"] / e), avg_name="%.1f" % (st["name"] / e), **places)
print("%s: %s: %d entries from %d lines, average path %s bytes, average name %s bytes"
      % (out, kind, st["entries"], st["lines"], summary["avg_path"], summary["avg_name"]),
      file=sys.stderr)
if os.environ.get("DATASETS_SUMMARY"):
    with open(os.environ["DATASETS_SUMMARY"], "w") as s:
        for k, v in summary.items():
            s.write("%s\t%s\n" % (k, v))
PY
