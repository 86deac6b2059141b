#!/bin/bash
# Offline appliance build: the same disk as the Buildroot recipe in
# buildroot-external/, assembled from Debian 12 packages so CI can build and
# boot it without Buildroot's downloads.
#
# Steps (nothing is loop-mounted; the host kernel cannot mount vfat):
#   1. base root file system with mmdebstrap (cached by package list, the
#      initramfs additions and this script's base recipe, outside the clone)
#   2. shared board overlay + release sealgate binary + post-build.sh
#   3. read-only squashfs root (kernel and initrd inside, in /boot)
#   4. GRUB images for BIOS, UEFI and CD (what Buildroot's grub2 package
#      makes), then the board's post-image.sh: ESP with the A/B boot menu,
#      BIOS boot code, genimage disk, signed RAUC bundle
#   5. the hybrid ISO (BIOS and UEFI, CD and USB stick): live system and
#      installer, carrying the same root squashfs
#   6. qcow2 copy, kernel and initrd next to it for direct kernel boot
#
# Environment:
#   SEALGATE_BIN          use this binary instead of building one
#   SEALGATE_IMAGE_OUT    output directory (default: image/out)
#   SEALGATE_IMAGE_CACHE  cache directory (default: /var/cache/sealgate-image)
#   SEALGATE_IMAGE_VERSION  image and bundle version (default: crate version
#                         + git commit)
#   SEALGATE_RAUC_CERT, SEALGATE_RAUC_KEY, SEALGATE_RAUC_KEYRING
#                         release signing certificate, key (file or PKCS#11
#                         URI) and the CA keyring the image trusts; without
#                         them a development CA in the cache dir is used
#                         (made by image/rauc-keys on first use)
#   SQUASHFS_LEVEL        gzip level of the root squashfs (default 9;
#                         scripts/test-image builds with 1)
#   SEALGATE_TEST_BUNDLES=1  also write the bundles the image tests install
#                         into out/test/ (see tests/image/)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
board="$repo/buildroot-external/board/sealgate"
out=${SEALGATE_IMAGE_OUT:-$repo/image/out}
cache=${SEALGATE_IMAGE_CACHE:-/var/cache/sealgate-image}
suite=bookworm
mirror=${SEALGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
iso_label=SEALGATE

# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
export SEALGATE_BOARD_DIR="$board"
# shellcheck source=buildroot-external/board/sealgate/lib.sh
. "$board/lib.sh"

log() { printf '==> %s\n' "$*" >&2; }

build_binary() {
	if [ -n "${SEALGATE_BIN:-}" ]; then
		printf '%s\n' "$SEALGATE_BIN"
		return
	fi
	log "building the release sealgate binary"
	(cd "$repo" && cargo build --release -p sealgate >&2)
	printf '%s\n' "${CARGO_TARGET_DIR:-$repo/target}/release/sealgate"
}

image_version() {
	if [ -n "${SEALGATE_IMAGE_VERSION:-}" ]; then
		printf '%s\n' "$SEALGATE_IMAGE_VERSION"
		return
	fi
	local crate commit
	crate=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" "$repo/daemon/Cargo.toml" | head -n 1)
	commit=$(git -C "$repo" rev-parse --short=10 HEAD 2>/dev/null || date -u +%Y%m%d%H%M)
	if ! git -C "$repo" diff --quiet HEAD 2>/dev/null; then
		commit="$commit.dirty"
	fi
	printf '%s+%s\n' "${crate:-0.0.0}" "$commit"
}

# The base recipe: what goes into the cached tarball. Keep every input of
# the base in this function, packages.list or image/initramfs/ so the cache
# key covers it.
# shellcheck disable=SC2016 # the hooks expand $1 inside mmdebstrap
base_recipe() {
	local dest=$1 packages
	packages=$(grep -v '^#' "$repo/image/packages.list" | grep -v '^$' | paste -sd, -)
	mmdebstrap --variant=minbase --mode=root --format=tar \
		--include="$packages" \
		--aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--setup-hook='mkdir -p "$1/etc/initramfs-tools"' \
		--setup-hook='printf "%s\n" squashfs virtio_blk virtio_pci virtio_scsi sd_mod ahci nvme ext4 > "$1/etc/initramfs-tools/modules"' \
		--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"' \
		--setup-hook='echo COMPRESS=gzip > "$1/etc/initramfs-tools/conf.d/sealgate"' \
		--customize-hook="copy-in $repo/image/initramfs/hooks/sealgate-live /etc/initramfs-tools/hooks" \
		--customize-hook="copy-in $repo/image/initramfs/scripts/sealgate-live /etc/initramfs-tools/scripts" \
		--customize-hook='chroot "$1" update-initramfs -u -k all' \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
		"$suite" "$dest" "$mirror"
}

base_tarball() {
	local key tar
	key=$( {
		cat "$repo/image/packages.list" "$repo"/image/initramfs/*/*
		declare -f base_recipe
		echo "$suite"
	} | sha256sum | cut -c1-16)
	tar="$cache/base-$suite-$key.tar"
	if [ ! -s "$tar" ]; then
		mkdir -p "$cache"
		log "building base root file system (cache miss: $tar)"
		base_recipe "$tar.tmp" >&2
		mv "$tar.tmp" "$tar"
	else
		log "base root file system from cache: $tar"
	fi
	printf '%s\n' "$tar"
}

# Signing material: the release's when given, else the development CA.
signing_keys() {
	if [ -n "${SEALGATE_RAUC_CERT:-}" ] || [ -n "${SEALGATE_RAUC_KEY:-}" ] || [ -n "${SEALGATE_RAUC_KEYRING:-}" ]; then
		: "${SEALGATE_RAUC_CERT:?SEALGATE_RAUC_CERT, _KEY and _KEYRING go together}"
		: "${SEALGATE_RAUC_KEY:?SEALGATE_RAUC_CERT, _KEY and _KEYRING go together}"
		: "${SEALGATE_RAUC_KEYRING:?SEALGATE_RAUC_CERT, _KEY and _KEYRING go together}"
		log "signing with the given key; the image trusts $SEALGATE_RAUC_KEYRING"
	else
		local dev="$cache/rauc-dev"
		[ -s "$dev/keyring.pem" ] || "$repo/image/rauc-keys" "$dev" "Sealgate development" >&2
		export SEALGATE_RAUC_CERT="$dev/signing.cert.pem"
		export SEALGATE_RAUC_KEY="$dev/signing.key.pem"
		export SEALGATE_RAUC_KEYRING="$dev/keyring.pem"
		log "signing with the development CA in $dev (not for release)"
	fi
}

# Kernel modules no mail gateway uses (sound, video capture, Wi-Fi,
# Bluetooth, InfiniBand, industrial I/O, gaming GPUs, staging): Debian's
# generic kernel carries them; the appliance's root and updates need not.
prune_modules() {
	local root=$1 dir version
	for dir in "$root"/usr/lib/modules/*/; do
		version=$(basename "$dir")
		(
			cd "$dir/kernel"
			rm -rf sound drivers/media drivers/net/wireless drivers/bluetooth net/bluetooth \
				net/mac80211 net/wireless drivers/infiniband drivers/iio drivers/comedi \
				drivers/staging drivers/gpu/drm/amd drivers/gpu/drm/nouveau drivers/gpu/drm/radeon \
				drivers/isdn drivers/net/can net/can
		)
		chroot "$root" depmod -a "$version"
	done
}

squashfs() { # squashfs ROOTFS OUT [PATH...]: the root, without PATHs
	local src=$1 dest=$2
	shift 2
	# gzip: GRUB 2.06 reads the kernel from this file system, and reads no
	# zstd. -e takes every name after it, so it comes last.
	nice -n 10 mksquashfs "$src" "$dest" -comp gzip -Xcompression-level "${SQUASHFS_LEVEL:-9}" \
		-noappend -quiet -wildcards -e 'var/cache/*' 'var/lib/apt/*' "$@" >&2
}

# GRUB from Debian for the disk, as Buildroot's grub2 package builds it
# (BR2_TARGET_GRUB2_*), with every module the menus use built in (no module
# directory on the ESP):
#   efi-part/EFI/BOOT/bootx64.efi  UEFI; its menu is next to it on the ESP
#   grub.img, boot.img             BIOS core and boot sector; the core reads
#                                  the menu on the ESP, partition 2 of the
#                                  disk it was loaded from
# The ISO's GRUB images come from the board library (sealgate_iso_grub).
grub_images() {
	local work=$1
	mkdir -p "$work/efi-part/EFI/BOOT"
	# shellcheck disable=SC2086 # module names are words
	grub-mkimage -O x86_64-efi -p /EFI/BOOT \
		-o "$work/efi-part/EFI/BOOT/bootx64.efi" $SEALGATE_GRUB_MODULES efi_gop
	# shellcheck disable=SC2086
	grub-mkimage -O i386-pc -p '(,gpt2)/boot/grub' -o "$work/grub.img" $SEALGATE_GRUB_MODULES biosdisk
	cp /usr/lib/grub/i386-pc/boot.img "$work/boot.img"
}

# The hybrid ISO: GRUB for BIOS (El Torito, and the MBR of a USB stick) and
# UEFI (El Torito EFI image, also a partition on a USB stick), the boot
# menu, the root squashfs and the installer's payload. ISO_DATE
# (YYYYMMDDhhmmsscc) becomes the volume's UUID for GRUB.
iso_image() {
	local work=$1 dest=$2 iso_date=$3 iso="$1/iso" cmdline iso_uuid
	iso_uuid=$(sealgate_iso_uuid "$iso_date")
	rm -rf "$iso"
	mkdir -p "$iso/boot/grub/i386-pc" "$iso/sealgate"
	cmdline=$(sealgate_cmdline)
	sed -e "s|@CMDLINE@|$cmdline|" -e "s|@LABEL@|$iso_label|" "$board/grub/iso.cfg" > "$iso/boot/grub/grub.cfg"
	sealgate_iso_grub /usr/lib/grub/i386-pc /usr/lib/grub/x86_64-efi "$work" "$iso_uuid"
	cp "$work/iso-eltorito.img" "$iso/boot/grub/i386-pc/eltorito.img"
	cp "$work/iso-efi.img" "$iso/boot/efi.img"
	ln "$work/rootfs.squashfs" "$iso/sealgate/rootfs.squashfs"
	sealgate_installer_payload "$work" "$iso/sealgate"
	xorriso -as mkisofs -quiet -iso-level 3 -full-iso9660-filenames -R -J \
		-V "$iso_label" --modification-date="$iso_date" \
		-b boot/grub/i386-pc/eltorito.img -no-emul-boot -boot-load-size 4 \
		-boot-info-table --grub2-boot-info \
		--grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
		-eltorito-alt-boot -e boot/efi.img -no-emul-boot \
		-efi-boot-part --efi-boot-image --protective-msdos-label \
		-o "$dest" "$iso" >&2
}

# Bundles the image tests install (tests/image/test_appliance.py):
#   update.raucb     a newer root: another version and one data migration
#   broken.raucb     a root whose gateway cannot start (no sealgate binary)
#   untrusted.raucb  a small bundle signed by a CA the image does not trust
test_bundles() {
	local work=$1 version=$2 dest="$out/test" untrusted="$1/untrusted-ca"
	log "test bundles in $dest"
	rm -rf "$dest"
	mkdir -p "$dest"
	local step="$work/rootfs/usr/lib/sealgate/migrations/0001-update-test"
	cat > "$step" <<-'STEP'
	#!/bin/sh
	# Test migration (update.raucb only): proves a step runs once.
	echo "applied $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$1/update-test-migration"
	STEP
	chmod +x "$step"
	printf '%s\n' "$version+update" > "$work/rootfs/etc/sealgate/image-version"
	# Test roots only: the fastest gzip level keeps the test build short.
	SQUASHFS_LEVEL=1 squashfs "$work/rootfs" "$work/update.squashfs"
	sealgate_bundle "$work/update.squashfs" "$version+update" "$dest/update.raucb" \
		"$SEALGATE_RAUC_CERT" "$SEALGATE_RAUC_KEY"
	rm -f "$work/update.squashfs" "$step"

	printf '%s\n' "$version+broken" > "$work/rootfs/etc/sealgate/image-version"
	SQUASHFS_LEVEL=1 squashfs "$work/rootfs" "$work/broken.squashfs" usr/bin/sealgate
	sealgate_bundle "$work/broken.squashfs" "$version+broken" "$dest/broken.raucb" \
		"$SEALGATE_RAUC_CERT" "$SEALGATE_RAUC_KEY"
	rm -f "$work/broken.squashfs"
	printf '%s\n' "$version" > "$work/rootfs/etc/sealgate/image-version"

	"$repo/image/rauc-keys" "$untrusted" "Sealgate untrusted test" >/dev/null
	mkdir -p "$work/untrusted-root/etc"
	echo "not a Sealgate root" > "$work/untrusted-root/etc/untrusted"
	squashfs "$work/untrusted-root" "$work/untrusted.squashfs"
	sealgate_bundle "$work/untrusted.squashfs" "$version+untrusted" "$dest/untrusted.raucb" \
		"$untrusted/signing.cert.pem" "$untrusted/signing.key.pem"
}

main() {
	log "host packages"
	apt_install mmdebstrap genimage squashfs-tools mtools dosfstools e2fsprogs zstd \
		qemu-utils grub-common grub-pc-bin grub-efi-amd64-bin xorriso rauc openssl fdisk binutils
	local bin tar work rootfs version
	bin=$(build_binary)
	[ -x "$bin" ] || { echo "no sealgate binary at $bin" >&2; exit 1; }
	tar=$(base_tarball)
	version=$(image_version)
	export SEALGATE_IMAGE_VERSION="$version"
	signing_keys

	work="$out/work"
	rootfs="$work/rootfs"
	rm -rf "$work"
	mkdir -p "$rootfs"

	log "assembling root file system $version"
	tar -C "$rootfs" -xf "$tar"
	cp -a "$board/rootfs-overlay/." "$rootfs/"
	install -D -m 0755 "$bin" "$rootfs/usr/bin/sealgate"
	# Line tables stay in target/; the appliance gets symbols only.
	strip --strip-debug "$rootfs/usr/bin/sealgate"
	# Users come from the overlay's sysusers.d at build time: the root is
	# read-only at run time, so /etc/passwd cannot change on the appliance.
	chroot "$rootfs" systemd-sysusers
	prune_modules "$rootfs"
	TARGET_DIR="$rootfs" BINARIES_DIR="$work" "$board/post-build.sh" "$rootfs"

	log "squashfs root"
	squashfs "$rootfs" "$work/rootfs.squashfs"

	log "GRUB images"
	grub_images "$work"
	TARGET_DIR="$rootfs" BINARIES_DIR="$work" "$board/post-image.sh" "$work"

	log "hybrid ISO"
	iso_image "$work" "$work/sealgate-x86_64.iso" "$(date -u +%Y%m%d%H%M%S00)"

	if [ "${SEALGATE_TEST_BUNDLES:-}" = 1 ]; then
		test_bundles "$work" "$version"
	fi

	mkdir -p "$out"
	rm -f "$out"/sealgate-x86_64-*.raucb
	mv "$work/sealgate-x86_64.img" "$work/sealgate-x86_64.iso" "$out/"
	mv "$work/sealgate-x86_64-$version.raucb" "$out/"
	qemu-img convert -f raw -O qcow2 "$out/sealgate-x86_64.img" "$out/sealgate-x86_64.qcow2"
	cp "$rootfs/boot/vmlinuz" "$out/vmlinuz"
	cp "$rootfs/boot/initrd.img" "$out/initrd.img"
	printf 'root=PARTUUID=5ea19a7e-0002-4b1d-9c3a-5ea19a7e0002 rauc.slot=A %s\n' \
		"$(sealgate_cmdline)" > "$out/cmdline.txt"
	printf '%s\n' "$version" > "$out/version"
	rm -rf "$work"

	cat <<-MSG
	Sealgate appliance $version built:
	  raw disk:  $out/sealgate-x86_64.img
	  qcow2:     $out/sealgate-x86_64.qcow2
	  ISO:       $out/sealgate-x86_64.iso (live system and installer, BIOS and UEFI)
	  update:    $out/sealgate-x86_64-$version.raucb (signed RAUC bundle)
	  kernel:    $out/vmlinuz, $out/initrd.img (direct kernel boot, slot A)

	Boot it in QEMU (UEFI, serial console on this terminal):
	  cp $out/sealgate-x86_64.qcow2 /tmp/sg.qcow2
	  cp /usr/share/OVMF/OVMF_VARS_4M.fd /tmp/sg-vars.fd
	  qemu-system-x86_64 -machine q35 -m 1024 -nographic \\
	    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \\
	    -drive if=pflash,format=raw,unit=1,file=/tmp/sg-vars.fd \\
	    -drive file=/tmp/sg.qcow2,if=virtio,format=qcow2 \\
	    -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2525-:25
	The recovery menu and the one-time setup token appear on the console.
	MSG
}

main "$@"
