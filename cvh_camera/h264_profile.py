"""The H.264 that CVH-Camera sends and asks for, defined once for the server and the appliance.

Constrained baseline: what the Pi's hardware encoder produces, what every browser decodes,
and what Janus's room and aiortc's offer are set to. The SDP names it with a
profile-level-id: profile_idc 0x42 (baseline), then the constraint flags, then the level.
"""

from __future__ import annotations

from typing import Final

# The SDP profile-level-id of the room and the offer: constrained baseline (42 e0), level 3.1.
PROFILE_LEVEL_ID: Final = "42e01f"

# What the camera encoders (the Pi's, picamera2's software one, libx264) are told: their
# "baseline" sets constraint_set1 in the SPS, which makes it constrained baseline (42c0xx).
ENCODER_PROFILE: Final = "baseline"

_BASELINE = 0x42
_CONSTRAINT_SET1 = 0x40


def is_constrained_baseline(profile_level_id: str) -> bool:
    """Whether an SPS's or SDP's profile-level-id (6 hex digits) is constrained baseline."""
    profile, constraints = int(profile_level_id[0:2], 16), int(profile_level_id[2:4], 16)
    return profile == _BASELINE and bool(constraints & _CONSTRAINT_SET1)
