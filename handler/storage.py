"""Where videos go: an S3 bucket, or the embedded local store that stands in for one.

Both keep the same keys and answer with a URL the caller can fetch, so the rest of the
worker does not care which one it has.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from handler.settings import Settings

# What a stored render may be, by its key's extension (a video in one of the formats, or a
# still), and the Content-Type it is stored and served with.
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".gif": "image/gif",
    ".mov": "video/quicktime",
    ".png": "image/png",
}
LOCAL_BUCKET_NAME = "local"


def content_type(key: str) -> str:
    """The Content-Type of a stored render, from its key's extension."""
    return CONTENT_TYPES[PurePosixPath(key).suffix]


class StorageError(Exception):
    """The video could not be stored: our side's fault, never the caller's."""


class Storage(Protocol):
    """What the worker needs of a place to keep videos."""

    bucket: str

    def put_video(self, path: Path, key: str) -> None:
        """Store the file at `path` under `key`, whole or not at all."""

    def url_for(self, key: str) -> str:
        """A URL from which the caller can fetch the object at `key`."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored at `key` (one metadata lookup)."""

    def read_json(self, key: str) -> dict[str, Any] | None:
        """The JSON object stored at `key`, or None if there is none."""

    def write_json(self, key: str, data: dict[str, Any]) -> None:
        """Store `data` at `key`, replacing what was there."""

    def create_json(self, key: str, data: dict[str, Any]) -> bool:
        """Store `data` at `key` only if nothing is there yet; False if something was."""

    def delete(self, key: str) -> None:
        """Remove the object at `key`, if any."""

    def download(self, key: str, path: Path) -> None:
        """Copy the object at `key` into the file `path`."""


def _json_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class S3Storage:
    """An S3 bucket (or an S3-compatible service at `endpoint_url`), through boto3's managed
    transfer, which switches to parallel multipart uploads for large videos and aborts them on
    failure, so a failed upload leaves no object behind."""

    def __init__(self, bucket: str, endpoint_url: str | None = None, url_expires_seconds: int = 3600) -> None:
        self.bucket = bucket
        self._url_expires_seconds = url_expires_seconds
        # SigV4 presigned URLs: the only kind every region and S3-compatible server accepts.
        config = Config(signature_version="s3v4", retries={"mode": "standard"})
        if endpoint_url:
            # S3-compatible servers want path-style addresses and often reject the
            # checksums that boto3 now sends by default.
            config = config.merge(
                Config(
                    s3={"addressing_style": "path"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
            )
        self._client = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)
        self._transfer = TransferConfig(multipart_threshold=16 * 1024 * 1024, max_concurrency=4)

    def put_video(self, path: Path, key: str) -> None:
        try:
            self._client.upload_file(
                str(path), self.bucket, key, ExtraArgs={"ContentType": content_type(key)}, Config=self._transfer
            )
        except (Boto3Error, BotoCoreError, ClientError) as error:
            raise StorageError(f"Could not upload the video to bucket {self.bucket!r}: {error}") from error

    def url_for(self, key: str) -> str:
        try:
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self._url_expires_seconds
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"Could not sign a URL for {key!r}: {error}") from error

    def _get(self, operation: str, key: str) -> dict[str, Any] | None:
        """The answer to a HEAD or GET of `key`, or None when there is no such object (S3
        answers 403 rather than 404 for a missing key to a role without s3:ListBucket)."""
        try:
            return getattr(self._client, operation)(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "403", "AccessDenied"):
                return None
            raise StorageError(f"Could not read {key!r}: {error}") from error
        except BotoCoreError as error:
            raise StorageError(f"Could not read {key!r}: {error}") from error

    def exists(self, key: str) -> bool:
        return self._get("head_object", key) is not None

    def read_json(self, key: str) -> dict[str, Any] | None:
        answer = self._get("get_object", key)
        return json.loads(answer["Body"].read()) if answer is not None else None

    def _put_json(self, key: str, data: dict[str, Any], *, only_if_new: bool = False) -> None:
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentType": "application/json"}
        if only_if_new:
            request["IfNoneMatch"] = "*"  # S3's conditional write
        self._client.put_object(Body=_json_bytes(data), **request)

    def write_json(self, key: str, data: dict[str, Any]) -> None:
        try:
            self._put_json(key, data)
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"Could not write {key!r}: {error}") from error

    def create_json(self, key: str, data: dict[str, Any]) -> bool:
        try:
            self._put_json(key, data, only_if_new=True)
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise StorageError(f"Could not create {key!r}: {error}") from error
        except BotoCoreError as error:
            raise StorageError(f"Could not create {key!r}: {error}") from error

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"Could not delete {key!r}: {error}") from error

    def download(self, key: str, path: Path) -> None:
        try:
            self._client.download_file(self.bucket, key, str(path), Config=self._transfer)
        except (Boto3Error, BotoCoreError, ClientError) as error:
            raise StorageError(f"Could not download {key!r}: {error}") from error


class LocalStorage:
    """A directory that plays the bucket's part, so the worker runs without a cloud account.

    URLs point at `base_url` (the local server serves the directory) or are `file://` URLs.
    """

    bucket = LOCAL_BUCKET_NAME

    def __init__(self, root: Path, base_url: str | None = None) -> None:
        self.root = root
        self._base_url = base_url.rstrip("/") if base_url else None

    def path_of(self, key: str) -> Path:
        """The file that holds `key`; a key cannot reach outside the store."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} is outside the store")
        return path

    @contextlib.contextmanager
    def _staged(self, key: str, write: Callable[[BinaryIO], object]) -> Iterator[tuple[Path, Path]]:
        """The new content, complete, in a temporary file beside `key`'s file; the block
        publishes it (rename or link), so readers never see half of it. Removed afterwards."""
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, part = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(descriptor, "wb") as out:
                write(out)
            os.chmod(part, 0o644)
            yield Path(part), target
        finally:
            Path(part).unlink(missing_ok=True)

    def put_video(self, path: Path, key: str) -> None:
        def copy(out: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)

        try:
            with self._staged(key, copy) as (part, target):
                os.replace(part, target)
        except OSError as error:
            raise StorageError(f"Could not store the video in {self.root}: {error}") from error

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def read_json(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path_of(key).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise StorageError(f"Could not read {key!r}: {error}") from error

    def write_json(self, key: str, data: dict[str, Any]) -> None:
        try:
            with self._staged(key, lambda out: out.write(_json_bytes(data))) as (part, target):
                os.replace(part, target)
        except OSError as error:
            raise StorageError(f"Could not write {key!r}: {error}") from error

    def create_json(self, key: str, data: dict[str, Any]) -> bool:
        try:
            with self._staged(key, lambda out: out.write(_json_bytes(data))) as (part, target):
                os.link(part, target)  # the local lock: fails if the key exists
                return True
        except FileExistsError:
            return False
        except OSError as error:
            raise StorageError(f"Could not create {key!r}: {error}") from error

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self.path_of(key), path)
        except OSError as error:
            raise StorageError(f"Could not download {key!r}: {error}") from error

    def url_for(self, key: str) -> str:
        if self._base_url:
            return f"{self._base_url}/{key}"
        return self.path_of(key).as_uri()


def storage_from_settings(settings: Settings) -> Storage:
    """S3 when a bucket is configured, the embedded local store otherwise."""
    if settings.bucket:
        return S3Storage(settings.bucket, settings.s3_endpoint, settings.presigned_url_expires_seconds)
    return LocalStorage(settings.local_store_dir, settings.local_store_url)
