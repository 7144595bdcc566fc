"""Shared fixtures: the Docker engine for the end-to-end tests (marked slow), and the removal of every image and
tag a test makes, so that a test run leaves ``docker images`` as it found it (apart from cached environment and
base images, which are reused across runs)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

BASE = os.environ.get("SUBMISSION_TEST_BASE", "submission-base:bookworm")
KEPT_REPOSITORIES = ("submission-env", "submission-base")  # caches a later run reuses
# Docker tests that run beside the others, each a group of its own: the examples, the longest (14 and 9 minutes)
DOCKER_APART = {"tests/test_examples.py::test_digits_example_end_to_end": "docker-digits",
                "tests/test_examples.py::test_custom_model_example_end_to_end": "docker-custom"}


@pytest.fixture(scope="session")
def client():
    """The engine with the base image; in CI a missing one fails the test, elsewhere it skips it."""
    from builder.image.engine import connect

    try:
        engine = connect()
        engine.images.get(BASE)
    except Exception as e:
        message = f"needs a running Docker engine with the base image {BASE} (scripts/setup.sh makes both): {e}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return engine


def _remover(engine) -> tuple[Callable[[str], str], Callable[[], None]]:
    made: list[str] = []

    def register(tag: str) -> str:
        made.append(tag)
        return tag

    def remove() -> None:
        import docker

        for tag in reversed(made):
            try:
                engine.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass

    return register, remove


@pytest.fixture
def docker_cleanup(client) -> Iterator[Callable[[str], str]]:
    """``docker_cleanup(tag)`` names an image tag the test makes; the tag is removed after the test (and the image
    with it when no other tag holds it)."""
    register, remove = _remover(client)
    yield register
    remove()


@pytest.fixture(scope="module")
def module_docker_cleanup(client) -> Iterator[Callable[[str], str]]:
    """The same for images shared by the tests of one module."""
    register, remove = _remover(client)
    yield register
    remove()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the slow end-to-end tests (Docker images, examples, benchmarks); CI does")


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist hands out the groups largest first by their count of tests, which puts the one-test examples
    last, where they alone make the run's tail: the order set below is kept instead."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --slow (or an explicit -m), the tests marked slow are deselected. Under pytest-xdist (``-n 2 --dist
    loadgroup``) the tests that use the Docker engine run one after another in one worker, since they share the
    engine, its caches and the images they build; each example (the longest, touching nothing the others look at)
    is a group of its own, beside them; each other module runs whole in a worker (its module fixtures built once).
    The Docker groups come first, the longest first: the workers start with the Docker tests and the digits example,
    then the custom example, and share the other modules as they come free."""
    def group(item: pytest.Item) -> str:
        if "client" not in getattr(item, "fixturenames", ()):
            return item.nodeid.split("::")[0]
        return DOCKER_APART.get(item.nodeid.split("[")[0], "docker")

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    first = ["docker", *DOCKER_APART.values()]
    items.sort(key=lambda item: first.index(group(item)) if group(item) in first else len(first))
    if config.getoption("--slow") or config.getoption("-m"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def _images() -> set[tuple[str, str]] | None:
    try:
        import docker

        engine = docker.from_env(timeout=30)
        return {(image.id, tag) for image in engine.images.list(all=False) for tag in (image.tags or ["<none>"])}
    except Exception:
        return None


def _controller(session: pytest.Session) -> bool:
    """Not a pytest-xdist worker: the process that sees the whole run begin and end."""
    return not hasattr(session.config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _controller(session):
        session.config.stash[_BEFORE] = _images()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before, after = session.config.stash.get(_BEFORE, None), _images()
    if before is None or after is None:
        return
    left = sorted(tag for image, tag in after - before if not tag.startswith(KEPT_REPOSITORIES))
    if left:
        print(f"\nthe tests left {len(left)} image tag(s) behind: {', '.join(left)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set]()
