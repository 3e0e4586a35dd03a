"""What the emulated functions leave in this machine's shared temporary folders.

On Lambda each execution environment has a /tmp of its own, discarded with it. Here the
functions (`lambda_runtime`, as an unprivileged user) share the machine's /tmp, /dev/shm and
/var/tmp, and whatever they write there (the hostile scenes plant config files and TeX packages
on purpose) would change a later render run from that folder, tests or not. So the runtimes note
here the users they run as and the work folders they live in; tests/conftest.py removes, after
each test, what those users created during it (outside the live work folders, which end with
their runtime), and fails the session if anything of theirs that it did not find is left at its
end.

Only the functions' users are looked at, never root's (or the session's own) files: on a shared
machine other sessions, tools and engineers create root's files in /tmp all the time, while the
functions' users run nothing but the functions of the one session holding the suite's lock
(README, Tests). A user is looked at only once a function of this session has run as it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

# The folders every user may write, so the ones a function reaches outside its work folder.
TEMP_ROOTS = (Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"))


class Entry(NamedTuple):
    uid: int  # its owner
    is_dir: bool
    changed: float  # its ctime: when it was made, or last written or renamed


Entries = dict[Path, Entry]


@dataclass
class Functions:
    """The functions this session has run as another user."""

    uids: set[int] = field(default_factory=set)  # every uid one has run as
    live_folders: set[Path] = field(default_factory=set)  # the work folders of those still running
    started: int = 0  # how many have started so far


FUNCTIONS = Functions()


def uid_of(user: str | int) -> int:
    """The uid of a user name, or the uid itself (Lambda's users have no passwd entry)."""
    return user if isinstance(user, int) else pwd.getpwnam(user).pw_uid


@contextlib.contextmanager
def function_running(uid: int, work_folder: Path | None) -> Iterator[None]:
    """While a function runs as `uid` with `work_folder` (its RENDER_WORK_DIR, removed when it
    stops): its user's files are looked at, its work folder is not."""
    FUNCTIONS.uids.add(uid)
    FUNCTIONS.started += 1
    if work_folder is not None:
        FUNCTIONS.live_folders.add(work_folder)
    try:
        yield
    finally:
        if work_folder is not None:
            FUNCTIONS.live_folders.discard(work_folder)


def _others_may_enter(info: os.stat_result) -> bool:
    """False for a folder of root's or ours that neither its group nor others may enter, such as
    pytest's basetemp (/tmp/pytest-of-<user>, 0700, which holds by far the most) and mkdtemp's
    folders: no function user can have created anything inside it."""
    if info.st_uid not in (0, os.getuid()):
        return True
    return bool(info.st_mode & (stat.S_IXGRP | stat.S_IXOTH))


def entries(skip: Collection[Path] = (), roots: Iterable[Path] = TEMP_ROOTS) -> Entries:
    """Every entry below `roots` (links not followed), except `skip` and all in it and what is
    inside folders no function user may enter. Milliseconds: that leaves little in /tmp."""
    found: Entries = {}
    pending = [root for root in roots if root.is_dir()]
    while pending:
        try:
            listing = list(os.scandir(pending.pop()))
        except OSError:
            continue  # removed meanwhile
        for item in listing:
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            path = Path(item.path)
            if path in skip:
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            found[path] = Entry(info.st_uid, is_dir, info.st_ctime)
            if is_dir and _others_may_enter(info):
                pending.append(path)
    return found


def created_by_functions(before: Entries, now: Entries, since: float | None = None) -> set[Path]:
    """The entries in `now` that a function user of this session owns and `before` did not hold
    (as that user's); with `since`, only those made or changed since then."""
    return {
        path
        for path, entry in now.items()
        if entry.uid in FUNCTIONS.uids
        and (path not in before or before[path].uid != entry.uid)
        and (since is None or entry.changed >= since)
    }


def outermost(paths: Collection[Path]) -> list[Path]:
    """`paths` without those inside another of them, sorted."""
    return sorted(path for path in paths if not any(parent in paths for parent in path.parents))


def remove(paths: Collection[Path], now: Entries) -> None:
    """Remove these entries (as `now` found them): files and links, then folders from the
    deepest, each only once empty, so that nothing else that came into one meanwhile goes with
    it. Never through a link; what is gone already is no error."""
    for path in sorted(paths, key=lambda path: len(path.parts), reverse=True):
        try:
            if now[path].is_dir:
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            pass  # gone, replaced meanwhile, or not empty: left for the session's check to name


def describe(paths: Iterable[Path], now: Entries) -> list[str]:
    """A line an entry: its path, its owner, and how many entries a folder holds."""
    lines = []
    for path in paths:
        inside = sum(1 for other in now if path in other.parents)
        holds = f", a folder holding {inside} {'entry' if inside == 1 else 'entries'}" if now[path].is_dir else ""
        lines.append(f"{path}  (uid {now[path].uid}{holds})")
    return lines
