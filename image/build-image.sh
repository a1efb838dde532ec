#!/usr/bin/env bash
# Build the CVH-Camera SD card image: Raspberry Pi OS Lite 64-bit with the appliance
# installed, for the Raspberry Pi Zero 2 W, 3, 4 and 5. Trixie (Debian 13, Python 3.13, what
# Raspberry Pi Imager offers today) by default; Bookworm (Debian 12, Python 3.11, "Legacy"
# in Imager) with RELEASE=bookworm.
#
#   image/build-image.sh
#
# Writes to dist/:
#   cvh-camera-<version>-arm64.img.xz                  the image (flash it with Raspberry Pi Imager;
#                                                      Bookworm: cvh-camera-<version>-bookworm-arm64…)
#   cvh-camera-<version>-arm64.img.xz.sha256
#   cvh-camera-<version>-arm64.rpi-imager-manifest     opens the image in Raspberry Pi Imager 2
#                                                      with its OS customisation enabled
#
# How: the wheel is built from this checkout, pi-gen (the tool that builds Raspberry Pi
# OS) is cloned, our stage image/pi-gen/stage-cvh is added after its Lite stages, and
# pi-gen runs, in Docker by default (build-docker.sh: any Linux host with Docker and
# qemu-user-static + binfmt-support for the arm64 emulation) or directly (build.sh: a
# Debian/Ubuntu host with pi-gen's dependencies, as root). It needs network access to
# GitHub, PyPI, deb.debian.org and archive.raspberrypi.com, about 15 GB of disk and,
# emulated on x86_64, one to two hours.
#
# Settings (environment):
#   RELEASE      trixie (default) or bookworm: the Raspberry Pi OS release
#   PIGEN_MODE   docker (default when docker is installed) or native
#   PI_GEN_REPO  pi-gen's git URL (default https://github.com/RPi-Distro/pi-gen.git)
#   PI_GEN_REF   branch or tag (default: arm64 for Trixie, bookworm-arm64 for Bookworm; the
#                64-bit branches of pi-gen)
#   WORK_DIR     scratch space (default build/image)
#   OUT_DIR      where the results go (default dist)
#   IMAGE_URL    where the image will be downloaded from, for the Imager manifest
#                (default: IMAGE_BASE_URL/<image file name> if that is set, for example a
#                release's download folder; else the local file, file://...)
#   IMAGE_ICON   icon URL for the Imager manifest (default none)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
readonly IMAGE_SRC=$REPO/image
PI_GEN_REPO=${PI_GEN_REPO:-https://github.com/RPi-Distro/pi-gen.git}
RELEASE=${RELEASE:-trixie}
case "$RELEASE" in
    # Imager's OS customisation (user, Wi-Fi, SSH) reaches Trixie through cloud-init and
    # Bookworm through a firstrun.sh: the manifest must say which (init_format).
    trixie) DEFAULT_REF=arm64 INIT_FORMAT=cloudinit-rpi SUFFIX= ;;
    bookworm) DEFAULT_REF=bookworm-arm64 INIT_FORMAT=systemd SUFFIX=-bookworm ;;
    *)
        printf 'build-image: error: RELEASE must be trixie or bookworm, not %s\n' "$RELEASE" >&2
        exit 2
        ;;
esac
readonly RELEASE INIT_FORMAT SUFFIX
PI_GEN_REF=${PI_GEN_REF:-$DEFAULT_REF}
WORK_DIR=${WORK_DIR:-$REPO/build/image}
OUT_DIR=${OUT_DIR:-$REPO/dist}
if [ -z "${PIGEN_MODE:-}" ]; then
    if command -v docker >/dev/null; then PIGEN_MODE=docker; else PIGEN_MODE=native; fi
fi

say() { printf 'build-image: %s\n' "$*"; }
die() {
    printf 'build-image: error: %s\n' "$*" >&2
    exit 1
}

project_version() {
    python3 - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as stream:
    print(tomllib.load(stream)["project"]["version"])
PY
}

build_wheel() {
    # The wheel carries the browser pages too; the appliance does not need their
    # third-party assets, so without npm they are left out with a warning.
    if [ ! -f "$REPO/server/web/static/vendor/socket.io.esm.min.js" ]; then
        if command -v npm >/dev/null; then
            "$REPO/scripts/build-web.sh"
        else
            say "warning: npm not found: the wheel's browser pages lack their assets (make web)"
        fi
    fi
    rm -rf -- "$WORK_DIR/wheel" "$WORK_DIR/build-venv"
    # Built with the locked build backend (requirements/build.txt), not whatever PyPI serves.
    python3 -m venv "$WORK_DIR/build-venv"
    "$WORK_DIR/build-venv/bin/pip" install --quiet --require-hashes --no-deps \
        -r "$REPO/requirements/build.txt"
    "$WORK_DIR/build-venv/bin/pip" wheel --no-deps --no-build-isolation --quiet \
        --wheel-dir "$WORK_DIR/wheel" "$REPO"
    WHEEL=$(find "$WORK_DIR/wheel" -name 'cvh_camera-*.whl' -print -quit)
    [ -n "$WHEEL" ] || die "pip wheel produced no cvh_camera wheel"
    say "wheel: $(basename -- "$WHEEL")"
}

prepare_pi_gen() {
    local pi_gen=$WORK_DIR/pi-gen stage
    rm -rf -- "$pi_gen"
    git clone --quiet --depth 1 --branch "$PI_GEN_REF" -- "$PI_GEN_REPO" "$pi_gen"
    say "pi-gen: $PI_GEN_REF at $(git -C "$pi_gen" rev-parse --short HEAD)"
    stage=$pi_gen/stage-cvh
    cp -a -- "$IMAGE_SRC/pi-gen/stage-cvh" "$stage"
    mkdir -p -- "$stage/00-cvh-camera/files"
    cp -- "$IMAGE_SRC/install.sh" "$IMAGE_SRC/cvh-camera.service" "$IMAGE_SRC/cvh-camera.yaml" \
        "$REPO/requirements/appliance.txt" "$WHEEL" "$stage/00-cvh-camera/files/"
    {
        cat -- "$IMAGE_SRC/pi-gen/config"
        printf '\n# Added by image/build-image.sh\n'
        printf 'RELEASE=%s\nIMG_FILENAME=%s\nARCHIVE_FILENAME=%s\n' "$RELEASE" "$NAME" "$NAME"
    } >"$pi_gen/config"
    # stage2 exports the plain Lite image; only ours is wanted.
    touch -- "$pi_gen/stage2/SKIP_IMAGES"
}

run_pi_gen() {
    local pi_gen=$WORK_DIR/pi-gen
    case "$PIGEN_MODE" in
        docker)
            say "pi-gen: building in Docker (build-docker.sh)"
            (cd "$pi_gen" && ./build-docker.sh) ||
                die "pi-gen failed; its log is in $pi_gen/deploy/ (if a container" \
                    "'pigen_work' is left over, remove it with: docker rm -v pigen_work)"
            ;;
        native)
            [ "$(id -u)" -eq 0 ] || die "PIGEN_MODE=native runs pi-gen's build.sh, which needs root"
            say "pi-gen: building on this host (build.sh)"
            (cd "$pi_gen" && ./build.sh) || die "pi-gen failed; see $pi_gen/work/*/build.log"
            ;;
        *) die "PIGEN_MODE must be docker or native, not '$PIGEN_MODE'" ;;
    esac
}

collect_results() {
    local built=$WORK_DIR/pi-gen/deploy/$NAME.img.xz image=$OUT_DIR/$NAME.img.xz
    [ -f "$built" ] || die "pi-gen finished but $built is missing"
    mkdir -p -- "$OUT_DIR"
    mv -f -- "$built" "$image"
    (cd "$OUT_DIR" && sha256sum -- "$NAME.img.xz" >"$NAME.img.xz.sha256")
    local url=${IMAGE_URL:-}
    if [ -z "$url" ] && [ -n "${IMAGE_BASE_URL:-}" ]; then
        url=${IMAGE_BASE_URL%/}/$NAME.img.xz
    fi
    write_manifest "$image" "${url:-file://$image}" "${IMAGE_ICON:-}" \
        >"$OUT_DIR/$NAME.rpi-imager-manifest"
    say "done:"
    ls -l -- "$image" "$image.sha256" "$OUT_DIR/$NAME.rpi-imager-manifest"
}

write_manifest() {
    # A one-entry Raspberry Pi Imager OS list. Imager 2 offers its OS customisation
    # (user, Wi-Fi, hostname, SSH) only for images whose init_format it knows, the one of
    # the Raspberry Pi OS release underneath (INIT_FORMAT above).
    python3 - "$1" "$2" "$3" "$VERSION" "$RELEASE" "$INIT_FORMAT" <<'PY'
import datetime, hashlib, json, lzma, os, sys
path, url, icon, version, release, init_format = sys.argv[1:7]
extracted, packed = hashlib.sha256(), hashlib.sha256()
size = 0
with open(path, "rb") as raw:
    for chunk in iter(lambda: raw.read(1 << 20), b""):
        packed.update(chunk)
with lzma.open(path, "rb") as image:
    for chunk in iter(lambda: image.read(1 << 20), b""):
        extracted.update(chunk)
        size += len(chunk)
entry = {
    "name": f"CVH-Camera {version}",
    "description": f"Raspberry Pi OS Lite (64-bit, {release.title()}) as a CVH-Camera: set "
    "server, slot and token in cvh-camera.yaml on the boot partition",
    "icon": icon,
    "url": url,
    "extract_size": size,
    "extract_sha256": extracted.hexdigest(),
    "image_download_size": os.path.getsize(path),
    "image_download_sha256": packed.hexdigest(),
    "release_date": datetime.date.today().isoformat(),
    "init_format": init_format,
    "devices": ["pi5-64bit", "pi4-64bit", "pi3-64bit"],
}
json.dump({"os_list": [entry]}, sys.stdout, indent=2)
print()
PY
}

main() {
    if [ "$#" -gt 0 ]; then
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
        exit 2
    fi
    command -v git >/dev/null || die "git is required"
    command -v python3 >/dev/null || die "python3 (3.11 or newer) is required"
    VERSION=$(project_version)
    NAME=cvh-camera-$VERSION$SUFFIX-arm64
    say "building $NAME.img.xz (Raspberry Pi OS $RELEASE, pi-gen $PI_GEN_REF, $PIGEN_MODE)"
    mkdir -p -- "$WORK_DIR"
    build_wheel
    prepare_pi_gen
    run_pi_gen
    collect_results
}

main "$@"
