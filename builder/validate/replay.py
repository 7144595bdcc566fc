"""The platform's run replayed: its mounts, variables, flags and limits, its way of feeding the image (a folder, image
paths on stdin, one case per run), and the image's answer turned into one CSV in the format's columns, so that the
CSV checks every platform shares then run on it unchanged. The answer's own form is checked here: one line per
path in the entry's template (AISG), one JSON value per case (Grand Challenge).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import docker
import pandas as pd

from builder.errors import ConfigError
from builder.image.engine import ContainerRun, Mount, run_container
from builder.platforms.base import Platform
from builder.validate.run import NETWORK_SIGNS, RunReport
from submission.formats.base import Check, show
from submission.inputs.images import list_images, match_ids
from submission.manifest import Entry, Manifest, expand


@dataclass
class Replayed:
    run: RunReport  # the run (one per case: their times added, the first failure kept)
    csv: Path  # the answer, as a CSV in the format's columns
    checks: list[Check] = field(default_factory=list)  # the answer's own form
    answered: int = 0  # images answered, for the projection


@dataclass(frozen=True)
class RunLimits:
    """The limits a replay runs under: the platform's, or what the options say."""

    time_limit: float | None = None
    memory: str | None = None
    cpus: float | None = None
    gpus: bool = False


def run_report(run: ContainerRun) -> RunReport:
    return RunReport(exit_code=run.exit_code, seconds=run.seconds, timed_out=run.timed_out,
                     peak_memory_bytes=run.peak_memory_bytes, log_tail="\n".join(run.log.splitlines()[-40:]),
                     network_attempted=bool(NETWORK_SIGNS.search(run.log)), oom_killed=run.oom_killed)


def _run(client: docker.DockerClient, image: str, platform: Platform, args: list[str], data: Path, out: Path | None,
         limits: RunLimits, log: Callable[[str], None], model: Path | None, stdin: bytes | None = None) -> ContainerRun:
    box = platform.sandbox
    extra = [Mount(model, box.model_mount, True)] if model is not None and box.model_mount else []
    return run_container(client, image, args, data, out, time_limit=limits.time_limit, memory=limits.memory,
                         cpus=limits.cpus, gpus=limits.gpus, log=log, data_target=box.data,
                         out_target=box.output or "/output", extra_mounts=extra, env=box.env, stdin=stdin,
                         init=box.init, ulimits=box.ulimits, read_only=box.read_only_root,
                         tmpfs_bytes=platform.limits.tmpfs_bytes)


def read_by(platform: Platform, manifest: Manifest) -> Entry:
    """The entry the platform follows: the image's when it was packed for this platform (with the paths the user
    set), else the profile's; the platform feeds and reads the image its own way, whatever the image expects."""
    return manifest.entry if manifest.entry.platform == platform.name else platform.entry


def _host_path(platform: Platform, entry: Entry, out: Path) -> Path | None:
    """Where the file the platform reads lands on the host (None: outside the platform's output mount)."""
    written = PurePosixPath(expand(entry.output, platform.sandbox.env))
    folder = PurePosixPath(platform.sandbox.output or "/output")
    try:
        return out / written.relative_to(folder)
    except ValueError:
        return None


def _inputs(data: Path, ids: list[str] | None) -> tuple[list[str], list[Path]]:
    test = match_ids(list_images(data), ids)
    return list(test.ids), list(test.paths)


def replay(client: docker.DockerClient, image: str, manifest: Manifest, platform: Platform, data: Path, work: Path, *,
           limits: RunLimits, sample_ids: list[str] | None, ignore_sample: bool, log: Callable[[str], None],
           model: Path | None = None) -> Replayed:
    """Run ``image`` on ``data`` as ``platform`` does; ``work`` holds what the run writes."""
    entry = read_by(platform, manifest)
    if "{competition}" in platform.sandbox.data:  # the data folder is named after the competition
        if entry is platform.entry:
            raise ConfigError(f"{platform.name} mounts the test data at {platform.sandbox.data}, named after the "
                              f"competition: validate an image packed with --platform {platform.name} --competition NAME")
        platform = replace(platform, sandbox=replace(platform.sandbox, data=entry.input))
    mode = entry.mode
    if mode == "stream":
        return _stream(client, image, manifest, platform, data, work, limits, sample_ids, log, model)
    if mode == "case":
        return _cases(client, image, manifest, platform, data, work, limits, sample_ids, log, model)
    out = work / "output"
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    args = (["--ignore-sample"] if ignore_sample else [])
    if platform.name == "generic":
        args = ["/data", *args]  # the generic contract's own command line, as a user runs it
    run = _run(client, image, platform, args, data, out, limits, log, model)
    csv = _host_path(platform, entry, out)
    if csv is None:
        raise ConfigError(f"{platform.name} reads {entry.output}, outside its output folder "
                          f"{platform.sandbox.output}: pass --output-path under it")
    return Replayed(run_report(run), csv)


FIELDS = {"label": r"[01]", "proba": r"[0-9.eE+-]+"}  # a line template's fields and what they print


def _template_pattern(template: str) -> re.Pattern:
    """A line template ("{proba:.4f}\\t{label}") as the pattern of the lines it makes."""
    parts, at = [], 0
    for found in re.finditer(r"\{(\w+)(?::\.(\d+)f)?\}", template):
        parts.append(re.escape(template[at:found.start()]))
        name, digits = found.group(1), found.group(2)
        parts.append(rf"\d+\.\d{{{digits}}}" if digits else FIELDS[name])
        at = found.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts))


def _stream(client: docker.DockerClient, image: str, manifest: Manifest, platform: Platform, data: Path, work: Path,
            limits: RunLimits, sample_ids: list[str] | None, log: Callable[[str], None],
            model: Path | None) -> Replayed:
    """Image paths on stdin, one line each on stdout: checked line by line, then kept as a CSV of ids and values."""
    ids, paths = _inputs(data, sample_ids)
    folder = PurePosixPath(platform.sandbox.data)
    stdin = "".join(f"{folder / p.relative_to(data).as_posix()}\n" for p in paths).encode()
    run = _run(client, image, platform, [], data, None, limits, log, model, stdin)
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    template = read_by(platform, manifest).line
    pattern = _template_pattern(template)
    count = Check("answer lines", len(lines) == len(paths),
                  "" if len(lines) == len(paths) else f"{len(lines)} line(s) on stdout for {len(paths)} image path(s) "
                                                      "on stdin; every path needs its line, in input order")
    bad = [f"line {i + 1}: {line!r}" for i, line in enumerate(lines) if not pattern.fullmatch(line)]
    form = Check("line form", not bad, f"lines not in the form {template!r}: {show(bad)}" if bad else "")
    values = [line.split("\t")[0] if "\t" in line else line for line in lines[: len(ids)]]
    values += [""] * (len(ids) - len(values))
    csv = work / "answers.csv"
    pd.DataFrame({manifest.output.columns[0]: ids, manifest.output.columns[1]: values}).to_csv(csv, index=False)
    return Replayed(run_report(run), csv, [count, form], len(lines))


def _cases(client: docker.DockerClient, image: str, manifest: Manifest, platform: Platform, data: Path, work: Path,
           limits: RunLimits, sample_ids: list[str] | None, log: Callable[[str], None],
           model: Path | None) -> Replayed:
    """One run per image, each with its case alone under the input mount; the JSON values kept as one CSV."""
    ids, paths = _inputs(data, sample_ids)
    columns = list(manifest.output.columns)
    rows, bad, total, first = [], [], None, None
    for i, (id_, path) in enumerate(zip(ids, paths)):
        case, out = work / f"case{i}" / "input", work / f"case{i}" / "output"
        (case / "images" / "image").mkdir(parents=True)
        shutil.copy2(path, case / "images" / "image" / path.name)
        out.mkdir(parents=True)
        out.chmod(0o777)
        for folder in (case, case / "images", case / "images" / "image"):
            folder.chmod(0o755)
        run = run_report(_run(client, image, platform, [], case, out, limits, log, model))
        total = run if total is None else replace(total, seconds=total.seconds + run.seconds,
                                                  peak_memory_bytes=max(total.peak_memory_bytes or 0,
                                                                        run.peak_memory_bytes or 0) or None)
        if first is None and (run.exit_code != 0 or run.timed_out):
            first = run
        value = _case_value(platform, manifest, out)
        if value is None:
            bad.append(id_)
            rows.append([id_] + [""] * (len(columns) - 1))
        elif isinstance(value, dict):
            rows.append([id_] + [str(value.get(c, "")) for c in columns[1:]])
        else:
            rows.append([id_, str(value)])
    reads = read_by(platform, manifest).output
    detail = f"{len(bad)} case(s) wrote no JSON value where {platform.name} reads it ({reads}): {show(bad)}"
    csv = work / "answers.csv"
    pd.DataFrame(rows, columns=columns).to_csv(csv, index=False)
    run = first or total
    if first is not None and total is not None:
        run = replace(first, seconds=total.seconds)
    return Replayed(run, csv, [Check("case answers", not bad, detail if bad else "")], len(rows) - len(bad))


def _case_value(platform: Platform, manifest: Manifest, out: Path) -> object | None:
    path = _host_path(platform, read_by(platform, manifest), out)
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
