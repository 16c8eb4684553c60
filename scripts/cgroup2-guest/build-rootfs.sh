#!/usr/bin/env bash
# Build a Debian 12 root filesystem with debootstrap from the host's own Debian mirror.
#   W=<work folder> scripts/cgroup2-guest/build-rootfs.sh
set -euo pipefail
W=${W:?set W to a work folder}
ROOT=$W/rootfs
# The host's mirror: the first URIs of a deb822 source, else the first deb line.
MIRROR=${MIRROR:-$(
	{ sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null
	  sed -n 's/^deb \+\(\[[^]]*\] \+\)\?\([^ ]*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null; } | grep -v security | head -1 || true
)}
[ -n "$MIRROR" ] || { echo "build-rootfs: no Debian mirror in the host's apt sources (set MIRROR)" >&2; exit 1; }
PKGS=linux-image-amd64,initramfs-tools,systemd-sysv,udev,kmod,containerd,runc,tini,busybox-static,e2fsprogs,iproute2,util-linux,mount,procps,ca-certificates,curl,jq
if [ -f "$ROOT/.complete" ]; then echo "rootfs cached: $ROOT" >&2; exit 0; fi
rm -rf "$ROOT"; mkdir -p "$ROOT"
debootstrap --variant=minbase --include="$PKGS" bookworm "$ROOT" "$MIRROR" >"$W/debootstrap.log" 2>&1 ||
	{ tail -20 "$W/debootstrap.log" >&2; exit 1; }
echo "deb $MIRROR bookworm main" >"$ROOT/etc/apt/sources.list"
echo cg2guest >"$ROOT/etc/hostname"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$ROOT/etc/fstab"
chroot "$ROOT" passwd -d root >/dev/null
chroot "$ROOT" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
touch "$ROOT/.complete"
echo "rootfs ready: $ROOT" >&2
