"""The Manim engine: scene discovery, rendering in a job folder, error extraction.

It knows Manim, processes and files, and nothing of AWS, HTTP or storage, so it can be
used and tested on its own.
"""

from importlib.metadata import version

from render.errors import RendererFailed, RenderError, RenderTimeout, ResourceLimitExceeded, ScriptError, ToolMissing
from render.job import FRAME_RATES, QUALITY_FLAGS, RenderedVideo, RenderWorker
from render.sandbox import RenderLimits
from render.scenes import choose_scene, find_scenes

# Part of the result cache's key: change it when a change of the worker changes videos.
WORKER_VERSION = "1"
# The Manim that renders (also part of the key).
MANIM_VERSION = version("manim")

__all__ = [
    "FRAME_RATES",
    "MANIM_VERSION",
    "QUALITY_FLAGS",
    "WORKER_VERSION",
    "RenderError",
    "RenderLimits",
    "RenderTimeout",
    "RenderWorker",
    "RenderedVideo",
    "RendererFailed",
    "ResourceLimitExceeded",
    "ScriptError",
    "ToolMissing",
    "choose_scene",
    "find_scenes",
]
