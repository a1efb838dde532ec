"""Which Janus each receiver page subscribes on (`query_janus_url`, docs/protocol.md).

Without edges every receiver uses the origin. With edges, a receiver gets the usable edge
that fewest receivers were given (our own count, kept per socket.io connection and
released when it disconnects); one that lost its edge asks again, naming the edges to
avoid, and gets another. With no edge usable, receivers fall back to the origin: it then
pays per viewer again, but nobody watches a black picture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cvh_camera.server.payloads import ack, refused

log = logging.getLogger(__name__)

ORIGIN = -1  # the receiver uses the origin (no edges, or none usable)
MAX_AVOID = 64


class ReceiverSpread:
    def __init__(
        self, origin_url: str, edge_urls: Sequence[str], usable: Callable[[], list[int]]
    ) -> None:
        self._origin_url = origin_url
        self._edge_urls = list(edge_urls)
        self._usable = usable
        self._assigned: dict[str, int] = {}  # socket.io sid -> edge index (or ORIGIN)
        self._counts = [0] * len(self._edge_urls)

    def query(self, sid: str, data: object) -> dict[str, Any]:
        """The `query_janus_url` answer: `{success, janusUrl, edge}` (edge null = origin)."""
        avoid = _avoided(data)
        if avoid is None:
            return refused("avoid must be a list of edge numbers")
        self.forget(sid)
        edge = self._choose(set(avoid))
        self._assigned[sid] = edge
        if edge == ORIGIN:
            if self._edge_urls:
                log.warning("receiver sid=%s on the origin: no edge usable", sid)
            return ack("Use the origin", janusUrl=self._origin_url, edge=None)
        self._counts[edge] += 1
        return ack(f"Use edge {edge}", janusUrl=self._edge_urls[edge], edge=edge)

    def forget(self, sid: str) -> None:
        edge = self._assigned.pop(sid, ORIGIN)
        if edge != ORIGIN:
            self._counts[edge] -= 1

    def counts(self) -> dict[str, int]:
        """Receivers per edge (and on the origin), for /healthz."""
        on_origin = sum(1 for edge in self._assigned.values() if edge == ORIGIN)
        return {"origin": on_origin, **{str(i): n for i, n in enumerate(self._counts)}}

    def _choose(self, avoid: set[int]) -> int:
        usable = self._usable()
        candidates = [i for i in usable if i not in avoid] or usable
        if not candidates:
            return ORIGIN
        return min(candidates, key=lambda i: (self._counts[i], i))


def _avoided(data: object) -> list[int] | None:
    """The edges a receiver asks to avoid; None for a payload that is not understood."""
    if data is None:
        return []
    avoid = data.get("avoid", []) if isinstance(data, dict) else None
    if not isinstance(avoid, list) or len(avoid) > MAX_AVOID:
        return None
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in avoid):
        return None
    return avoid
