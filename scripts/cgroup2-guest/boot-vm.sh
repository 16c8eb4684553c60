#!/usr/bin/env bash
# Boot the guest: 2 vCPUs, 4 GiB, no network, serial console to $W/serial.log, $W/share
# exported over 9p (tag "host": the guest reads a run.sh override from it and writes out/).
# Runs in the foreground until the guest powers off (or TIMEOUT seconds pass).
#   W=<work folder> [ACCEL=kvm|tcg] scripts/cgroup2-guest/boot-vm.sh
set -euo pipefail
W=${W:?set W to a work folder}
ACCEL=${ACCEL:-tcg,thread=multi,tb-size=512}
CPU=${CPU:-max}
[[ "$ACCEL" == kvm* ]] && CPU=${CPU_KVM:-host}
mkdir -p "$W/share/out"
exec timeout "${TIMEOUT:-7200}" qemu-system-x86_64 -name cg2 -accel "$ACCEL" -cpu "$CPU" -smp 2 -m 4096 \
	-nodefaults -display none -no-reboot -nic none \
	-kernel "$W/vmlinuz" -initrd "$W/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.unified_cgroup_hierarchy=1" \
	-drive file="$W/disk.img",format=raw,if=virtio \
	-virtfs local,path="$W/share",mount_tag=host,security_model=none,id=host \
	-device virtio-rng-pci \
	-serial file:"$W/serial.log" -pidfile "$W/qemu.pid"
