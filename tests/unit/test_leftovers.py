"""The suite's own check that the functions leave nothing in the shared temporary folders
(tests/support/leftovers.py), on a folder of the test's standing in for /tmp: which entries
count as a function's, and that removing them takes nothing else."""

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import leftovers

FUNCTION_UID = 65534  # no passwd entry needed: Lambda's users have none
OTHER_UID = 65533

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="files of other users need root")


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A stand-in /tmp, and a registry of functions of this test's own (the session's is not
    touched: a user noted there would be looked at by the session's check)."""
    monkeypatch.setattr(leftovers, "FUNCTIONS", leftovers.Functions())
    root = tmp_path / "tmp"
    root.mkdir(mode=0o1777)
    with leftovers.function_running(FUNCTION_UID, root / "work"):
        yield root


def make(path: Path, uid: int, folder: bool = False, mode: int = 0o755) -> Path:
    if folder:
        path.mkdir(mode=mode)
    else:
        path.write_text("planted\n")
    os.chown(path, uid, uid)
    return path


def test_only_new_entries_of_the_functions_users_count(tmp: Path) -> None:
    config = make(tmp / ".config", OTHER_UID, folder=True, mode=0o777)
    make(tmp / "old.cfg", FUNCTION_UID)
    before = leftovers.entries(roots=[tmp])

    manim = make(config / "manim", FUNCTION_UID, folder=True)
    make(manim / "manim.cfg", FUNCTION_UID)
    make(tmp / "root.log", 0)
    make(tmp / "other.log", OTHER_UID)
    now = leftovers.entries(roots=[tmp])

    made = leftovers.created_by_functions(before, now)
    assert made == {manim, manim / "manim.cfg"}  # found deep in a folder that was there before
    assert leftovers.outermost(made) == [manim]
    assert leftovers.describe([manim], now) == [f"{manim}  (uid {FUNCTION_UID}, a folder holding 1 entry)"]
    assert leftovers.created_by_functions(before, now, since=time.time() + 60) == set()


def test_closed_folders_of_ours_and_skipped_folders_are_not_entered(tmp: Path) -> None:
    closed = make(tmp / "pytest-of-root", os.getuid(), folder=True, mode=0o700)
    make(closed / "inside", FUNCTION_UID)
    work = make(tmp / "work", FUNCTION_UID, folder=True)
    make(work / "job", FUNCTION_UID)
    theirs = make(tmp / "theirs", FUNCTION_UID, folder=True, mode=0o700)
    make(theirs / "inside", FUNCTION_UID)

    found = leftovers.entries(skip=leftovers.FUNCTIONS.live_folders, roots=[tmp])

    assert set(found) == {closed, theirs, theirs / "inside"}


def test_removing_takes_the_functions_entries_and_nothing_else(tmp: Path) -> None:
    before = leftovers.entries(roots=[tmp])
    planted = make(tmp / "texmf", FUNCTION_UID, folder=True)
    make(planted / "amsmath.sty", FUNCTION_UID)
    shared = make(tmp / "shared", FUNCTION_UID, folder=True)
    foreign = make(shared / "foreign.log", OTHER_UID)
    link = tmp / "link"
    link.symlink_to(foreign)
    os.lchown(link, FUNCTION_UID, FUNCTION_UID)
    now = leftovers.entries(roots=[tmp])

    leftovers.remove(leftovers.created_by_functions(before, now), now)

    assert sorted(tmp.rglob("*")) == [shared, foreign]  # the folder stays for what it still holds
