#!/usr/bin/env bash
# Upgrade an installed servcraftd (deploy/install.sh) to a new binary, as root:
#
#   make build && deploy/upgrade.sh
#
# Stops servcraftd, replaces the binary (and the unit file, when this checkout's differs),
# starts it again and waits for GET /readyz. If the new daemon does not become ready, the
# previous binary and unit are put back and started, and the script fails.
#
# Sessions survive the upgrade: stopping sends SIGTERM to the daemon only (KillMode=process);
# it drains in-flight requests and exits while the session containers keep running under
# containerd. Their records are in bbolt (/var/lib/servcraftd/servcraftd.db), and the new
# daemon reconciles the two at start and serves the same sessions, workspaces included.
# Requests that arrive while it is down (about a second, plus the drain) are refused.
#
# The offline image and the TypeScript toolchain are left alone; rerun deploy/install.sh to
# rebuild them when scripts/build-image.sh or scripts/build-toolchain.sh changed.
#
# Options:
#   --binary FILE          the new servcraftd (default: bin/servcraftd of this checkout)
#   --prefix DIR           where it was installed (default /usr/local: /usr/local/bin/servcraftd)
#   READY_TIMEOUT=SECONDS  how long to wait for /readyz (default 120)
set -euo pipefail
umask 022

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_TAG=upgrade
# shellcheck source=deploy/lib.sh
. "$REPO_ROOT/deploy/lib.sh"

binary="$REPO_ROOT/bin/servcraftd"
prefix=/usr/local
while [ $# -gt 0 ]; do
	case "$1" in
	--binary) binary="${2:?--binary needs a file}"; shift 2 ;;
	--binary=*) binary="${1#*=}"; shift ;;
	--prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
	--prefix=*) prefix="${1#*=}"; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $1 (--help)" ;;
	esac
done
[ "$(id -u)" = 0 ] || die "run as root"
systemd_running || die "systemd is not running here"
prefix="${prefix%/}"
BIN="$prefix/bin/servcraftd"
UNIT="/etc/systemd/system/$UNIT_NAME"
ENV_FILE=/etc/servcraftd/servcraftd.env
{ [ -x "$BIN" ] && [ -f "$UNIT" ]; } || die "servcraftd is not installed at $BIN (run deploy/install.sh first)"
check_binary "$binary"
spawner="$(spawner_beside "$binary")"
SPAWNER="$prefix/bin/servcraft-spawner"

unit_new="$(mktemp)"
trap 'rm -f "$unit_new"' EXIT
render_unit "$REPO_ROOT/deploy/$UNIT_NAME" "$prefix" >"$unit_new"
if cmp -s "$binary" "$BIN" && cmp -s "$unit_new" "$UNIT" && cmp -s "$spawner" "$SPAWNER"; then
	log "$BIN and $UNIT are up to date; nothing to do"
	exit 0
fi

# Keep the running version for a rollback.
cp -p "$BIN" "$BIN.previous"
cp -p "$UNIT" "$UNIT.previous"
log "sessions running before: $(running_sessions "$ENV_FILE")"

log "stopping $UNIT_NAME (sessions keep running)"
systemctl stop "$UNIT_NAME"
put_file "$binary" "$BIN" 0755 || true
# Running containers keep the spawner they started with (its old file stays theirs); new ones get this.
put_file "$spawner" "$SPAWNER" 0755 || true
if put_file "$unit_new" "$UNIT" 0644; then
	log "unit file updated"
fi
systemctl daemon-reload
systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
log "starting the new $BIN"
systemctl start "$UNIT_NAME"
if wait_ready "$(api_url "$ENV_FILE")" "${READY_TIMEOUT:-120}"; then
	log "sessions running after: $(running_sessions "$ENV_FILE")"
	rm -f "$BIN.previous" "$UNIT.previous"
	systemctl --no-pager --lines=5 status "$UNIT_NAME" || true
	exit 0
fi

show_failure
log "rolling back to the previous binary and unit"
systemctl stop "$UNIT_NAME" || true
mv -f "$BIN.previous" "$BIN"
mv -f "$UNIT.previous" "$UNIT"
systemctl daemon-reload
systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
systemctl start "$UNIT_NAME"
if wait_ready "$(api_url "$ENV_FILE")" "${READY_TIMEOUT:-120}"; then
	die "upgrade failed; the previous version is running again"
fi
show_failure
die "upgrade failed, and the previous version did not become ready either"
