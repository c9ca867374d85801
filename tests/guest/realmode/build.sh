#!/bin/sh
# Assembles the real-mode guest into a flat binary (loaded at GPA 0x7C00 by Bulkhead).
# Usage: tests/guest/realmode/build.sh [OUT.bin]   (default: $CARGO_TARGET_DIR or target/, guests/realmode.bin)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${CARGO_TARGET_DIR:-$here/../../../target}/guests/realmode.bin}
mkdir -p "$(dirname "$out")"
obj=$(mktemp "${TMPDIR:-/tmp}/realmode.XXXXXX.o")
trap 'rm -f "$obj"' EXIT
as --32 -o "$obj" "$here/realmode.S"
objcopy -O binary -j .text "$obj" "$out"
echo "$out"
