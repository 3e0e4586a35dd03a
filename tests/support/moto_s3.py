"""moto's S3, in-process, for the S3 edge cases of the unit tests (the `s3` fixture of
tests/unit/conftest.py). It accepts any signature: seaweedfs.py's server is the real S3 API,
with real checks."""

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
from moto import mock_aws

BUCKET = "videos-bucket"


@contextlib.contextmanager
def moto_s3() -> Iterator[Any]:
    """moto's S3 with BUCKET made, until the block ends; yields a client of it. Put credentials
    (any will do) and a region in the environment first."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
