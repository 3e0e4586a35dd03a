"""The Manim base image the Dockerfile builds on, in the engine DOCKER_HOST names.

The real `manimcommunity/manim:<tag>` is used when the engine has it or can pull it. Where no
image registry can be reached (as on our build machines), a stand-in is built here from
Debian's packages with the real image's layout and tagged with its name, so the Dockerfile
builds unchanged: FOR TESTING ONLY, never for a deployment.

    python -m tests.image.base    (run by `make image`)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "manimcommunity/manim"
ROOTFS_IMAGE = "localhost/manim-standin-rootfs:latest"
STANDIN_DOCKERFILE = Path(__file__).with_name("standin-base.Dockerfile")
# Debian's unstable suite carries Python 3.14, as the real image's python:3.14-slim has it.
DEBIAN_SUITE = "unstable"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The real image's runtime packages (its second stage), and TeX from Debian's texlive packages
# in place of its TeX Live install. Python's headers are kept, as python:3.14-slim keeps them.
ROOTFS_PACKAGES = [
    *("python3.14", "python3.14-venv", "libpython3.14-dev", "ca-certificates"),
    *("libcairo2", "libpango-1.0-0", "libpangocairo-1.0-0", "libpangoft2-1.0-0", "libffi8", "libegl1", "libgl1"),
    *("ghostscript", "fonts-noto-core", "fontconfig"),
    *("texlive-latex-base", "texlive-latex-extra", "texlive-fonts-recommended", "dvisvgm", "cm-super-minimal"),
]
# This machine's registries are reached through a TLS-intercepting proxy; builds on the stand-in
# trust the same certificate authorities as the host (certificates, never credentials).
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def locked_manim_version() -> str:
    """The manim version uv.lock pins: the base image's tag must name it."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (version,) = [package["version"] for package in lock["package"] if package["name"] == "manim"]
    return version


def dockerfile_base_tag() -> str:
    """The default of the Dockerfile's MANIM_IMAGE_TAG argument."""
    match = re.search(r"^ARG MANIM_IMAGE_TAG=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit("Dockerfile: no `ARG MANIM_IMAGE_TAG=<tag>` line")
    return match.group(1)


def has_image(client: docker.DockerClient, name: str) -> bool:
    """True when the engine holds an image of that name."""
    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def _pull(client: docker.DockerClient, name: str) -> bool:
    """True when the engine pulled `name`; False when no registry would serve it."""
    try:
        client.images.pull(name)
    except APIError as error:
        print(f"base image: cannot pull {name} ({error.explanation or error}); building a stand-in")
        return False
    return True


def build_rootfs(suite: str, packages: list[str], tarball: Path) -> None:
    """A Debian root filesystem as a tarball, made with mmdebstrap (root, Debian's packages),
    trusting the host's own certificate authorities as well as Debian's."""
    if shutil.which("mmdebstrap") is None:
        raise SystemExit("the image needs mmdebstrap to make its root filesystem: apt-get install mmdebstrap (as root)")
    hooks = []
    host_cas = sorted(HOST_CA_DIR.glob("*.crt"))
    if host_cas:
        names = " ".join(str(path) for path in host_cas)
        hooks = [
            f"--customize-hook=copy-in {names} /usr/local/share/ca-certificates/",
            '--customize-hook=chroot "$1" update-ca-certificates',
        ]
    command = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        # The mirror's unstable suite is a snapshot whose Release file has expired.
        "--aptopt=Acquire::Check-Valid-Until \"false\"",
        f"--include={','.join(packages)}",
        *hooks,
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
        suite,
        str(tarball),
        DEBIAN_MIRROR,
    ]
    print(f"mmdebstrap {suite} with {len(packages)} packages")
    if subprocess.run(command, check=False).returncode != 0:
        raise SystemExit("mmdebstrap failed (its messages are above)")


def import_rootfs(client: docker.DockerClient, name: str, suite: str, packages: list[str]) -> None:
    """Make image `name` from a fresh root filesystem, unless the engine has it already."""
    if has_image(client, name):
        return
    with tempfile.TemporaryDirectory(prefix="rootfs-") as folder:
        tarball = Path(folder) / "rootfs.tar"
        build_rootfs(suite, packages, tarball)
        repository, _, tag = name.rpartition(":")
        with tarball.open("rb") as data:
            client.api.import_image_from_data(data, repository=repository, tag=tag)


def _build_standin(client: docker.DockerClient, name: str, version: str) -> None:
    """Build the stand-in (see standin-base.Dockerfile) and tag it `name`."""
    import_rootfs(client, ROOTFS_IMAGE, DEBIAN_SUITE, ROOTFS_PACKAGES)
    print(f"base image: building the stand-in {name} (manim {version})")
    build_image(
        client,
        path=str(STANDIN_DOCKERFILE.parent),
        dockerfile=STANDIN_DOCKERFILE.name,
        tag=name,
        buildargs={"ROOTFS": ROOTFS_IMAGE, "MANIM_VERSION": version},
    )


def build_image(client: docker.DockerClient, **options: Any) -> None:
    """`docker build` through the engine's API, its output shown as it comes; exits on failure
    with the engine's message (the failing step and its output are printed above it)."""
    for chunk in client.api.build(decode=True, rm=True, forcerm=True, **options):
        sys.stdout.write(chunk.get("stream", ""))
        if "error" in chunk:
            raise SystemExit(f"image build failed: {chunk['error'].strip()}")
    sys.stdout.flush()


def ensure_base() -> str:
    """Make sure the engine has the base image the Dockerfile names; return its name."""
    tag, version = dockerfile_base_tag(), locked_manim_version()
    if tag != f"v{version}":
        raise SystemExit(f"Dockerfile: MANIM_IMAGE_TAG={tag}, but uv.lock pins manim {version}: make them equal")
    name = f"{REPOSITORY}:{tag}"
    client = docker.from_env(timeout=3600)
    if has_image(client, name) or _pull(client, name):
        print(f"base image: {name}")
        return name
    _build_standin(client, name, version)
    return name


if __name__ == "__main__":
    ensure_base()
