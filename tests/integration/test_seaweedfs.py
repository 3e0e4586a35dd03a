"""The S3 server the tests use: SeaweedFS speaks real, authenticated S3 on loopback only, and
stops with everything it started."""

import contextlib
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.processes import alive, tcp_sockets
from tests.support.seaweedfs import seaweed_s3


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    return {found.local for found in tcp_sockets() if found.state == "0A" and found.inode in inodes}  # 0A: LISTEN


def test_seaweed_serves_authenticated_s3_on_loopback_only_and_stops(tmp_path: Path) -> None:
    with seaweed_s3(tmp_path) as server:
        listening = _listening(server.pid)
        assert {host for host, _ in listening} == {"127.0.0.1"}
        assert {port for _, port in listening} <= set(server.ports.values())

        client = server.client()
        client.create_bucket(Bucket="round-trip")
        client.put_object(Bucket="round-trip", Key="videos/x/Scene.mp4", Body=b"\x00video", ContentType="video/mp4")
        stored = client.get_object(Bucket="round-trip", Key="videos/x/Scene.mp4")
        assert (stored["Body"].read(), stored["ContentType"]) == (b"\x00video", "video/mp4")

        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": "round-trip", "Key": "videos/x/Scene.mp4"}, ExpiresIn=60
        )
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"\x00video"

        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(url.split("?")[0], timeout=10)
        assert anonymous.value.code == 403
        with pytest.raises(ClientError):
            server.client(aws_secret_access_key="wrong").get_object(Bucket="round-trip", Key="videos/x/Scene.mp4")

    assert not alive(server.pid)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.ports["s3.port"])) != 0
    assert not list(Path("/tmp").glob(f"seaweedfs-*-grpc-{server.ports['s3.port.grpc']}.sock"))
