# Sealgate board steps, sourced by post-build.sh and post-image.sh (the
# Buildroot recipe) and by image/build.sh (the offline Debian recipe), so
# both recipes build the same disk, boot menu, slot state and update bundle.
# Each step is one function (run in a subshell: its variables stay its
# own); the scripts above only call them in order.
# shellcheck shell=sh

SEALGATE_BOARD_DIR=${SEALGATE_BOARD_DIR:-$(cd "$(dirname "$0")" && pwd)}

# The BIOS boot partition (genimage.cfg: partition 1 at 1 MiB), in sectors.
SEALGATE_BIOS_LBA=2048

# GRUB modules every Sealgate GRUB image carries built in (the menus read
# GPT and the ISO, squashfs roots, grubenv; serial console).
SEALGATE_GRUB_MODULES="part_gpt part_msdos fat iso9660 squash4 gzio loopback normal linux
	echo test regexp loadenv search search_fs_file search_fs_uuid search_label
	configfile serial terminal sleep reboot halt cat"

sealgate_log() {
	printf '==> %s\n' "$*" >&2
}

# sealgate_le64 N: N as 8 little-endian bytes (printf escapes for printf %b).
sealgate_le64() (
	n=$1
	i=0
	while [ "$i" -lt 8 ]; do
		printf '\\%03o' $((n % 256))
		n=$((n / 256))
		i=$((i + 1))
	done
)

# sealgate_cmdline: the kernel command line shared by both slots and the
# live medium (the boot menus add root= and rauc.slot= or boot=).
sealgate_cmdline() (
	tr -s ' \n' '  ' < "$SEALGATE_BOARD_DIR/cmdline.txt" | sed 's/ *$//'
)

# sealgate_boot_layout TARGET_DIR: the root carries its own kernel and
# initrd under fixed names, so GRUB starts whichever slot it picks without
# knowing versions: /boot/vmlinuz and /boot/initrd.img.
sealgate_boot_layout() (
	boot="$1/boot"
	mkdir -p "$boot"
	for f in "$boot"/vmlinuz-* "$boot"/bzImage; do
		[ -e "$f" ] || continue
		mv "$f" "$boot/vmlinuz"
	done
	for f in "$boot"/initrd.img-*; do
		[ -e "$f" ] || continue
		mv "$f" "$boot/initrd.img"
	done
	rm -f "$boot"/config-* "$boot"/System.map-* "$1/vmlinuz" "$1/vmlinuz.old" \
		"$1/initrd.img" "$1/initrd.img.old"
	[ -e "$boot/vmlinuz" ] || { echo "no kernel in $boot" >&2; return 1; }
)

# sealgate_esp BINARIES_DIR: the ESP tree. GRUB's EFI application is
# already in efi-part/EFI/BOOT (the grub2 package or image/build.sh put it
# there); add the boot menu and the slot state: slot A good, B empty.
sealgate_esp() (
	dir="$1/efi-part/EFI/BOOT"
	mkdir -p "$dir"
	if [ -e "$dir/BOOTX64.EFI" ] && [ ! -e "$dir/bootx64.efi" ]; then
		mv "$dir/BOOTX64.EFI" "$dir/bootx64.efi"
	fi
	[ -e "$dir/bootx64.efi" ] || { echo "no GRUB EFI application in $dir" >&2; return 1; }
	cmdline=$(sealgate_cmdline)
	sed "s|@CMDLINE@|$cmdline|" "$SEALGATE_BOARD_DIR/grub/disk.cfg" > "$dir/grub.cfg"
	# A BIOS core whose prefix is /boot/grub (Buildroot's grub2 package)
	# finds the same menu.
	mkdir -p "$1/efi-part/boot/grub"
	# shellcheck disable=SC2016 # $root is GRUB's
	echo 'configfile ($root)/EFI/BOOT/grub.cfg' > "$1/efi-part/boot/grub/grub.cfg"
	rm -f "$dir/grubenv"
	grub-editenv "$dir/grubenv" create
	grub-editenv "$dir/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
)

# sealgate_bios_boot BINARIES_DIR: GRUB for BIOS on a GPT disk, without
# grub-install (which needs the disk as a block device): the boot sector
# (boot.img) learns where the core starts, the core's first sector
# (diskboot) learns where the rest of it starts. Offsets are GRUB's:
# GRUB_BOOT_MACHINE_KERNEL_SECTOR (0x5c) in boot.img and the blocklist at
# the end of diskboot's sector (start, 8 bytes at 500). Writes
# bios-mbr.img (440 bytes) and bios-core.img for genimage.cfg.
sealgate_bios_boot() (
	bin=$1
	for f in boot.img grub.img; do
		[ -e "$bin/$f" ] || { echo "no $f in $bin" >&2; return 1; }
	done
	cp "$bin/grub.img" "$bin/bios-core.img"
	# shellcheck disable=SC2059 # the format is the escaped bytes
	printf "$(sealgate_le64 $((SEALGATE_BIOS_LBA + 1)))" |
		dd of="$bin/bios-core.img" bs=1 seek=500 conv=notrunc status=none
	head -c 440 "$bin/boot.img" > "$bin/bios-mbr.img"
	# shellcheck disable=SC2059
	printf "$(sealgate_le64 "$SEALGATE_BIOS_LBA")" |
		dd of="$bin/bios-mbr.img" bs=1 seek=92 conv=notrunc status=none
	size=$(wc -c < "$bin/bios-core.img")
	[ "$size" -le 1048576 ] || { echo "GRUB core ($size bytes) does not fit the BIOS boot partition" >&2; return 1; }
)

# sealgate_disk_image BINARIES_DIR: the GPT disk (genimage.cfg).
sealgate_disk_image() (
	bin=$1
	tmp=$(mktemp -d)
	mkdir -p "$tmp/root"
	genimage \
		--rootpath "$tmp/root" \
		--tmppath "$tmp/genimage" \
		--inputpath "$bin" \
		--outputpath "$bin" \
		--config "$SEALGATE_BOARD_DIR/genimage.cfg"
	rm -rf "$tmp"
)

# sealgate_iso_uuid YYYYMMDDhhmmsscc: the UUID GRUB reads from an ISO made
# with that modification date.
sealgate_iso_uuid() {
	printf '%s\n' "$1" | sed -E 's/^(....)(..)(..)(..)(..)(..)(..)$/\1-\2-\3-\4-\5-\6-\7/'
}

# sealgate_iso_grub PC_MODULES EFI_MODULES DEST ISO_UUID: the ISO's GRUB,
# from GRUB's module directories (Debian's /usr/lib/grub/<platform>, or the
# grub2 package's build tree): DEST/iso-eltorito.img boots from a CD (and,
# through the hybrid MBR, from a USB stick) and reads /boot/grub/grub.cfg
# on the medium it started from; DEST/iso-efi.img is the El Torito EFI
# image whose GRUB finds the ISO by its UUID (its build date), since a UEFI
# firmware starts it from that image and not from the ISO file system.
sealgate_iso_grub() (
	pc=$1
	efi=$2
	dest=$3
	# shellcheck disable=SC2086 # module names are words
	grub-mkimage -d "$pc" -O i386-pc-eltorito -p /boot/grub -o "$dest/iso-eltorito.img" \
		$SEALGATE_GRUB_MODULES biosdisk
	# shellcheck disable=SC2016 # $root is GRUB's
	printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$4" \
		> "$dest/iso-efi.cfg"
	# shellcheck disable=SC2086
	grub-mkimage -d "$efi" -O x86_64-efi -p /boot/grub -c "$dest/iso-efi.cfg" \
		-o "$dest/iso-bootx64.efi" $SEALGATE_GRUB_MODULES efi_gop
	rm -f "$dest/iso-efi.img"
	mkfs.vfat -C -n SEALGATEEFI "$dest/iso-efi.img" 4096 >/dev/null
	mmd -i "$dest/iso-efi.img" ::/EFI ::/EFI/BOOT
	mcopy -i "$dest/iso-efi.img" "$dest/iso-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
)

# sealgate_installer_payload BINARIES_DIR DEST: what "install to disk" on
# the live medium writes besides the root: the partition table of the disk
# image (the data partition then takes the rest of the target disk), the
# BIOS boot code and core, and the ESP.
sealgate_installer_payload() (
	bin=$1
	dest=$2
	mkdir -p "$dest"
	sfdisk --dump "$bin/sealgate-x86_64.img" |
		sed -e '/^last-lba:/d' -e '/^device:/d' -e 's/^[^ ]* : //' |
		awk '/name="sealgate-data"/ { sub(/ size= *[0-9]+,/, "") } { print }' > "$dest/disk.sfdisk"
	grep -q 'name="sealgate-data"' "$dest/disk.sfdisk" || { echo "no data partition in the layout" >&2; return 1; }
	cp "$bin/bios-mbr.img" "$bin/bios-core.img" "$dest/"
	gzip -9 -n -c "$bin/efi-part.vfat" > "$dest/esp.vfat.gz"
)

# sealgate_bundle ROOTFS VERSION OUT CERT KEY [KEYRING]: a signed RAUC
# bundle (verity format) that installs ROOTFS into the inactive root slot.
# KEY may be a file or a PKCS#11 URI (RAUC_PKCS11_MODULE, RAUC_PKCS11_PIN).
sealgate_bundle() (
	rootfs=$1
	version=$2
	bundle=$3
	cert=$4
	key=$5
	keyring=${6:-}
	dir=$(mktemp -d)
	ln "$rootfs" "$dir/rootfs.squashfs" 2>/dev/null || cp "$rootfs" "$dir/rootfs.squashfs"
	cat > "$dir/manifest.raucm" <<-MANIFEST
	[update]
	compatible=sealgate-x86_64
	version=$version
	description=Sealgate appliance root file system

	[bundle]
	format=verity

	[image.rootfs]
	filename=rootfs.squashfs
	MANIFEST
	rm -f "$bundle"
	# The root is compressed already: store it as it is.
	set -- --cert="$cert" --key="$key" --mksquashfs-args="-noD -noF -noX -noI"
	[ -z "$keyring" ] || set -- "$@" --keyring="$keyring"
	rauc bundle "$@" "$dir" "$bundle" >/dev/null
	rm -rf "$dir"
)
