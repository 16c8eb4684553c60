#!/usr/bin/env bash
# make test-cgroup2: build a Debian 12 guest on cgroup v2, boot it, run the API checks and the
# runtime integration tests there (scripts/cgroup2-guest/README.md), and print the results.
# Work folder: ${SERVCRAFT_STATE:-$PWD/.servcraft}/cgroup2-guest. Exit status 1 when a check or
# a test failed or the guest gave no results.
#   ACCEL=kvm   use hardware virtualisation where it works (default: software emulation)
#   TIMEOUT=N   seconds the guest may run (default 7200)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export W="${SERVCRAFT_STATE:-$REPO_ROOT/.servcraft}/cgroup2-guest" SRC="$REPO_ROOT"
G="$REPO_ROOT/scripts/cgroup2-guest"
log() { echo "test-cgroup2: $*" >&2; }
need=()
for pair in qemu-system-x86_64:qemu-system-x86 debootstrap:debootstrap mkfs.ext4:e2fsprogs; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" qemu-utils >/dev/null
fi
mkdir -p "$W"
log "root filesystem (cached after the first run)"
"$G/build-rootfs.sh"
log "disk image"
"$G/make-image.sh"
rm -rf "$W/share/out"; mkdir -p "$W/share/out"
log "booting the guest (software emulation: about 20 minutes on 2 cores); serial console: $W/serial.log"
start=$SECONDS
"$G/boot-vm.sh" || log "qemu exited with status $?"
log "guest ran $(( (SECONDS - start) / 60 )) min; results in $W/share/out"
results="$W/share/out/results.log"
[ -s "$results" ] || { log "no results (see $W/serial.log)"; exit 1; }
grep -E '^CHECK (PASS|FAIL)|^CHECKS:|^TESTS:|^--- FAIL' "$results" || true
if grep -q '^CHECK FAIL' "$results" || ! grep -q '^TESTS: .* 0 failed' "$results"; then
	exit 1
fi
