# The function image plus the project's dev dependencies and tests, so that the test suite runs
# on the image's own Python and package set (`make image-test` builds and runs it).
ARG IMAGE=renderfunction:v1
FROM ${IMAGE}
ARG UV_VERSION=0.13.8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /var/task
COPY pyproject.toml uv.lock ./
# The dev group's pins for this Python, from the lock; the runtime packages are already there.
RUN python -m ensurepip --upgrade \
    && python -m pip install --no-cache-dir --target /tmp/uv "uv==${UV_VERSION}" \
    && /tmp/uv/bin/uv export --quiet --frozen --only-group dev --no-emit-project \
        --output-file /tmp/dev.txt \
    && python -m pip install --no-cache-dir --no-deps --require-hashes --requirement /tmp/dev.txt \
    && rm -rf /tmp/uv /tmp/dev.txt
# The client and its console script (tests/*/test_client.py run `manim-lambda`), built as
# `uv sync` builds it; the function image itself has neither.
COPY README.md ./
COPY manim_lambda/ ./manim_lambda/
RUN python -m pip install --no-cache-dir --no-deps .
COPY tests/ ./tests/
COPY events/ ./events/
COPY .ci/ ./.ci/
COPY Dockerfile template.yaml samconfig.toml .dockerignore openapi.json direct-invoke.schema.json ./
ENTRYPOINT ["python", "-m", "pytest"]
CMD ["-q"]
