"""Hostile scenes: whatever a script does, it gets no credentials, leaves nothing behind,
stays within its limits, and the next ordinary render is correct."""

import time

import pytest

from tests.security.conftest import MAX_OUTPUT_MB, TIMEOUT_SECONDS
from tests.support.hostile import processes_with, scene

# No credentials.


def test_the_scripts_environment_holds_nothing_of_ours(render, next_render_is_correct):
    body = render(scene("raise RuntimeError(repr(sorted(os.environ.items())))"))
    assert body["statusCode"] == 422
    shown = body["errors"]["message"]
    assert "HOME" in shown  # the script did see its environment...
    for name in ("AWS_", "API_TOKEN", "S3_", "LAMBDA", "RENDER_"):
        assert name not in shown  # ...and none of ours
    next_render_is_correct()


HUNT_PROC = r'''
found = []
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    for name in ("environ", "cmdline"):
        try:
            text = open(f"/proc/{pid}/{name}", "rb").read()
        except OSError:
            continue
        for marker in (b"AWS_SECRET_ACCESS_KEY", b"API_TOKEN", b"AWS_LAMBDA_RUNTIME_API"):
            if marker in text:
                found.append(text[text.index(marker):][:120])
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        with open(f"/proc/{pid}/mem", "rb") as mem:
            for line in maps:
                start, end = (int(part, 16) for part in line.split()[0].split("-"))
                if "rw" not in line.split()[1] or end - start > 64 * 2**20:
                    continue
                try:
                    mem.seek(start)
                    chunk = mem.read(end - start)
                except OSError:
                    continue
                for marker in (b"AWS_SECRET_ACCESS_KEY=", b"API_TOKEN="):
                    if marker in chunk:
                        found.append(chunk[chunk.index(marker):][:120])
    except OSError:
        pass
raise RuntimeError(f"found {found!r}")
'''


def test_proc_gives_away_no_process_environment_or_memory(render, next_render_is_correct):
    body = render(scene(HUNT_PROC))
    assert body["statusCode"] == 422
    assert body["errors"]["message"] == "RuntimeError: found []"
    next_render_is_correct()


# No interference with other invocations.


DAEMONS = r'''
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "31337"])
    os._exit(0)
subprocess.Popen(["sleep", "31338"], start_new_session=True)
subprocess.Popen(["sh", "-c", "nohup sleep 31339 >/dev/null 2>&1 &"])
time.sleep(0.5)
'''


def test_nothing_the_script_starts_outlives_its_job(render, next_render_is_correct):
    body = render(scene(DAEMONS))
    assert "s3Key" in body, body
    for argument in ("sleep 31337", "sleep 31338", "sleep 31339"):
        assert processes_with(argument) == [], f"{argument} survived its job"
    next_render_is_correct()


def test_background_work_is_killed_on_failure_and_timeout_too(render, next_render_is_correct):
    failed = render(scene('subprocess.Popen(["sleep", "31340"], start_new_session=True)\nraise ValueError("boom")'))
    assert failed["statusCode"] == 422
    timed_out = render(scene('subprocess.Popen(["sleep", "31341"], start_new_session=True)\ntime.sleep(600)'))
    assert timed_out["statusCode"] == 408
    assert processes_with("sleep 31340") == processes_with("sleep 31341") == []
    next_render_is_correct()


PLANT = r'''
config_text = "[CLI]\nbackground_color = RED\n"
planted = 0
targets = [os.path.expanduser("~"), os.getcwd()]
give_up = time.monotonic() + 3
for top in ("/tmp", "/dev/shm"):
    for folder, subfolders, _ in os.walk(top):
        targets.append(folder)
        if folder.count("/") >= 4 or time.monotonic() > give_up:
            subfolders.clear()  # deep enough to reach every folder the worker uses
for folder in targets:
    for name, text in (
        ("manim.cfg", config_text),
        ("sitecustomize.py", "raise SystemExit('planted')\n"),
        ("usercustomize.py", "raise SystemExit('planted')\n"),
        (".config/manim/manim.cfg", config_text),
        ("texmf/tex/latex/amsmath.sty", "\\errmessage{planted}\n"),
        ("amsmath.sty", "\\errmessage{planted}\n"),
        ("article.cls", "\\errmessage{planted}\n"),
    ):
        try:
            path = os.path.join(folder, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                handle.write(text)
            planted += 1
        except OSError:
            pass
'''


def test_files_planted_anywhere_under_tmp_change_no_later_render(render, next_render_is_correct):
    body = render(scene(PLANT))
    assert "s3Key" in body, body
    next_render_is_correct()
    latex = render(scene('self.add(MathTex(r"\\sum_{k=1}^n k = \\frac{n(n+1)}{2}"))'))
    assert "s3Key" in latex, latex


# Bounded resources.


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ("hog = bytearray(6 * 2**30)", "memory"),
        (f"open('big.bin', 'wb').write(b'x' * ({MAX_OUTPUT_MB} + 1) * 2**20)", "output"),
        ("handles = [open('/dev/null') for _ in range(100000)]", "open_files"),
        ("children = [subprocess.Popen(['sleep', '60']) for _ in range(10000)]", "processes"),
    ],
)
def test_breaking_a_limit_names_it(render, next_render_is_correct, body, limit):
    answer = render(scene(body))
    assert answer["statusCode"] == 413, answer
    assert answer["errors"]["type"] == "ResourceLimitExceeded"
    assert answer["errors"]["limit"] == limit
    assert limit.replace("_", " ").split()[0] in answer["message"].lower()
    next_render_is_correct()


SPIN = r'''
import threading
def spin():
    while True:
        pass
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
time.sleep(600)
'''


def test_cpu_time_is_limited(render, next_render_is_correct):
    started = time.monotonic()
    answer = render(scene(SPIN))
    assert answer["statusCode"] in (408, 413), answer
    if answer["statusCode"] == 413:
        assert answer["errors"]["limit"] == "cpu"
    assert time.monotonic() - started < TIMEOUT_SECONDS + 10
    next_render_is_correct()


def test_wall_time_is_limited(render, next_render_is_correct):
    started = time.monotonic()
    answer = render(scene("time.sleep(600)"))
    assert answer["statusCode"] == 408
    assert answer["errors"] == {"type": "TimeLimitExceeded", "limitSeconds": TIMEOUT_SECONDS, "class": "time_limit"}
    assert time.monotonic() - started < TIMEOUT_SECONDS + 10
    next_render_is_correct()


def test_output_the_script_prints_is_capped(render, next_render_is_correct):
    answer = render(scene("while True:\n    print('x' * 65536)"))
    assert answer["statusCode"] == 413 and answer["errors"]["limit"] == "output", answer
    next_render_is_correct()


# The worker survives.


def test_a_script_that_kills_the_worker_fails_its_own_job_only(function, next_render_is_correct):
    answer = function.invoke({"codeContent": scene("os.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)")})
    # We cannot tell the script's doing from a fault of ours, so a direct invoke raises.
    assert answer["errorType"] == "RendererFailed"
    assert answer["errorMessage"] == "The render worker died during the job; it has been restarted."
    next_render_is_correct()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("import ctypes\nctypes.string_at(0)", 422),
        ("os.kill(os.getpid(), signal.SIGKILL)", 422),
        ("os._exit(3)", 422),
        ("sys.exit('bye')", 422),
    ],
    ids=["segfaults", "killed", "exits", "sys-exit"],
)
def test_the_service_survives_what_the_script_does_to_itself(render, next_render_is_correct, body, status):
    answer = render(scene(body))
    assert answer.get("statusCode") == status, answer
    next_render_is_correct()


def test_a_fork_bomb_ends_with_its_job(render, next_render_is_correct):
    bomb = "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    answer = render(scene(bomb))
    assert answer["statusCode"] in (408, 413), answer
    next_render_is_correct()


def test_the_functions_logs_hold_no_secret(function, secret_values, render):
    """What Lambda would return with `LogType=Tail`, or keep in CloudWatch, after all of the above."""
    render(scene('raise RuntimeError("last")'))
    logs = function.log_path.read_text(errors="replace")
    assert "Render worker ready" in logs
    assert [value for value in secret_values if value in logs] == []
