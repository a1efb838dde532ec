"""server.cascade.remote_streams: what an edge is told a forwarded feed carries."""

from __future__ import annotations

import pytest

from cvh_camera.server.cascade import remote_streams
from cvh_camera.server.janus_room import RoomUnavailable


def test_the_publishers_streams_in_its_own_order() -> None:
    offered = [
        {"type": "video", "mindex": 0, "mid": "0", "feed_mid": "1", "codec": "h264"},
        {"type": "audio", "mindex": 1, "mid": "1", "feed_mid": "0", "codec": "opus"},
        {"type": "data", "mindex": 2, "mid": "2"},
    ]
    assert remote_streams(offered) == [
        {"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"},
        {"type": "video", "mindex": 1, "mid": "1", "codec": "h264"},
    ]


def test_a_feed_without_media_cannot_be_forwarded() -> None:
    with pytest.raises(RoomUnavailable):
        remote_streams([{"type": "data", "mid": "0"}, {"type": "video", "mid": "1"}])
