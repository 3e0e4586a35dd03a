# `make run` and `make test` set up everything they need on a fresh Debian machine (as root).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# System packages: a C compiler, Cairo and Pango to build Manim's bindings (pycairo and manimpango
# publish no Linux wheels), LaTeX for MathTex and Tex, CodeMirror for the editor of `make serve`'s
# page and Chromium to test that page.
APT_PACKAGES := python3 python3-dev python3-venv build-essential pkg-config libcairo2-dev libpango1.0-dev \
	texlive-latex-base texlive-latex-extra texlive-fonts-recommended dvisvgm cm-super-minimal \
	libjs-codemirror chromium
# Debian's interpreter, so that the unprivileged user the Lambda tests run as can use the venv.
PYTHON := $(firstword $(wildcard /usr/bin/python3.11) python3.11)
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv

.PHONY: help install system-packages run serve lint test openapi bench image image-test debian-check

help:
	@echo "make run    render the bundled example through the handler (embedded storage)"
	@echo "make serve  run the local HTTP server on PORT (default 3001), with a page to try scenes at /"
	@echo "make lint   ruff and mypy over handler/, render/, manim_lambda/ and tests/ (configured in pyproject.toml)"
	@echo "make test   make lint, then run every test"
	@echo "make openapi  regenerate openapi.json and direct-invoke.schema.json from the code"
	@echo "make bench  time the warm service against the manim CLI"
	@echo "make image  build the Lambda image with sam build (Docker, or Podman's socket)"
	@echo "make image-test  build the image, then test it as Lambda and sam local run it"
	@echo "make debian-check  run make run and make test in a bare Debian 12 container"

install: system-packages $(VENV)/.synced

system-packages:
	@missing=""; for package in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -ne 0 ]; then echo "Missing system packages:$$missing (install them as root)"; exit 1; fi; \
		echo "Installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV) system-packages
	UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --python $(PYTHON)
	touch $@

run: install
	$(VENV)/bin/python -m handler.local invoke events/function-url-render.json

serve: install
	$(VENV)/bin/python -m handler.local serve

# Both run, whatever the first finds; either failing fails the target.
lint: install
	$(VENV)/bin/ruff check || failed=1; $(VENV)/bin/mypy || failed=1; exit $${failed:-0}

test: lint
	$(VENV)/bin/python -m pytest

# The contract, generated from the resolver and the models; tests/unit/test_openapi.py fails when they drift.
openapi: install
	$(VENV)/bin/python -m handler.contract

bench: install
	$(VENV)/bin/python -m tests.benchmark

# The image: DOCKER_HOST when set, else Docker's socket, else Podman's (started by .ci/docker-host).
# The base image is pulled, or built here as a stand-in where no registry answers (tests only).
IMAGE := renderfunction:v1
ENGINE := DOCKER_HOST="$$(.ci/docker-host)" && export DOCKER_HOST SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1

image: install
	@$(ENGINE) && $(VENV)/bin/python -m tests.image.base && $(VENV)/bin/sam build --template-file template.yaml

image-test: image
	@$(ENGINE) && $(VENV)/bin/python -m pytest --image=$(IMAGE) tests/image tests/security

debian-check: install
	@$(ENGINE) && $(VENV)/bin/python -m tests.image.debian_check
