# Lambda container image for the Manim render worker.
#
# Base: the official Manim image, tagged like Manim's releases; keep the tag equal to the manim
# version pinned in uv.lock. Its layout (docker/Dockerfile in ManimCommunity/manim, v0.20.1 on):
# Python in a venv at /opt/venv (first on PATH), runtime libraries only (no compiler, no -dev
# packages, no ffmpeg CLI: PyAV brings its own), TeX Live on PATH, user manimuser (uid 1000).
# Where the registry cannot be reached, `make image` builds a stand-in with the same name and
# layout from Debian's packages (tests/image/standin-base.Dockerfile), for testing only.
ARG MANIM_IMAGE_TAG=v0.22.0

# --- builder: the base plus compilers and headers; makes a wheel of every locked package -------
FROM manimcommunity/manim:${MANIM_IMAGE_TAG} AS builder
ARG UV_VERSION=0.13.8
# hadolint ignore=DL3002
USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# pycairo and manimpango publish no Linux wheels: they compile against Cairo and Pango.
# hadolint ignore=DL3008
RUN { apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
        build-essential pkg-config libcairo2-dev libpango1.0-dev \
    && rm -rf /var/lib/apt/lists/*; } \
    || { echo "builder stage: installing the build tools with apt failed" >&2; exit 1; }
WORKDIR /build
COPY pyproject.toml uv.lock ./
# The same uv that wrote uv.lock exports it: hashed pins for the download, plain pins for the
# install (a wheel built here has no hash in the lock). pip checks every download's hash.
RUN { python -m pip install --no-cache-dir --target /build/uv "uv==${UV_VERSION}" \
    && mkdir /dist \
    && cp /build/uv/bin/uv /dist/uv \
    && /dist/uv export --quiet --frozen --no-dev --no-emit-project --output-file hashed.txt \
    && /dist/uv export --quiet --frozen --no-dev --no-emit-project --no-hashes \
        --output-file /dist/requirements.txt; } \
    || { echo "builder stage: exporting uv.lock failed" >&2; exit 1; }
RUN python -m pip wheel --no-cache-dir --no-deps --require-hashes --wheel-dir /dist/wheels \
        --requirement hashed.txt \
    || { echo "builder stage: building wheels failed; the package is named above" >&2; exit 1; }

# --- runtime: the same base, the locked packages from the builder's wheels, and the app --------
FROM manimcommunity/manim:${MANIM_IMAGE_TAG} AS runtime
# No USER in this stage's result: Lambda ignores USER and runs the image as an arbitrary uid,
# and `sam local` builds its emulator layer as the image's USER, which fails unless root.
# hadolint ignore=DL3002
USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV LAMBDA_TASK_ROOT=/var/task
# The venv becomes exactly the lock: `uv pip sync` installs the wheels (no index, nothing
# compiled) and removes what the base had beyond them, and pip goes too: nothing is installed
# at run time. (The COPY layer keeps the wheels, about 175 MB: mounting them instead needs
# BuildKit, which `sam build` does not use.)
COPY --from=builder /dist /tmp/dist
RUN { /tmp/dist/uv pip sync --quiet --no-cache --no-index --compile-bytecode \
        --python /opt/venv/bin/python --find-links /tmp/dist/wheels /tmp/dist/requirements.txt \
    && /tmp/dist/uv pip uninstall --quiet --python /opt/venv/bin/python pip \
    && rm -rf /tmp/dist; } \
    || { echo "runtime stage: installing the locked wheels failed" >&2; exit 1; }

WORKDIR ${LAMBDA_TASK_ROOT}
COPY handler/ ${LAMBDA_TASK_ROOT}/handler/
COPY render/ ${LAMBDA_TASK_ROOT}/render/
# /var/task is read-only at run time: compile now so cold starts never try to write __pycache__.
RUN python -m compileall -q ${LAMBDA_TASK_ROOT}

# Lambda's filesystem is read-only except /tmp, and it runs the image as an arbitrary non-root
# user whose home is not writable: point every home, cache, config and TeX output path at /tmp.
ENV HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    XDG_DATA_HOME=/tmp/.local/share \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    TEXMFHOME=/tmp/texmf \
    TEXMFVAR=/tmp/texmf-var \
    TEXMFCONFIG=/tmp/texmf-config \
    TEXMFCACHE=/tmp/texmf-var \
    RENDER_WORK_DIR=/tmp/manim-worker \
    PYTHONPATH=${LAMBDA_TASK_ROOT} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# ...but the AWS SDK reads no file there: /tmp is writable by the scripts the handler runs, and
# a config file or a model planted under ~/.aws would redirect every SDK client made after it.
# Lambda gives the credentials in the environment. On Lambda the handler also pins these two,
# and its own HOME, before it imports boto3 (handler/settings.py, `sdk_environment`).
ENV AWS_CONFIG_FILE=/dev/null \
    AWS_SHARED_CREDENTIALS_FILE=/dev/null

ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["handler.app.lambda_handler"]
