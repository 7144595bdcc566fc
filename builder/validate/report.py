"""``builder validate``: run the image the way its platform does (``replay``: the platform's mounts, variables,
flags and limits), check its answer as a leaderboard does (``checks``, under each reading ``expect`` allows), score
it (``scoring``), and gather it all in one report whose verdict is passed, failed, or undecided (a check that what
validate was told cannot decide). Every failure is named in the product's words and in the platform's own."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import pandas as pd
from docker.errors import ImageNotFound

from builder import platforms
from builder.errors import ConfigError, DockerError
from builder.image.engine import connect
from builder.platforms.base import Platform
from builder.sample import Sample, read_sample
from builder.truth import aligned, read_truth
from builder.validate import expect
from builder.validate.checks import check_table, read_table, verdict
from builder.validate.replay import RunLimits, replay
from builder.validate.run import RunReport, project, run_checks, time_split
from builder.validate.scoring import Score, oof_curves, score
from submission.atomic import atomic_path
from submission.formats.base import Check, Expectation
from submission.inputs.images import has_image_suffix, list_images
from submission.manifest import IMAGE_BUNDLE_DIR, MANIFEST_NAME, Manifest

if TYPE_CHECKING:
    from builder.validate.exported import Opened


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
    platform: str = "generic"  # the platform whose run is replayed (its sandbox, limits and messages)
    model: Path | None = None  # the weights handed in apart (a model tarball, or its folder), for such an image
    base_image: str | None = None  # an export's run: the base of the pinned environment (default: pack's)
    oof: Path | None = None  # out-of-fold probabilities: the F1 curves their thresholds were tuned on (multilabel)
    oof_labels: Path | None = None  # their labels (default: labels)


@dataclass
class Report:
    image: str | None
    checks: list[Check] = field(default_factory=list)
    run: RunReport | None = None
    score: Score | None = None
    projection: dict[str, Any] | None = None
    inferred: list[str] = field(default_factory=list)  # what was inferred of a CSV checked alone, and why
    time_split: dict[str, float] | None = None  # the run's seconds by stage (``run.time_split``)
    platform: str = "generic"  # the platform whose run was replayed
    limits: dict[str, Any] | None = None  # the limits the run was held to: time_limit, memory, cpus, gpus
    thresholds: dict[str, float] | None = None  # multilabel: the image's per-class thresholds
    oof_curves: list[dict] | None = None  # multilabel with --oof: each class's F1 along scoring.THRESHOLDS on them

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
    report = Report(image=r.image, platform=r.platform)
    client = connect() if r.image is not None else None
    exported = client is not None and platforms.get(r.platform).runs_code
    with tempfile.TemporaryDirectory(prefix="submission-validate-") as tmp:
        opened = None
        if exported:  # the platform runs code: IMAGE is what `builder export` wrote
            from builder.validate.exported import open_export  # torch's world: never for --csv

            opened = open_export(Path(r.image), platforms.get(r.platform), Path(tmp))
            report.checks.extend(opened.checks)
            if opened.manifest is None or not report.passed:
                return report
            manifest, bundled = opened.manifest, opened.sample
        else:
            manifest, bundled = image_manifest(client, r.image) if client is not None else (None, None)
        sample = _sample(r, manifest, bundled, Path(tmp), report)
        csv = _run(r, client, manifest, sample, Path(tmp), report, log, opened) if client is not None else r.csv
        checks, table = read_table(csv)
        report.checks.extend(_in_its_words(checks, platforms.get(r.platform)))
        if table is not None:
            exp = _check(r, manifest, sample, table, report)
            if manifest is not None and manifest.decision.thresholds:
                report.thresholds = dict(zip(manifest.classes, manifest.decision.thresholds))
            if r.labels is not None and report.passed:
                report.score = score(table, exp, r.labels, r.metric, thresholds=report.thresholds)
            if r.oof is not None:
                report.oof_curves = _oof(r, exp, report.thresholds)
    return report


def _sample(r: ValidateRequest, manifest: Manifest | None, bundled: bytes | None, tmp: Path, report: Report) -> Sample:
    """The sample to check against (the one given, else the image's, else for an image whose platform has none the
    test folder's images), and whether it is the image's."""
    path = r.sample
    if path is None and bundled is not None:
        path = tmp / "bundled_sample.csv"
        path.write_bytes(bundled)
    if path is None and manifest is not None and r.data is not None and manifest.entry.mode != "folder":
        path = tmp / "folder_sample.csv"  # the platform has no sample (AISG, Grand Challenge): every image once
        ids = [p.stem for p in list_images(r.data)]
        pd.DataFrame({c: ids if c == manifest.output.id_column else "0" for c in manifest.output.columns}).to_csv(
            path, index=False)
    if path is None:
        raise ConfigError("no sample submission: pass --sample-submission (the image bundles none)")
    sample = read_sample(path, manifest.output.id_column if manifest else None)
    if bundled is not None and not r.ignore_sample and Path(path).read_bytes() != bundled:
        report.checks.append(Check("sample differs", False, f"{path} is not the sample bundled in {r.image}: pack again "
                                                            "with the platform's current sample"))
    return sample


def _limits(r: ValidateRequest, platform: Platform, report: Report) -> RunLimits:
    """The options' limits, else the platform's; a platform GPU this machine lacks is said."""
    limits = platform.limits
    if limits.gpus and not r.gpus:
        report.checks.append(Check("hardware", False, f"{platform.name} runs it on {', '.join(limits.gpus)}; this run "
                                   "has no GPU (--gpus gives it one), so its times are the CPU's", level="warning"))
    cpus = r.cpus or limits.cpus
    here = os.cpu_count() or 1
    if cpus is not None and cpus > here:
        report.checks.append(Check("hardware", False, f"{platform.name} gives {cpus:g} CPUs; this machine has {here}, "
                                   f"so the run gets {here} and its times are slower than there", level="warning"))
        cpus = float(here)
    return RunLimits(time_limit=r.time_limit or limits.time_seconds, memory=r.memory or limits.memory, cpus=cpus,
                     gpus=r.gpus)


def _model(r: ValidateRequest, manifest: Manifest, tmp: Path) -> Path | None:
    """The weights an image that holds none is run with: the model tarball extracted, or its folder."""
    if not manifest.entry.weights:
        return None
    if r.model is None:
        raise ConfigError(f"{r.image} holds no weights: the platform extracts them at {manifest.entry.weights}; pass "
                          "--model with the model tarball `builder export` wrote")
    if Path(r.model).is_dir():
        return Path(r.model)
    folder = tmp / "model"
    try:
        with tarfile.open(r.model) as tar:
            tar.extractall(folder, filter="data")
    except (OSError, tarfile.TarError) as e:
        raise ConfigError(f"cannot read the model tarball {r.model}: {e}") from None
    folder.chmod(0o755)
    for sub in folder.rglob("*"):
        sub.chmod(0o755 if sub.is_dir() else 0o644)
    return folder


def _run(r: ValidateRequest, client: docker.DockerClient, manifest: Manifest, sample: Sample, tmp: Path,
         report: Report, log: Callable[[str], None], opened: Opened | None = None) -> Path:
    """The platform's run replayed (of the image, or of the export ``opened``); its checks and the projection of
    the hidden set's time. Returns the answer's CSV."""
    platform = platforms.get(r.platform)
    limits = _limits(r, platform, report)
    work = Path(r.out_dir) if r.out_dir else tmp / "run"
    work.mkdir(parents=True, exist_ok=True)
    sample_ids = None if r.ignore_sample or manifest.entry.mode != "folder" else list(sample.ids)
    if opened is not None:
        from builder.image.base import default_base
        from builder.validate.exported import replay_export

        done = replay_export(client, opened, platform, r.data, work, limits=limits, ignore_sample=r.ignore_sample,
                             base_image=r.base_image or default_base(), log=log)
    else:
        done = replay(client, r.image, manifest, platform, r.data, work, limits=limits, sample_ids=sample_ids,
                      ignore_sample=r.ignore_sample, log=log, model=_model(r, manifest, tmp))
    report.run = done.run
    report.time_split = time_split(done.run)
    report.limits = asdict(limits)
    report.checks.extend(_in_its_words(run_checks(done.run, limits.time_limit) + done.checks, platform))
    report.projection = project(done.run, r.expected_rows or len(sample.ids), limits.time_limit, done.answered)
    if report.projection and limits.time_limit and report.projection["fraction_of_limit"] > 0.8:
        p = report.projection
        report.checks.append(Check("time limit", False, f"projected {p['projected_seconds']:.0f}s for "
                                   f"{p['expected_rows']} rows is {p['fraction_of_limit']:.0%} of the limit",
                                   level="warning"))
    return done.csv


# a check's name -> the kind of failure a platform words in its own way
_KINDS = {"timeout": "timeout", "CSV not found": "no output", "case answers": "no output", "exit code": "exit code",
          "out of memory": "out of memory", "answer lines": "bad output", "line form": "bad output"}


def _in_its_words(checks: list[Check], platform: Platform) -> list[Check]:
    """Each failure with the platform's own message beside the product's."""
    out = []
    for c in checks:
        said = platform.says(_KINDS.get(c.name, "")) if not c.passed else ""
        out.append(replace(c, detail=f"{c.detail} ({platform.name} says: {said!r})") if said else c)
    return out


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


def _oof(r: ValidateRequest, exp: Expectation, used: dict[str, float] | None) -> list[dict]:
    if exp.task != "multilabel":
        raise ConfigError("--oof draws per-class thresholds on their F1 curves: it is for multilabel submissions")
    labels = r.oof_labels or r.labels
    if labels is None:
        raise ConfigError("--oof needs the labels of its ids: --oof-labels (or --labels when they are the same)")
    return oof_curves(r.oof, labels, used)


def write_report(report: Report, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
