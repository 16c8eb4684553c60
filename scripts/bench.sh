#!/usr/bin/env bash
# Start a private servcraftd on loopback, run the benchmark against it, stop it.
#   scripts/bench.sh [servcraft-bench flags, e.g. --quick or --json]
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${SERVCRAFT_STATE:-$PWD/.servcraft}"
ADDR="$(scripts/containerd-address.sh)"
LISTEN="${BENCH_LISTEN:-127.0.0.1:18181}"
LOG="$STATE/bench/servcraftd.log"
mkdir -p "$STATE/bench"
bin/servcraftd --listen "$LISTEN" --state-dir "$STATE/bench" --containerd-address "$ADDR" \
	--namespace servcraft-bench --pull=false --image localhost/servcraft/node:20 \
	--fallback-archive "$STATE/image/node20.tar" --toolchain-dir "$STATE/toolchain" >"$LOG" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -fsS "http://$LISTEN/readyz" >/dev/null 2>&1 && break
	kill -0 $pid 2>/dev/null || { cat "$LOG" >&2; exit 1; }
	sleep 0.2
done
bin/servcraft-bench --url "http://$LISTEN" "$@"
