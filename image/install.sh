#!/usr/bin/env bash
# Install the CVH-Camera appliance into a root file system: the one install step that the
# SD image recipe (image/pi-gen) and the emulated image test share.
#
#   image/install.sh ROOTFS WHEEL LOCK
#
# ROOTFS  the root file system to install into (the boot partition's files are under
#         ROOTFS/boot/firmware). It may be another architecture than this host (an arm64
#         tree on an x86_64 builder): commands inside it then run through qemu-user.
#         "/" installs into the running system.
# WHEEL   the cvh-camera wheel (pip wheel --no-deps .).
# LOCK    requirements/appliance.txt: the appliance's dependencies, pinned with hashes
#         (`make lock`); pip installs exactly these, checking every hash.
#
# What it does, each step only if not done yet (running it again changes nothing, except
# that the wheel is always reinstalled):
#   - a system user and group cvh-camera (no login shell, home /var/lib/cvh-camera, also
#     in group video for the camera devices);
#   - /opt/cvh-camera/venv with the system site packages (so that the OS's
#     python3-picamera2 is importable), the locked dependencies, then the wheel without
#     dependencies (pip runs inside ROOTFS, with the host's DNS, /proc, /sys and /dev);
#   - cvh-camera.service in /etc/systemd/system, enabled for multi-user.target;
#   - the default /boot/firmware/cvh-camera.yaml, unless the file exists;
#   - the boot partition writable for the service's group (the status file): mount options
#     added to the /boot/firmware line of /etc/fstab and written to
#     /etc/cvh-camera/boot-mount-options for builders that write fstab later.
# Run as root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly APP_USER=cvh-camera
readonly APP_HOME=/var/lib/cvh-camera
readonly VENV=/opt/cvh-camera/venv
readonly UNIT=cvh-camera.service
readonly BOOT_DIR=/boot/firmware
readonly MOUNT_OPTIONS_FILE=/etc/cvh-camera/boot-mount-options
readonly CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf 'install: %s\n' "$*"; }
die() {
    printf 'install: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s ROOTFS WHEEL LOCK\n' "$0" >&2
    exit 2
}

# --- the target tree and how to run commands in it ---

ROOTFS=""
LIVE=0             # 1: ROOTFS is this running system ("/"): no chroot set-up needed
MOUNTED=()         # mount points this script mounted, unmounted in reverse on exit
HOST_TMP=""        # host-side scratch directory (the saved resolv.conf)
RESOLV_SWAPPED=0   # 1: ROOTFS/etc/resolv.conf is the host's until cleanup restores it
STAGING=""         # ROOTFS/tmp/cvh-camera-install.*: the wheel and lock, while pip reads them

cleanup() {
    local status=$? index
    set +e
    if [ -n "$STAGING" ]; then
        rm -rf -- "$STAGING"
    fi
    if [ "$RESOLV_SWAPPED" = 1 ]; then
        rm -f -- "$ROOTFS/etc/resolv.conf"
        if [ -e "$HOST_TMP/resolv.conf" ] || [ -L "$HOST_TMP/resolv.conf" ]; then
            mv -T -- "$HOST_TMP/resolv.conf" "$ROOTFS/etc/resolv.conf"
        fi
    fi
    for ((index = ${#MOUNTED[@]} - 1; index >= 0; index--)); do
        umount -- "${MOUNTED[index]}" || umount --lazy -- "${MOUNTED[index]}"
    done
    if [ -n "$HOST_TMP" ]; then
        rm -rf -- "$HOST_TMP"
    fi
    exit "$status"
}

in_root() {
    # Run a command inside ROOTFS with a clean PATH and locale (the rest of the
    # environment, e.g. PIP_INDEX_URL or a proxy, passes through).
    if [ "$LIVE" = 1 ]; then
        env PATH="$CHROOT_PATH" LC_ALL=C.UTF-8 HOME=/root "$@"
    else
        chroot "$ROOTFS" /usr/bin/env PATH="$CHROOT_PATH" LC_ALL=C.UTF-8 HOME=/root "$@"
    fi
}

elf_machine() {
    # The ELF e_machine number of file $1 (little-endian hosts and targets only).
    local magic
    magic=$(od -An -tx1 -N4 -- "$1" | tr -d ' \n')
    [ "$magic" = 7f454c46 ] || return 1
    od -An -tu2 -j18 -N2 -- "$1" | tr -d ' \n'
}

machine_name() {
    case "$1" in
        62) echo x86_64 ;;
        183) echo aarch64 ;;
        40) echo arm ;;
        3) echo i386 ;;
        *) echo "unknown-$1" ;;
    esac
}

host_machine() {
    case "$(uname -m)" in
        armv6l | armv7l | armv8l) echo arm ;;
        i?86) echo i386 ;;
        *) uname -m ;;
    esac
}

target_machine() {
    local candidate number
    for candidate in "$ROOTFS"/usr/bin/env "$ROOTFS"/usr/bin/dpkg "$ROOTFS"/usr/bin/python3.*; do
        if [ -f "$candidate" ] && [ ! -L "$candidate" ] && number=$(elf_machine "$candidate"); then
            machine_name "$number"
            return 0
        fi
    done
    die "$ROOTFS does not look like a root file system (no usr/bin/env)"
}

check_emulation() {
    local host target binfmt
    host=$(host_machine)
    target=$(target_machine)
    if [ "$host" = "$target" ]; then
        say "target: $target (native)"
        return 0
    fi
    binfmt=/proc/sys/fs/binfmt_misc/qemu-$target
    # Trying is the real test (inside a container binfmt_misc may be registered by the
    # host kernel without being mounted here); the file only explains a failure.
    if chroot "$ROOTFS" /usr/bin/env true 2>/dev/null; then
        say "target: $target (emulated on $host)"
        return 0
    fi
    if [ ! -e "$binfmt" ] || ! grep -qx enabled "$binfmt"; then
        die "$ROOTFS is $target but this host is $host: running programs inside it needs" \
            "qemu-user emulation registered with binfmt_misc, and $binfmt is missing or" \
            "disabled. Install it with 'apt-get install qemu-user-static binfmt-support'" \
            "and make sure binfmt_misc is mounted ('mount binfmt_misc -t binfmt_misc" \
            "/proc/sys/fs/binfmt_misc'; in a container this is the host kernel's setting)."
    fi
    die "cannot run $target programs inside $ROOTFS although $binfmt is registered:" \
        "its interpreter must be usable inside the tree (qemu-user-static registers" \
        "with the F flag, which makes that so)"
}

bind_host_dir() {
    # Bind the host's $1 onto ROOTFS$1 unless something is mounted there already (pi-gen's
    # on_chroot leaves proc, dev and sys mounted): only what we mount is unmounted.
    local target=$ROOTFS$1
    if mountpoint -q -- "$target"; then
        return 0
    fi
    mkdir -p -- "$target"
    mount --bind -- "$1" "$target"
    MOUNTED+=("$target")
}

prepare_chroot() {
    if [ "$LIVE" = 1 ]; then
        return 0
    fi
    bind_host_dir /proc
    bind_host_dir /sys
    bind_host_dir /dev
    # pip resolves the package index with the host's DNS settings, put in place for the
    # duration; whatever ROOTFS had (a file or a symlink) comes back on exit.
    if [ -e /etc/resolv.conf ]; then
        if [ -e "$ROOTFS/etc/resolv.conf" ] || [ -L "$ROOTFS/etc/resolv.conf" ]; then
            mv -T -- "$ROOTFS/etc/resolv.conf" "$HOST_TMP/resolv.conf"
        fi
        RESOLV_SWAPPED=1
        cp -L -- /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    fi
}

# --- the steps ---

create_user() {
    local shell=/usr/sbin/nologin uid gid
    in_root getent group video >/dev/null || die "$ROOTFS has no group video"
    [ -x "$ROOTFS$shell" ] || shell=/bin/false
    if in_root getent group "$APP_USER" >/dev/null; then
        say "group $APP_USER: exists"
    else
        in_root groupadd --system "$APP_USER"
        say "group $APP_USER: created"
    fi
    if in_root getent passwd "$APP_USER" >/dev/null; then
        in_root usermod --append --groups video "$APP_USER"
        say "user $APP_USER: exists (in group video)"
    else
        in_root useradd --system --gid "$APP_USER" --groups video --home-dir "$APP_HOME" \
            --no-create-home --shell "$shell" --comment "CVH-Camera appliance" "$APP_USER"
        say "user $APP_USER: created (home $APP_HOME, shell $shell, groups $APP_USER video)"
    fi
    uid=$(in_root id -u "$APP_USER")
    gid=$(in_root id -g "$APP_USER")
    install -d -m 0750 -o "$uid" -g "$gid" -- "$ROOTFS$APP_HOME"
}

create_venv() {
    in_root test -x /usr/bin/python3 ||
        die "$ROOTFS has no /usr/bin/python3: install python3 and python3-venv in it first"
    if in_root test -x "$VENV/bin/python" && in_root "$VENV/bin/python" -c "" 2>/dev/null; then
        say "venv $VENV: exists"
        return 0
    fi
    in_root mkdir -p "$(dirname "$VENV")"
    in_root python3 -m venv --clear --system-site-packages "$VENV" ||
        die "creating $VENV failed: is python3-venv installed in $ROOTFS?"
    say "venv $VENV: created (with the system site packages)"
}

install_wheel() {
    local wheel_in_root
    install -d -m 1777 -- "$ROOTFS/tmp"
    STAGING=$(mktemp -d -- "$ROOTFS/tmp/cvh-camera-install.XXXXXX")
    chmod 0755 -- "$STAGING"
    cp -- "$WHEEL" "$STAGING/"
    cp -- "$LOCK" "$STAGING/requirements.txt"
    wheel_in_root=${STAGING#"$ROOTFS"}/$(basename -- "$WHEEL")
    local pip=(env) variable
    # CA bundles the host gives pip and requests (e.g. behind a TLS-inspecting proxy) are
    # host paths: copy them in for the duration.
    for variable in PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE SSL_CERT_FILE; do
        if [ "$LIVE" = 0 ] && [ -n "${!variable:-}" ] && [ -f "${!variable}" ]; then
            cp -- "${!variable}" "$STAGING/$variable.pem"
            pip+=("$variable=${STAGING#"$ROOTFS"}/$variable.pem")
        fi
    done
    # pip 24.2 and newer (Trixie's) verify through the system's trust store, which takes
    # SSL_CERT_FILE, not PIP_CERT.
    if [ "$LIVE" = 0 ] && [ -z "${SSL_CERT_FILE:-}" ] && [ -f "$STAGING/PIP_CERT.pem" ]; then
        pip+=("SSL_CERT_FILE=${STAGING#"$ROOTFS"}/PIP_CERT.pem")
    fi
    pip+=("$VENV/bin/python" -m pip install --no-cache-dir --prefer-binary
        --disable-pip-version-check --no-input)
    say "pip: installing the locked dependencies ($(basename -- "$LOCK"); this may take a while)"
    in_root "${pip[@]}" --require-hashes --no-deps -r "${STAGING#"$ROOTFS"}/requirements.txt"
    # The same version may be a new build: put this very wheel in place.
    say "pip: installing $(basename -- "$WHEEL")"
    in_root "${pip[@]}" --no-deps --force-reinstall --quiet "$wheel_in_root"
    rm -rf -- "$STAGING"
    STAGING=""
    in_root "$VENV/bin/python" -c "import cvh_camera.appliance.cli, aiortc" ||
        die "the installed appliance cannot be imported in $ROOTFS"
    say "pip: cvh-camera $(in_root "$VENV/bin/python" -c \
        "import importlib.metadata as m; print(m.version('cvh-camera'))") installed"
    if in_root "$VENV/bin/python" -c \
        "import importlib.util, sys; sys.exit(importlib.util.find_spec('picamera2') is None)"; then
        say "picamera2: visible in the venv (from the system)"
    else
        say "warning: picamera2 is not installed in $ROOTFS (apt package python3-picamera2):" \
            "camera.source picamera2 will fail there; test and file still work"
    fi
}

install_unit() {
    local units=$ROOTFS/etc/systemd/system
    install -D -m 0644 -- "$HERE/$UNIT" "$units/$UNIT"
    mkdir -p -- "$units/multi-user.target.wants"
    ln -sfn -- "/etc/systemd/system/$UNIT" "$units/multi-user.target.wants/$UNIT"
    say "systemd: $UNIT installed and enabled (multi-user.target.wants)"
}

install_default_config() {
    local target=$ROOTFS$BOOT_DIR/cvh-camera.yaml
    if [ ! -d "$ROOTFS$BOOT_DIR" ]; then
        mkdir -p -- "$ROOTFS$BOOT_DIR"
        say "boot partition: $BOOT_DIR did not exist in $ROOTFS, created"
    fi
    if [ -e "$target" ]; then
        say "boot partition: $BOOT_DIR/cvh-camera.yaml exists, kept"
    else
        install -m 0644 -- "$HERE/cvh-camera.yaml" "$target"
        say "boot partition: $BOOT_DIR/cvh-camera.yaml installed (not configured yet)"
    fi
}

boot_mount_options() {
    # vfat has no owners or modes of its own: they come from the mount. gid= takes a
    # number; the files become rw-rw-r--, the directories rwxrwxr-x, for root and the
    # service's group.
    local gid
    gid=$(awk -F: -v name="$APP_USER" '$1 == name { print $3 }' "$ROOTFS/etc/group")
    [ -n "$gid" ] || die "group $APP_USER missing from $ROOTFS/etc/group"
    local options="gid=$gid,fmask=0113,dmask=0002"
    install -d -m 0755 -- "$ROOTFS$(dirname "$MOUNT_OPTIONS_FILE")"
    printf '%s\n' "$options" >"$ROOTFS$MOUNT_OPTIONS_FILE"
    say "boot partition: mount options $options (in $MOUNT_OPTIONS_FILE)"
    local fstab=$ROOTFS/etc/fstab
    if [ ! -f "$fstab" ] || ! awk -v dir="$BOOT_DIR" \
        '$1 !~ /^#/ && $2 == dir && $3 == "vfat" { found = 1 } END { exit !found }' "$fstab"; then
        say "warning: no vfat line for $BOOT_DIR in /etc/fstab: whoever writes it must add" \
            "the options in $MOUNT_OPTIONS_FILE, or the service cannot write its status file"
        return 0
    fi
    local updated
    updated=$(awk -v dir="$BOOT_DIR" -v add="$options" '
        $1 !~ /^#/ && $2 == dir && $3 == "vfat" {
            count = split($4, option, ",")
            kept = ""
            for (i = 1; i <= count; i++)
                if (option[i] !~ /^(uid|gid|fmask|dmask|umask)=/)
                    kept = kept (kept == "" ? "" : ",") option[i]
            $4 = (kept == "" ? add : kept "," add)
        }
        { print }' "$fstab")
    if [ "$updated" = "$(cat -- "$fstab")" ]; then
        say "fstab: $BOOT_DIR already mounted with $options"
    else
        printf '%s\n' "$updated" >"$fstab"
        say "fstab: $BOOT_DIR mounted with $options from now on"
    fi
}

main() {
    [ "$#" -eq 3 ] || usage
    [ "$(id -u)" -eq 0 ] || die "run as root (it creates users and mounts in ROOTFS)"
    [ -d "$1" ] || die "ROOTFS $1 is not a directory"
    [ -f "$2" ] || die "WHEEL $2 does not exist"
    case "$2" in
        *.whl) ;;
        *) die "WHEEL $2 is not a .whl file" ;;
    esac
    [ -f "$3" ] || die "LOCK $3 does not exist (requirements/appliance.txt)"
    grep -q -- '--hash=sha256:' "$3" || die "LOCK $3 holds no hashes: is it a lock file?"
    ROOTFS=$(realpath -e -- "$1")
    WHEEL=$(realpath -e -- "$2")
    LOCK=$(realpath -e -- "$3")
    if [ "$ROOTFS" = / ]; then
        LIVE=1
        ROOTFS=""
    fi
    umask 022
    HOST_TMP=$(mktemp -d)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    say "installing CVH-Camera into ${ROOTFS:-/ (this system)}"
    if [ "$LIVE" = 0 ]; then
        check_emulation
    fi
    prepare_chroot
    create_user
    create_venv
    install_wheel
    install_unit
    install_default_config
    boot_mount_options
    say "done"
}

main "$@"
