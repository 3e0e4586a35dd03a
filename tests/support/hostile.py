"""Hostile scenes for the security suite, and what the tests look at afterwards."""

from pathlib import Path


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
