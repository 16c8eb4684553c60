#!/usr/bin/env bash
# Install what servcraftd needs on a Debian/Ubuntu host, only where it is missing:
# containerd and runc, tini (its static init), busybox-static (for the offline
# image), e2fsprogs and btrfs-progs (workspace volumes), util-linux (mount), iproute2.
set -euo pipefail
need=()
for pair in containerd:containerd runc:runc tini-static:tini busybox:busybox-static \
	mkfs.ext4:e2fsprogs mkfs.btrfs:btrfs-progs mount:mount ip:iproute2 ctr:containerd; do
	bin=${pair%%:*} pkg=${pair##*:}
	command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/bin/$bin" ] || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
	echo "deps: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || { echo "deps: Go is not installed (need Go 1.26 at /usr/local/go)" >&2; exit 1; }
