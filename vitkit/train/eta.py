"""The estimated time to the end of a training run, shown on the progress bar and after each epoch.

The estimate is the pace of this process so far (wall time per optimiser step, evaluation and checkpoint time
included, since they recur every epoch) times the steps left; a ``time_limit`` caps it. It needs one step
before it says anything, and it learns the cost of evaluation after the first epoch.
"""

from __future__ import annotations

import time


class RunClock:
    """Pace of a run since this process started (or resumed) it."""

    def __init__(self, total_steps: int, steps_done: int, time_limit_s: float | None = None,
                 clock=time.monotonic) -> None:
        self.total, self.first, self.limit, self.clock = total_steps, steps_done, time_limit_s, clock
        self.start = clock()

    def remaining(self, steps_done: int) -> float | None:
        """Seconds to the end of the run at the pace so far; None before the first step of this process."""
        done = steps_done - self.first
        if done <= 0:
            return None
        elapsed = self.clock() - self.start
        left = elapsed / done * max(0, self.total - steps_done)
        return min(left, max(0.0, self.limit - elapsed)) if self.limit is not None else left

    def text(self, steps_done: int) -> str:
        """``1:02:03`` (or ``?`` before the first step)."""
        seconds = self.remaining(steps_done)
        return "?" if seconds is None else format_duration(seconds)


def format_duration(seconds: float) -> str:
    """``m:ss`` under an hour, else ``h:mm:ss``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
