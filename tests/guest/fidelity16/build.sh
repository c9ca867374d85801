#!/bin/sh
# Assembles and links the real-mode fidelity guests at 0x7C00 into flat binaries:
# fidelity16.bin and taskswitch16.bin (the same source with TASKSWITCH defined).
# Usage: tests/guest/fidelity16/build.sh OUTDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fidelity16.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for variant in fidelity16 taskswitch16; do
  defs=
  [ "$variant" = taskswitch16 ] && defs="--defsym TASKSWITCH=1"
  # shellcheck disable=SC2086
  as --32 $defs -o "$tmp/$variant.o" "$here/fidelity16.S"
  ld -m elf_i386 -Ttext=0x7c00 -e _start -o "$tmp/$variant.elf" "$tmp/$variant.o"
  objcopy -O binary -j .text "$tmp/$variant.elf" "$out/$variant.bin"
done
echo "$out"
