"""``builder validate``: run the image the way graders do (``run``), check its CSV as a leaderboard does
(``checks``), score it (``scoring``), and gather it all in one report."""

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
from builder.pack.sample import read_sample
from builder.validate import expect
from builder.validate.checks import check_table, passed, read_table
from builder.validate.run import RunReport, grader_run, project, run_checks
from builder.validate.scoring import Score, score
from submission.atomic import atomic_path
from submission.formats.base import Check
from submission.inputs.images import has_image_suffix, list_images
from submission.manifest import IMAGE_BUNDLE_DIR, MANIFEST_NAME, Manifest


@dataclass
class Report:
    image: str | None
    checks: list[Check] = field(default_factory=list)
    run: RunReport | None = None
    score: Score | None = None
    projection: dict[str, Any] | None = None
    inferred: list[str] = field(default_factory=list)  # what was inferred of a CSV checked alone, and why

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


def validate(
    *, image: str | None, csv: Path | None, data: Path | None, sample_path: Path | None, labels: Path | None,
    metric: str | None = None, time_limit: float | None = None, memory: str | None = None, cpus: float | None = None,
    gpus: bool = False, expected_rows: int | None = None, out_dir: Path | None = None, task: str | None = None,
    classes: tuple[str, ...] | None = None, top_k: int = 1, positive_class: str | None = None,
    ignore_sample: bool = False, log: Callable[[str], None] = lambda line: None,
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
        if image is not None:
            if data is None:
                raise ConfigError("--data TEST_DIR is needed to run the image")
            out = Path(out_dir) if out_dir else Path(tmp) / "output"
            out.mkdir(parents=True, exist_ok=True)
            out.chmod(0o777)
            args = ["/data", "--ignore-sample"] if ignore_sample else ["/data"]
            report.run = grader_run(client, image, args, data, out, time_limit=time_limit, memory=memory, cpus=cpus,
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
        if manifest is not None:
            exp = expect.from_manifest(manifest, sample)
        else:
            cells = table[[c for c in sample.value_columns if c in table.columns]] if table is not None else None
            exp = expect.inferred(sample, cells, task=task, classes=classes, top_k=top_k, positive_class=positive_class)
            report.inferred = list(exp.notes)
        if table is not None:
            test_ids = None
            if data is not None:
                with_suffix = all(has_image_suffix(i) for i in sample.ids)
                test_ids = {p.name if with_suffix else p.stem for p in list_images(data)}
            report.checks.extend(check_table(table, exp, test_ids))
            if labels is not None and report.passed:
                report.score = score(table, exp, labels, metric)
    return report


def write_report(report: Report, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
