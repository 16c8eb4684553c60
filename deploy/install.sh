#!/usr/bin/env bash
# Install servcraftd as a systemd service on a Debian or Ubuntu host, as root, from a
# checkout of this repository:
#
#   make build && deploy/install.sh
#
# 1. installs the Debian packages that are missing: containerd, runc, tini (its static
#    init), e2fsprogs and mount (workspace volumes), curl (readiness check), and for
#    building the offline image and the TypeScript toolchain busybox-static, nodejs and
#    npm (Debian 12's nodejs is v18: enough for the host-side npm pack/install);
# 2. enables and starts containerd;
# 3. installs the binary as PREFIX/bin/servcraftd (and servcraft-spawner, built beside it,
#    as PREFIX/bin/servcraft-spawner), the unit as
#    /etc/systemd/system/servcraftd.service, and /etc/servcraftd/servcraftd.env from
#    deploy/servcraftd.env.example unless that file exists (it is never overwritten;
#    --set changes single variables in it);
# 4. builds the offline Node 20 image archive into /var/lib/servcraftd/image and the
#    TypeScript toolchain into /var/lib/servcraftd/toolchain with scripts/build-image.sh
#    (needs Go, at /usr/local/go or on PATH) and scripts/build-toolchain.sh; both are
#    cached by stamps, so a rerun costs seconds;
# 5. enables and starts servcraftd (restarts it when the binary, unit, settings, image
#    archive or toolchain changed: sessions survive a restart), waits for GET /readyz
#    and prints the service's status.
#
# Running it again is safe: what is already in place is left alone.
#
# Options:
#   --binary FILE          servcraftd to install (default: bin/servcraftd of this checkout)
#   --prefix DIR           install the binary as DIR/bin/servcraftd (default /usr/local);
#                          the installed unit's ExecStart follows
#   --set NAME=VALUE       set SERVCRAFT_* variable NAME in the env file (repeatable)
#   --image-archive FILE   use this prebuilt node20.tar (scripts/build-image.sh) instead of
#                          building one (then Go is not needed)
#   --no-build             build neither image nor toolchain (they must be in place)
#   --no-start             install and enable, but start or restart nothing
#   --destdir DIR          stage every file under DIR and touch nothing else: no packages,
#                          no systemctl, no root needed (packaging, tests)
#   READY_TIMEOUT=SECONDS  how long to wait for /readyz (default 180: the first start may
#                          try to pull the session image, for up to --pull-timeout)
set -euo pipefail
umask 022

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_TAG=install
# shellcheck source=deploy/lib.sh
. "$REPO_ROOT/deploy/lib.sh"

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

binary="$REPO_ROOT/bin/servcraftd"
prefix=/usr/local
destdir=
start=1
build=1
image_archive=
sets=()
while [ $# -gt 0 ]; do
	case "$1" in
	--binary) binary="${2:?--binary needs a file}"; shift 2 ;;
	--binary=*) binary="${1#*=}"; shift ;;
	--prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
	--prefix=*) prefix="${1#*=}"; shift ;;
	--set) sets+=("${2:?--set needs NAME=VALUE}"); shift 2 ;;
	--set=*) sets+=("${1#*=}"); shift ;;
	--image-archive) image_archive="${2:?--image-archive needs a file}"; shift 2 ;;
	--image-archive=*) image_archive="${1#*=}"; shift ;;
	--destdir) destdir="${2:?--destdir needs a folder}"; shift 2 ;;
	--destdir=*) destdir="${1#*=}"; shift ;;
	--no-build) build=0; shift ;;
	--no-start) start=0; shift ;;
	-h | --help) usage 0 ;;
	*) log "unknown option $1"; usage 2 >&2 ;;
	esac
done
for s in ${sets[@]+"${sets[@]}"}; do
	[[ "$s" =~ ^SERVCRAFT_[A-Z0-9_]+= && "$s" != *$'\n'* ]] || die "--set $s: want SERVCRAFT_NAME=value"
done
case "$prefix" in /*) ;; *) die "--prefix $prefix: not an absolute path" ;; esac
prefix="${prefix%/}"
if [ -n "$destdir" ]; then
	mkdir -p "$destdir"
	destdir="$(cd "$destdir" && pwd)"
	[ "$destdir" != / ] || destdir=
fi
[ -n "$destdir" ] || [ "$(id -u)" = 0 ] || die "run as root (or stage with --destdir)"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

BIN="$destdir$prefix/bin/servcraftd"
UNIT="$destdir/etc/systemd/system/$UNIT_NAME"
ENV_FILE="$destdir/etc/servcraftd/servcraftd.env"
STATE="$destdir/var/lib/servcraftd"
ARCHIVE="$STATE/image/node20.tar"
TOOLCHAIN="$STATE/toolchain"
staged() { [ -n "$destdir" ]; }
use_systemd() { ! staged && systemd_running; }

check_binary "$binary"
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
spawner="$(spawner_beside "$binary")"
[ -z "$image_archive" ] || [ -s "$image_archive" ] || die "--image-archive $image_archive: no such file"

# --- 1. packages ---------------------------------------------------------------------
# command:package pairs; a package is installed only when its command is missing.
install_packages() {
	local pairs=(containerd:containerd ctr:containerd runc:runc tini-static:tini
		mkfs.ext4:e2fsprogs mount:mount curl:curl)
	if ((build)); then
		# busybox: the dynamic busybox package also provides the command, and
		# conflicts with busybox-static: either is fine.
		pairs+=(busybox:busybox-static npm:npm node:nodejs)
	fi
	local need=() pair cmd pkg
	for pair in "${pairs[@]}"; do
		cmd=${pair%%:*} pkg=${pair##*:}
		command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
	done
	[ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
	((${#need[@]})) || return 0
	mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
	command -v apt-get >/dev/null || die "missing ${need[*]}, and no apt-get to install them"
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
if staged; then
	log "staging under $destdir: no packages, no systemctl"
else
	install_packages
fi

# --- 2. containerd -------------------------------------------------------------------
if use_systemd; then
	if ((start)); then
		systemctl enable --now --quiet containerd.service
	else
		systemctl enable --quiet containerd.service
	fi
elif ! staged; then
	log "systemd is not running here: installing files only (start containerd and servcraftd yourself)"
fi

# --- 3. binary, unit, settings -------------------------------------------------------
changed=()
if put_file "$binary" "$BIN" 0755; then
	changed+=(binary)
	log "installed $BIN"
fi
# The spawner each new session container runs (servcraftd --spawner auto finds it beside itself).
if put_file "$spawner" "$(dirname "$BIN")/servcraft-spawner" 0755; then
	changed+=(spawner)
	log "installed $(dirname "$BIN")/servcraft-spawner"
fi
unit_tmp="$(mktemp)"
trap 'rm -f "$unit_tmp"' EXIT
render_unit "$REPO_ROOT/deploy/$UNIT_NAME" "$prefix" >"$unit_tmp"
unit_changed=0
if put_file "$unit_tmp" "$UNIT" 0644; then
	changed+=(unit)
	unit_changed=1
	log "installed $UNIT"
fi
mkdir -p "$(dirname "$ENV_FILE")"
if [ ! -e "$ENV_FILE" ]; then
	# 0640: the settings may come to hold secrets (a registry URL with a token).
	install -m 0640 "$REPO_ROOT/deploy/servcraftd.env.example" "$ENV_FILE"
	log "created $ENV_FILE (edit it, then: systemctl restart servcraftd)"
fi
for s in ${sets[@]+"${sets[@]}"}; do
	if env_set "$ENV_FILE" "${s%%=*}" "${s#*=}"; then
		changed+=("${s%%=*}")
		log "set ${s%%=*} in $ENV_FILE"
	fi
done

# --- 4. offline image and TypeScript toolchain ---------------------------------------
# The unit points the daemon at these paths (SERVCRAFT_FALLBACK_ARCHIVE,
# SERVCRAFT_TOOLCHAIN_DIR). A changed archive is imported at the next start.
install -d -m 0711 "$STATE"
fingerprint() { stat -c '%s %Y %i' "$@" 2>/dev/null || true; }
before="$(fingerprint "$ARCHIVE" "$TOOLCHAIN/.stamp")"
if [ -n "$image_archive" ]; then
	if put_file "$image_archive" "$ARCHIVE" 0644; then
		log "copied $image_archive to $ARCHIVE"
	fi
elif ((build)); then
	command -v go >/dev/null || die "Go is needed to build the offline image (install Go 1.26 at /usr/local/go, or pass --image-archive FILE or --no-build)"
	OUT="$STATE/image" "$REPO_ROOT/scripts/build-image.sh" >/dev/null
fi
if ((build)); then
	if [ -d "$TOOLCHAIN" ] && use_systemd && systemctl is-active --quiet "$UNIT_NAME"; then
		# build-toolchain.sh replaces the folder only when its stamp (tsx version, host
		# node version) changed; running sessions keep the old, emptied folder mounted.
		log "note: if the toolchain is rebuilt now, running sessions lose TypeScript until recreated"
	fi
	OUT="$TOOLCHAIN" "$REPO_ROOT/scripts/build-toolchain.sh" >/dev/null
fi
if [ "$before" != "$(fingerprint "$ARCHIVE" "$TOOLCHAIN/.stamp")" ]; then
	changed+=(image/toolchain)
fi
[ -s "$ARCHIVE" ] || log "warning: no $ARCHIVE: without registry access the daemon has no session image"
[ -f "$TOOLCHAIN/node_modules/tsx/dist/loader.mjs" ] ||
	log "warning: no toolchain in $TOOLCHAIN: the daemon will not start until it is built or SERVCRAFT_TOOLCHAIN_DIR= is set empty"

# --- 5. service ----------------------------------------------------------------------
if staged; then
	log "staged in $destdir${changed[*]:+ (changed: ${changed[*]})}"
	exit 0
fi
if ! use_systemd; then
	log "done${changed[*]:+ (changed: ${changed[*]})}; start: $BIN (with the SERVCRAFT_* settings of $ENV_FILE)"
	exit 0
fi
if ((unit_changed)); then
	systemctl daemon-reload
fi
systemctl enable --quiet "$UNIT_NAME"
if ((!start)); then
	log "installed and enabled, not started (--no-start)${changed[*]:+; changed: ${changed[*]}}"
	exit 0
fi
if systemctl is-active --quiet "$UNIT_NAME"; then
	if ((${#changed[@]})); then
		# Sessions survive: the daemon keeps them in bbolt, containerd keeps their
		# containers running, and the next start reconciles the two.
		log "restarting $UNIT_NAME (changed: ${changed[*]}); sessions keep running"
		systemctl restart "$UNIT_NAME"
	else
		log "$UNIT_NAME is running and nothing changed"
	fi
else
	systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
	log "starting $UNIT_NAME"
	systemctl start "$UNIT_NAME"
fi
if ! wait_ready "$(api_url "$ENV_FILE")" "${READY_TIMEOUT:-180}"; then
	show_failure
	exit 1
fi
systemctl --no-pager --lines=5 status "$UNIT_NAME" || true
