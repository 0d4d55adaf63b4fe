"""Decoding ahead and encoding behind on background threads, so that ffmpeg works while the model computes:
``prefetch`` (any iterator, e.g. a ``FrameSource``) and ``ThreadedSink`` (a ``FrameSink``).

Public through ``framefill.video``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from typing import Any, TypeVar

import numpy as np

from framefill.frames import CommitOnExit, check_frame
from framefill.video_sink import FrameSink

T = TypeVar("T")

_END = object()


class ThreadedSink(CommitOnExit):
    """A FrameSink that encodes on a background thread behind a bounded queue, overlapping encode with compute.

    ``write()`` only enqueues, so a frame must not be modified after it is written. An error of the encoding
    thread is raised by the next ``write()`` and by ``close()``.

    Args:
        sink: the sink to write into; ThreadedSink closes or aborts it.
        depth: frames the queue holds before ``write()`` waits.
    """

    def __init__(self, sink: FrameSink, depth: int = 8) -> None:
        self.sink = sink
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._dropping = False  # set by abort(): discard queued frames instead of encoding them
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="framefill-encode", daemon=True)
        self._thread.start()

    @property
    def frames_written(self) -> int:
        """Frames encoded so far (all frames written, once closed)."""
        return self.sink.frames_written

    def _run(self) -> None:
        while (frame := self._queue.get()) is not _END:
            if self._error is None and not self._dropping:
                try:
                    self.sink.write(frame)
                except BaseException as e:  # kept for the caller; go on draining so write() never blocks
                    self._error = e

    def write(self, frame: np.ndarray) -> None:
        """Queue a frame, an ``(H, W, 3)`` uint8 RGB array, for encoding."""
        if self._closed:
            raise RuntimeError(f"ThreadedSink for {self.sink.path} is closed")
        if self._error is not None:
            raise self._error
        self._queue.put(check_frame(frame, self.sink.width, self.sink.height, self.sink.dtype))

    def _join(self) -> None:
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()

    def close(self) -> None:
        """Encode the queued frames and close the sink; re-raise the encoding thread's error, if any."""
        try:
            self._join()
        except BaseException:
            self.abort()
            raise
        if self._error is not None:
            self.sink.abort()
            raise self._error
        self.sink.close()

    def abort(self) -> None:
        """Drop queued frames and abort the sink."""
        self._dropping = True
        self._join()
        self.sink.abort()



def prefetch(it: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Run ``it`` on a background thread, ``depth`` items ahead, to overlap e.g. decoding with compute.

    An exception of ``it`` is re-raised here. If the consumer stops early (``close()`` on this generator, or
    it is garbage-collected) the thread stops and closes ``it``, which stops a FrameSource's ffmpeg.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            with suppress(queue.Full):
                items.put(message, timeout=0.05)
                return True
        return False

    def produce() -> None:
        source = iter(it)
        try:
            if all(put(("item", item)) for item in source):
                put(("end", None))
        except BaseException as e:
            put(("error", e))
        finally:
            if close := getattr(source, "close", None):
                close()

    thread = threading.Thread(target=produce, name="framefill-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
