#!/usr/bin/env bash
# Runs the whole triefs test suite: style checks, unit tests, and the mount
# tests (which mount real FUSE filesystems and a tmpfs oracle, so they need
# root and /dev/fuse). Installs what the tests need when it is missing.
#
# Environment:
#   TRIEFS_LONG=1          also run the long exercisers (minutes, not seconds):
#                          1,000,000-op fsx-style run in tests/integrity.rs and
#                          scripts/fsx.sh with 1,000,000 ops
#   TRIEFS_SKIP_LINT=1     skip the lint stage: cargo fmt/clippy, shellcheck and
#                          the macOS compile check
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
command -v getfattr >/dev/null 2>&1 || need_pkgs+=(attr)
command -v setfacl >/dev/null 2>&1 || need_pkgs+=(acl)
# tests/flags.rs compares chattr, lsattr (e2fsprogs), xfs_io (xfsprogs) and
# capsh (libcap2-bin) output on tmpfs and triefs; they live in sbin dirs.
PATH="$PATH:/usr/sbin:/sbin"
command -v chattr >/dev/null 2>&1 || need_pkgs+=(e2fsprogs)
command -v xfs_io >/dev/null 2>&1 || need_pkgs+=(xfsprogs)
command -v capsh >/dev/null 2>&1 || need_pkgs+=(libcap2-bin)
# tests/inventory.rs reads ncdu's export of listed files.
command -v ncdu >/dev/null 2>&1 || need_pkgs+=(ncdu)
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
command -v tar >/dev/null 2>&1 || need_pkgs+=(tar)
command -v diff >/dev/null 2>&1 || need_pkgs+=(diffutils)
command -v find >/dev/null 2>&1 || need_pkgs+=(findutils)
command -v mount >/dev/null 2>&1 || need_pkgs+=(mount)
if [ "${TRIEFS_SKIP_LINT:-0}" != 1 ]; then
  command -v shellcheck >/dev/null 2>&1 || need_pkgs+=(shellcheck)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "== installing ${need_pkgs[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs first" >&2
  exit 1
fi
if [ ! -e /dev/fuse ]; then
  modprobe fuse 2>/dev/null || true
fi

if [ "${TRIEFS_SKIP_LINT:-0}" != 1 ]; then
  echo "== cargo fmt --check"
  cargo fmt --check
  echo "== cargo clippy"
  cargo clippy --all-targets --release -- -D warnings
  echo "== shellcheck"
  # From the repository root: the scripts source scripts/lib.sh by that path.
  shellcheck -x scripts/*.sh .ci/run
  echo "== macOS compile check"
  if rustup target list --installed 2>/dev/null | grep -qx x86_64-apple-darwin \
      || rustup target add x86_64-apple-darwin >/dev/null 2>&1; then
    scripts/check-macos.sh
  else
    echo "   skipped: the x86_64-apple-darwin target cannot be installed (offline?)"
  fi
fi

echo "== cargo test"
cargo test --release -- --test-threads=4
echo "== pjdfstest (POSIX suite) against tmpfs and triefs"
scripts/pjdfstest.sh target/release/triefs
if [ "${TRIEFS_LONG:-0}" = 1 ]; then
  echo "== long run: fsx exerciser (FSX_OPS=${FSX_OPS:-1000000})"
  FSX_OPS=${FSX_OPS:-1000000} scripts/fsx.sh target/release/triefs
fi
echo "== all tests passed"
