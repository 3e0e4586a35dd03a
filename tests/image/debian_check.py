"""The README's two commands on a bare Debian 12, as a stranger would run them.

A container made from Debian's packages with make, git and CA certificates and nothing else
(mmdebstrap --variant=minbase), the project's committed main cloned into it, then `make run`
and `make test` as root; exits with their status. Run by `make debian-check` and CI, in the
engine DOCKER_HOST names.

    python -m tests.image.debian_check
"""

from __future__ import annotations

import os
import subprocess
import sys

import docker

from tests.image.base import ROOT, import_rootfs

IMAGE = "localhost/bare-debian-12:latest"
PACKAGES = ["make", "git", "ca-certificates"]
# This machine reaches the registries through a TLS-intercepting proxy whose authority the
# rootfs trusts (see build_rootfs); these settings name the bundle that holds it, as on the host.
TLS_SETTINGS = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SCRIPT = "git clone --quiet /src /root/project && cd /root/project && make run && make test"


def main() -> int:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    print(f"bare Debian 12: make run and make test of commit {head.stdout.strip()}", flush=True)
    client = docker.from_env(timeout=3600)
    import_rootfs(client, IMAGE, "bookworm", PACKAGES)
    container = client.containers.run(
        IMAGE,
        ["bash", "-c", SCRIPT],
        environment={name: os.environ[name] for name in TLS_SETTINGS if name in os.environ} | {"CI": "true"},
        volumes={str(ROOT): {"bind": "/src", "mode": "ro"}},
        network_mode="host",
        detach=True,
    )
    try:
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        status = container.wait()["StatusCode"]
    finally:
        container.remove(force=True)
    print(f"bare Debian 12: {'passed' if status == 0 else f'failed with status {status}'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
