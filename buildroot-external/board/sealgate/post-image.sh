#!/bin/sh
# Buildroot post-image script (BR2_ROOTFS_POST_IMAGE_SCRIPT), also run by the
# offline Debian build. $1 (or BINARIES_DIR) holds rootfs.squashfs, the
# kernel (bzImage, or efi-part/sealgate/linux already staged), an optional
# initrd and efi-part/EFI/BOOT/BOOTX64.EFI (systemd-boot). It writes the
# systemd-boot entry from cmdline.txt and assembles the GPT disk with
# genimage.cfg into $BINARIES_DIR/sealgate-x86_64.img.
set -eu

BINARIES_DIR=${1:-${BINARIES_DIR:?}}
BOARD_DIR=$(cd "$(dirname "$0")" && pwd)
esp="$BINARIES_DIR/efi-part"

mkdir -p "$esp/sealgate" "$esp/loader/entries" "$esp/EFI/BOOT"
if [ ! -e "$esp/sealgate/linux" ]; then
	cp "$BINARIES_DIR/bzImage" "$esp/sealgate/linux"
fi
# Buildroot's systemd-boot names the loader in lower case.
if [ -e "$esp/EFI/BOOT/bootx64.efi" ] && [ ! -e "$esp/EFI/BOOT/BOOTX64.EFI" ]; then
	mv "$esp/EFI/BOOT/bootx64.efi" "$esp/EFI/BOOT/BOOTX64.EFI"
fi
rm -f "$esp/loader/entries/buildroot.conf"

cat > "$esp/loader/loader.conf" <<-CONF
	default sealgate.conf
	timeout 0
	editor no
CONF
{
	echo "title Sealgate"
	echo "linux /sealgate/linux"
	if [ -e "$esp/sealgate/initrd" ]; then
		echo "initrd /sealgate/initrd"
	fi
	echo "options $(cat "$BOARD_DIR/cmdline.txt")"
} > "$esp/loader/entries/sealgate.conf"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root"
genimage \
	--rootpath "$tmp/root" \
	--tmppath "$tmp/genimage" \
	--inputpath "$BINARIES_DIR" \
	--outputpath "$BINARIES_DIR" \
	--config "$BOARD_DIR/genimage.cfg"
