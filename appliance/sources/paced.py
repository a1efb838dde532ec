"""The common body of the sources that make their own frames (test pattern, recording).

Their one thread prepares (opens the encoder, reads the file), then produces one frame per
real-time slot and pushes its access units into the queue. A subclass supplies `_prepare`,
`_produce` and `_release`, all run on that thread.
"""

from __future__ import annotations

import abc
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable

from cvh_camera.appliance.sources.base import AccessUnit, SourceError
from cvh_camera.appliance.sources.pacing import Pacer
from cvh_camera.appliance.sources.threaded import ThreadedSource

log = logging.getLogger(__name__)


class PacedSource(ThreadedSource):
    def __init__(
        self,
        *,
        name: str,
        width: int,
        height: int,
        fps: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name=name, width=width, height=height, fps=fps)
        self._clock = clock

    def _thread_main(self, stop: threading.Event, ready: concurrent.futures.Future[None]) -> None:
        try:
            self._prepare()
        except Exception as exc:
            if not isinstance(exc, SourceError):
                log.exception("source=%s preparation failed", self.name)
                exc = SourceError(f"the {self.name} source cannot start: {exc}")
            ready.set_exception(exc)
            self._release()
            return
        ready.set_result(None)
        try:
            self._produce_until(stop)
        except Exception as exc:  # the one place this thread's failures end up
            log.exception("source=%s failed", self.name)
            self._fail(SourceError(f"the {self.name} source failed: {exc}"))
        finally:
            self._release()

    def _produce_until(self, stop: threading.Event) -> None:
        pacer = Pacer(self.fps, clock=self._clock)
        while (slot := pacer.next_slot(stop)) is not None:
            timestamp_us, skipped = slot
            if skipped:
                self._counter.count_skipped(skipped)
            forced = self._keyframe.take()
            for unit in self._produce(timestamp_us, force_keyframe=forced):
                self._counter.count_unit(keyframe=unit.keyframe, forced=forced)
                self._push(unit)

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Open what the source needs; raise SourceError if it cannot."""

    @abc.abstractmethod
    def _produce(self, timestamp_us: int, *, force_keyframe: bool) -> list[AccessUnit]:
        """The access units of the frame due at `timestamp_us`."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free what `_prepare` opened (also after a failed `_prepare`)."""
