# Environment image of a submission: BASE_IMAGE plus the runtime's pinned dependencies, installed offline
# from the wheelhouse that `builder pack` puts in the build context (wheels/, with requirements.lock pinning
# every wheel by sha256). `builder pack` caches the result by a content key (base image ID + lock + this
# file) and adds the runtime code and the bundle on top as layers of its own, so new weights, thresholds or
# code never rebuild this image.
#
# The default base is the official Python slim image of the host's Python minor version. Tags move: pin a
# digest with `builder pack --base-image python:3.11-slim-bookworm@sha256:...`, or make a local base with
# `builder base` where no registry is reachable. The image label submission.base.id records the base used.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS install
LABEL submission.build-stage=install
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
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
