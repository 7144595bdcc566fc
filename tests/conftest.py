"""Shared fixtures: the Docker engine for the end-to-end tests (marked slow)."""

from __future__ import annotations

import os

import pytest

BASE = os.environ.get("SUBMISSION_TEST_BASE", "submission-base:bookworm")


@pytest.fixture(scope="session")
def client():
    """The engine with the base image; in CI a missing one fails the test, elsewhere it skips it."""
    from builder.image import connect

    try:
        engine = connect()
        engine.images.get(BASE)
    except Exception as e:
        message = f"needs a running Docker engine with the base image {BASE} (scripts/setup.sh makes both): {e}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return engine
