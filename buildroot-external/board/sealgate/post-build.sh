#!/bin/sh
# Buildroot post-build script (BR2_ROOTFS_POST_BUILD_SCRIPT), also run by the
# offline Debian build (image/build.sh) on its staged root. $1 (or
# TARGET_DIR) is the root file system. It enables the appliance's units,
# puts the kernel and initrd where the boot menu looks for them, installs
# the keyring that update bundles must be signed for, and prepares the root
# for being read-only.
#   SEALGATE_RAUC_KEYRING  CA certificate(s) (PEM) bundles are verified
#                          against; required
#   SEALGATE_IMAGE_VERSION version shown on the console and recorded in the
#                          update bundle (default: the build's date)
set -eu

TARGET_DIR=${1:-${TARGET_DIR:?}}
SEALGATE_BOARD_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$SEALGATE_BOARD_DIR/lib.sh"
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
enable_unit multi-user.target sealgate-migrate.service
enable_unit multi-user.target sealgate-boot-ok.service
enable_unit local-fs.target sealgate-factory-reset.service
enable_unit sysinit.target sealgate-growpart.service
enable_unit sysinit.target sealgate-network.service
enable_unit getty.target sealgate-console@ttyS0.service sealgate-console@.service
enable_unit getty.target sealgate-console@tty1.service sealgate-console@.service
enable_unit multi-user.target systemd-networkd.service
enable_unit sockets.target systemd-networkd.socket
enable_unit network-online.target systemd-networkd-wait-online.service
enable_unit multi-user.target systemd-resolved.service
enable_unit sysinit.target systemd-timesyncd.service

# The recovery menu replaces the login prompts.
rm -f "$units/getty.target.wants/getty@tty1.service"
mask serial-getty@ttyS0.service
mask getty@tty1.service

# The kernel and initrd travel inside the root (one image per slot).
sealgate_boot_layout "$TARGET_DIR"

# Update bundles are accepted only when signed for this keyring.
install -D -m 0644 "${SEALGATE_RAUC_KEYRING:?the RAUC keyring (CA certificate) is a build input}" \
	"$TARGET_DIR/etc/rauc/keyring.pem"
printf '%s\n' "${SEALGATE_IMAGE_VERSION:-$(date -u +%Y%m%d%H%M)}" > "$TARGET_DIR/etc/sealgate/image-version"

# Read-only root: an empty machine-id makes systemd use a transient one;
# resolv.conf points into /run; mount points for the data partition and
# the ESP (RAUC switches slots in its grubenv).
: > "$TARGET_DIR/etc/machine-id"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$TARGET_DIR/etc/resolv.conf"
mkdir -p "$TARGET_DIR/var/lib/sealgate" "$TARGET_DIR/efi"
