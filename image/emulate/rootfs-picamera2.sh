#!/usr/bin/env bash
# mmdebstrap customize hook of build-rootfs.sh: puts picamera2 from PyPI (pinned, with
# hashes: picamera2-requirements.txt) into the emulated image's system Python (/usr/local, Debian's pip as root), where
# Raspberry Pi OS has its python3-picamera2, so that the appliance's venv (system site
# packages) finds it the same way. PiDNG is an sdist with C: the compiler and headers that
# build it came with the rootfs's package list (BUILD_ONLY in build-rootfs.sh) and are
# purged here once it is built.
#
#   rootfs-picamera2.sh ROOTFS BUILD_ONLY_PACKAGE...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rootfs=$1
shift
staging=$rootfs/tmp/cvh-picamera2
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"
cp "$here/picamera2-requirements.txt" "$staging/requirements.txt"
pip_env=(PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1)
# A CA bundle the host gives pip (e.g. behind a TLS-inspecting proxy) is a host path. pip 24.2
# and newer verify through the system's trust store (truststore), which reads SSL_CERT_FILE.
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    cp "$PIP_CERT" "$staging/ca.pem"
    pip_env+=(PIP_CERT=/tmp/cvh-picamera2/ca.pem SSL_CERT_FILE=/tmp/cvh-picamera2/ca.pem)
fi
echo "rootfs: picamera2 from PyPI into the system Python (building PiDNG under emulation)" >&2
chroot "$rootfs" /usr/bin/env "${pip_env[@]}" python3 -m pip install --break-system-packages \
    --no-deps --no-build-isolation --require-hashes -r /tmp/cvh-picamera2/requirements.txt
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --autoremove "$@" >&2
chroot "$rootfs" apt-get clean
# The import a camera-less machine can do (libcamera itself, without the test shim): proves
# the pins and the Debian side fit together.
chroot "$rootfs" python3 -c "import libcamera, pidng.core, simplejpeg, videodev2, prctl, numpy"
echo "rootfs: picamera2 $(chroot "$rootfs" python3 -c \
    'import importlib.metadata as m; print(m.version("picamera2"))') installed" >&2
