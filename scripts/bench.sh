#!/usr/bin/env bash
# Start three private servcraftd on loopback (one with a warm pool, one
# without, one without runners) and, when etcd is installed, a private etcd
# with two cluster-mode servcraftd (the hop row), run the benchmark against
# them, stop them. With --density N, only the density study, on a daemon of
# its own (below).
#   scripts/bench.sh [servcraft-bench flags, e.g. --quick, --json, --install, --density 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${SERVCRAFT_STATE:-$PWD/.servcraft}"
ADDR="$(scripts/containerd-address.sh)"
POOL_LISTEN="${BENCH_LISTEN:-127.0.0.1:18181}"
COLD_LISTEN="${BENCH_COLD_LISTEN:-127.0.0.1:18182}"
NORUN_LISTEN="${BENCH_NORUNNERS_LISTEN:-127.0.0.1:18183}"
# Cluster row: etcd client and peer ports, then the owner node's and the
# other node's, from this loopback port on (four in a row).
CLUSTER_PORT="${BENCH_CLUSTER_PORT:-18185}"
pids=()
etcd_pid=
stop() { # the daemons first: they leave etcd on their way out
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -n $etcd_pid ]]; then
		kill -TERM "$etcd_pid" 2>/dev/null || true
		wait "$etcd_pid" 2>/dev/null || true
	fi
}
trap stop EXIT
# A daemon's folder whose workspaces are a btrfs pool file: the pool
# unmounted and its file removed (pool_gone DIR), or a fresh folder
# (pool_fresh DIR).
pool_gone() {
	if mountpoint -q "$1/workspaces"; then umount "$1/workspaces"; fi
	rm -f "$1/workspace-pool.btrfs"
}
pool_fresh() {
	pool_gone "$1"
	rm -rf "$1"
	mkdir -p "$1"
}

# Every workspace of the image backend is allocated in full at create:
# 256 MiB each (not the 1 GiB default) keeps the run's 40-odd sessions
# within a CI machine's disk.
start() { # name listen extra-flags...
	local name=$1 listen=$2
	shift 2
	mkdir -p "$STATE/bench-$name"
	bin/servcraftd --listen "$listen" --state-dir "$STATE/bench-$name" --containerd-address "$ADDR" \
		--namespace "servcraft-bench-$name" --pull=false --image localhost/servcraft/node:20 \
		--fallback-archive "$STATE/image/node20.tar" --toolchain-dir "$STATE/toolchain" \
		--workspace-size 256MiB --destroy-on-shutdown --create-rate 0 --client-exec-rate 0 --exec-rate 0 --install-rate 0 --max-concurrent-execs 0 "$@" \
		>"$STATE/bench-$name/servcraftd.log" 2>&1 &
	pids+=($!)
}
# --density N: the density study alone, on a daemon of its own with the
# default 1 GiB workspaces on a btrfs pool file (BENCH_DENSITY_POOL, made
# for the run and removed after it).
density=0
for ((i = 1; i <= $#; i++)); do
	case ${!i} in
	--density | -density) j=$((i + 1)) && density=${!j} ;;
	--density=* | -density=*) density=${!i#*=} ;;
	esac
done
if ((density > 0)); then
	DENSE_LISTEN="${BENCH_DENSITY_LISTEN:-127.0.0.1:18184}"
	dense="$STATE/bench-dense"
	stop_dense() {
		stop
		pool_gone "$dense"
	}
	trap stop_dense EXIT
	pool_fresh "$dense"
	size="${BENCH_DENSITY_WORKSPACE:-1GiB}" # the daemon's default, over start's 256 MiB
	start dense "$DENSE_LISTEN" --pool-size 0 --max-sessions $((density + 10)) --workspace-size "$size" \
		--workspace-backend btrfs --workspace-pool "${BENCH_DENSITY_POOL:-24GiB}" --idle-timeout 2h
	for _ in $(seq 600); do
		curl -fsS "http://$DENSE_LISTEN/readyz" >/dev/null 2>&1 && break
		sleep 0.2
	done
	curl -fsS "http://$DENSE_LISTEN/readyz" >/dev/null || { tail -20 "$dense/servcraftd.log" >&2; exit 1; }
	bin/servcraft-bench --url "http://$DENSE_LISTEN" --density-namespace servcraft-bench-dense --density-host-dir "$STATE" --density-pool "$dense/workspaces" "$@"
	exit
fi

# The pooled daemon keeps its workspaces in a btrfs pool file, as make run
# does (its forks are snapshots); removed after the run.
pooled="$STATE/bench-pool"
stop_pooled() {
	stop
	pool_gone "$pooled"
}
trap stop_pooled EXIT
pool_fresh "$pooled"
start pool "$POOL_LISTEN" --pool-size 4 --workspace-backend btrfs --workspace-pool 4GiB
start cold "$COLD_LISTEN" --pool-size 0
start norunners "$NORUN_LISTEN" --pool-size 0 --runners=false
listens=("$POOL_LISTEN" "$COLD_LISTEN" "$NORUN_LISTEN")

cluster_args=()
if command -v etcd >/dev/null 2>&1; then
	etcd_client="http://127.0.0.1:$CLUSTER_PORT" etcd_peer="http://127.0.0.1:$((CLUSTER_PORT + 1))"
	owner_listen="127.0.0.1:$((CLUSTER_PORT + 2))" peer_listen="127.0.0.1:$((CLUSTER_PORT + 3))"
	for port in $(seq "$CLUSTER_PORT" $((CLUSTER_PORT + 3))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "bench: 127.0.0.1:$port is taken; pick four free ports with BENCH_CLUSTER_PORT" >&2
			exit 1
		fi
	done
	rm -rf "$STATE/bench-etcd"
	mkdir -p "$STATE/bench-etcd"
	etcd --name bench --data-dir "$STATE/bench-etcd/data" \
		--listen-client-urls "$etcd_client" --advertise-client-urls "$etcd_client" \
		--listen-peer-urls "$etcd_peer" --initial-advertise-peer-urls "$etcd_peer" \
		--initial-cluster "bench=$etcd_peer" --initial-cluster-state new \
		>"$STATE/bench-etcd/etcd.log" 2>&1 &
	etcd_pid=$!
	for _ in $(seq 100); do
		curl -fsS "$etcd_client/health" >/dev/null 2>&1 && break
		kill -0 "$etcd_pid" 2>/dev/null || break
		sleep 0.1
	done
	curl -fsS "$etcd_client/health" >/dev/null || { tail -20 "$STATE/bench-etcd/etcd.log" >&2; exit 1; }
	secret="$STATE/bench-cluster-secret"
	(umask 077 && head -c 32 /dev/urandom | base64 >"$secret")
	cluster_flags=(--pool-size 0 --cluster-etcd "$etcd_client" --cluster-secret-file "$secret")
	start owner "$owner_listen" --node-id bench-owner "${cluster_flags[@]}"
	start peer "$peer_listen" --node-id bench-peer "${cluster_flags[@]}"
	listens+=("$owner_listen" "$peer_listen")
	cluster_args=(--cluster-owner-url "http://$owner_listen" --cluster-peer-url "http://$peer_listen")
elif [[ ${CI:-} == true ]]; then
	echo "bench: etcd not installed (make deps installs it); CI runs the cluster row" >&2
	exit 1
else
	echo "bench: etcd not installed (scripts/deps-cluster.sh installs Debian's etcd-server):" \
		"skipping the row \"execute hello.js via a non-owner node (one hop)\"" >&2
fi

for listen in "${listens[@]}"; do
	for _ in $(seq 150); do
		curl -fsS "http://$listen/readyz" >/dev/null 2>&1 && break
		sleep 0.2
	done
	curl -fsS "http://$listen/readyz" >/dev/null || { tail -20 "$STATE"/bench-*/servcraftd.log >&2; exit 1; }
done
sleep 2 # the pool fills
bin/servcraft-bench --url "http://$POOL_LISTEN" --cold-url "http://$COLD_LISTEN" --no-runners-url "http://$NORUN_LISTEN" \
	--containerd-address "$ADDR" --namespace servcraft-bench-pool "${cluster_args[@]}" "$@"
