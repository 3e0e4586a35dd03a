"""Hostile scenes for the security suite, and what the tests look at afterwards."""

from pathlib import Path

# Script code (needs `os`): what a job that reaches other jobs' folders does to them, turning
# the blue circle of every other job's script red.
TURN_OTHERS_RED = """
def turn_others_red(jobs, mine):
    for job in os.listdir(jobs):
        script = os.path.join(jobs, job, "work", "scene.py")
        try:
            if os.path.join(jobs, job) != mine and "BLUE" in open(script).read():
                text = open(script).read().replace("BLUE", "RED")
                with open(script, "w") as handle:
                    handle.write(text)
        except OSError:
            pass
"""


def scene(body: str, imports: str = "") -> str:
    """A scene whose construct runs `body` (indented by the caller's four spaces)."""
    lines = "\n".join("        " + line for line in body.strip("\n").splitlines())
    header = f"import os, sys, time, signal, subprocess\n{imports}\nfrom manim import *\n\n\n"
    return header + f"class Hostile(Scene):\n    def construct(self):\n{lines}\n        self.wait(0.1)\n"


def processes_with(argument: str) -> list[int]:
    """Live processes whose command line contains `argument`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argument in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def processes_of(uid: int) -> set[int]:
    """Every process of `uid`, whatever its state."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.add(int(entry.name))
        except OSError:
            continue
    return found
