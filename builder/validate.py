"""``builder validate``: run the image the way graders do, check its CSV as a leaderboard does, score it.

The run: ``--network none``, read-only root with a writable tmpfs /tmp, the test folder read-only, a
writable output folder, non-root, no capabilities, memory/CPU/pid limits, and a wall-clock limit after which
the container is stopped and the run reported as a timeout. The container's log is streamed; exit code,
wall time and peak memory are recorded. Then the CSV checks (``builder.checks``), the score with
``--labels`` (``builder.scoring``), and the run time projected to the hidden test set.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound

from builder.checks import Check, Expectation, check_table, passed, read_table
from builder.errors import ConfigError, DockerError
from builder.sample import Sample, infer_format, infer_label_as, read_sample
from builder.scoring import Score, read_labels, score
from submission.atomic import atomic_path
from submission.images import has_image_suffix, list_images
from submission.manifest import IMAGE_BUNDLE_DIR, MANIFEST_NAME, Manifest

NETWORK_SIGNS = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable|"
    r"Failed to establish a new connection|urlopen error|HTTPSConnectionPool|OfflineModeIsEnabled|"
    r"LocalEntryNotFoundError|nodename nor servname",
    re.IGNORECASE,
)
_WROTE = re.compile(r"wrote \S+ \((\d+) rows, \d+ columns\) in ([\d.]+)s")


def parse_duration(text: str) -> float:
    """"9h", "20m", "90s", "1h30m", "2.5h" or plain seconds -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text.strip().lower()):
        raise ConfigError(f"cannot read the duration {text!r}; write it as 9h, 20m, 90s or 1h30m")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass
class RunReport:
    exit_code: int | None  # None when the container was stopped at the time limit
    seconds: float
    timed_out: bool
    peak_memory_bytes: int | None
    log_tail: str
    network_attempted: bool
    oom_killed: bool = False


@dataclass
class Report:
    image: str | None
    checks: list[Check] = field(default_factory=list)
    run: RunReport | None = None
    score: Score | None = None
    projection: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return passed(self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def image_manifest(client: docker.DockerClient, image: str) -> tuple[Manifest, bytes | None]:
    """The manifest inside a submission image and its bundled sample (when there is one)."""
    try:
        client.images.get(image)
    except ImageNotFound:
        raise DockerError(f"image {image!r} not found; build it with `builder pack` first") from None
    container = client.containers.create(image, network_disabled=True)
    try:
        def read(path: str) -> bytes:
            stream, _ = container.get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.getmembers()[0]
                return tar.extractfile(member).read()

        try:
            manifest = Manifest.from_dict(json.loads(read(f"{IMAGE_BUNDLE_DIR}/{MANIFEST_NAME}")))
        except docker.errors.NotFound:
            raise DockerError(f"{image} has no {IMAGE_BUNDLE_DIR}/{MANIFEST_NAME}: is it a `builder pack` image?") from None
        sample = None
        if manifest.sample_submission is not None:
            sample = read(f"{IMAGE_BUNDLE_DIR}/{manifest.sample_submission.path}")
        return manifest, sample
    finally:
        container.remove(force=True)


def expectation_from(manifest: Manifest | None, sample: Sample, task: str | None = None,
                     classes: tuple[str, ...] | None = None) -> Expectation:
    """What the CSV must look like: from the image's manifest, else from the sample (and --task, --classes)."""
    if manifest is not None:
        return Expectation(sample.columns, sample.id_column, sample.ids, manifest.output.format, manifest.task,
                           manifest.classes, manifest.output.label_as)
    task = task or "multiclass"
    fmt, _ = infer_format(sample, task)
    if fmt in ("onehot", "probs"):
        classes = sample.value_columns
    label_as = infer_label_as(sample, classes or ())[0] if fmt in ("label", "labels") else "name"
    return Expectation(sample.columns, sample.id_column, sample.ids, fmt, task, classes, label_as)


def run_image(
    client: docker.DockerClient, image: str, args: list[str], data: Path, out: Path, *,
    time_limit: float | None = None, memory: str | None = None, cpus: float | None = None, gpus: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> RunReport:
    """Run ``image`` with ``args`` as a grader does: ``data`` read-only at /data, ``out`` at /output, no network,
    read-only root, no capabilities; stopped at ``time_limit`` seconds (none: it may run as long as it takes)."""
    kwargs: dict[str, Any] = dict(
        network_mode="none", read_only=True, tmpfs={"/tmp": "rw,nosuid,nodev,mode=1777"},
        volumes={str(data.resolve()): {"bind": "/data", "mode": "ro"}, str(out.resolve()): {"bind": "/output", "mode": "rw"}},
        cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=256, detach=True,
    )
    if memory:
        kwargs.update(mem_limit=memory, memswap_limit=memory)
    if cpus:
        kwargs["nano_cpus"] = int(cpus * 1e9)
    if gpus:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    try:
        container = client.containers.run(image, args, **kwargs)
    except DockerException as e:
        raise DockerError(f"cannot start {image}: {e}") from None
    start = time.perf_counter()
    lines: list[str] = []
    peak = {"bytes": 0}

    def follow_log() -> None:
        for chunk in container.logs(stream=True, follow=True):
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
    finally:
        container.remove(force=True)
    text = "\n".join(lines)
    return RunReport(exit_code=exit_code, seconds=seconds, timed_out=timed_out,
                     peak_memory_bytes=peak["bytes"] or None, log_tail="\n".join(lines[-40:]),
                     network_attempted=bool(NETWORK_SIGNS.search(text)), oom_killed=oom)


def run_checks(run: RunReport, time_limit: float | None) -> list[Check]:
    checks = []
    if run.timed_out:
        checks.append(Check("timeout", False, f"stopped at the time limit of {time_limit:g}s"))
    elif time_limit:
        checks.append(Check("timeout", True, f"{run.seconds:.1f}s of {time_limit:g}s"))
    if run.network_attempted:
        lines = [line for line in run.log_tail.splitlines() if NETWORK_SIGNS.search(line)]
        checks.append(Check("network access", False,
                            f"the run tried to reach the network, which graders cut off: {lines[-1][:300] if lines else ''}"))
    if run.oom_killed:
        checks.append(Check("out of memory", False, "the container was killed for exceeding its memory limit"))
    if not run.timed_out:
        checks.append(Check("exit code", run.exit_code == 0,
                            "" if run.exit_code == 0 else f"exited with code {run.exit_code}; log:\n{run.log_tail[-2000:]}"))
    return checks


def project(run: RunReport, expected_rows: int, time_limit: float | None) -> dict[str, Any] | None:
    """The hidden set's run time: start-up as measured, prediction time scaled by rows (from the runtime's log)."""
    found = _WROTE.findall(run.log_tail)
    if not found or run.timed_out:
        return None
    rows, predict_s = int(found[-1][0]), float(found[-1][1])
    startup = max(run.seconds - predict_s, 0.0)
    projected = startup + predict_s * expected_rows / max(rows, 1)
    result = {"measured_rows": rows, "measured_seconds": run.seconds, "startup_seconds": startup,
              "expected_rows": expected_rows, "projected_seconds": projected}
    if time_limit:
        result["fraction_of_limit"] = projected / time_limit
    return result


def validate(
    *, image: str | None, csv: Path | None, data: Path | None, sample_path: Path | None, labels: Path | None,
    metric: str | None = None, time_limit: float | None = None, memory: str | None = None, cpus: float | None = None,
    gpus: bool = False, expected_rows: int | None = None, out_dir: Path | None = None, task: str | None = None,
    classes: tuple[str, ...] | None = None, ignore_sample: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> Report:
    """Run ``image`` on ``data`` (or take ``csv`` as it is), check the CSV, and score it with ``labels``.

    ``ignore_sample`` runs the image on a folder other than the competition's test set (a held-out
    validation folder): the image predicts the images it finds, and the CSV is checked against ``sample_path``.
    """
    if (image is None) == (csv is None):
        raise ConfigError("validate either an IMAGE (with --data) or a --csv file")
    if ignore_sample and sample_path is None:
        raise ConfigError("--ignore-sample needs --sample-submission: the sample of the folder given with --data")
    report = Report(image=image)
    manifest, bundled_sample = None, None
    client = None
    if image is not None:
        from builder.image import connect

        client = connect()
        manifest, bundled_sample = image_manifest(client, image)
    with tempfile.TemporaryDirectory(prefix="submission-validate-") as tmp:
        if sample_path is None and bundled_sample is not None:
            sample_path = Path(tmp) / "bundled_sample.csv"
            sample_path.write_bytes(bundled_sample)
        if sample_path is None:
            raise ConfigError("no sample submission: pass --sample-submission (the image bundles none)")
        sample = read_sample(sample_path, manifest.output.id_column if manifest else None)
        if bundled_sample is not None and not ignore_sample and Path(sample_path).read_bytes() != bundled_sample:
            report.checks.append(Check("sample differs", False, f"{sample_path} is not the sample bundled in {image}: "
                                                                "pack again with the platform's current sample"))
        exp = expectation_from(manifest, sample, task, classes)
        if image is not None:
            if data is None:
                raise ConfigError("--data TEST_DIR is needed to run the image")
            out = Path(out_dir) if out_dir else Path(tmp) / "output"
            out.mkdir(parents=True, exist_ok=True)
            out.chmod(0o777)
            args = ["/data", "--ignore-sample"] if ignore_sample else ["/data"]
            report.run = run_image(client, image, args, data, out, time_limit=time_limit, memory=memory, cpus=cpus,
                                   gpus=gpus, log=log)
            report.checks.extend(run_checks(report.run, time_limit))
            csv = out / "submission.csv"
            report.projection = project(report.run, expected_rows or len(sample.ids), time_limit)
            if report.projection and time_limit and report.projection["fraction_of_limit"] > 0.8:
                p = report.projection
                report.checks.append(Check("time limit", False, f"projected {p['projected_seconds']:.0f}s for "
                                           f"{p['expected_rows']} rows is {p['fraction_of_limit']:.0%} of the limit",
                                           level="warning"))
        checks, table = read_table(csv)
        report.checks.extend(checks)
        if table is not None:
            test_ids = None
            if data is not None:
                with_suffix = all(has_image_suffix(i) for i in sample.ids)
                test_ids = {p.name if with_suffix else p.stem for p in list_images(data)}
            report.checks.extend(check_table(table, exp, test_ids))
            if labels is not None and report.passed:
                if exp.classes is None:
                    raise ConfigError("scoring a label column needs the class names: pass --classes a,b,c")
                report.score = score(table, exp, read_labels(labels, exp.id_column, exp.classes), metric)
    return report


def write_report(report: Report, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
