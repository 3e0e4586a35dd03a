"""What operators see: JSON log lines with the request's context, and EMF metrics."""

import json
import sys

import pytest

from handler.app import lambda_handler
from handler.local import LocalContext
from handler.observability import logger
from tests.support import scripts
from tests.support.handler_calls import wait_for_job


class _CurrentStdout:
    """Whatever sys.stdout is at the moment of writing (pytest swaps it during a test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def output(capsys, monkeypatch):
    """pytest's capsys, with the log handler (made at import) writing to the captured stdout."""
    monkeypatch.setattr(logger.registered_handler, "stream", _CurrentStdout())
    return capsys


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def metric_names(records: list[dict]) -> dict[str, dict]:
    """Each EMF metric name with the record (its dimensions and values) that carries it."""
    found = {}
    for record in records:
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == "ManimWorker"
            for metric in directive["Metrics"]:
                found[metric["Name"]] = record
    return found


def test_a_render_logs_its_context_and_measures_itself(local_store, output):
    context = LocalContext()
    lambda_handler({"codeContent": scripts.CIRCLE, "quality": "-ql"}, context)
    records = lines(output.readouterr().out)
    rendered = next(record for record in records if record.get("message") == "Rendered")
    assert rendered["function_request_id"] == context.aws_request_id
    assert (rendered["scene"], rendered["quality"], rendered["cache"]) == ("DrawCircle", "-ql", "miss")
    metrics = metric_names(records)
    assert {"RenderTime", "UploadTime", "CacheMisses"} <= set(metrics)
    assert metrics["RenderTime"]["RenderTime"] == [rendered["render_seconds"]]


def test_a_cache_hit_is_counted(local_store, output):
    lambda_handler({"codeContent": scripts.CIRCLE, "quality": "-ql"}, LocalContext())
    output.readouterr()
    lambda_handler({"codeContent": scripts.CIRCLE, "quality": "-ql"}, LocalContext())
    metrics = metric_names(lines(output.readouterr().out))
    assert "CacheHits" in metrics and "RenderTime" not in metrics


def test_failures_are_counted_by_class(local_store, output, configure):
    lambda_handler({"codeContent": scripts.RAISES_IN_CONSTRUCT, "quality": "-ql"}, LocalContext())
    failure = metric_names(lines(output.readouterr().out))["Failures"]
    assert failure["ErrorClass"] == "script_error" and failure["Failures"] == [1.0]
    configure(RENDER_TIMEOUT_SECONDS="1")
    lambda_handler({"codeContent": scripts.SLOW_WITH_CHILD.format(pid_file="/dev/null"), "quality": "-ql"}, LocalContext())
    assert metric_names(lines(output.readouterr().out))["Failures"]["ErrorClass"] == "time_limit"


def test_a_jobs_lines_carry_its_id(local_store, output):
    accepted = lambda_handler(
        {"codeContent": scripts.CIRCLE, "quality": "-qm", "async": True, "jobId": "logged-job"}, LocalContext()
    )
    assert accepted["statusCode"] == 202
    wait_for_job("logged-job")
    rendered = next(record for record in lines(output.readouterr().out) if record.get("message") == "Rendered")
    assert rendered["job_id"] == "logged-job" and rendered["cache"] == "miss"
