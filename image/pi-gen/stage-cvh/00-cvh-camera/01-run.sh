#!/bin/bash -e
# Install the appliance with the shared install step (image/install.sh), which
# image/build-image.sh copied into files/ together with the wheel, the appliance's lock
# file (requirements/appliance.txt), the systemd unit and the default cvh-camera.yaml.
shopt -s nullglob
wheels=(files/cvh_camera-*.whl)
if [ "${#wheels[@]}" -ne 1 ]; then
	echo "stage-cvh: expected exactly one cvh_camera wheel in files/, found ${#wheels[@]}" >&2
	exit 1
fi
files/install.sh "${ROOTFS_DIR}" "${wheels[0]}" files/appliance.txt
