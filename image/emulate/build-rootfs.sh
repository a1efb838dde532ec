#!/usr/bin/env bash
# Builds the emulated image's Debian trixie arm64 root file system with mmdebstrap: what
# Raspberry Pi OS Trixie is built from, with what it adds for the camera where Debian has
# it (libcamera 0.7 from trixie-backports, whose "virtual" pipeline handler is a software
# camera; picamera2's Python dependencies) and picamera2 itself from PyPI, pinned
# (rootfs-picamera2.sh). Built with mmdebstrap
# (foreign architecture: needs qemu-aarch64 registered with binfmt_misc) and caches it as a
# tarball keyed on this recipe: a second run with the same recipe only prints the path.
#
#   image/emulate/build-rootfs.sh   → prints the tarball's path on its last line
#
# The initramfs is trimmed to the modules qemu's "virt" machine needs to mount the root
# (initramfs-modules): Debian's full one takes minutes to build under emulation.
# CVH_IMAGE_CACHE overrides the cache folder (default /var/cache/cvh-camera-image);
# CVH_ROOTFS_TIMEOUT the time the build may take (default 1800 s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CVH_IMAGE_CACHE:-/var/cache/cvh-camera-image}

SUITE=trixie
MIRROR=http://deb.debian.org/debian
PACKAGES=(
    systemd systemd-sysv udev kmod dbus linux-image-arm64 initramfs-tools
    python3 python3-venv ca-certificates iproute2 dosfstools
    # what Raspberry Pi OS's python3-picamera2 depends on, as far as Debian has it
    python3-numpy python3-pil python3-piexif python3-prctl
)
# trixie's own libcamera 0.4 leaves the virtual camera's buffer metadata (bytesused) empty,
# which picamera2 reads: the backport fills it. (Not libcamera-tools: its cam and qcam
# bring Qt 6 and SDL.)
BACKPORTS=(libcamera0.7 python3-libcamera libcamera-ipa)
# Only to build PiDNG's C extension (rootfs-picamera2.sh purges them again).
BUILD_ONLY=(gcc libc6-dev python3-dev python3-pip python3-setuptools)
# Files whose content decides the rootfs: change one and the cache key changes.
RECIPE=("$here/build-rootfs.sh" "$here/initramfs-modules" "$here/rootfs-picamera2.sh"
    "$here/picamera2-requirements.txt")

key=$(cat "${RECIPE[@]}" | sha256sum | cut -c1-16)
tarball="$cache/rootfs-$key.tar"
if [ -s "$tarball" ]; then
    echo "rootfs: cached ($tarball)" >&2
    echo "$tarball"
    exit 0
fi

if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo "rootfs: ERROR: qemu-aarch64 is not registered with binfmt_misc" \
         "(run image/emulate/prepare-host.sh)" >&2
    exit 1
fi
mkdir -p "$cache"
partial="$cache/.rootfs-$key.partial.tar"  # mmdebstrap picks its format by the ending
trap 'rm -f "$partial"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

INCLUDE=("${PACKAGES[@]}" "${BACKPORTS[@]/%//$SUITE-backports}" "${BUILD_ONLY[@]}")
modules=$(grep -v '^#' "$here/initramfs-modules" | grep .)
start=$SECONDS
echo "rootfs: building Debian $SUITE arm64 under emulation (a few minutes) → $tarball" >&2
# Essential hook: before the kernel is installed, so its first initramfs is already small.
# Customize hooks: the module list, then the one initramfs the image boots with; no host
# name server (mmdebstrap leaves the host's resolv.conf); the root and boot partitions.
# Bounded: a stalled mirror must not hang CI (mmdebstrap cleans up on SIGTERM).
timeout --kill-after=60 "${CVH_ROOTFS_TIMEOUT:-1800}" mmdebstrap \
    --architectures=arm64 \
    --variant=minbase \
    --format=tar \
    --include="$(IFS=,; echo "${INCLUDE[*]}")" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"
        printf "MODULES=list\nCOMPRESS=gzip\n" > "$1/etc/initramfs-tools/conf.d/qemu-virt.conf"' \
    --customize-hook="printf '%s\n' $(printf '%q ' $modules) > \"\$1/etc/initramfs-tools/modules\"" \
    --customize-hook='chroot "$1" update-initramfs -u -k all' \
    --customize-hook="$(printf '%q ' "$here/rootfs-picamera2.sh") \"\$1\" ${BUILD_ONLY[*]}" \
    --customize-hook='echo cvh-camera > "$1/etc/hostname"' \
    --customize-hook='echo "# no name server (the test network has none)" > "$1/etc/resolv.conf"' \
    --customize-hook='mkdir -p "$1/boot/firmware"' \
    --customize-hook='printf "%s\n" "# qemu virt: the disk is /dev/vda (partition 1 FAT, 2 ext4)" \
        "/dev/vda2 / ext4 defaults,noatime 0 1" \
        "/dev/vda1 /boot/firmware vfat defaults 0 2" > "$1/etc/fstab"' \
    "$SUITE" "$partial" \
    "deb $MIRROR $SUITE main" \
    "deb $MIRROR $SUITE-updates main" \
    "deb $MIRROR $SUITE-backports main" \
    "deb http://deb.debian.org/debian-security $SUITE-security main"
mv "$partial" "$tarball"
trap - EXIT
# Older recipes' tarballs are dead weight.
find "$cache" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$key.tar" -delete
echo "rootfs: built in $((SECONDS - start)) s, $(du -h "$tarball" | cut -f1)" >&2
echo "$tarball"
