#!/usr/bin/env bash
# Compile-checks triefs for macOS (macFUSE) from Linux: library, binary,
# unit tests and clippy. Nothing runs; mount tests are Linux-only.
#
# fuser links macFUSE's libfuse on macOS and finds it with pkg-config; for
# a check (no linking) a stand-in fuse.pc is enough.
# Needs: rustup target add x86_64-apple-darwin (the script does it).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-apple-darwin
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
pc=$(mktemp -d)
trap 'rm -rf "$pc"' EXIT
cat > "$pc/fuse.pc" <<'PC'
prefix=/usr/local
Name: fuse
Description: macFUSE stand-in for compile checks
Version: 2.9.9
Libs: -L${prefix}/lib -lfuse
Cflags: -I${prefix}/include/fuse -D_FILE_OFFSET_BITS=64
PC
export PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH="$pc" PKG_CONFIG_LIBDIR="$pc"
cargo clippy --target "$target" --all-targets -- -D warnings
echo "== macOS ($target): compiles, clippy clean"
