#!/usr/bin/env bash
# Print the address of a containerd to use: $SERVCRAFT_CONTAINERD_ADDRESS if set,
# else the host's /run/containerd/containerd.sock when it answers, else a
# project-local containerd that scripts/dev-containerd.sh starts. With
# SERVCRAFT_CONTAINERD_FLAVOR=2, always the project-local containerd 2.x.
set -euo pipefail
if [ -n "${SERVCRAFT_CONTAINERD_ADDRESS:-}" ]; then
	echo "$SERVCRAFT_CONTAINERD_ADDRESS"
	exit 0
fi
if [ "${SERVCRAFT_CONTAINERD_FLAVOR:-}" = 2 ]; then
	"$(dirname "$0")/dev-containerd.sh" start | tail -n 1
	exit 0
fi
system=/run/containerd/containerd.sock
if [ -S "$system" ] && timeout 5 ctr --address "$system" version >/dev/null 2>&1; then
	echo "containerd-address: using the host's containerd at $system" >&2
	echo "$system"
	exit 0
fi
echo "containerd-address: no containerd answers at $system; starting a project-local one" >&2
"$(dirname "$0")/dev-containerd.sh" start | tail -n 1
