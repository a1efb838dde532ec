#!/bin/bash -e
# Start from the Lite system that stage2 built (pi-gen's copy_previous).
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
