# shellcheck shell=bash
# Helpers shared by deploy/install.sh and deploy/upgrade.sh (sourced, not run).

UNIT_NAME=servcraftd.service
DEFAULT_BIN=/usr/local/bin/servcraftd

log() { echo "${LOG_TAG:-deploy}: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# systemd_running: whether systemd is PID 1 here (not in a container or chroot).
systemd_running() { [ -d /run/systemd/system ]; }

# check_binary FILE: FILE runs here and is a servcraftd (its --help exits 0 and names --state-dir).
check_binary() {
	local out
	{ [ -f "$1" ] && [ -x "$1" ]; } || die "$1: not an executable file (build it with \`make build\`)"
	out="$("$1" --help 2>&1)" || die "$1 --help failed: $out"
	grep -q -- '-state-dir' <<<"$out" || die "$1 does not look like servcraftd"
}

# spawner_beside BINARY: servcraft-spawner next to the servcraftd BINARY (make build puts it there).
spawner_beside() {
	local s
	s="$(dirname "$1")/servcraft-spawner"
	{ [ -f "$s" ] && [ -x "$s" ]; } || die "$s: missing (make build builds it beside servcraftd)"
	echo "$s"
}

# render_unit SRC PREFIX: the unit file with ExecStart pointing at PREFIX/bin/servcraftd.
render_unit() {
	local bin="$2/bin/servcraftd"
	if [ "$bin" = "$DEFAULT_BIN" ]; then
		cat "$1"
	else
		sed "s|^ExecStart=$DEFAULT_BIN\$|ExecStart=$bin|" "$1"
	fi
}

# put_file SRC DST MODE: replace DST with SRC (atomically, by rename) unless they are the same.
# Returns 0 when DST changed, 1 when it was already up to date.
put_file() {
	local src=$1 dst=$2 mode=$3 tmp
	if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
		return 1
	fi
	mkdir -p "$(dirname "$dst")"
	tmp="$(mktemp "$dst.new.XXXXXX")"
	cat "$src" >"$tmp"
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$dst"
	return 0
}

# env_get FILE NAME: the value NAME has in an EnvironmentFile (last assignment wins; one
# level of surrounding quotes removed); empty when unset or when FILE is missing.
env_get() {
	local v
	[ -f "$1" ] || return 0
	v="$(sed -n "s/^[[:space:]]*$2=//p" "$1" | tail -n1)"
	v="${v%\"}" v="${v#\"}" v="${v%\'}" v="${v#\'}"
	printf '%s' "$v"
}

# env_set FILE NAME VALUE: assign NAME in FILE, in place of an earlier assignment or
# appended. Returns 0 when FILE changed.
env_set() {
	local file=$1 name=$2 value=$3 tmp
	[ "$(env_get "$file" "$name")" = "$value" ] && grep -q "^$name=" "$file" && return 1
	tmp="$(mktemp "$file.new.XXXXXX")"
	if grep -q "^$name=" "$file"; then
		# Through the environment, not awk -v, which would interpret backslashes.
		N="$name=" LINE="$name=$value" awk 'index($0, ENVIRON["N"]) == 1 { $0 = ENVIRON["LINE"] } { print }' "$file" >"$tmp"
	else
		cat "$file" >"$tmp"
		printf '%s=%s\n' "$name" "$value" >>"$tmp"
	fi
	chmod --reference="$file" "$tmp"
	mv -f "$tmp" "$file"
	return 0
}

# api_url ENVFILE: base URL of the daemon's API for a client on this host.
api_url() {
	local listen host port
	listen="$(env_get "$1" SERVCRAFT_LISTEN)"
	listen="${listen:-127.0.0.1:8080}"
	host="${listen%:*}" port="${listen##*:}"
	case "$host" in
	"" | 0.0.0.0) host=127.0.0.1 ;;
	"[::]") host="[::1]" ;;
	esac
	printf 'http://%s:%s' "$host" "$port"
}

# wait_ready URL SECONDS: wait until GET URL/readyz answers 200; fail early when the unit
# has failed for good. Prints the answer.
wait_ready() {
	local url=$1 deadline=$((SECONDS + $2)) body
	log "waiting up to $2s for $url/readyz"
	while ((SECONDS < deadline)); do
		if body="$(curl -fsS --max-time 5 "$url/readyz" 2>/dev/null)"; then
			log "ready: $body"
			return 0
		fi
		if systemctl is-failed --quiet "$UNIT_NAME"; then
			log "$UNIT_NAME failed"
			return 1
		fi
		sleep 1
	done
	log "no ready answer from $url/readyz within $2s"
	return 1
}

# show_failure: the unit's state and its last log lines.
show_failure() {
	systemctl --no-pager --full status "$UNIT_NAME" >&2 || true
	journalctl --no-pager -u "$UNIT_NAME" -n 40 >&2 || true
}

# running_sessions ENVFILE: how many session containers run (RUNNING tasks in the
# daemon's containerd namespace); "?" when ctr cannot tell.
running_sessions() {
	local ns addr out
	ns="$(env_get "$1" SERVCRAFT_NAMESPACE)"
	addr="$(env_get "$1" SERVCRAFT_CONTAINERD_ADDRESS)"
	if out="$(ctr --address "${addr:-/run/containerd/containerd.sock}" -n "${ns:-servcraft}" tasks ls 2>/dev/null)"; then
		grep -c '[[:space:]]RUNNING$' <<<"$out" || true
	else
		echo "?"
	fi
}
