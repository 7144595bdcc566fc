"""What the user said -> one typed, frozen ``PackSettings``, checked completely before any checkpoint is opened; then,
for each fold, what its training run recorded merged beneath it (``fold_settings``).

Two declared steps. ``said`` parses the options, the config file, the platform profile's settings and the sample
(every value by its setting's parser, with choices and types; options over the config file over the profile over
the declared defaults) and lists the folds (names only: nothing is read), then checks what can be checked without
the checkpoints, the platform's GPUs against the pinned torch build among them. ``fold_settings`` takes one fold's
settings in this precedence, highest first: the options, the config file's ``folds.<fold>``, its
``models.<model folder>``, its other keys, and what that fold's training run recorded (parsed by the same parsers,
so a bad recorded value names where it was found). The declared defaults, and timm's defaults for the architecture,
fill what none of these gives.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder import platforms
from builder.errors import ConfigError
from builder.pack.checkpoints import FoldFile, find_folds
from builder.pack.settings import BY_NAME, PER_FOLD, SETTINGS, Sourced
from builder.platforms import gpus
from builder.sample import Sample, read_sample
from submission.manifest import Entry, Head

Found = Mapping[str, tuple[Any, str]]  # what a training run recorded: setting -> (value, where)


@dataclass(frozen=True)
class PackRequest:
    models: Path  # folder of fold checkpoints (or one checkpoint file)
    options: dict[str, Any] = field(default_factory=dict)  # settings given on the command line (None: not given)
    config: Path | None = None  # YAML/JSON file of settings


@dataclass(frozen=True)
class FoldSettings:
    """How one fold's model is built and fed; None where nothing given says (timm's defaults fill it)."""

    arch: Sourced[str] | None = None
    num_classes: Sourced[int] | None = None
    model_code: Sourced[str] | None = None
    model_kwargs: Sourced[dict] | None = None
    model_output: Sourced[int | str] | None = None
    input_size: Sourced[tuple[int, int, int]] | None = None  # from img_size or input_size (input_size first)
    crop_pct: Sourced[float] | None = None
    crop_mode: Sourced[str] | None = None
    interpolation: Sourced[str] | None = None
    mean: Sourced[tuple[float, float, float]] | None = None
    std: Sourced[tuple[float, float, float]] | None = None
    preprocess: Sourced[str] | None = None  # the user's function, FILE.py:FUNCTION
    albumentations: Sourced[dict] | None = None

    def over(self, lower: FoldSettings) -> FoldSettings:
        """These settings, and ``lower``'s where these give none."""
        return FoldSettings(**{f.name: getattr(self, f.name) if getattr(self, f.name) is not None
                               else getattr(lower, f.name) for f in dataclasses.fields(self)})

    def given(self) -> dict[str, Sourced]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class PackSettings:
    """Everything the user said, typed and checked; None where a setting without a default was not given."""

    models_path: Path  # --models
    fold_files: tuple[FoldFile, ...]  # the fold files found (listed, not read)
    sample: Sample | None  # the sample submission, read
    sample_submission: Sourced[Path] | None
    # where it runs
    platform: Sourced[str]
    input_dir: Sourced[str] | None
    output_path: Sourced[str] | None
    competition: Sourced[str] | None
    owner: Sourced[str] | None
    devices: Sourced[str]
    deadline: Sourced[float] | None
    drop_order: Sourced[tuple[str, ...]] | None
    gpu_arch: Sourced[tuple[int, int]] | None
    # reading the checkpoints
    leave_out: Sourced[tuple[str, ...]] | None
    pick: Sourced[str] | None
    ema: Sourced[bool]
    allow_unsafe_pickle: Sourced[bool]
    # what runs the forward passes
    engine: Sourced[str]
    engine_tolerance: Sourced[float]
    gate_images: Sourced[Path] | None
    # the ensemble
    requirements: Sourced[tuple[str, ...]] | None
    decode: Sourced[str]
    fold_weights: Sourced[tuple[float, ...] | dict[str, float]] | None
    tta: Sourced[str]
    merge: Sourced[str]
    # metadata beside the images
    metadata_file: Sourced[str] | None
    metadata_id_column: Sourced[str] | None
    metadata_columns: Sourced[list] | None
    metadata_encoder: Sourced[str] | None
    metadata_width: Sourced[int] | None
    train_metadata: Sourced[Path] | None
    # the task and the submission
    heads: Sourced[tuple[Head, ...]] | None
    task: Sourced[str] | None
    classes: Sourced[tuple[str, ...]] | None
    id_column: Sourced[str] | None
    format: Sourced[str] | None
    label_as: Sourced[str] | None
    thresholds: Sourced[tuple[float, ...] | dict[str, float]] | None
    oof: Sourced[Path] | None
    oof_labels: Sourced[Path] | None
    at_least_one: Sourced[bool]
    top_k: Sourced[int] | None
    new_class: Sourced[str] | None
    new_threshold: Sourced[float] | None
    positive_class: Sourced[str] | None
    cutoffs: Sourced[tuple[float, ...]] | None
    decimals: Sourced[int]
    # the per-fold settings, by where they were given
    fold_options: FoldSettings = FoldSettings()
    fold_config: FoldSettings = FoldSettings()
    by_fold: Mapping[str, FoldSettings] = field(default_factory=dict)  # config file: folds.<fold name>
    by_model: Mapping[str, FoldSettings] = field(default_factory=dict)  # config file: models.<model folder>

    def for_fold(self, fold: FoldFile) -> FoldSettings:
        """The fold's settings from the options and the config file, in precedence."""
        own = self.by_fold.get(fold.name, FoldSettings())
        model = self.by_model.get(fold.model, FoldSettings()) if fold.model else FoldSettings()
        return self.fold_options.over(own).over(model).over(self.fold_config)

    def entry(self) -> Entry:
        """How the image is run on its platform: the profile's entry, with the paths and devices given."""
        entry = platforms.get(self.platform.value).entry
        entry = dataclasses.replace(entry, input=self.input_dir.value if self.input_dir else entry.input,
                                    output=self.output_path.value if self.output_path else entry.output,
                                    devices=self.devices.value)
        named = "{competition}" in entry.input or "{competition}" in entry.output
        if named and self.competition is None:
            raise ConfigError(f"the {self.platform.value} platform reads the test data from {entry.input}: pass "
                              "--competition NAME (the last part of the competition's address), or --input-dir")
        if named:
            entry = dataclasses.replace(entry, input=entry.input.replace("{competition}", self.competition.value),
                                        output=entry.output.replace("{competition}", self.competition.value))
        return entry

    def deadline_seconds(self) -> float | None:
        """The image's deadline: --deadline (0: none), else the platform's time limit less its reserve."""
        if self.deadline is not None:
            return self.deadline.value or None
        return platforms.get(self.platform.value).limits.deadline()

    def report(self) -> dict[str, Sourced]:
        """The ensemble-wide settings that were given or defaulted, for the settings report."""
        return {s.name: getattr(self, s.name) for s in SETTINGS
                if not s.per_fold and s.name in ENSEMBLE and getattr(self, s.name) is not None}


ENSEMBLE = tuple(f.name for f in dataclasses.fields(PackSettings)
                 if f.name not in ("models_path", "fold_files", "sample", "fold_options", "fold_config", "by_fold",
                                   "by_model"))


# --- step 1: what the user said ---------------------------------------------------------------------------------

def _refuse_unknown(names: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        close = {u: difflib.get_close_matches(u, BY_NAME, n=1) for u in unknown}
        hints = "; ".join(f"{u!r}: did you mean {c[0]!r}?" for u, c in close.items() if c)
        raise ConfigError(f"{where}: unknown setting(s) {unknown}{f' ({hints})' if hints else ''}; "
                          f"known settings: {', '.join(BY_NAME)}")


def _parsed(values: Mapping[str, Any], source_of: Any) -> dict[str, Sourced]:
    """Each given value parsed by its setting (None and [] mean: not given)."""
    out = {}
    for name, value in values.items():
        if value is None or value == [] or name in ("folds", "models"):
            continue
        source = source_of(name)
        out[name] = Sourced(BY_NAME[name].parse(value, name, source), source)
    return out


def _fold(values: Mapping[str, Sourced]) -> FoldSettings:
    """The per-fold settings of one layer (input_size before img_size within it)."""
    given = {k: v for k, v in values.items() if k in PER_FOLD and k not in ("img_size", "input_size")}
    size = values.get("input_size") or values.get("img_size")
    return FoldSettings(**given, input_size=size)


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the config file {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config file {path} must hold a mapping of settings, not a {type(data).__name__}")
    _refuse_unknown(data, str(path))
    return dict(data)


def _per_name(config: dict[str, Any], key: str, path: Path | None) -> dict[str, FoldSettings]:
    """The config file's ``folds`` or ``models`` mapping: per-fold settings of each name, parsed."""
    if key not in config or config[key] is None:
        return {}
    where = f"{Path(path).name} [{key}]"
    mapping = BY_NAME[key].parse(config[key], key, where)
    out = {}
    for name, values in mapping.items():
        wrong = sorted(k for k in values if k not in PER_FOLD)
        if wrong:
            raise ConfigError(f"{key}.{name} from {where}: {wrong} are not per-fold settings; per-fold settings: "
                              f"{', '.join(PER_FOLD)}")
        out[name] = _fold(_parsed(values, lambda k, n=name: f"{Path(path).name} [{key}.{n}.{k}]"))
    return out


def said(request: PackRequest) -> PackSettings:
    """The options, the config file and the sample, parsed and checked, with the folds listed (none read)."""
    _refuse_unknown(request.options, "the options")
    options = _parsed(request.options, lambda name: BY_NAME[name].option)
    config_data = _config(request.config)
    config = _parsed(config_data, lambda name: f"{Path(request.config).name} [{name}]")
    defaults = {s.name: Sourced(s.default, "default") for s in SETTINGS if s.default is not None}
    named = options.get("platform") or config.get("platform") or defaults["platform"]
    profile = {k: Sourced(BY_NAME[k].parse(v, k, f"the {named.value} profile"), f"the {named.value} profile")
               for k, v in platforms.get(named.value).settings.items()}
    ensemble = {name: options.get(name) or config.get(name) or profile.get(name) or defaults.get(name)
                for name in ENSEMBLE}

    sample = None
    if ensemble["sample_submission"] is not None:
        id_column = ensemble["id_column"]
        sample = read_sample(ensemble["sample_submission"].value, id_column.value if id_column else None)
    pick = ensemble["pick"]
    folds = tuple(find_folds(request.models, pick.value if pick else None))
    leave = ensemble["leave_out"]
    if leave is not None:
        unknown = sorted(set(leave.value) - {f.name for f in folds})
        if unknown:
            raise ConfigError(f"leave_out from {leave.source} names {unknown}, which are not among the folds found in "
                              f"{request.models}: {', '.join(f.name for f in folds)}")
        folds = tuple(f for f in folds if f.name not in leave.value)
        if not folds:
            raise ConfigError(f"leave_out from {leave.source} leaves out every fold")
    settings = PackSettings(
        models_path=Path(request.models), fold_files=folds, sample=sample, **ensemble,
        fold_options=_fold(options), fold_config=_fold(config),
        by_fold=_per_name(config_data, "folds", request.config), by_model=_per_name(config_data, "models", request.config),
    )
    _check(settings)
    return settings


def _check(s: PackSettings) -> None:
    """What can be told wrong from the settings alone."""
    if (s.new_class is None) != (s.new_threshold is None):
        raise ConfigError("--new-class and --new-threshold go together")
    if (s.oof is None) != (s.oof_labels is None):
        raise ConfigError("--oof and --oof-labels go together")
    if s.thresholds is not None and s.oof is not None:
        raise ConfigError(f"thresholds come from {s.thresholds.source} and from --oof; keep one")
    if s.task is not None and s.task.value != "multilabel" and (s.thresholds or s.oof):
        raise ConfigError("thresholds apply to multilabel tasks; pass --task multilabel or drop --thresholds/--oof")
    if s.task is not None and s.task.value != "regression" and s.cutoffs is not None:
        raise ConfigError(f"cutoffs from {s.cutoffs.source} apply to regression tasks; pass --task regression or drop "
                          "--cutoffs")
    if s.metadata_columns is not None and s.metadata_encoder is not None:
        raise ConfigError(f"metadata comes from {s.metadata_columns.source} and from {s.metadata_encoder.source}; keep one")
    names = {f.name for f in s.fold_files}
    models = {f.model for f in s.fold_files if f.model}
    for key, given, known in (("folds", s.by_fold, names), ("models", s.by_model, models)):
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"the config file's {key} names {unknown}, which are not among the {key} found in "
                              f"{s.models_path}: {', '.join(sorted(known)) or 'none'}")
    if s.decode.value == "fast":
        for fold in s.fold_files:
            own = s.for_fold(fold)
            for what, name in (("albumentations", "an albumentations transform"),
                               ("preprocess", "its own preprocessing function")):
                if getattr(own, what) is not None:
                    raise ConfigError(f"decode 'fast' shrinks JPEGs before the resize, but {fold.name} has {name} "
                                      f"(from {getattr(own, what).source}), which sees the image as decoded; use "
                                      "decode 'exact'")
    if s.fold_weights is not None:
        fold_weights(s)
    _check_gpus(s)


def _check_gpus(s: PackSettings) -> None:
    """The GPUs the image will meet (--gpu-arch, else the platform's) against the pinned torch build's list."""
    if s.devices.value == "cpu":
        return
    if s.gpu_arch is not None:
        major, minor = s.gpu_arch.value
        wanted, where = {f"sm_{major}{minor}": s.gpu_arch.value}, f"{s.gpu_arch.source} sm_{major}{minor}"
    else:
        kinds = platforms.get(s.platform.value).limits.gpus
        wanted, where = {k: gpus.CAPABILITY[k] for k in kinds}, f"the {s.platform.value} platform"
    gpus.check_fit(wanted, gpus.arch_list(), where)


def fold_weights(s: PackSettings) -> tuple[float, ...]:
    """The ensemble weight of each fold, in fold order: from a list, or a mapping of fold or model folder names."""
    given = s.fold_weights
    folds = s.fold_files
    if given is None:
        return (1.0,) * len(folds)
    if isinstance(given.value, dict):
        known = {f.name for f in folds} | {f.model for f in folds if f.model}
        unknown = sorted(set(given.value) - known)
        if unknown:
            raise ConfigError(f"fold_weights from {given.source} names {unknown}, which are neither folds nor model "
                              f"folders of {s.models_path}: {', '.join(sorted(known))}")
        return tuple(given.value.get(f.name, given.value.get(f.model or "", 1.0)) for f in folds)
    if len(given.value) != len(folds):
        raise ConfigError(f"fold_weights from {given.source} must have {len(folds)} numbers (one per fold: "
                          f"{', '.join(f.name for f in folds)}), got {len(given.value)}")
    return tuple(given.value)


# --- step 2: what a fold's training run recorded ----------------------------------------------------------------

def recorded(found: Found) -> FoldSettings:
    """A fold's recorded settings, parsed as the user's are (an unreadable one names where it was found)."""
    values = {k: Sourced(BY_NAME[k].parse(v, k, source), source) for k, (v, source) in found.items() if k in PER_FOLD}
    return _fold(values)


def fold_settings(s: PackSettings, fold: FoldFile, found: Found) -> FoldSettings:
    """One fold's settings: the options and the config file over what its training run recorded."""
    return s.for_fold(fold).over(recorded(found))
