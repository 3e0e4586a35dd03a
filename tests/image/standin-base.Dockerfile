# A stand-in for manimcommunity/manim:vX.Y.Z, FOR TESTING ONLY: where no image registry can be
# reached, `make image` builds it and tags it with the real image's name, so the project's
# Dockerfile builds on it unchanged. It copies the real image's layout (docker/Dockerfile in
# ManimCommunity/manim): two stages, Manim in a venv at /opt/venv first on PATH, runtime
# libraries only in the result (no compiler), TeX on PATH, user manimuser (uid 1000) with
# HOME=/manim. ROOTFS is a Debian unstable root filesystem with Python 3.14, the runtime
# libraries and TeX (Debian's texlive packages plus dvisvgm), made by tests/image/base.py.
ARG ROOTFS=localhost/manim-standin-rootfs:latest

FROM ${ROOTFS} AS builder
ARG MANIM_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
        build-essential pkg-config libcairo2-dev libpango1.0-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3.14 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "manim==${MANIM_VERSION}"

FROM ${ROOTFS}
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    USER=manimuser \
    HOME=/manim
RUN echo "manimuser:x:1000:1000:Default user:/manim:/bin/bash" >> /etc/passwd \
    && echo "manimuser:x:1000:" >> /etc/group \
    && mkdir -m 777 /manim \
    && chown 1000:1000 /manim
WORKDIR /manim
USER manimuser
CMD ["/bin/bash"]
