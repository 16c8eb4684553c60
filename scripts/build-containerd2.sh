#!/usr/bin/env bash
# Build containerd 2.x (containerd, its runc shim, ctr) and runc 1.5 from
# their Go modules into ${SERVCRAFT_STATE:-$PWD/.servcraft}/containerd2/bin,
# for the test matrix (`make test CONTAINERD=2`). Cached: a second run with
# the same versions does nothing. Prints the bin folder on its last line.
#
#   CONTAINERD2_VERSION  containerd module version (default: the one go.mod uses)
#   RUNC_VERSION         runc module version
#
# runc needs cgo and libseccomp (apt-get install libseccomp-dev pkg-config,
# done here when missing): without seccomp it could not filter system calls.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_PARENT="${SERVCRAFT_STATE:-$PWD/.servcraft}"
BIN="$STATE_PARENT/containerd2/bin"
GO="${GO:-go}"
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
CONTAINERD2_VERSION="${CONTAINERD2_VERSION:-$(cd "$REPO_ROOT" && "$GO" list -m -f '{{.Version}}' github.com/containerd/containerd/v2)}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
stamp="$BIN/.versions"
want="containerd $CONTAINERD2_VERSION runc $RUNC_VERSION"

log() { echo "build-containerd2: $*" >&2; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
	[ -x "$BIN/containerd" ] && [ -x "$BIN/containerd-shim-runc-v2" ] && [ -x "$BIN/ctr" ] && [ -x "$BIN/runc" ]; then
	log "cached: $want"
	echo "$BIN"
	exit 0
fi
if ! pkg-config --exists libseccomp 2>/dev/null; then
	log "installing libseccomp-dev pkg-config (runc's seccomp)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends libseccomp-dev pkg-config >/dev/null
fi
mkdir -p "$BIN"
rm -f "$stamp"
log "building containerd $CONTAINERD2_VERSION (containerd, containerd-shim-runc-v2, ctr) into $BIN"
# Outside the module: go install of a version builds it with its own go.mod.
(cd / && GOBIN="$BIN" CGO_ENABLED=1 "$GO" install \
	"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION" \
	"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION")
log "building runc $RUNC_VERSION with seccomp into $BIN"
(cd / && GOBIN="$BIN" CGO_ENABLED=1 "$GO" install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION")
"$BIN/runc" --version | grep -q '^libseccomp:' || { log "runc $RUNC_VERSION was built without libseccomp"; exit 1; }
echo "$want" >"$stamp"
log "built: $("$BIN/containerd" --version | head -1); $("$BIN/runc" --version | head -1)"
echo "$BIN"
