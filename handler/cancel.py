"""How a render learns, from elsewhere, that it is no longer wanted: something in storage says
so (a job's cancel key; a chunk's request removed by the render it belongs to), and a thread
looks for it every second while the render runs, setting the event render/ stops on."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from handler.observability import logger

# How often a running render looks whether it is still wanted.
LOOK_SECONDS = 1.0


@contextlib.contextmanager
def cancelled_when(unwanted: Callable[[], bool], every: float = LOOK_SECONDS) -> Iterator[threading.Event]:
    """An event set once `unwanted()` is true, asked every `every` seconds while the block
    runs. A look that fails (storage unreachable) counts as still wanted: the next one may
    succeed, and a render is never stopped on a guess."""
    cancelled = threading.Event()
    done = threading.Event()

    def look() -> None:
        while not done.wait(every):
            try:
                if unwanted():
                    cancelled.set()
                    return
            except Exception:
                logger.warning("Could not look whether the render is still wanted", exc_info=True)

    looker = threading.Thread(target=look, name="cancel-look", daemon=True)
    looker.start()
    try:
        yield cancelled
    finally:
        done.set()
        looker.join()
