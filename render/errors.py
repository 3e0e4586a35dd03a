"""Why a render did not produce a video, in terms a caller (or an LLM) can act on."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from render.limits import RenderLimits

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """Remove terminal colour and cursor codes, which mean nothing outside a terminal."""
    return _ANSI.sub("", text)


class RenderError(Exception):
    """Base of every reason a render ends without a video."""

    def details(self) -> dict[str, Any]:
        """Machine-readable facts about the failure, for the response's `errors`."""
        return {"type": type(self).__name__}


class ScriptError(RenderError):
    """The script itself cannot render: a syntax error, no scene, or an exception it raised.

    Retrying cannot help; the script has to change. `line` is a line of the user's script.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        line: int | None = None,
        traceback: str | None = None,
        scenes: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.line = line
        self.traceback = traceback
        self.scenes = scenes

    def details(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "type": self.error_type,
            "message": self.message,
            "line": self.line,
            "traceback": self.traceback,
            "scenes": self.scenes,
        }
        return {key: value for key, value in found.items() if value is not None}


class FramePastEnd(RenderError):
    """The frame asked for (`frameAt`) is past the scene's end."""

    def __init__(self, at: float, duration: float) -> None:
        super().__init__(f"frameAt {at:g} s is past the end of the scene, which lasts {duration:g} s.")
        self.duration = duration

    def details(self) -> dict[str, Any]:
        return {"type": "FramePastEnd", "duration": self.duration}


class RenderCancelled(RenderError):
    """The render was stopped because its caller no longer wants it (a cancelled job)."""

    def __init__(self) -> None:
        super().__init__("The render was cancelled.")

    def details(self) -> dict[str, Any]:
        return {"type": "Cancelled"}


class RenderTimeout(RenderError):
    """The render ran past its time limit and was stopped, with everything it started."""

    def __init__(self, limit_seconds: float) -> None:
        super().__init__(f"The render took longer than its time limit of {limit_seconds:g} s.")
        self.limit_seconds = limit_seconds

    def details(self) -> dict[str, Any]:
        return {"type": "TimeLimitExceeded", "limitSeconds": self.limit_seconds}


class ResourceLimitExceeded(RenderError):
    """The render went past one of its resource limits (memory, CPU time, output, processes,
    open files) and was stopped."""

    # Each limit's name in a sentence, the RenderLimits field that sets it, and its unit.
    _DESCRIPTIONS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "memory": ("memory", "memory_mb", "MB"),
        "output": ("output size", "max_output_mb", "MB"),
        "processes": ("process count", "max_processes", ""),
        "open_files": ("open files", "max_open_files", ""),
    }

    def __init__(self, limit: str, limits: RenderLimits, timeout_seconds: float) -> None:
        self.value: float | None
        if limit == "cpu":
            self.what, self.value, self.unit = "CPU time", float(timeout_seconds), "s"
        else:
            self.what, field, self.unit = self._DESCRIPTIONS.get(limit, (limit, "", ""))
            self.value = getattr(limits, field, None)
        self.limit = limit
        super().__init__(self.describe())

    def describe(self, setting: str | None = None) -> str:
        """The sentence for the caller, naming the deployment's `setting` for it if given."""
        unit = f" {self.unit}" if self.unit else ""
        amount = f" of {self.value:g}{unit}" if self.value is not None else ""
        named = f" ({setting})" if setting else ""
        return f"The render exceeded its {self.what} limit{amount}{named} and was stopped."

    def details(self) -> dict[str, Any]:
        return {"type": "ResourceLimitExceeded", "limit": self.limit, "value": self.value}


class RendererFailed(RenderError):
    """The render process ended without a result: our fault or the machine's, not the script's."""

    def details(self) -> dict[str, Any]:
        return {"type": "RendererFailed"}


class ToolMissing(RendererFailed):
    """A program the render needs (latex, dvisvgm) is not installed where it runs: the
    deployment's fault, not the script's, so it is answered as ours and raised where ours are."""

    def __init__(self, tool: str) -> None:
        super().__init__(
            f"The render needs {tool}, which is not installed on the render worker (not on its PATH); "
            "this is our fault, not the script's."
        )
        self.tool = tool

    def details(self) -> dict[str, Any]:
        return {"type": "ToolMissing", "tool": self.tool}
