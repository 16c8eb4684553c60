#!/usr/bin/env bash
# Put the daemon, the spawner, the offline image, the toolchain, the runtime and workspace test binaries, the
# source tree and the boot-time driver into the root filesystem, and make the ext4 disk image
# from it (mkfs.ext4 -d: no loop mount). Also copies out the guest's kernel and initrd.
#   W=<work folder> SRC=<checkout, built: make build image> scripts/cgroup2-guest/make-image.sh
set -euo pipefail
W=${W:?set W to a work folder}
SRC=${SRC:?the project checkout}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT=$W/rootfs
SIZE=${SIZE:-8G}
O=$ROOT/opt/cg2
rm -rf "$O"; mkdir -p "$O/out" "$O/src"
install -m 0755 "$SRC/bin/servcraftd" "$SRC/bin/servcraft-spawner" "$O/"
cp "$SRC/.servcraft/image/node20.tar" "$O/node20.tar"
cp -rL "$SRC/.servcraft/toolchain" "$O/toolchain"
(cd "$SRC" && /usr/local/go/bin/go test -c -o "$O/runtime.test" ./runtime)
(cd "$SRC" && /usr/local/go/bin/go test -c -o "$O/workspace.test" ./snapshots/workspace)
# runtimetest looks for go.mod above the working folder.
(cd "$SRC" && git ls-files -z | xargs -0 tar -cf - 2>/dev/null) | tar -C "$O/src" -xf -
install -m 0755 "$HERE/guest/boot.sh" "$HERE/guest/run.sh" "$O/"
install -m 0644 "$HERE/guest/cg2-test.service" "$ROOT/etc/systemd/system/cg2-test.service"
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants" "$ROOT/mnt/host"
ln -sf /etc/systemd/system/cg2-test.service "$ROOT/etc/systemd/system/multi-user.target.wants/cg2-test.service"
ln -sf /lib/systemd/system/containerd.service "$ROOT/etc/systemd/system/multi-user.target.wants/containerd.service"
cp "$ROOT"/boot/vmlinuz-* "$W/vmlinuz"; cp "$ROOT"/boot/initrd.img-* "$W/initrd.img"
rm -f "$W/disk.img"
mkfs.ext4 -q -F -L cg2root -d "$ROOT" "$W/disk.img" "$SIZE"
echo "disk image ready: $W/disk.img" >&2
