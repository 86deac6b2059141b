#!/bin/sh
# Buildroot post-build script (BR2_ROOTFS_POST_BUILD_SCRIPT), also run by the
# offline Debian build (image/build.sh) on its staged root. $1 (or
# TARGET_DIR) is the root file system. It enables the appliance's units and
# prepares the root for being read-only.
set -eu

TARGET_DIR=${1:-${TARGET_DIR:?}}
units="$TARGET_DIR/etc/systemd/system"

enable_unit() { # enable_unit TARGET UNIT [FILE]
	mkdir -p "$units/$1.wants"
	ln -sfn "/usr/lib/systemd/system/${3:-$2}" "$units/$1.wants/$2"
}
mask() {
	rm -f "$units/$1"
	ln -sfn /dev/null "$units/$1"
}

enable_unit multi-user.target sealgate.service
enable_unit multi-user.target sealgate-firstboot.service
enable_unit local-fs.target sealgate-factory-reset.service
enable_unit sysinit.target sealgate-growpart.service
enable_unit sysinit.target sealgate-network.service
enable_unit getty.target sealgate-console@ttyS0.service sealgate-console@.service
enable_unit getty.target sealgate-console@tty1.service sealgate-console@.service
enable_unit multi-user.target systemd-networkd.service
enable_unit sockets.target systemd-networkd.socket
enable_unit network-online.target systemd-networkd-wait-online.service
enable_unit multi-user.target systemd-resolved.service

# The recovery menu replaces the login prompts.
rm -f "$units/getty.target.wants/getty@tty1.service"
mask serial-getty@ttyS0.service
mask getty@tty1.service

# Read-only root: an empty machine-id makes systemd use a transient one;
# resolv.conf points into /run.
: > "$TARGET_DIR/etc/machine-id"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$TARGET_DIR/etc/resolv.conf"
mkdir -p "$TARGET_DIR/var/lib/sealgate"
