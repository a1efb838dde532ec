#!/usr/bin/env bash
# Builds the emulated image's disk from the cached arm64 root file system and a cvh-camera
# wheel, without loop devices, as root:
#
#   image/emulate/build-disk.sh WHEEL OUTDIR
#
# 1. the root file system: build-rootfs.sh's tarball, unpacked;
# 2. image/install.sh ROOTFS WHEEL requirements/appliance.txt: the install step the SD
#    image shares;
# 3. the test-only files of guest/ (static network in the test's namespace, a report on the
#    serial console, libcamera's virtual camera and what picamera2 needs to run on it, the
#    picamera2 probe boot),
#    systemd-networkd enabled, systemd-firstboot masked;
# 4. OUTDIR/disk.img: an MBR disk with partition 1 FAT32 (the boot partition: what
#    install.sh put under /boot/firmware) and partition 2 ext4 (the rest), made as separate
#    files with mkfs.vfat + mcopy and mkfs.ext4 -d, partitioned with sfdisk and put together
#    with dd; OUTDIR/vmlinuz and OUTDIR/initrd.img for qemu's -kernel and -initrd;
#    OUTDIR/disk.env with the FAT partition's byte offset (for mtools' "-i disk.img@@N").
#
# Step 2 is slow under emulation (pip inside an arm64 tree), so the tree after a first
# install.sh run is cached too, keyed on the rootfs, install.sh and its files, and the
# appliance's lock file; the next run starts from it and runs install.sh again, which then
# only reinstalls the wheel. CVH_IMAGE_FRESH=1 ignores that cache (install.sh on a fresh tree).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image_dir=$(dirname "$here")
cache=${CVH_IMAGE_CACHE:-/var/cache/cvh-camera-image}
readonly FAT_START=2048 FAT_SECTORS=262144 # 1 MiB in, 128 MiB long (512-byte sectors)

say() { printf 'disk: %s\n' "$*" >&2; }
die() {
    printf 'disk: ERROR: %s\n' "$*" >&2
    exit 1
}

[ "$#" -eq 2 ] || die "usage: $0 WHEEL OUTDIR"
[ "$(id -u)" -eq 0 ] || die "run as root (chroot, ownership in the image)"
wheel=$(realpath -e -- "$1")
out=$(realpath -m -- "$2")
mkdir -p "$out"
rootfs=$out/rootfs

mounts_under() {
    findmnt -n -o TARGET --list | awk -v top="$1" '$0 == top || index($0, top "/") == 1'
}

remove_tree() {
    # Never delete through a mount (install.sh binds /dev, /proc and /sys in there).
    [ -e "$1" ] || return 0
    local target
    for target in $(mounts_under "$1" | sort -r); do
        umount -- "$target" 2>/dev/null || umount -l -- "$target" || true
    done
    [ -z "$(mounts_under "$1")" ] || die "something is still mounted under $1: not deleting it"
    rm -rf --one-file-system -- "$1"
}
trap 'remove_tree "$rootfs"; rm -f "$out"/*.part' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
rootfs_tar=$("$here/build-rootfs.sh")

# --- 1 + 2: the root file system with the appliance installed ---
lock=$(dirname "$image_dir")/requirements/appliance.txt
key=$({ basename "$rootfs_tar"; cat "$lock" "$image_dir/install.sh" \
    "$image_dir/cvh-camera.service" "$image_dir/cvh-camera.yaml"; } | sha256sum | cut -c1-16)
installed_tar=$cache/installed-$key.tar

remove_tree "$rootfs"
mkdir -p "$rootfs"
if [ -s "$installed_tar" ] && [ "${CVH_IMAGE_FRESH:-0}" != 1 ]; then
    say "unpacking the installed tree (cached: $installed_tar)"
    tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$installed_tar" -C "$rootfs"
    fresh=0
else
    say "unpacking $rootfs_tar"
    tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$rootfs_tar" -C "$rootfs"
    fresh=1
fi
t_install=$SECONDS
"$image_dir/install.sh" "$rootfs" "$wheel" "$lock" >&2
say "install.sh took $((SECONDS - t_install)) s ($([ $fresh = 1 ] && echo fresh tree || echo cached tree))"
if [ "$fresh" = 1 ]; then
    tar --numeric-owner --xattrs --xattrs-include='*' -cf "$installed_tar.part" -C "$rootfs" .
    mv "$installed_tar.part" "$installed_tar"
    find "$cache" -maxdepth 1 -name 'installed-*.tar' ! -name "installed-$key.tar" -delete
    say "cached the installed tree as $installed_tar"
fi

options=$(cat "$rootfs/etc/cvh-camera/boot-mount-options") ||
    die "install.sh wrote no /etc/cvh-camera/boot-mount-options"
awk -v want="$options" '$2 == "/boot/firmware" && $3 == "vfat" && index($4, want) { ok = 1 }
    END { exit !ok }' "$rootfs/etc/fstab" ||
    die "/etc/fstab does not mount /boot/firmware with $options: $(cat "$rootfs/etc/fstab")"

# --- 3: the test-only files ---
for file in etc/systemd/network/10-cvh-test.network etc/resolv.conf \
    etc/systemd/system/cvh-test-report.service \
    usr/share/libcamera/pipeline/virtual/virtual.yaml etc/udev/rules.d/60-cvh-test-udmabuf.rules \
    usr/local/lib/python3.13/dist-packages/cvh-test-camera.pth \
    usr/local/lib/python3.13/dist-packages/cvh_test_camera.py \
    etc/systemd/system/cvh-test-probe.service \
    etc/systemd/system/cvh-camera.service.d/cvh-test-probe.conf \
    etc/systemd/system/cvh-camera.service.d/cvh-test-udmabuf.conf \
    etc/systemd/system/cvh-test-report.service.d/cvh-test-probe.conf; do
    install -D -m 0644 "$here/guest/$file" "$rootfs/$file"
done
install -D -m 0644 "$image_dir/../tests/image/picamera2_probe.py" \
    "$rootfs/usr/local/lib/cvh-test/picamera2_probe.py"
install -D -m 0755 "$here/guest/usr/local/sbin/cvh-test-probe" "$rootfs/usr/local/sbin/cvh-test-probe"
install -D -m 0755 "$here/guest/usr/local/sbin/cvh-test-report" \
    "$rootfs/usr/local/sbin/cvh-test-report"
systemctl --root="$rootfs" --quiet enable systemd-networkd.service cvh-test-report.service \
    cvh-test-probe.service
systemctl --root="$rootfs" --quiet mask systemd-firstboot.service

# --- 4: boot files, partitions, disk ---
cp "$rootfs"/boot/vmlinuz-* "$out/vmlinuz"
cp "$rootfs"/boot/initrd.img-* "$out/initrd.img"

fat=$out/fat.img.part
rm -f "$fat"
mkfs.vfat -F 32 -n BOOTFS -S 512 -C "$fat" $((FAT_SECTORS / 2)) >/dev/null
# What install.sh put on the boot partition goes into the FAT; the mount point stays empty.
if [ -n "$(ls -A "$rootfs/boot/firmware")" ]; then
    mcopy -s -i "$fat" "$rootfs"/boot/firmware/* ::/
    find "$rootfs/boot/firmware" -mindepth 1 -delete
fi

root=$out/root.img.part
rm -f "$root"
size_mb=$(($(du -sm --apparent-size "$rootfs" | cut -f1) * 13 / 10 + 256))
mkfs.ext4 -q -F -L rootfs -d "$rootfs" "$root" "${size_mb}M"

root_start=$((FAT_START + FAT_SECTORS))
root_sectors=$(($(stat -c %s "$root") / 512))
disk=$out/disk.img.part
rm -f "$disk"
truncate -s $(((root_start + root_sectors) * 512)) "$disk"
sfdisk --quiet "$disk" <<EOF
label: dos
unit: sectors
start=$FAT_START, size=$FAT_SECTORS, type=c
start=$root_start, size=$root_sectors, type=83
EOF
dd if="$fat" of="$disk" bs=1M seek=$((FAT_START * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
dd if="$root" of="$disk" bs=4M seek=$((root_start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
rm -f "$fat" "$root"
mv "$disk" "$out/disk.img"
printf 'FAT_OFFSET=%s\n' $((FAT_START * 512)) >"$out/disk.env"
say "built $out/disk.img ($((size_mb + FAT_SECTORS / 2048 + 1)) MiB) in $((SECONDS - t0)) s"
