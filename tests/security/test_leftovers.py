"""A second round of attacks, through the Lambda path as uid 993: what a job leaves behind
(processes that hide, files outside its folder, trusted folders replaced) and what it could
read of earlier requests. After each, the next ordinary render is correct."""

import os
from pathlib import Path

from tests.security.conftest import FUNCTION_UID
from tests.support import scripts
from tests.support.hostile import TURN_OTHERS_RED, processes_of, scene

# A helper that outlives its job unseen: double-forked into its own session, it starts a
# thread and ends its main thread (the raw exit syscall, not exit_group), so the process shows
# as a zombie while the thread runs on. The thread waits for the next job's script and turns
# its blue circle red.
HIDDEN_HELPER = r"""
jobs = os.path.dirname(os.path.dirname(os.getcwd()))
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        def rewrite():
            while True:
                turn_others_red(jobs, os.path.dirname(os.getcwd()))
                time.sleep(0.0005)
        threading.Thread(target=rewrite).start()
        ctypes.CDLL(None).syscall(60, 0)
    os._exit(0)
time.sleep(0.3)
"""


def test_a_process_whose_main_thread_exited_does_not_outlive_its_job(render, next_render_is_correct):
    next_render_is_correct()  # the function, its worker and its LaTeX service are running
    before = processes_of(FUNCTION_UID)
    body = render(scene(HIDDEN_HELPER, imports="import ctypes, threading\n" + TURN_OTHERS_RED))
    assert "s3Key" in body, body
    assert processes_of(FUNCTION_UID) == before, "a process of the job is still there"
    next_render_is_correct()  # its circle is still blue


# Trusted folders replaced: the worker's `jobs` folder and its LaTeX folder become plain files,
# and the part's own log a FIFO (nothing trusted may block on it).
REPLACE_FOLDERS = r"""
root = os.path.dirname(os.getcwd())
jobs = os.path.dirname(root)
work_dir = os.path.dirname(jobs)
os.rename(jobs, jobs + ".moved")
with open(jobs, "w") as handle:
    handle.write("not a folder")
for home in os.listdir(work_dir):
    tex = os.path.join(work_dir, home, "tex")
    if home.startswith("worker-") and os.path.isdir(tex):
        os.rename(tex, tex + ".moved")
        with open(tex, "w") as handle:
            handle.write("not a folder")
os.unlink(os.path.join(jobs + ".moved", os.path.basename(root), "output-0.log"))
os.mkfifo(os.path.join(jobs + ".moved", os.path.basename(root), "output-0.log"))
"""


def test_trusted_folders_a_job_replaces_are_made_anew(render, next_render_is_correct):
    body = render(scene(REPLACE_FOLDERS))
    assert body.get("statusCode", 200) in (200, 422), body  # the job may well break itself
    next_render_is_correct()
    latex = render(scripts.LATEX, cache=False)  # the LaTeX folder is the worker's again
    assert "s3Key" in latex, latex


# Files outside the job's folder: the disk filled, and configuration planted for later
# processes.
_MARK = f"leftover-{os.getpid()}"
PLANTED = (f"/tmp/{_MARK}/sitecustomize.py", f"/tmp/{_MARK}/.config/manim/manim.cfg", f"/tmp/{_MARK}.bin", f"/dev/shm/{_MARK}")
PLANT_OUTSIDE = f"""
for path in {PLANTED!r}:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"planted" * 150_000)
"""


def test_files_a_job_writes_outside_its_folder_are_removed(render, next_render_is_correct):
    body = render(scene(PLANT_OUTSIDE))
    assert "s3Key" in body, body
    left = [path for path in PLANTED if os.path.exists(path) and Path(path).stat().st_uid == FUNCTION_UID]
    assert left == [], f"the job's files stayed: {left}"
    next_render_is_correct()


# Memory a job inherits: jobs are forks of the worker, so whatever the worker holds of earlier
# requests (such as the formulas they compiled), a job can read in its own memory.
LOOK_FOR_FORMULAS = r"""
import gc
svgs = [
    value
    for item in gc.get_objects()
    if isinstance(item, dict)
    for value in list(item.values())
    if isinstance(value, str) and "<svg" in value and "dvisvgm" in value  # LaTeX's, not a template
]
if svgs:
    raise RuntimeError(f"{len(svgs)} formulas of earlier requests are in this job's memory")
"""


def test_a_job_holds_nothing_of_earlier_requests_latex(render, next_render_is_correct):
    earlier = render(scene('self.add(MathTex(r"\\text{an earlier request}"))'), cache=False)
    assert "s3Key" in earlier, earlier
    body = render(scene(LOOK_FOR_FORMULAS))
    assert "s3Key" in body, body
    next_render_is_correct()


def zombies_of(uid: int) -> list[int]:
    found = []
    for pid in processes_of(uid):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_killed_worker_is_reaped(function, next_render_is_correct):
    answer = function.invoke({"codeContent": scene("os.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)"), "quality": "-ql"})
    assert answer.get("errorType") == "RendererFailed", answer
    assert zombies_of(FUNCTION_UID) == []
    next_render_is_correct()
    assert zombies_of(FUNCTION_UID) == []
