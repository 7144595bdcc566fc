# The submission's environment as one would write it by hand: BASE_IMAGE plus the pinned wheels installed with pip
# into a venv. `builder pack` does not build this file: it writes the same environment itself, layer by layer
# (builder/image/env.py), so that the same inputs give the same image ID on any machine, and leaves out what
# inference never loads (`--full-env` keeps it). This file is the plain reference that benchmarks/env_size.py
# builds to compare sizes, and a readable account of the environment: its ENV and USER are the builder's
# (tests/image/test_env.py checks that they agree).
#
# Build context: wheels/ holding the wheelhouse's wheels and requirements.lock (every wheel pinned by sha256), as
# `builder pack` downloads them into ~/.cache/submission-builder/wheelhouse/<key>/.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS install
COPY wheels /wheels
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-index --no-deps --require-hashes --no-cache-dir \
        --disable-pip-version-check --find-links /wheels --requirement /wheels/requirements.lock \
 && /opt/venv/bin/python -m pip check

FROM ${BASE_IMAGE}
COPY --from=install /opt/venv /opt/venv
RUN useradd --uid 10001 --user-group --home-dir /tmp --no-create-home --shell /usr/sbin/nologin submission
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/.cache/torch \
    HF_HUB_OFFLINE=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
