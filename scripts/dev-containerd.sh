#!/usr/bin/env bash
# Start, stop or inspect a project-local containerd for development and tests.
#
#   scripts/dev-containerd.sh [start|stop|status]
#
# State lives in ${SERVCRAFT_STATE:-$PWD/.servcraft}/containerd: config.toml,
# root/, state/, containerd.sock, containerd.log, containerd.pid.
# `start` (the default) is idempotent: if a containerd already answers on the
# socket it only prints the socket path. The socket path is always the last
# line on stdout, so callers can do: SOCK=$(scripts/dev-containerd.sh | tail -n1)
# Installing containerd/runc is not this script's job (apt-get install containerd runc).
#
# SERVCRAFT_CONTAINERD_FLAVOR=2 runs containerd 2.x with runc 1.5 instead, built by
# scripts/build-containerd2.sh, in .servcraft/containerd2 (its own socket and state).
set -euo pipefail

STATE_PARENT="${SERVCRAFT_STATE:-$PWD/.servcraft}"
DIR="$STATE_PARENT/containerd"
CONFIG_VERSION=2
CRI_PLUGINS='"io.containerd.grpc.v1.cri",'
if [ "${SERVCRAFT_CONTAINERD_FLAVOR:-}" = 2 ]; then
	DIR="$STATE_PARENT/containerd2"
	# containerd finds its shim, and the shim finds runc, on PATH.
	export PATH="$DIR/bin:$PATH"
	CONTAINERD_BIN="$DIR/bin/containerd" CTR_BIN="$DIR/bin/ctr"
	CONFIG_VERSION=3
	CRI_PLUGINS='"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",'
fi
SOCK="${SERVCRAFT_CONTAINERD_ADDRESS:-$DIR/containerd.sock}"
CONFIG="$DIR/config.toml"
LOG="$DIR/containerd.log"
PIDFILE="$DIR/containerd.pid"
WAIT_SECONDS="${SERVCRAFT_CONTAINERD_WAIT:-20}"
CONTAINERD="${CONTAINERD_BIN:-containerd}"
CTR="${CTR_BIN:-ctr}"

log() { echo "dev-containerd: $*" >&2; }
die() { log "error: $*"; exit 1; }

reachable() {
	[ -S "$SOCK" ] && timeout 5 "$CTR" --address "$SOCK" version >/dev/null 2>&1
}

# our_pid prints the pid from the pid file if that process is still our containerd.
our_pid() {
	[ -f "$PIDFILE" ] || return 1
	local pid
	pid="$(cat "$PIDFILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--config $CONFIG" || return 1
	echo "$pid"
}

write_config() {
	mkdir -p "$DIR/root" "$DIR/state"
	cat >"$CONFIG.tmp" <<TOML
# Written by scripts/dev-containerd.sh; rewritten on every start.
version = $CONFIG_VERSION
root = "$DIR/root"
state = "$DIR/state"
# No Kubernetes here: skipping CRI makes startup fast and the log quiet, and
# overlayfs is the only snapshotter servcraftd uses (native stays as fallback).
disabled_plugins = [
  $CRI_PLUGINS
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"
TOML
	mv "$CONFIG.tmp" "$CONFIG"
}

start() {
	if reachable; then
		log "containerd already answers on $SOCK"
		echo "$SOCK"
		return 0
	fi
	command -v "$CONTAINERD" >/dev/null || die "$CONTAINERD not found (apt-get install containerd runc; for containerd 2.x: scripts/build-containerd2.sh)"
	command -v "$CTR" >/dev/null || die "$CTR not found (apt-get install containerd)"
	if pid="$(our_pid)"; then
		die "containerd pid $pid is running but does not answer on $SOCK; see $LOG or run '$0 stop'"
	fi
	[ "$(id -u)" = 0 ] || log "warning: not root; containerd will likely fail"
	mkdir -p "$DIR"
	write_config
	rm -f "$SOCK" "$SOCK.ttrpc"
	log "starting $CONTAINERD --config $CONFIG (log: $LOG)"
	# A new session, no inherited fds: the daemon outlives this script and its caller.
	setsid "$CONTAINERD" --config "$CONFIG" </dev/null >>"$LOG" 2>&1 &
	local pid=$!
	echo "$pid" >"$PIDFILE"
	local deadline=$((SECONDS + WAIT_SECONDS))
	until reachable; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$PIDFILE"
			log "containerd exited during startup; last log lines:"
			tail -n 20 "$LOG" >&2 || true
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			log "containerd did not answer on $SOCK within ${WAIT_SECONDS}s; last log lines:"
			tail -n 20 "$LOG" >&2 || true
			exit 1
		fi
		sleep 0.1
	done
	log "containerd pid $pid ready"
	echo "$SOCK"
}

stop() {
	local pid
	if ! pid="$(our_pid)"; then
		rm -f "$PIDFILE"
		if reachable; then
			log "a containerd answers on $SOCK but was not started by this script; leaving it alone"
		else
			log "not running"
		fi
		return 0
	fi
	log "stopping containerd pid $pid"
	kill -TERM "$pid"
	local deadline=$((SECONDS + WAIT_SECONDS))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "pid $pid still alive after ${WAIT_SECONDS}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
			break
		fi
		sleep 0.1
	done
	rm -f "$PIDFILE"
	log "stopped (running containers keep their shims; they reattach on the next start)"
}

status() {
	local pid=""
	pid="$(our_pid)" || pid=""
	if reachable; then
		local ver
		ver="$("$CTR" --address "$SOCK" version 2>/dev/null | awk '/^Server:/{s=1} s&&/Version:/{print $2; exit}')"
		log "running${pid:+ (pid $pid)}, server version ${ver:-unknown}"
		echo "$SOCK"
		return 0
	fi
	if [ -n "$pid" ]; then
		log "pid $pid alive but not answering on $SOCK"
	else
		log "not running"
	fi
	return 3
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) status ;;
-h | --help | help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' ;;
*) die "unknown command ${1} (want start, stop or status)" ;;
esac
