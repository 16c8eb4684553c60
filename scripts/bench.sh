#!/usr/bin/env bash
# Start three private servcraftd on loopback (one with a warm pool, one
# without, one without runners), run the benchmark against them, stop them.
#   scripts/bench.sh [servcraft-bench flags, e.g. --quick, --json, --install]
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${SERVCRAFT_STATE:-$PWD/.servcraft}"
ADDR="$(scripts/containerd-address.sh)"
POOL_LISTEN="${BENCH_LISTEN:-127.0.0.1:18181}"
COLD_LISTEN="${BENCH_COLD_LISTEN:-127.0.0.1:18182}"
NORUN_LISTEN="${BENCH_NORUNNERS_LISTEN:-127.0.0.1:18183}"
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait 2>/dev/null || true' EXIT

start() { # name listen extra-flags...
	local name=$1 listen=$2
	shift 2
	mkdir -p "$STATE/bench-$name"
	bin/servcraftd --listen "$listen" --state-dir "$STATE/bench-$name" --containerd-address "$ADDR" \
		--namespace "servcraft-bench-$name" --pull=false --image localhost/servcraft/node:20 \
		--fallback-archive "$STATE/image/node20.tar" --toolchain-dir "$STATE/toolchain" \
		--destroy-on-shutdown --create-rate 0 --client-exec-rate 0 --exec-rate 0 --install-rate 0 --max-concurrent-execs 0 "$@" \
		>"$STATE/bench-$name/servcraftd.log" 2>&1 &
	pids+=($!)
}
start pool "$POOL_LISTEN" --pool-size 4
start cold "$COLD_LISTEN" --pool-size 0 --max-sessions 1000
start norunners "$NORUN_LISTEN" --pool-size 0 --runners=false
for listen in "$POOL_LISTEN" "$COLD_LISTEN" "$NORUN_LISTEN"; do
	for _ in $(seq 150); do
		curl -fsS "http://$listen/readyz" >/dev/null 2>&1 && break
		sleep 0.2
	done
	curl -fsS "http://$listen/readyz" >/dev/null || { tail -20 "$STATE"/bench-*/servcraftd.log >&2; exit 1; }
done
sleep 2 # the pool fills
bin/servcraft-bench --url "http://$POOL_LISTEN" --cold-url "http://$COLD_LISTEN" --no-runners-url "http://$NORUN_LISTEN" \
	--containerd-address "$ADDR" --namespace servcraft-bench-pool "$@"
