"""The Docker engine: the connection, local images, loading the images the builder writes, and containers run the
way graders run them.

Every container this package starts goes through ``run_container``: ``--network none``, read-only root with a
writable tmpfs /tmp, the data folder read-only (at /data, or where a platform mounts it), an output folder (at
/output, or the platform's), no capabilities, ``no-new-privileges`` and a pid limit, with optional memory, CPU, GPU
and wall-clock limits, and what a platform adds: its variables, ``--init``, ulimits, a sized /tmp, image paths on
stdin.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound

from builder.errors import DockerError
from builder.image.layers import ImageSpec, Layer, load_archive

Log = Callable[[str], None]


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except (DockerException, requests.RequestException) as e:
        raise DockerError(
            f"cannot reach the Docker engine ({e}); start it (dockerd, or Docker Desktop) or set DOCKER_HOST. "
            "`builder pack --bundle-only DIR` needs no Docker"
        ) from None
    return client


def local_image(client: docker.DockerClient, name: str) -> Any | None:
    try:
        return client.images.get(name)
    except ImageNotFound:
        return None


def load_image(client: docker.DockerClient, image: ImageSpec, layers: list[Layer], tag: str) -> None:
    """``docker load`` ``image`` (its parent already in the engine) as ``tag``, and check the engine's ID is its ID."""
    try:
        client.images.load(load_archive(image, layers, tag))
        loaded = client.images.get(tag).id
    except (DockerException, requests.RequestException) as e:
        raise DockerError(f"docker load of {tag} failed: {e}") from None
    if loaded != image.id:
        raise DockerError(f"the engine tagged {loaded} as {tag}, where the builder wrote {image.id}")


@dataclass(frozen=True)
class Mount:
    source: Path  # on the host
    target: str  # in the container
    read_only: bool = True


@dataclass
class ContainerRun:
    exit_code: int | None  # None when the container was stopped at the time limit
    seconds: float
    timed_out: bool
    peak_memory_bytes: int | None
    log: str  # everything the container printed (its stderr alone, when stdout is its answer)
    oom_killed: bool = False
    stdout: str = ""  # what it printed on stdout, kept apart when it was fed stdin


def run_container(
    client: docker.DockerClient, image: str, args: list[str], data: Path, out: Path | None, *,
    time_limit: float | None = None, memory: str | None = None, cpus: float | None = None, gpus: bool = False,
    log: Log = lambda line: None, data_target: str = "/data", out_target: str = "/output",
    extra_mounts: Sequence[Mount] = (), env: Mapping[str, str] | None = None, stdin: bytes | None = None,
    init: bool = False, ulimits: Mapping[str, int] | None = None, read_only: bool = True,
    tmpfs_bytes: int | None = None, entrypoint: Sequence[str] | None = None, working_dir: str | None = None,
) -> ContainerRun:
    """Run ``image`` with ``args`` as a grader does: ``data`` read-only at ``data_target``, ``out`` at
    ``out_target``, no network, read-only root, no capabilities; ``stdin`` fed and closed (stdout then kept apart);
    stopped at ``time_limit`` seconds (none: it may run as long as it takes); ``entrypoint`` and ``working_dir``
    in place of the image's. The container is removed afterwards, whatever happened."""
    mounts = [Mount(data, data_target, True)] + ([Mount(out, out_target, False)] if out is not None else [])
    mounts += list(extra_mounts)
    tmpfs = "rw,nosuid,nodev,mode=1777" + (f",size={tmpfs_bytes}" if tmpfs_bytes else "")
    kwargs: dict[str, Any] = dict(
        network_mode="none", read_only=read_only, tmpfs={"/tmp": tmpfs},
        volumes={str(Path(m.source).resolve()): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                 for m in mounts},
        cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=256, environment=dict(env or {}),
        detach=stdin is None,  # created attached, so that closing its stdin ends its input (StdinOnce)
        init=init, ulimits=[docker.types.Ulimit(name=k, soft=v, hard=v) for k, v in (ulimits or {}).items()],
        stdin_open=stdin is not None,
    )
    if entrypoint is not None:
        kwargs["entrypoint"] = list(entrypoint)
    if working_dir is not None:
        kwargs["working_dir"] = working_dir
    if memory:
        kwargs.update(mem_limit=memory, memswap_limit=memory)
    if cpus:
        kwargs["nano_cpus"] = int(cpus * 1e9)
    if gpus:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if local_image(client, image) is None:  # containers.run would pull it from a registry
        raise DockerError(f"{image} is not in this Docker engine, and is never pulled; pack it, or docker load it")
    try:
        container = client.containers.create(image, args, **kwargs)
        attached = container.attach_socket(params={"stdin": 1, "stream": 1}) if stdin is not None else None
        container.start()
        if attached is not None:  # fed beside the clock: the container reads as it goes
            threading.Thread(target=_feed, args=(attached, stdin), daemon=True).start()
    except DockerException as e:
        raise DockerError(f"cannot start {image}: {e}") from None
    start = time.perf_counter()
    lines: list[str] = []
    peak = {"bytes": 0}

    def follow_log() -> None:
        for chunk in container.logs(stream=True, follow=True, stdout=stdin is None, stderr=True):
            for line in chunk.decode(errors="replace").splitlines():
                lines.append(line)
                log(line)

    def follow_memory() -> None:
        try:
            for stats in container.stats(stream=True, decode=True):
                memory_stats = stats.get("memory_stats") or {}
                peak["bytes"] = max(peak["bytes"], memory_stats.get("max_usage", 0), memory_stats.get("usage", 0))
        except (DockerException, requests.RequestException, ValueError):
            pass

    threads = [threading.Thread(target=follow_log, daemon=True), threading.Thread(target=follow_memory, daemon=True)]
    for t in threads:
        t.start()
    timed_out, exit_code = False, None
    try:
        while exit_code is None and not timed_out:  # short waits: the client's own timeout must not end a long run
            left = None if time_limit is None else time_limit - (time.perf_counter() - start)
            try:
                exit_code = container.wait(timeout=60.0 if left is None else max(min(60.0, left), 0.1))["StatusCode"]
            except requests.RequestException:
                if time_limit is not None and time.perf_counter() - start >= time_limit:
                    timed_out = True
                    container.stop(timeout=5)
        seconds = time.perf_counter() - start
        threads[0].join(timeout=10)
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace") if stdin is not None else ""
    finally:
        container.remove(force=True)
    return ContainerRun(exit_code=exit_code, seconds=seconds, timed_out=timed_out,
                        peak_memory_bytes=peak["bytes"] or None, log="\n".join(lines), oom_killed=oom, stdout=stdout)


def _feed(attached: Any, data: bytes) -> None:
    """Write ``data`` to the container's stdin and close it (the container sees the end of its input)."""
    raw = getattr(attached, "_sock", attached)
    try:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
    except OSError:  # the container ended before it read everything: its exit code says why
        pass
    finally:
        attached.close()
