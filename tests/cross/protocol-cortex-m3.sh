#!/usr/bin/env bash
# Cross check: the wire protocol must build freestanding for the Cortex-M3
# agent with warnings as errors, and must not need an allocator.
#   protocol-cortex-m3.sh ARM_GCC SOURCE_ROOT
# Exits 77 (meson's "skipped") when no arm-none-eabi-gcc is available.
set -euo pipefail

CC="${1:-}"
SRC="${2:?usage: $0 ARM_GCC SOURCE_ROOT}"
if [ -z "$CC" ] || ! command -v "$CC" >/dev/null 2>&1; then
	echo "arm-none-eabi-gcc not found: skipped"
	exit 77
fi
PREFIX="${CC%gcc}"
SIZE="${PREFIX}size"
NM="${PREFIX}nm"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/kiln-cross.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

CFLAGS=(-mcpu=cortex-m3 -mthumb -ffreestanding -Os -std=c11
	-Wall -Wextra -Werror -Wshadow -Wconversion -Wsign-conversion
	-Wstrict-prototypes -Wmissing-prototypes -Wundef
	-ffunction-sections -fdata-sections -I"$SRC")

failed=0
objs=()
for c in "$SRC"/protocol/*.c; do
	o="$TMP/$(basename "${c%.c}").o"
	if "$CC" "${CFLAGS[@]}" -c "$c" -o "$o"; then
		objs+=("$o")
		echo "ok   $(basename "$c")"
	else
		echo "FAIL $(basename "$c")"
		failed=$((failed + 1))
	fi
done
if [ "${#objs[@]}" -eq 0 ]; then
	echo "no protocol sources compiled"
	exit 1
fi

# protocol/ is malloc-free by contract: no allocator, no stdio.
bad="$("$NM" -u "${objs[@]}" 2>/dev/null |
	grep -Ew '(malloc|calloc|realloc|free|printf|fprintf|puts|exit|abort)' ||
	true)"
if [ -n "$bad" ]; then
	echo "protocol objects reference forbidden symbols:"
	echo "$bad"
	failed=$((failed + 1))
fi

read -r text data bss _ < <("$SIZE" -t "${objs[@]}" | tail -n1)
echo "protocol (cortex-m3 -Os): text=$text data=$data bss=$bss"

if [ "$failed" -ne 0 ]; then
	echo "${#objs[@]} passed, $failed failed"
	exit 1
fi
echo "${#objs[@]} passed, 0 failed"
