#!/usr/bin/env bash
# Prepares this machine for the emulated image test (make image-test), as root: the Debian
# packages it needs, qemu-aarch64 registered with binfmt_misc (mmdebstrap and install.sh run
# arm64 programs in the image's tree through it), and a check that network namespaces and
# tap devices work (the guest's network lives in one). Idempotent. When something cannot be
# had, it says so loudly and fails: the test must never pass by not running.
set -euo pipefail

PACKAGES=(mmdebstrap arch-test qemu-user-static binfmt-support qemu-system-arm
    mtools dosfstools e2fsprogs fdisk iproute2)
BINFMT=/proc/sys/fs/binfmt_misc

fail() {
    {
        echo "########################################################################"
        echo "# EMULATED IMAGE TEST CANNOT RUN ON THIS MACHINE"
        for line in "$@"; do echo "#   $line"; done
        echo "########################################################################"
    } >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "it needs root (chroot, binfmt_misc, network namespaces)"

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "image: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- qemu-aarch64 in binfmt_misc ---
if [ ! -e "$BINFMT/status" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null ||
        fail "binfmt_misc is not mounted and mounting it failed" \
            "(mount -t binfmt_misc binfmt_misc $BINFMT; in a container: the host's setting)"
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
    update-binfmts --enable qemu-aarch64 2>/dev/null ||
        { update-binfmts --import qemu-aarch64 && update-binfmts --enable qemu-aarch64; } ||
        true
fi
if [ ! -e "$BINFMT/qemu-aarch64" ] || ! grep -qx enabled "$BINFMT/qemu-aarch64"; then
    fail "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64" \
        "failed): arm64 programs cannot run in the image's root file system"
fi
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" ||
    fail "qemu-aarch64 is registered without the F flag: its interpreter would not be found" \
        "inside a chroot (use qemu-user-static's registration)"

# --- network namespace with a tap device ---
probe=cvh-image-probe-$$
if ! ip netns add "$probe" 2>/dev/null; then
    fail "network namespaces are unavailable (ip netns add failed): the guest must run in one"
fi
trap 'ip netns del "$probe" 2>/dev/null || true' EXIT
ip -n "$probe" tuntap add dev tap0 mode tap 2>/dev/null ||
    fail "tap devices are unavailable (ip tuntap add failed; is /dev/net/tun there?)"
ip netns del "$probe"
trap - EXIT
echo "image: host ready (packages, binfmt qemu-aarch64, network namespaces, tap)"
