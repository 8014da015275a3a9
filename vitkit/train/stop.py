"""Stopping a run cleanly: SIGINT / SIGTERM become a flag the loop checks between steps, so it can save and exit."""

from __future__ import annotations

import signal
from typing import Any


class StopRequest:
    """While active, SIGINT / SIGTERM set ``.signal`` instead of interrupting; the old handlers come back on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, sig: int, frame: Any) -> None:
        self.signal = sig

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
