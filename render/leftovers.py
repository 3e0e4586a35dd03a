"""What a task leaves behind, found and removed before the next one starts.

Where the function's uid is its own (on Lambda: one sandbox user per execution environment),
everything of that uid that did not exist before the first task, and is not the handler's or
the worker's, is the tasks' doing: processes and files alike. So instead of walking the
process tree (a process whose main thread has exited while another thread runs looks dead
there), every process of the uid is compared with the ones that existed before the first task
(the handler's ancestors, such as the runtime emulator, and any Lambda extension), and every
file in the scratch places (/tmp and the like) with the files that were there then.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from render.sandbox import has_running_threads, reap_children, remove_tree, signal_all

# The places any process of the uid can write, and so where a task can leave files.
SCRATCH_PLACES = (Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"))
_KILL_SECONDS = 5.0


class LeftoversRemain(Exception):
    """A process of a task could not be killed: the next task must not start beside it."""


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def _processes(uid: int) -> dict[int, int]:
    """Every process of `uid`: its pid and its start time (pids are reused; the pair is not)."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _owner(int(entry.name)) == uid:
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                found[int(entry.name)] = int(fields[19])
    return found


def _files(places: Iterable[Path], skip: set[Path], uid: int) -> set[tuple[str, int]]:
    """(path, inode) of everything of `uid` under `places`, not inside `skip`, links not followed."""
    found: set[tuple[str, int]] = set()
    for place in places:
        for folder, subfolders, names in os.walk(place):
            subfolders[:] = [name for name in subfolders if Path(folder, name) not in skip]
            for name in (*subfolders, *names):
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if info.st_uid == uid:
                    found.add((path, info.st_ino))
    return found


class Leftovers:
    """The uid's processes and files from before the first task; `clear` removes the rest."""

    def __init__(self, places: Iterable[Path] = SCRATCH_PLACES, uid: int | None = None) -> None:
        self.uid = os.getuid() if uid is None else uid
        self._places = [place for place in places if place.is_dir()]
        self._processes: dict[int, int] | None = None
        self._files: set[tuple[str, int]] = set()

    def clear(self, spare: Iterable[int], keep: Iterable[Path]) -> tuple[int, int]:
        """Kill every process of the uid that is neither from before the first task nor in
        `spare`, and remove every file of the uid in the scratch places that is neither from
        then nor inside `keep` (the trusted side's own folders). The first call only takes
        note of what exists. Returns (processes killed, files removed); raises LeftoversRemain
        if a process will not die."""
        keep = {Path(path) for path in keep}
        if self._processes is None:
            self._processes = _processes(self.uid)
            self._files = _files(self._places, keep, self.uid)
            return 0, 0
        killed = self._kill(set(spare) | {os.getpid()})
        removed = 0
        for path, _ in sorted(_files(self._places, keep, self.uid) - self._files, reverse=True):
            if not os.path.lexists(path):
                continue
            if _is_folder(path):
                remove_tree(Path(path))
            else:
                _unlink(path)
            removed += 1
        return killed, removed

    def _kill(self, spare: set[int]) -> int:
        assert self._processes is not None
        killed: set[int] = set()
        deadline = time.monotonic() + _KILL_SECONDS
        while True:
            strays = [
                pid
                for pid, started in _processes(self.uid).items()
                if pid not in spare and self._processes.get(pid) != started and has_running_threads(pid)
            ]
            if not strays:
                reap_children(spare)
                return len(killed)
            if time.monotonic() > deadline:
                raise LeftoversRemain(f"processes {sorted(strays)} of the render survived being killed")
            # Stopped first, so none can fork faster than they are killed; a kill ends every thread.
            signal_all(strays, signal.SIGSTOP)
            signal_all(strays, signal.SIGKILL)
            killed.update(strays)
            time.sleep(0.002)
            reap_children(spare)


def _is_folder(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
