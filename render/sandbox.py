"""Containment for a render: process-tree control, resource limits and a clean environment.

Everything here works without privileges, because Lambda grants none: no namespaces, no
seccomp, every process under one uid. What it relies on instead: a child subreaper (so no
descendant can escape being found and killed), non-dumpable processes (so a script cannot
read another process's memory or environment through /proc), rlimits, and an environment
rebuilt from nothing.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from render.limits import RenderLimits

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38

# Environment variables a render may inherit; everything else (credentials, the Lambda
# runtime API, the worker's settings) is dropped.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "FONTCONFIG_PATH", "FONTCONFIG_FILE")


def _prctl(option: int, value: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def make_non_dumpable() -> bool:
    """Close this process's /proc/<pid>/environ, mem and fd to other processes of its uid,
    and refuse ptrace from them."""
    return _prctl(_PR_SET_DUMPABLE, 0)


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so a double-forked daemon comes back to us to be killed."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> bool:
    """Have the kernel kill this process if its parent dies."""
    return _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def forbid_new_privileges() -> bool:
    """No setuid binary can raise this process's privileges (refused on some platforms)."""
    return _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def clean_environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment holding only harmless variables, with every home, cache and TeX path
    inside `home`, so nothing one task writes is read by another."""
    env = {key: value for key, value in os.environ.items() if key in _INHERITED_ENV}
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        MPLCONFIGDIR=str(home / ".cache/matplotlib"),
        TEXMFHOME=str(home / "texmf"),
        TEXMFVAR=str(home / ".texmf-var"),
        TEXMFCONFIG=str(home / ".texmf-config"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="160",
    )
    env.update(extra or {})
    return env


def apply_limits(limits: RenderLimits, timeout_seconds: float) -> None:
    """Set this process's rlimits, CPU time from its time limit; they pass to everything it
    starts."""
    cpu = int(timeout_seconds) + 1
    settings = {
        resource.RLIMIT_CPU: (cpu, cpu + 5),
        resource.RLIMIT_AS: (limits.memory_mb * 1024 * 1024,) * 2,
        resource.RLIMIT_FSIZE: (limits.max_output_mb * 1024 * 1024,) * 2,
        resource.RLIMIT_NOFILE: (limits.max_open_files,) * 2,
        resource.RLIMIT_NPROC: (limits.max_processes,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for kind, (soft, wanted) in settings.items():
        _, current_hard = resource.getrlimit(kind)
        hard = wanted if current_hard == resource.RLIM_INFINITY else min(wanted, current_hard)
        resource.setrlimit(kind, (min(soft, hard), hard))


def _process_table() -> list[tuple[int, int, bytes, int]]:
    """(pid, parent pid, state, start time in clock ticks) of every process, from /proc."""
    table = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table.append((int(entry.name), int(fields[1]), fields[0], int(fields[19])))
    return table


def start_time(pid: int) -> int:
    """When `pid` started, in clock ticks since boot (to tell processes apart by age)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return int(handle.read().rsplit(b")", 1)[1].split()[19])


def has_running_threads(pid: int) -> bool:
    """Whether any thread of `pid` still runs: a process whose main thread has exited shows
    as a zombie while its other threads go on."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/stat", "rb") as handle:
                if handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
                    return True
        except OSError:
            continue
    return False


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (a zombie leader of running threads included)."""
    children: dict[int, list[int]] = {}
    for child, parent, state, _ in _process_table():
        if state not in (b"Z", b"X") or has_running_threads(child):
            children.setdefault(parent, []).append(child)
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found


def signal_all(pids: Iterable[int], signum: int) -> None:
    """Send `signum` to each of `pids` that is still there."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def reap_children(exclude: Iterable[int] = ()) -> None:
    """Collect this process's exited children (adopted orphans included), so none stays a
    zombie; those in `exclude` are left for their owner to collect with their status."""
    for pid in _zombie_children(set(exclude)):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def kill_descendants(pid: int, exclude: Iterable[int] = (), deadline_seconds: float = 5.0) -> int:
    """Kill every process below `pid` (but those in `exclude`), forks made meanwhile included.

    Stops them first, so a process cannot fork faster than it is killed. Returns how many
    were killed. Exited children are reaped, except those in `exclude`.
    """
    spared = set(exclude)
    killed: set[int] = set()
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        alive = [child for child in descendants(pid) if child not in spared]
        if alive:
            signal_all(alive, signal.SIGSTOP)
            signal_all(alive, signal.SIGKILL)
            killed.update(alive)
        elif not _zombie_children(spared):
            break
        # Reap as we go: killed processes' orphans reach us as zombies, and a zombie still
        # counts against the uid's process limit for the next task.
        time.sleep(0.002)
        reap_children(spared)
    return len(killed)


def _zombie_children(spared: set[int]) -> list[int]:
    me = os.getpid()
    return [pid for pid, parent, state, _ in _process_table() if parent == me and state == b"Z" and pid not in spared]


def kill_adopted_orphans(started_since: int, spared: Iterable[int] = ()) -> int:
    """Kill the processes this subreaper adopted that started at or after `started_since`
    (with everything below them): what a dead worker's tasks left behind."""
    me = os.getpid()
    keep = set(spared)
    orphans = [
        pid
        for pid, parent, state, started in _process_table()
        if parent == me and started >= started_since and pid not in keep and state not in (b"Z", b"X")
    ]
    killed = 0
    for orphan in orphans:
        killed += kill_descendants(orphan, exclude=keep)
        signal_all([orphan], signal.SIGKILL)
        killed += 1
    reap_children(keep)
    return killed


def own_folder(path: Path) -> Path:
    """`path` as a real folder of this uid, made anew if a task put something else in its place
    (a file, a link, a FIFO): trusted code never works in a folder a task replaced."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()):
        if stat.S_ISDIR(info.st_mode):
            remove_tree(path)
        else:
            path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_tree(path: Path, attempts: int = 50) -> None:
    """Remove a task folder whatever the script did to it (folders made unreadable included)."""
    for _ in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError as error:
            failed = Path(error.filename or path)
            for candidate in (failed.parent, failed):
                if candidate.is_dir() and not candidate.is_symlink():
                    try:
                        os.chmod(candidate, stat.S_IRWXU)
                    except OSError:
                        pass
    shutil.rmtree(path, ignore_errors=True)
