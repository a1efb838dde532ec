"""Edges: further Janus instances that carry the origin's verified feeds (docs/scaling.md).

The cameras publish to the origin Janus (`janus.url`). For every edge in `janus.edges` the
cascade keeps a room of its own on that edge (a `JanusRoom`: created like the origin's, the
same number and pin, created again when the edge restarts) and makes it carry exactly the
feeds the service has verified, each under the origin's feed id: `add_remote_publisher` on
the edge (Janus answers with the UDP ports it listens on), then `publish_remotely` on the
origin, which forwards the feed's RTP there. So `new_feed {feedId}` is valid on every Janus.

Each edge has a keeper task that reconciles what should be with what is: woken when the
verified feeds change, and every `RECONCILE_INTERVAL` seconds anyway (it lists the edge's
participants, so an edge that lost its feeds, or came back, is brought up to date without
anyone touching it). An edge that fails only logs and shows in `/healthz`; the origin and
the other edges carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from cvh_camera.server.config import EdgeSettings, JanusSettings
from cvh_camera.server.janus_room import (
    FAILURES,
    NO_SUCH_FEED,
    JanusRoom,
    RoomState,
    RoomUnavailable,
)
from cvh_camera.tasks import stop_tasks

log = logging.getLogger(__name__)

FeedId = int | str
RECONCILE_INTERVAL = 2.0  # seconds between two looks at an edge when nothing changed
STOP_TIMEOUT = 5.0
_REMOTE_ID = "cvh-edge-{index}"  # our name for an edge in the origin's publish_remotely


@dataclass
class Edge:
    """One edge Janus: its room, what it carries, and what went wrong last."""

    index: int
    settings: EdgeSettings
    room: JanusRoom
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    carried: set[FeedId] = field(default_factory=set)
    last_error: str = ""

    @property
    def remote_id(self) -> str:
        return _REMOTE_ID.format(index=self.index)

    @property
    def ready(self) -> bool:
        return self.room.state is RoomState.READY

    def status(self) -> dict[str, Any]:
        return {
            **self.room.status(),
            "url": self.settings.url,
            "feeds": sorted(self.carried, key=str),
            "reconcile_error": self.last_error,
        }


class Cascade:
    def __init__(
        self,
        origin: JanusRoom,
        janus: JanusSettings,
        publishers: int,
        verified_feeds: Callable[[], Collection[FeedId]],
        *,
        interval: float = RECONCILE_INTERVAL,
    ) -> None:
        self._origin = origin
        self._verified = verified_feeds
        self._interval = interval
        self._streams: dict[FeedId, list[dict[str, Any]]] = {}  # per feed, from the origin
        self.edges = [
            Edge(index, settings, JanusRoom(
                _edge_room(janus, settings), publishers,
                on_lost=functools.partial(self._edge_lost, index),
            ))
            for index, settings in enumerate(janus.edges)
        ]  # fmt: skip
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        for edge in self.edges:
            edge.room.start()
            self._tasks.append(asyncio.create_task(self._keep(edge), name=f"edge-{edge.index}"))

    async def close(self) -> None:
        """Stop the keepers; destroy the rooms on the edges (the origin's room is not ours)."""
        await stop_tasks(self._tasks, STOP_TIMEOUT)
        self._tasks = []
        await asyncio.gather(*(edge.room.close() for edge in self.edges))

    # -------------------------------------------------------------- requests

    def feeds_changed(self) -> None:
        """The verified feeds changed: every keeper looks at its edge now."""
        for edge in self.edges:
            edge.wake.set()

    # The service's RoomControl: the origin, and the pin on every edge too.

    def apply_bitrate(self, slot: int, session_id: int, handle_id: int, bitrate: int) -> None:
        self._origin.apply_bitrate(slot, session_id, handle_id, bitrate)

    def kick_publisher(self, feed_id: FeedId) -> None:
        self._origin.kick_publisher(feed_id)  # the keepers then remove it from the edges

    def edit_pin(self, pin: str) -> None:
        self._origin.edit_pin(pin)
        for edge in self.edges:
            edge.room.edit_pin(pin)

    def usable(self) -> list[int]:
        """The edges a receiver can use now: their room is up."""
        return [edge.index for edge in self.edges if edge.ready]

    def status(self) -> list[dict[str, Any]]:
        return [edge.status() for edge in self.edges]

    # ------------------------------------------------------------- internals

    def _edge_lost(self, index: int) -> None:
        """The edge's session or room went: what it carried went with it."""
        edge = self.edges[index]
        if edge.carried:
            log.warning("edge=%d lost, with feeds=%s", edge.index, sorted(edge.carried, key=str))
        edge.carried.clear()

    async def _keep(self, edge: Edge) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await edge.wake.wait()
            edge.wake.clear()
            try:
                await self._reconcile(edge)
                edge.last_error = ""
            except (*FAILURES, RoomUnavailable) as error:
                if str(error) != edge.last_error:
                    log.warning("edge=%d reconcile failed: %s", edge.index, error)
                edge.last_error = str(error)
            except Exception as error:  # one broad catch per task loop: log, go on
                log.exception("edge=%d reconcile failed", edge.index)
                edge.last_error = f"unexpected: {error}"

    async def _reconcile(self, edge: Edge) -> None:
        if not edge.ready or self._origin.state is not RoomState.READY:
            return
        wanted = set(self._verified())
        roster = await edge.room.participants()
        present = {p.id for p in roster.participants if p.remote}
        edge.carried = present & wanted
        for feed_id in sorted(wanted - present, key=str):
            await self._add(edge, feed_id)
        for feed_id in sorted(present - wanted, key=str):
            await self._remove(edge, feed_id)
        self._streams = {k: v for k, v in self._streams.items() if k in wanted}

    async def _add(self, edge: Edge, feed_id: FeedId) -> None:
        streams = await self._streams_of(feed_id)
        answer = await edge.room.room_request(
            {"request": "add_remote_publisher", "id": feed_id, "streams": streams}
        )
        await self._unpublish_remotely(edge, feed_id)  # a forward to the edge's old room
        try:
            await self._origin.room_request(
                {
                    "request": "publish_remotely",
                    "publisher_id": feed_id,
                    "remote_id": edge.remote_id,
                    "host": edge.settings.media_host,
                    "port": answer["port"],
                    "rtcp_port": answer["rtcp_port"],
                }
            )
        except BaseException:
            await self._remove_remote(edge, feed_id)  # no half-made feed on the edge
            raise
        edge.carried.add(feed_id)
        log.info("edge=%d feed=%s added (rtp to %s:%s)", edge.index, feed_id,
                 edge.settings.media_host, answer["port"])  # fmt: skip

    async def _remove(self, edge: Edge, feed_id: FeedId) -> None:
        await self._remove_remote(edge, feed_id)
        await self._unpublish_remotely(edge, feed_id)
        edge.carried.discard(feed_id)
        log.info("edge=%d feed=%s removed", edge.index, feed_id)

    async def _remove_remote(self, edge: Edge, feed_id: FeedId) -> None:
        with _gone_is_fine():
            await edge.room.room_request({"request": "remove_remote_publisher", "id": feed_id})

    async def _unpublish_remotely(self, edge: Edge, feed_id: FeedId) -> None:
        """Stop the origin's forward of the feed to this edge; none there is fine."""
        with _gone_is_fine():
            await self._origin.room_request(
                {"request": "unpublish_remotely", "publisher_id": feed_id,
                 "remote_id": edge.remote_id}
            )  # fmt: skip

    async def _streams_of(self, feed_id: FeedId) -> list[dict[str, Any]]:
        """The feed's streams as add_remote_publisher wants them, asked of the origin once."""
        if feed_id not in self._streams:
            self._streams[feed_id] = remote_streams(await self._origin.feed_streams(feed_id))
        return self._streams[feed_id]


def remote_streams(subscribed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """add_remote_publisher's `streams` from what a subscriber of the feed was offered.

    The origin forwards each stream with an SSRC derived from the publisher's m-line index,
    and the edge numbers the streams it is given from 0: so they are listed in the
    publisher's order (its mids are its m-line indices, "0", "1", ...)."""
    media = [s for s in subscribed if s.get("type") in ("audio", "video") and s.get("codec")]
    media.sort(key=lambda s: int(s["feed_mid"]) if str(s.get("feed_mid")).isdigit() else 0)
    if not media:
        raise RoomUnavailable("the feed offers no audio or video stream to forward")
    return [
        {"type": s["type"], "mindex": index, "mid": str(index), "codec": s["codec"]}
        for index, s in enumerate(media)
    ]


@contextlib.contextmanager
def _gone_is_fine() -> Iterator[None]:
    """A removal that finds nothing to remove has nothing left to do."""
    try:
        yield
    except RoomUnavailable as error:
        if error.code != NO_SUCH_FEED:  # Janus's code for no such publisher or forward
            raise


def _edge_room(janus: JanusSettings, edge: EdgeSettings) -> JanusSettings:
    """The edge's room: the origin's number, pin and bitrate, the edge's URL and keys."""
    return JanusSettings(
        url=edge.url,
        room=janus.room,
        secret=edge.secret,
        pin=janus.pin,
        admin_key=edge.admin_key,
        bitrate=janus.bitrate,
    )
