#!/usr/bin/env bash
# Install what the cluster integration test and a hand-started test cluster
# need: Debian's etcd-server (placement store) and haproxy (the load balancer
# in front). Only installs what is missing; never starts a system service
# (the tests start their own etcd and haproxy on loopback ports).
#   scripts/deps-cluster.sh
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
if ((${#missing[@]} == 0)); then
	echo "deps-cluster: etcd and haproxy present"
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "deps-cluster: need root to install ${missing[*]}" >&2
	exit 1
fi
# policy-rc.d 101 keeps the packages' postinst from starting system-wide
# etcd/haproxy services on hosts that have an init system.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	created_policy=1
fi
trap '((created_policy)) && rm -f "$policy"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
command -v etcd >/dev/null && command -v haproxy >/dev/null
echo "deps-cluster: installed ${missing[*]}"
