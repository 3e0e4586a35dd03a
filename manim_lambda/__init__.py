"""A client of the Manim render service: render a script through its async job API and get
the file, from Python or from the `manim-lambda` command.

    from manim_lambda import HttpService, render
    result = render(code, HttpService("http://127.0.0.1:3001"), quality="-ql", output=Path("out.mp4"))
"""

from manim_lambda.client import (
    FunctionService,
    HttpService,
    JobCancelled,
    RequestRejected,
    Result,
    ScriptError,
    Service,
    ServiceError,
    cancel,
    render,
    status,
)

__all__ = [
    "FunctionService",
    "HttpService",
    "JobCancelled",
    "RequestRejected",
    "Result",
    "ScriptError",
    "Service",
    "ServiceError",
    "cancel",
    "render",
    "status",
]
