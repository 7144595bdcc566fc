"""``builder validate``: run the image the way graders do (``run``), check its CSV as a leaderboard does
(``checks``, under each reading ``expect`` allows), score it (``scoring``), and gather it all in one report whose
verdict is passed, failed, or undecided (a check that what validate was told cannot decide)."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.errors import ImageNotFound

from builder.errors import ConfigError, DockerError
from builder.image.engine import connect
from builder.sample import Sample, read_sample
from builder.truth import aligned, read_truth
from builder.validate import expect
from builder.validate.checks import check_table, read_table, verdict
from builder.validate.run import RunReport, grader_run, project, run_checks
from builder.validate.scoring import Score, score
from submission.atomic import atomic_path
from submission.formats.base import Check, Expectation
from submission.inputs.images import has_image_suffix, list_images
from submission.manifest import IMAGE_BUNDLE_DIR, MANIFEST_NAME, Manifest


@dataclass(frozen=True)
class ValidateRequest:
    """What ``builder validate`` is asked: an image to run (or a CSV alone), what to check it against, the limits."""

    image: str | None = None  # the submission image to run (None with csv)
    csv: Path | None = None  # a CSV to check alone, without running an image
    data: Path | None = None  # the test folder the image runs on, mounted read-only at /data
    sample: Path | None = None  # the platform's sample (default: the one bundled in the image)
    labels: Path | None = None  # true labels: score the CSV
    metric: str | None = None  # the headline metric
    time_limit: float | None = None  # seconds; the run is stopped there and fails
    memory: str | None = None  # the container's memory limit, e.g. "16g"
    cpus: float | None = None  # the container's CPU limit
    gpus: bool = False  # give the container every GPU
    expected_rows: int | None = None  # rows of the hidden test set (default: the sample's)
    out_dir: Path | None = None  # keep the run's output folder here
    told: expect.Told = expect.Told()  # what is known of a CSV checked alone
    ignore_sample: bool = False  # data is a held-out folder, not the test set: the image predicts what it finds


@dataclass
class Report:
    image: str | None
    checks: list[Check] = field(default_factory=list)
    run: RunReport | None = None
    score: Score | None = None
    projection: dict[str, Any] | None = None
    inferred: list[str] = field(default_factory=list)  # what was inferred of a CSV checked alone, and why

    @property
    def verdict(self) -> str:
        return verdict(self.checks)

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"], data["verdict"] = self.passed, self.verdict
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


def validate(request: ValidateRequest, log: Callable[[str], None] = lambda line: None) -> Report:
    """Run the image on the test folder (or take the CSV as it is), check the CSV, and score it with the labels."""
    r = request
    if (r.image is None) == (r.csv is None):
        raise ConfigError("validate either an IMAGE (with --data) or a --csv file")
    if r.ignore_sample and r.sample is None:
        raise ConfigError("--ignore-sample needs --sample-submission: the sample of the folder given with --data")
    if r.image is not None and r.data is None:
        raise ConfigError("--data TEST_DIR is needed to run the image")
    report = Report(image=r.image)
    client = connect() if r.image is not None else None
    manifest, bundled = image_manifest(client, r.image) if client is not None else (None, None)
    with tempfile.TemporaryDirectory(prefix="submission-validate-") as tmp:
        sample = _sample(r, manifest, bundled, Path(tmp), report)
        csv = _run(r, client, sample, Path(tmp), report, log) if client is not None else r.csv
        checks, table = read_table(csv)
        report.checks.extend(checks)
        if table is not None:
            exp = _check(r, manifest, sample, table, report)
            if r.labels is not None and report.passed:
                report.score = score(table, exp, r.labels, r.metric)
    return report


def _sample(r: ValidateRequest, manifest: Manifest | None, bundled: bytes | None, tmp: Path, report: Report) -> Sample:
    """The sample to check against (the one given, else the image's), and whether it is the image's."""
    path = r.sample
    if path is None and bundled is not None:
        path = tmp / "bundled_sample.csv"
        path.write_bytes(bundled)
    if path is None:
        raise ConfigError("no sample submission: pass --sample-submission (the image bundles none)")
    sample = read_sample(path, manifest.output.id_column if manifest else None)
    if bundled is not None and not r.ignore_sample and Path(path).read_bytes() != bundled:
        report.checks.append(Check("sample differs", False, f"{path} is not the sample bundled in {r.image}: pack again "
                                                            "with the platform's current sample"))
    return sample


def _run(r: ValidateRequest, client: docker.DockerClient, sample: Sample, tmp: Path, report: Report,
         log: Callable[[str], None]) -> Path:
    """The grader-like run; its checks and the projection of the hidden set's time. Returns the CSV it wrote."""
    out = Path(r.out_dir) if r.out_dir else tmp / "output"
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    args = ["/data", "--ignore-sample"] if r.ignore_sample else ["/data"]
    report.run = grader_run(client, r.image, args, r.data, out, time_limit=r.time_limit, memory=r.memory, cpus=r.cpus,
                            gpus=r.gpus, log=log)
    report.checks.extend(run_checks(report.run, r.time_limit))
    report.projection = project(report.run, r.expected_rows or len(sample.ids), r.time_limit)
    if report.projection and r.time_limit and report.projection["fraction_of_limit"] > 0.8:
        p = report.projection
        report.checks.append(Check("time limit", False, f"projected {p['projected_seconds']:.0f}s for "
                                   f"{p['expected_rows']} rows is {p['fraction_of_limit']:.0%} of the limit",
                                   level="warning"))
    return out / "submission.csv"


def _check(r: ValidateRequest, manifest: Manifest | None, sample: Sample, table: Any, report: Report) -> Expectation:
    """The content checks, under the manifest's expectation or under every reading of the sample; returns the
    expectation to score under."""
    test_ids = None
    if r.data is not None:
        with_suffix = all(has_image_suffix(i) for i in sample.ids)
        test_ids = {p.name if with_suffix else p.stem for p in list_images(r.data)}
    if manifest is not None:
        exp = expect.from_manifest(manifest, sample)
        report.checks.extend(check_table(table, exp, test_ids))
        return exp
    found = expect.readings(sample, r.told)
    report.inferred = expect.notes(found)
    per_reading = [(reading, check_table(table, reading, test_ids)) for reading in found]
    report.checks.extend(expect.merge(per_reading))
    truth = aligned(read_truth(r.labels, sample.id_column), table[sample.id_column]) if r.labels and report.passed \
        else None
    return expect.for_scoring(found, {i: checks for i, (_, checks) in enumerate(per_reading)}, truth)


def write_report(report: Report, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
