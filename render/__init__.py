"""The Manim engine: scene discovery, rendering in a contained worker, chunking, error extraction.

It knows Manim, processes and files, and nothing of AWS, HTTP or storage, so it can be used and
tested on its own. This module is its front: `render(worker, spec, ...)` is the one call that
renders, and handler/ imports nothing from render/ but what is named here.
"""

from importlib.metadata import version

from render.client import QUALITY_FLAGS, QUALITY_PRESETS, WorkerClient
from render.engine import Checked, Range, Rendered, RenderSpec, RunRange, check, render
from render.errors import (
    FramePastEnd,
    RenderCancelled,
    RendererFailed,
    RenderError,
    RenderTimeout,
    ResourceLimitExceeded,
    ScriptError,
    ToolMissing,
)
from render.leftovers import Leftovers
from render.limits import Deadline, RenderLimits
from render.messages import Output, Position, Progress
from render.scenes import choose_scene, find_scenes

# Part of the result cache's key: change it when a change of the worker changes videos.
WORKER_VERSION = "2"
# The Manim that renders (also part of the key).
MANIM_VERSION = version("manim")

__all__ = [
    "MANIM_VERSION",
    "QUALITY_FLAGS",
    "QUALITY_PRESETS",
    "WORKER_VERSION",
    "Checked",
    "Deadline",
    "FramePastEnd",
    "Leftovers",
    "Output",
    "Position",
    "Progress",
    "Range",
    "RenderCancelled",
    "RenderError",
    "RenderLimits",
    "RenderSpec",
    "RenderTimeout",
    "Rendered",
    "RendererFailed",
    "ResourceLimitExceeded",
    "RunRange",
    "ScriptError",
    "ToolMissing",
    "WorkerClient",
    "check",
    "choose_scene",
    "find_scenes",
    "render",
]
