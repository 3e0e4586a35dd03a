"""What a render may use: resources per process, and a deadline for the whole of it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RenderLimits:
    """The resources each process of a render may use (its time comes from its Deadline)."""

    memory_mb: int = 2048
    max_output_mb: int = 512
    max_processes: int = 64
    max_open_files: int = 256


@dataclass(frozen=True)
class Deadline:
    """The moment, on the monotonic clock, by which a piece of work must be done, and the
    signal that it is no longer wanted at all (`cancelled`, set by whoever may cancel it).

    Every step of a render (plan, ranges, join) takes its time limit from the same deadline,
    so that what one step spends is not given again to the next, and stops when it is
    cancelled.
    """

    at: float
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False)

    # However little time is left, a step started now is given at least this long.
    MIN_SECONDS = 1.0

    @classmethod
    def after(cls, seconds: float, cancelled: threading.Event | None = None) -> Deadline:
        return cls(time.monotonic() + seconds, cancelled or threading.Event())

    def seconds_left(self) -> float:
        """The time limit of a step started now."""
        return max(self.MIN_SECONDS, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at
