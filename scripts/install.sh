#!/usr/bin/env bash
# Installs triefs on a Debian machine: the fuse3 package (fusermount3, needed
# by non-root users) and the triefs binary, built from this checkout.
# As root the binary goes to /usr/local/bin (plus the mount(8) helper link
# /sbin/mount.fuse.triefs), otherwise to ~/.cargo/bin.
#
# Usage: scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v fusermount3 >/dev/null 2>&1; then
  echo "== installing fuse3"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs first" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  root=/usr/local
else
  root=${CARGO_HOME:-$HOME/.cargo}
fi
echo "== building and installing triefs into $root/bin"
cargo install --quiet --locked --force --path . --root "$root"
echo "== installed: $("$root/bin/triefs" --version)"
if [ "$(id -u)" -eq 0 ]; then
  # The mount(8) helper for `mount -t fuse.triefs` and fstab lines.
  ln -sf "$root/bin/triefs" /sbin/mount.fuse.triefs
  echo "== mount helper: /sbin/mount.fuse.triefs"
fi
case ":$PATH:" in
  *":$root/bin:"*) ;;
  *) echo "note: add $root/bin to your PATH" ;;
esac
