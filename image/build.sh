#!/bin/bash
# Offline appliance build: the same disk as the Buildroot recipe in
# buildroot-external/, assembled from Debian 12 packages so CI can build and
# boot it without Buildroot's downloads.
#
# Steps (nothing is loop-mounted; the host kernel cannot mount vfat):
#   1. base root file system with mmdebstrap (cached by package list + this
#      script's base recipe, outside the clone)
#   2. shared board overlay + release sealgate binary + post-build.sh
#   3. read-only squashfs root, ESP tree with systemd-boot
#   4. board post-image.sh: loader entry from cmdline.txt, genimage disk
#   5. qcow2 copy, kernel and initrd next to it for direct kernel boot
#
# Environment:
#   SEALGATE_BIN        use this binary instead of building one
#   SEALGATE_IMAGE_OUT  output directory (default: image/out)
#   SEALGATE_IMAGE_CACHE cache directory (default: /var/cache/sealgate-image)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
board="$repo/buildroot-external/board/sealgate"
out=${SEALGATE_IMAGE_OUT:-$repo/image/out}
cache=${SEALGATE_IMAGE_CACHE:-/var/cache/sealgate-image}
suite=bookworm
mirror=${SEALGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf '==> %s\n' "$*" >&2; }

host_packages() {
	local missing=()
	local cmd pkg
	while read -r cmd pkg; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done <<-LIST
		mmdebstrap mmdebstrap
		genimage genimage
		mksquashfs squashfs-tools
		mcopy mtools
		mkfs.vfat dosfstools
		mke2fs e2fsprogs
		zstd zstd
		qemu-img qemu-utils
	LIST
	[ -e /usr/lib/systemd/boot/efi/systemd-bootx64.efi ] || missing+=(systemd-boot-efi)
	if [ "${#missing[@]}" -gt 0 ]; then
		log "installing host packages: ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
	fi
}

build_binary() {
	if [ -n "${SEALGATE_BIN:-}" ]; then
		printf '%s\n' "$SEALGATE_BIN"
		return
	fi
	log "building the release sealgate binary"
	(cd "$repo" && cargo build --release -p sealgate >&2)
	printf '%s\n' "${CARGO_TARGET_DIR:-$repo/target}/release/sealgate"
}

# The base recipe: what goes into the cached tarball. Keep every input of
# the base in this function or packages.list so the cache key covers it.
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
		--customize-hook='chroot "$1" update-initramfs -u -k all' \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
		"$suite" "$dest" "$mirror"
}

base_tarball() {
	local key tar
	key=$( { cat "$repo/image/packages.list"; declare -f base_recipe; echo "$suite"; } | sha256sum | cut -c1-16)
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

main() {
	host_packages
	local bin tar work rootfs
	bin=$(build_binary)
	[ -x "$bin" ] || { echo "no sealgate binary at $bin" >&2; exit 1; }
	tar=$(base_tarball)

	work="$out/work"
	rootfs="$work/rootfs"
	rm -rf "$work"
	mkdir -p "$rootfs" "$work/efi-part/EFI/BOOT" "$work/efi-part/sealgate"

	log "assembling root file system"
	tar -C "$rootfs" -xf "$tar"
	cp -a "$board/rootfs-overlay/." "$rootfs/"
	install -D -m 0755 "$bin" "$rootfs/usr/bin/sealgate"
	# Users come from the overlay's sysusers.d at build time: the root is
	# read-only at run time, so /etc/passwd cannot change on the appliance.
	chroot "$rootfs" systemd-sysusers
	# Kernel and initrd go to the ESP, not the root.
	cp "$rootfs"/boot/vmlinuz-* "$work/efi-part/sealgate/linux"
	cp "$rootfs"/boot/initrd.img-* "$work/efi-part/sealgate/initrd"
	cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$work/efi-part/EFI/BOOT/BOOTX64.EFI"

	TARGET_DIR="$rootfs" BINARIES_DIR="$work" "$board/post-build.sh" "$rootfs"

	log "squashfs root"
	mksquashfs "$rootfs" "$work/rootfs.squashfs" -comp zstd -noappend -quiet \
		-e boot -wildcards -e 'var/cache/*' -e 'var/lib/apt/*' >&2

	TARGET_DIR="$rootfs" BINARIES_DIR="$work" "$board/post-image.sh" "$work"

	mkdir -p "$out"
	mv "$work/sealgate-x86_64.img" "$out/sealgate-x86_64.img"
	qemu-img convert -f raw -O qcow2 "$out/sealgate-x86_64.img" "$out/sealgate-x86_64.qcow2"
	cp "$work/efi-part/sealgate/linux" "$out/vmlinuz"
	cp "$work/efi-part/sealgate/initrd" "$out/initrd.img"
	cp "$board/cmdline.txt" "$out/cmdline.txt"
	rm -rf "$work"

	cat <<-MSG
	Sealgate appliance image built:
	  raw disk:  $out/sealgate-x86_64.img
	  qcow2:     $out/sealgate-x86_64.qcow2
	  kernel:    $out/vmlinuz, $out/initrd.img (direct kernel boot)

	Boot it in QEMU (UEFI, serial console on this terminal):
	  cp $out/sealgate-x86_64.qcow2 /tmp/sg.qcow2
	  qemu-system-x86_64 -m 1024 -nographic -bios /usr/share/ovmf/OVMF.fd \\
	    -drive file=/tmp/sg.qcow2,if=virtio,format=qcow2 \\
	    -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2525-:25
	The recovery menu and the one-time setup token appear on the console.
	MSG
}

main "$@"
