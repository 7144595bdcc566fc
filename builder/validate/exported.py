"""An export for a platform that runs code -> its layout checked the way the platform reads it, and its run replayed
with the platform's folders in the pinned environment (``builder validate EXPORT --platform NAME``).

The zips (Codabench, DrivenData, Dacon) are unpacked where the platform unpacks them and their command is run
there; Kaggle's export (its two datasets and the notebook) is laid out under ``/kaggle/input`` and the notebook's
code cells are run top to bottom by the kernel's ``python`` in ``/kaggle/working``. What the organiser's own image
holds is not known here: the run is in the environment of the pins, and the export's check covers the rest.
"""

from __future__ import annotations

import json
import shlex
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import docker
import yaml

from builder.environment import bundle_packages
from builder.errors import ConfigError
from builder.export.notebook import FOLDERS
from builder.image.engine import Mount, run_container
from builder.image.env import env_image
from builder.platforms.base import Platform
from builder.validate.replay import Replayed, RunLimits, run_report
from submission import hosted, notebook
from submission.formats.base import Check
from submission.manifest import MANIFEST_NAME, Manifest

SOURCE = "/kaggle/src"  # where the replay puts the notebook's code cells, as one script
MODEL_FILES = (f"{hosted.BUNDLE}/{MANIFEST_NAME}", "submission/__main__.py", "submission/hosted.py", hosted.PINS,
               f"{hosted.CHECK}/probabilities.json")


@dataclass
class Opened:
    """An export read: the bundle's manifest and sample, what its layout check found, and where it lies unpacked."""

    manifest: Manifest | None  # None where the layout is too broken to read one
    sample: bytes | None
    checks: list[Check] = field(default_factory=list)
    program: Path | None = None  # the zip unpacked; Kaggle's export folder as it is
    command: list[str] = field(default_factory=list)  # what the platform runs in the program's folder
    source: Path | None = None  # Kaggle: the folder of the notebook's code cells as one script
    bundle: Path | None = None  # the bundle inside the export, where the manifest was read


def _layout(problems: list[str], what: str) -> Check:
    return Check("export layout", not problems, "; ".join(problems) + (f": export it again with `builder export "
                                                                      f"--platform {what}`" if problems else ""))


def _model(model: Path, problems: list[str]) -> tuple[Manifest | None, bytes | None]:
    missing = [name for name in MODEL_FILES if not (model / name).is_file()]
    if missing:
        problems.append(f"{model.name}/ lacks {', '.join(missing)}")
        return None, None
    manifest = Manifest.from_dict(json.loads((model / hosted.BUNDLE / MANIFEST_NAME).read_text()))
    sample = None
    if manifest.sample_submission is not None:
        sample = (model / hosted.BUNDLE / manifest.sample_submission.path).read_bytes()
    return manifest, sample


def _open_zip(path: Path, platform: Platform, tmp: Path) -> Opened:
    layout = platform.code
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path} is not a zip: validate the {layout.archive} that `builder export --platform "
                          f"{platform.name}` wrote")
    checks, problems = [], []
    if path.name != layout.archive:
        checks.append(Check("archive name", False, f"{platform.name} takes {layout.archive}; this is {path.name}",
                            level="warning"))
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        unsafe = [n for n in names if n.startswith("/") or ".." in PurePosixPath(n).parts]
        if unsafe:
            problems.append(f"entries outside the archive's folder: {', '.join(unsafe[:5])}")
            return Opened(None, None, [*checks, _layout(problems, platform.name)])
        root = {n.split("/")[0] + ("/" if "/" in n else "") for n in names}
        wanted = {layout.script, *layout.files, "model/", *(["requirements.txt"] if layout.requirements else [])}
        if wanted - root:
            problems.append(f"its root lacks {', '.join(sorted(wanted - root))}, which {platform.name} reads")
        if layout.exact and root - wanted:
            problems.append(f"{platform.name} takes exactly {', '.join(sorted(wanted))} at the root; also found: "
                            f"{', '.join(sorted(root - wanted))}")
        program = tmp / "program"
        archive.extractall(program)
    for sub in [program, *program.rglob("*")]:
        sub.chmod(0o777 if sub.is_dir() else 0o644)  # the platform's folder: the run may write beside its script
    manifest, sample = _model(program / "model", problems) if "model/" in root else (None, None)
    if "metadata.yaml" in layout.files and (program / "metadata.yaml").is_file():
        try:
            read = yaml.safe_load((program / "metadata.yaml").read_text())
        except yaml.YAMLError as e:
            read = None
            problems.append(f"metadata.yaml is not YAML: {str(e).splitlines()[0]}")
        said = read.get("command") if isinstance(read, dict) else None
        if not said:
            problems.append("metadata.yaml has no command: line")
        command = shlex.split(str(said or ""))
    else:
        command = ["python3", layout.script]
    return Opened(manifest, sample, [*checks, _layout(problems, platform.name)], program, command,
                  bundle=program / "model" / hosted.BUNDLE)


def _open_notebook(path: Path, platform: Platform, tmp: Path) -> Opened:
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder: validate the folder `builder export --platform {platform.name}` "
                          f"wrote (it holds {', '.join(FOLDERS)})")
    problems = [f"no {name}/" for name in FOLDERS if not (path / name).is_dir()]
    if problems:
        return Opened(None, None, [_layout(problems, platform.name)])
    wheels, data, book = (path / name for name in FOLDERS)
    ids = []
    for dataset in (data, wheels):
        try:
            ids.append(json.loads((dataset / "dataset-metadata.json").read_text())["id"])
        except (OSError, ValueError, KeyError):
            problems.append(f"{dataset.name}/dataset-metadata.json does not name the dataset (its id)")
    try:
        kernel = json.loads((book / "kernel-metadata.json").read_text())
    except (OSError, ValueError):
        return Opened(None, None, [_layout([*problems, "no readable notebook/kernel-metadata.json"], platform.name)])
    if kernel.get("enable_internet") is not False:
        problems.append("kernel-metadata.json turns the internet on: a code competition reruns the notebook offline")
    if sorted(kernel.get("dataset_sources") or []) != sorted(ids):
        problems.append(f"the notebook's dataset_sources {kernel.get('dataset_sources')} are not the datasets {ids}")
    if not kernel.get("competition_sources"):
        problems.append("the notebook has no competition_sources: the competition's data would not be attached")
    code_file = book / str(kernel.get("code_file", ""))
    cells = []
    try:
        cells = [c for c in json.loads(code_file.read_text())["cells"] if c.get("cell_type") == "code"]
    except (OSError, ValueError, KeyError):
        problems.append(f"the notebook's code_file {kernel.get('code_file')!r} is not a notebook beside it")
    listed = json.loads((wheels / notebook.WHEELS_MARKER).read_text()) if (wheels / notebook.WHEELS_MARKER).is_file() \
        else {"files": []}
    absent = [file for _, _, file in listed["files"] if not (wheels / file).is_file()]
    if not (wheels / notebook.WHEELS_MARKER).is_file() or absent:
        problems.append(f"{wheels.name}/ lacks {notebook.WHEELS_MARKER} or the wheels it lists: {', '.join(absent[:3])}")
    marker = data / "model" / notebook.MODEL_MARKER
    if not marker.is_file() or json.loads(marker.read_text()).get("wheels") != listed.get("wheels"):
        problems.append(f"{data.name}/model/{notebook.MODEL_MARKER} is missing or names other wheels than "
                        f"{wheels.name}/ holds")
    manifest, sample = _model(data / "model", problems)
    source = tmp / "src"  # the code cells in order, as the kernel runs them
    source.mkdir(mode=0o755)
    (source / "notebook.py").write_text("\n\n".join("".join(c["source"]) for c in cells))
    (source / "notebook.py").chmod(0o644)
    return Opened(manifest, sample, [_layout(problems, platform.name)], path, ["python3", f"{SOURCE}/notebook.py"],
                  source, data / "model" / hosted.BUNDLE)


def open_export(path: Path, platform: Platform, tmp: Path) -> Opened:
    """The export at ``path`` read and its layout checked as ``platform`` reads it."""
    return _open_notebook(Path(path), platform, tmp) if platform.notebook else _open_zip(Path(path), platform, tmp)


def _kaggle_mounts(opened: Opened, platform: Platform) -> list[Mount]:
    root = PurePosixPath(platform.notebook.input_root)
    wheels, data, _ = (opened.program / name for name in FOLDERS)
    mounts = [Mount(opened.source, SOURCE)]
    for dataset in (data, wheels):
        name = json.loads((dataset / "dataset-metadata.json").read_text())["id"].split("/")[-1]
        mounts.append(Mount(dataset, str(root / name)))
    return mounts


def replay_export(client: docker.DockerClient, opened: Opened, platform: Platform, data: Path, work: Path, *,
                  limits: RunLimits, ignore_sample: bool, base_image: str, log: Callable[[str], None]) -> Replayed:
    """The export run as ``platform`` runs it, in the pinned environment on ``base_image``; ``work`` holds its
    output folder. With ``ignore_sample`` (a held-out folder), the zips' command is given --ignore-sample."""
    manifest = opened.manifest
    args = opened.command[1:]
    if ignore_sample and platform.notebook is not None:
        raise ConfigError(f"the {platform.name} notebook runs as its platform runs it, with no arguments: validate it on "
                          "the test folder of its sample, without --ignore-sample")
    if ignore_sample:
        args = [*args, "--ignore-sample"]
    env = env_image(client, base_image, bundle_packages(manifest, opened.bundle), say=log)
    box, entry = platform.sandbox, manifest.entry
    out = work / "output"
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    if platform.notebook is not None:
        program_target, mounts = SOURCE, _kaggle_mounts(opened, platform)
        data_target, out_target, working = entry.input, platform.notebook.working, platform.notebook.working
    else:
        program_target = platform.code.program
        mounts = [Mount(opened.program, program_target, read_only=False)]
        data_target, out_target, working = box.data, box.output, program_target
    separate = out_target != program_target
    run = run_container(client, env.tag, args, data, out if separate else None, time_limit=limits.time_limit,
                        memory=limits.memory, cpus=limits.cpus, gpus=limits.gpus, log=log, data_target=data_target,
                        out_target=out_target, extra_mounts=mounts, env=box.env, read_only=False,
                        entrypoint=opened.command[:1], working_dir=working)
    written = PurePosixPath(entry.output)
    if not written.is_absolute():
        written = PurePosixPath(working) / written
    program = opened.source if platform.notebook is not None else opened.program
    for host, target in ([(out, out_target)] if separate else []) + [(program, program_target)]:
        try:
            return Replayed(run_report(run), host / written.relative_to(target))
        except ValueError:
            continue
    raise ConfigError(f"the export writes {written}, outside the folders {platform.name} keeps: pass --output-path "
                      f"under {out_target}")
