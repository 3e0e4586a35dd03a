"""Logs, metrics and traces, through Powertools; one instance of each for the whole handler.

Namespace and service are settings (the template sets them; the defaults serve local runs).
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from handler.settings import Settings

_settings = Settings.from_env()
SERVICE = _settings.service_name
NAMESPACE = _settings.metrics_namespace

# A request that renders nothing (health, a bad request) has no metrics; that is not news.
warnings.filterwarnings("ignore", "No application metrics to publish")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def record_seconds(name: str, seconds: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=round(seconds, 3))


def record_count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def record_failure(error_class: str) -> None:
    """One `Failures` data point with its class as a dimension (script_error, time_limit,
    resource_limit, storage, internal), so each class can be graphed and alarmed on."""
    with single_metric(name="Failures", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="ErrorClass", value=error_class)
