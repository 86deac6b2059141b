#!/bin/sh
# Buildroot post-image script (BR2_ROOTFS_POST_IMAGE_SCRIPT), also run by the
# offline Debian build. $1 (or BINARIES_DIR) holds rootfs.squashfs, GRUB's
# BIOS core (grub.img) and EFI application (efi-part/EFI/BOOT/bootx64.efi)
# and optionally GRUB's boot sector (boot.img, else taken from HOST_DIR).
# Steps (lib.sh): the ESP with the A/B boot menu and slot state, GRUB's
# BIOS boot code, the GPT disk (genimage.cfg); in Buildroot, the live
# medium: its ISO (rootfs.iso9660) gets the ISO's GRUB images and the
# installer's files; and, when a signing key is given, the signed RAUC
# update bundle of this root:
#   SEALGATE_RAUC_CERT, SEALGATE_RAUC_KEY   signing certificate and key
#                                           (file or PKCS#11 URI)
# The bundle's version is the image's (post-build.sh wrote it into the root).
set -eu

BINARIES_DIR=${1:-${BINARIES_DIR:?}}
SEALGATE_BOARD_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$SEALGATE_BOARD_DIR/lib.sh"

if [ ! -e "$BINARIES_DIR/boot.img" ]; then
	cp "${HOST_DIR:?}/lib/grub/i386-pc/boot.img" "$BINARIES_DIR/boot.img"
fi

sealgate_log "ESP: boot menu and slot state"
sealgate_esp "$BINARIES_DIR"
sealgate_log "BIOS boot code"
sealgate_bios_boot "$BINARIES_DIR"
sealgate_log "disk image"
sealgate_disk_image "$BINARIES_DIR"

if [ -e "$BINARIES_DIR/rootfs.iso9660" ]; then
	sealgate_log "live medium: sealgate-x86_64.iso"
	iso_date=$(date -u +%Y%m%d%H%M%S00)
	grub_build=$(find "${BUILD_DIR:?}" -maxdepth 1 -type d -name 'grub2-*' | head -n 1)
	sealgate_iso_grub "$grub_build/build-i386-pc/grub-core" "$grub_build/build-x86_64-efi/grub-core" \
		"$BINARIES_DIR" "$(sealgate_iso_uuid "$iso_date")"
	rm -rf "$BINARIES_DIR/installer"
	sealgate_installer_payload "$BINARIES_DIR" "$BINARIES_DIR/installer"
	cp "$BINARIES_DIR/rootfs.squashfs" "$BINARIES_DIR/installer/"
	rm -f "$BINARIES_DIR/sealgate-x86_64.iso"
	xorriso -indev "$BINARIES_DIR/rootfs.iso9660" -outdev "$BINARIES_DIR/sealgate-x86_64.iso" \
		-volid SEALGATE -volume_date uuid "$iso_date" \
		-map "$BINARIES_DIR/iso-eltorito.img" /boot/grub/grub-eltorito.img \
		-map "$BINARIES_DIR/iso-efi.img" /boot/fat.efi \
		-map "$BINARIES_DIR/installer" /sealgate \
		-boot_image any replay
fi

if [ -n "${SEALGATE_RAUC_CERT:-}" ] && [ -n "${SEALGATE_RAUC_KEY:-}" ]; then
	version=$(cat "${TARGET_DIR:?}/etc/sealgate/image-version")
	sealgate_log "update bundle $version"
	sealgate_bundle "$BINARIES_DIR/rootfs.squashfs" "$version" \
		"$BINARIES_DIR/sealgate-x86_64-$version.raucb" \
		"$SEALGATE_RAUC_CERT" "$SEALGATE_RAUC_KEY"
else
	sealgate_log "no SEALGATE_RAUC_CERT/SEALGATE_RAUC_KEY: no update bundle"
fi
