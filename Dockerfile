# Lambda container image for the Manim render worker.
#
# Base: the official Manim image, which already carries Python, ffmpeg, Cairo/Pango (with their
# -dev packages, so source-only wheels such as pycairo and manimpango can build) and a TeX Live
# with the packages Manim's LaTeX support needs. Its tags follow Manim's releases (vX.Y.Z); keep
# the tag equal to the manim version pinned in uv.lock (0.22.0) so the image's own manim already
# satisfies the lock. Upstream's release workflow publishes every release as vX.Y.Z; v0.21.0 is
# the newest tag also seen referenced in the wild: fall back to it with
# `--build-arg MANIM_IMAGE_TAG=v0.21.0` if v0.22.0 cannot be pulled.
ARG MANIM_IMAGE_TAG=v0.22.0
FROM manimcommunity/manim:${MANIM_IMAGE_TAG}

# Same uv as the one that wrote uv.lock, so `--frozen` export reads it exactly as CI does.
ARG UV_VERSION=0.13.8
ENV LAMBDA_TASK_ROOT=/var/task

# The base image ends as its non-root user; installing into the system Python needs root.
USER 0
WORKDIR ${LAMBDA_TASK_ROOT}

# Install the runtime dependencies (awslambdaric included) from the lock CI tests against, into
# the interpreter ENTRYPOINT runs. uv lives only in this layer: the function does not need it.
COPY pyproject.toml uv.lock /tmp/lock/
RUN python -m pip install --no-cache-dir --target /tmp/uv "uv==${UV_VERSION}" \
    && /tmp/uv/bin/uv export --quiet --project /tmp/lock --frozen --no-dev --no-emit-project \
        --no-hashes --output-file /tmp/lock/requirements.txt \
    && /tmp/uv/bin/uv pip install --python "$(command -v python)" --no-cache --compile-bytecode \
        --requirement /tmp/lock/requirements.txt \
    && rm -rf /tmp/uv /tmp/lock

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

# Lambda ignores USER and picks its own non-root uid; an arbitrary uid with no passwd entry and
# no writable home makes `docker run` and `sam local` behave the same way.
USER 993:993

ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["handler.app.lambda_handler"]
