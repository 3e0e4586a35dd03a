"""Storage behaviour: S3 (moto) and the embedded local store, through the handler where it matters."""

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from handler.app import lambda_handler
from handler.local import LocalContext, function_url_event
from handler.storage import LocalStorage, S3Storage, StorageError, storage_from_settings
from tests.support import scripts
from tests.support.moto_s3 import BUCKET


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    return path


def test_upload_keeps_the_bytes_and_sets_the_content_type(s3, video):
    S3Storage(BUCKET).put_video(video, "videos/abc/Scene.mp4")
    stored = s3.get_object(Bucket=BUCKET, Key="videos/abc/Scene.mp4")
    assert stored["ContentType"] == "video/mp4"
    assert stored["Body"].read() == video.read_bytes()


def test_a_still_is_stored_as_an_image(s3, tmp_path):
    still = tmp_path / "Diagram.png"
    still.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    S3Storage(BUCKET).put_video(still, "videos/abc/Diagram.png")
    assert s3.head_object(Bucket=BUCKET, Key="videos/abc/Diagram.png")["ContentType"] == "image/png"


def test_large_videos_go_up_in_parts(s3, tmp_path):
    large = tmp_path / "large.mp4"
    large.write_bytes(b"v" * (17 * 1024 * 1024))
    S3Storage(BUCKET).put_video(large, "videos/big/Scene.mp4")
    head = s3.head_object(Bucket=BUCKET, Key="videos/big/Scene.mp4")
    assert head["ContentLength"] == 17 * 1024 * 1024
    assert head["ContentType"] == "video/mp4"
    assert re.fullmatch(r'"[0-9a-f]{32}-[0-9]+"', head["ETag"])  # the ETag of a multipart upload


def test_presigned_url_names_the_object_and_its_expiry(s3):
    url = S3Storage(BUCKET, url_expires_seconds=120).url_for("videos/abc/Scene.mp4")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path.endswith(f"{BUCKET}/videos/abc/Scene.mp4") or parts.netloc.startswith(BUCKET)
    assert query["X-Amz-Expires"] == ["120"]
    assert "X-Amz-Signature" in query


def test_endpoint_uses_path_style_urls(s3):
    url = S3Storage(BUCKET, endpoint_url="http://127.0.0.1:9000").url_for("videos/a/S.mp4")
    assert url.startswith(f"http://127.0.0.1:9000/{BUCKET}/videos/a/S.mp4?")


def test_an_empty_endpoint_means_aws_s3(s3, configure):
    # The template declares S3_ENDPOINT empty, so that SAM's --env-vars may set it.
    settings = configure(S3_BUCKET_NAME=BUCKET, S3_ENDPOINT="").settings
    assert settings.s3_endpoint is None
    url = storage_from_settings(settings).url_for("videos/a/S.mp4")
    assert (urlsplit(url).hostname or "").endswith(".amazonaws.com")


def test_a_missing_bucket_is_a_storage_error(s3, video):
    with pytest.raises(StorageError, match="no-such-bucket"):
        S3Storage("no-such-bucket").put_video(video, "videos/abc/Scene.mp4")


def test_render_request_stores_under_the_seed_key_layout(s3, configure):
    configure(S3_BUCKET_NAME=BUCKET, PRESIGNED_URL_EXPIRES_SECONDS="600")
    body = lambda_handler({"codeContent": scripts.CIRCLE, "quality": "-ql"}, LocalContext())
    key = body["s3Key"]
    _, job_id, _name = key.split("/")
    assert key == f"videos/{job_id}/DrawCircle.mp4" and len(job_id) == 32
    assert body["bucket"] == BUCKET
    assert "X-Amz-Expires=600" in body["url"]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentType"] == "video/mp4"


def test_storage_down_is_a_5xx_over_http_and_raises_on_direct_invoke(s3, configure):
    configure(S3_BUCKET_NAME="no-such-bucket")
    with pytest.raises(StorageError):
        lambda_handler({"codeContent": scripts.CIRCLE, "quality": "-ql"}, LocalContext())
    event = function_url_event(
        "POST", "/api/render", {}, json.dumps({"codeContent": scripts.CIRCLE, "quality": "-ql"}).encode()
    )
    result = lambda_handler(event, LocalContext())
    body = json.loads(result["body"])
    assert result["statusCode"] == 502
    assert body["message"] == "The video was rendered but could not be stored."
    assert body["errors"]["type"] == "StorageError"
    assert "Traceback" not in result["body"]


def test_local_store_writes_whole_files_and_serves_their_urls(tmp_path, video):
    store = LocalStorage(tmp_path / "store", base_url="http://127.0.0.1:3001/")
    store.put_video(video, "videos/abc/Scene.mp4")
    assert (tmp_path / "store/videos/abc/Scene.mp4").read_bytes() == video.read_bytes()
    assert list((tmp_path / "store/videos/abc").iterdir()) == [tmp_path / "store/videos/abc/Scene.mp4"]
    assert store.url_for("videos/abc/Scene.mp4") == "http://127.0.0.1:3001/videos/abc/Scene.mp4"


def test_local_store_keys_cannot_escape_it(tmp_path, video):
    with pytest.raises(ValueError):
        LocalStorage(tmp_path / "store").put_video(video, "../outside.mp4")
    assert not (tmp_path / "outside.mp4").exists()


def test_local_store_failure_leaves_nothing_half_written(tmp_path, video):
    root = tmp_path / "store"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "abc").write_text("a file where a folder should be")
    with pytest.raises(StorageError):
        LocalStorage(root).put_video(video, "videos/abc/Scene.mp4")
    assert sorted(p.name for p in root.rglob("*")) == ["abc", "videos"]
