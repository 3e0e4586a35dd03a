"""A task root the unprivileged function user can read, even when the checkout lives where
other users cannot go (such as under /root, mode 0700): what `lambda_runtime` runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The parts of the project the function imports; the venv is staged alongside them.
TASK_PARTS = ("handler", "render")


def world_traversable(path: Path) -> bool:
    """True when a user with no special rights can reach and read `path`: every directory on
    the way, as written and with symlinks resolved, is searchable by others."""
    for chain in (Path(os.path.abspath(path)), path.resolve()):
        try:
            if not chain.stat().st_mode & stat.S_IROTH:
                return False
            if any(not parent.stat().st_mode & stat.S_IXOTH for parent in chain.parents):
                return False
            if chain.is_dir() and not chain.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _readable_mode(mode: int) -> int:
    """`mode` readable (and, if executable, runnable) by everyone, writable by the owner only."""
    mode |= stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if mode & stat.S_IXUSR:
        mode |= stat.S_IXGRP | stat.S_IXOTH
    return stat.S_IMODE(mode) & ~(stat.S_IWGRP | stat.S_IWOTH)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file whose mode is already right (fast: no data copied, and the source's mode
    is not touched); copy any other file and fix the copy's mode."""
    mode = stat.S_IMODE(os.stat(src).st_mode)
    if mode == _readable_mode(mode):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another filesystem, or links refused: copy instead
    shutil.copy2(src, dst)
    os.chmod(dst, _readable_mode(mode))


def _copy_readable(src: Path, dst: Path) -> None:
    """Copy a tree (symlinks kept as symlinks) so that everyone can read it and only we can write it."""
    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    for directory, _, _ in os.walk(dst):
        os.chmod(directory, 0o755)


def stage_task_root(project: Path, dest: Path) -> Path:
    """A task root (with its `.venv`) that the unprivileged function user can read.

    Lambda runs the function as a user that cannot write the task root; tests do the same. When
    the project and its venv are reachable by others they are used where they are; otherwise
    (a checkout under /root, or under any folder closed to others) handler/, render/ and .venv
    are copied into `dest`, whose own ancestors must be open to others. Run the copy's
    `.venv/bin/python`: a venv finds its packages relative to the interpreter path it was run by.
    """
    # No .venv inside the function image, whose packages are the interpreter's own.
    parts = [project / name for name in (*TASK_PARTS, ".venv") if (project / name).exists()]
    if all(world_traversable(path) for path in [project, *parts]):
        return project
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    if not world_traversable(dest):
        raise PermissionError(f"{dest} is not reachable by other users; stage into a folder that is")
    for part in parts:
        _copy_readable(part, dest / part.name)
    return dest


def task_python(task_root: Path) -> Path:
    """The interpreter a task root's function runs on: its staged `.venv`'s, or this one (in
    the function image, whose packages are the interpreter's own)."""
    staged = task_root / ".venv" / "bin" / "python"
    return staged if staged.exists() else Path(sys.executable)


@contextlib.contextmanager
def readable_tempdir(prefix: str = "lambda-") -> Iterator[Path]:
    """A root-owned temporary folder others can read but not write: a place for task roots.

    pytest's own tmp_path cannot serve: it lives under /tmp/pytest-of-<user>, mode 0700.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
