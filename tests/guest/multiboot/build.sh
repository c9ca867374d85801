#!/bin/sh
# Assembles the Multiboot v1 test kernel twice (tests/guest/multiboot/multiboot.S):
#   multiboot.elf      ELF32, one PT_LOAD at 1 MiB (the loader takes its segments)
#   multiboot-aout.bin a flat binary loaded at 1 MiB by its header's a.out-kludge addresses
# Usage: tests/guest/multiboot/build.sh OUTDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/multiboot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
as --32 -o "$tmp/mb.o" "$here/multiboot.S"
ld -m elf_i386 --no-warn-rwx-segments -N -Ttext=0x100000 -e _start -o "$out/multiboot.elf" "$tmp/mb.o"
as --32 --defsym AOUT=1 -o "$tmp/mb-aout.o" "$here/multiboot.S"
ld -m elf_i386 --no-warn-rwx-segments -N -Ttext=0x100000 -e _start -o "$tmp/mb-aout.elf" "$tmp/mb-aout.o"
# .text only: the bss after it is the header's bss_end_addr, zeroed by the loader.
objcopy -O binary -j .text "$tmp/mb-aout.elf" "$out/multiboot-aout.bin"
echo "$out"
