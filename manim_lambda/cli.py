"""Render a Manim scene through the render service, and check on or cancel its job.

`manim-lambda`, the console script: a progress bar while the job runs, the file downloaded at
the end, a script's error shown as `scene.py:LINE: ...`.

    manim-lambda render scene.py --quality -qh --output out.mp4 --url http://127.0.0.1:3001
    manim-lambda render scene.py --output out.mp4 --url https://abc.lambda-url.eu-west-1.on.aws/
    manim-lambda render scene.py --output out.mp4 --function manim-worker-render
    manim-lambda status JOB --url ...      manim-lambda cancel JOB --url ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, get_args

from tqdm import tqdm

from manim_lambda.client import (
    Format,
    FunctionService,
    HttpService,
    Quality,
    ScriptError,
    Service,
    ServiceError,
    cancel,
    render,
    status,
)

PROGRAM = "manim-lambda"
# The job's status, how far it is, and its id (for `status` or `cancel` from elsewhere):
# "rendering   40%|############                  | 00:02, job 3f0c..."
BAR_FORMAT = "{desc:<10} {percentage:3.0f}%|{bar:30}| {elapsed}{postfix}"


def _chunks(value: str) -> int | str:
    return value if value == "auto" else int(value)


def _parser() -> argparse.ArgumentParser:
    target = argparse.ArgumentParser(add_help=False)
    where = target.add_argument_group("where the service is (one of --url and --function)")
    choice = where.add_mutually_exclusive_group(required=True)
    choice.add_argument("--url", help="its HTTP API: the local server, or a function URL")
    choice.add_argument("--function", metavar="NAME", help="invoke the function directly (boto3)")
    where.add_argument("--token", default=os.environ.get("API_TOKEN"), help="bearer token (default: $API_TOKEN)")
    where.add_argument(
        "--sigv4", action="store_true", default=None, help="sign with SigV4 (default: only for a *.lambda-url.* host)"
    )
    where.add_argument("--region", help="AWS region (default: a function URL's own, else the standard chain's)")

    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render_parser = commands.add_parser("render", parents=[target], help="render a scene and download the file")
    render_parser.add_argument("script", type=Path, help="the Manim script")
    render_parser.add_argument("--output", "-o", type=Path, required=True, help="where to write the file")
    render_parser.add_argument("--quality", choices=get_args(Quality), default="-qm", help="default -qm")
    render_parser.add_argument("--scene", help="the scene to render, when the script has several")
    render_parser.add_argument("--format", choices=get_args(Format), help="default mp4 (png for a still)")
    render_parser.add_argument("--chunks", type=_chunks, help="render in N parts in parallel, or auto")
    for name, about in (("status", "print a job's record"), ("cancel", "stop a job; print its record")):
        command = commands.add_parser(name, parents=[target], help=about)
        command.add_argument("job_id", metavar="JOB")
    return parser


def _quality_attached(argv: list[str]) -> list[str]:
    """`--quality -qh` as `--quality=-qh`: argparse takes a value that starts with a dash for
    an option of its own, but `-qh` is how Manim users write a quality."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] == "--quality" and arg in get_args(Quality):
            joined[-1] = f"--quality={arg}"
        else:
            joined.append(arg)
    return joined


def _service(args: argparse.Namespace) -> Service:
    if args.function:
        return FunctionService(args.function, args.region)
    return HttpService(args.url, token=args.token, sigv4=args.sigv4, region=args.region)


class _Bar:
    """A progress bar of the job's records on stderr, opened at the first record, so that a
    request rejected at once shows none."""

    def __init__(self) -> None:
        self._bar: Any = None

    def show(self, record: dict[str, Any]) -> None:
        state = record["status"]
        if self._bar is None:
            self._bar = tqdm(total=100, desc=state, postfix=f"job {record['jobId']}", file=sys.stderr, bar_format=BAR_FORMAT)
        done = 100 if state == "succeeded" else (record.get("progress") or {}).get("percent", 0)
        self._bar.set_description_str(state, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _render(args: argparse.Namespace, service: Service) -> None:
    bar = _Bar()
    try:
        result = render(
            args.script.read_text(encoding="utf-8"),
            service,
            quality=args.quality,
            scene=args.scene,
            format=args.format,
            chunks=args.chunks,
            output=args.output,
            on_progress=bar.show,
        )
    finally:
        bar.close()
    cached = ", cached" if result.cached else ""
    print(f"{result.path}: {result.scene_name} ({result.key}{cached}; job {result.job_id}, {result.seconds:.1f} s)")


def _explained(errors: Any) -> str:
    """An error answer's `errors` under its message: one line per field a 400 names."""
    if isinstance(errors, list):
        return "".join(f"\n  {'.'.join(map(str, found.get('loc', [])))}: {found.get('msg')}" for found in errors)
    return f"\n  {json.dumps(errors)}" if errors else ""


def main(argv: list[str] | None = None) -> int:
    """The console script's entry point; its exit status: 0 done, 1 failed, 130 interrupted."""
    args = _parser().parse_args(_quality_attached(sys.argv[1:] if argv is None else argv))
    try:
        service = _service(args)
        if args.command == "render":
            _render(args, service)
        else:
            record = status(args.job_id, service) if args.command == "status" else cancel(args.job_id, service)
            print(json.dumps(record, indent=2))
    except ScriptError as error:
        print(error.at(str(args.script)), file=sys.stderr)
        return 1
    except ServiceError as error:
        print(f"{PROGRAM}: {error}{_explained(getattr(error, 'errors', None))}", file=sys.stderr)
        return 1
    except OSError as error:  # the script cannot be read, or the output written
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)  # a render's job is cancelled first
        return 130
    return 0
