# Shared helpers for the kiln scripts. Source it; do not execute it.
# shellcheck shell=bash

# Repository root (the directory above scripts/), used by the scripts.
# shellcheck disable=SC2034
KILN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Print a phase banner so each step is easy to find in CI logs.
kiln_phase() {
	printf '\n==> %s\n' "$*"
}

kiln_log() {
	printf '%s: %s\n' "${0##*/}" "$*"
}

kiln_die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# Run a command as root: directly when we are root, else through sudo.
kiln_as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		kiln_die "need root (or sudo) to run: $*"
	fi
}

# kiln_sha256 FILE: print the SHA-256 of FILE in lower-case hex.
kiln_sha256() {
	sha256sum "$1" | cut -d' ' -f1
}
