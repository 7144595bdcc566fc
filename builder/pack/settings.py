"""Every pack setting, declared once, and where each value comes from: options, config file, checkpoints, defaults.

``SETTINGS`` makes the ``builder pack`` options, the config file's keys and the settings report. Every
resolved value keeps its source, so ``builder pack`` can say where each setting came from.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from builder.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One pack setting: the ``--option``, the config file key and the settings report are all made from this."""

    name: str  # the config file key; the option is --name-with-dashes
    type: type  # what the option takes on the command line: str, int, float, bool or Path
    help: str  # the --help text and the config file reference
    default: Any = None  # the value when nothing else gives one (None: decided from the folds or the sample)
    per_fold: bool = False  # resolved for each fold, where the checkpoint may carry it
    flag: str | None = None  # the option's declaration when it is not --name, e.g. "--ema/--no-ema"
    cli: bool = True  # an option too (False: the config file only)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    # what to read
    Setting("sample_submission", Path, "The competition's sample_submission.csv: fixes the id column, columns, "
            "format and row order."),
    Setting("pick", str, "File name pattern choosing the checkpoint in each fold's folder, e.g. 'last.ckpt'."),
    Setting("ema", bool, "Use state_dict_ema when a checkpoint has one (--no-ema: state_dict).", True,
            flag="--ema/--no-ema"),
    Setting("allow_unsafe_pickle", bool, "Read checkpoints by full unpickling, which runs code from the file: for a "
            "whole pickled model (torch.save(model)) you trust. It is converted to a state_dict at pack time.", False,
            flag="--allow-unsafe-pickle"),
    # the model of each fold
    Setting("arch", str, "timm model name for every fold (default: what the checkpoints record).", per_fold=True),
    Setting("num_classes", int, "Classes of the model head (default: from the checkpoint's classifier).", per_fold=True),
    Setting("model_code", str, "Your model code instead of a timm name: FILE.py:FACTORY, or FOLDER:module.FACTORY "
            "(a function or class that returns the nn.Module); its files are frozen in the bundle.", per_fold=True),
    Setting("model_kwargs", str, "Keyword arguments of timm.create_model or of your factory, as JSON, e.g. "
            "'{\"img_size\": 384}'.", per_fold=True),
    Setting("model_output", str, "Which output of forward() to use when it returns a tuple (an index) or a dict "
            "(a key).", per_fold=True),
    Setting("folds", dict, "Settings of single folds, by fold name: {fold0: {model_code: ..., model_kwargs: ...}} "
            "(they override the file's other settings for that fold).", cli=False),
    Setting("requirements", list, "Packages your code imports beyond the runtime's (torch, timm, torchvision, ...): "
            "NAME, repeatable or a,b; pinned to the versions installed here."),
    # preprocessing of each fold
    Setting("img_size", str, "Model input size: 384, or 384,512 for height,width.", per_fold=True),
    Setting("input_size", str, "Model input as 3,height,width.", per_fold=True),
    Setting("crop_pct", float, "Fraction kept by the eval centre crop, in (0, 1]; 1.0 with --crop-mode squash is a "
            "plain resize.", per_fold=True),
    Setting("crop_mode", str, "center, squash or border (timm's eval crop modes).", per_fold=True),
    Setting("interpolation", str, "Resize filter: bilinear, bicubic, nearest, box, hamming, lanczos.", per_fold=True),
    Setting("mean", str, "Normalisation mean, three numbers: 0.485,0.456,0.406.", per_fold=True),
    Setting("std", str, "Normalisation std, three numbers.", per_fold=True),
    Setting("decode", str, "JPEG decoding: exact, or fast (a JPEG over twice the largest model input is decoded by "
            "libjpeg at 1/2, 1/4 or 1/8 scale before the same resize: faster on large photos, close to exact but "
            "not bit-identical; check with the benchmark).", "exact"),
    Setting("albumentations", Path, "JSON file of A.to_dict(eval_transform), used instead of timm's resize and "
            "normalisation.", per_fold=True),
    # the ensemble
    Setting("fold_weights", str, "Ensemble weight of each fold, in fold order: 1,1,2 (default: equal)."),
    Setting("tta", str, "TTA preset: none, hflip, vflip, flips, d4.", "none"),
    Setting("merge", str, "Merge of folds and views: mean, gmean (geometric), logits (mean of logits), rank (percentile "
            "ranks over the whole test set, averaged: for AUC; it keeps models x images x classes in memory).", "mean"),
    # metadata beside the images
    Setting("metadata_file", str, "The metadata CSV's path in the test folder, e.g. test.csv (the image also takes "
            "--metadata PATH)."),
    Setting("metadata_id_column", str, "The metadata CSV's id column (default: the sample's id column, else the first)."),
    Setting("metadata_columns", Path, "The metadata encoding: a YAML/JSON list of {name, type: categorical|numeric|"
            "count, categories, fill, log1p, normalize, scale} in the model's feature order."),
    Setting("metadata_encoder", str, "Your metadata encoder instead: FILE.py:FUNCTION, called once with every row of "
            "the metadata CSV (and a 'path' column), returning [rows, features]."),
    Setting("train_metadata", Path, "The training metadata CSV: vocabularies and statistics of the declared columns "
            "are taken from it, and the encoder is checked on it."),
    # the task and the submission
    Setting("heads", str, "Several heads combined into the classes, in order: mask=3,gender=2,age=3 (multiclass: "
            "their product, first head most significant; multilabel: side by side)."),
    Setting("task", str, "multiclass, multilabel or regression (default: from the sample, the folds' outputs and what "
            "their training recorded, or an error that asks)."),
    Setting("classes", str, "Class names in model output order: a,b,c or a file with one per line."),
    Setting("id_column", str, "Name of the id column (default: the sample's first column, else 'id')."),
    Setting("format", str, "Output format (default: inferred from the sample)."),
    Setting("label_as", str, "What label cells hold: name or index (default: inferred from the sample)."),
    Setting("thresholds", Path, "Per-class thresholds (multilabel): JSON list or {class: t}, or CSV class,threshold."),
    Setting("oof", Path, "Out-of-fold probabilities (id + class columns): tune the thresholds on them (macro F1; "
            "see `builder thresholds`)."),
    Setting("oof_labels", Path, "True labels of --oof."),
    Setting("at_least_one", bool, "Multilabel: give a row with no class above its threshold its most probable "
            "class.", False, flag="--at-least-one/--no-at-least-one"),
    Setting("top_k", int, "Class names per row, most probable first (implies the space-separated 'labels' format)."),
    Setting("new_class", str, "Top-k: a class name (e.g. new_whale) inserted where the next probability falls below "
            "--new-threshold."),
    Setting("new_threshold", float, "Top-k: the probability below which --new-class is inserted."),
    Setting("positive_class", str, "The class (name or index) whose probability one value column holds: the 'binary' "
            "format of a multiclass model (default for two classes: the second, or the one named 1/true/positive)."),
    Setting("cutoffs", str, "Regression: cut the value into integer grades at these increasing cutoffs (0.5,1.5,2.5,3.5), "
            "or a JSON file from `builder thresholds --metric qwk`."),
    Setting("decimals", int, "Digits after the decimal point in probability cells.", 6),
)
BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Sourced:
    value: Any
    source: str  # "--arch", "pack.yaml [arch]", "fold0/args.yaml [model]", "timm default for resnet18", ...


Layer = Mapping[str, Sourced]


def _refuse_unknown(names: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        close = {u: difflib.get_close_matches(u, BY_NAME, n=1) for u in unknown}
        hints = "; ".join(f"{u!r}: did you mean {c[0]!r}?" for u, c in close.items() if c)
        raise ConfigError(f"{where}: unknown setting(s) {unknown}{f' ({hints})' if hints else ''}; "
                          f"known settings: {', '.join(BY_NAME)}")


def option_layer(options: Mapping[str, Any]) -> dict[str, Sourced]:
    """The options given on the command line (None means not given), by setting name."""
    _refuse_unknown(options, "the options")
    return {k: Sourced(v, BY_NAME[k].option) for k, v in options.items() if v is not None and v != []}


def default_layer() -> dict[str, Sourced]:
    """The declared defaults, lowest in priority."""
    return {s.name: Sourced(s.default, "default") for s in SETTINGS if s.default is not None}


def config_layer(path: Path | None) -> dict[str, Sourced]:
    """A YAML or JSON config file of settings."""
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
    return {k: Sourced(v, f"{path.name} [{k}]") for k, v in data.items() if v is not None}


def fold_layer(config: Layer, fold: str) -> dict[str, Sourced]:
    """The settings the config file's ``folds`` mapping gives one fold."""
    folds = config.get("folds")
    if folds is None:
        return {}
    if not isinstance(folds.value, Mapping):
        raise ConfigError(f"folds from {folds.source} must map fold names to settings, not {folds.value!r}")
    own = folds.value.get(fold) or {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"folds.{fold} from {folds.source} must be a mapping of settings")
    wrong = sorted(k for k in own if k not in BY_NAME or not BY_NAME[k].per_fold)
    if wrong:
        raise ConfigError(f"folds.{fold} from {folds.source}: {wrong} are not per-fold settings; per-fold settings: "
                          f"{', '.join(s.name for s in SETTINGS if s.per_fold)}")
    where = folds.source.replace("[folds]", "[folds.{}.{}]")
    return {k: Sourced(v, where.format(fold, k)) for k, v in own.items() if v is not None}


def carried_layer(carried: Mapping[str, tuple[Any, str]]) -> dict[str, Sourced]:
    return {k: Sourced(v, source) for k, (v, source) in carried.items()}


def lookup(name: str, *layers: Layer) -> Sourced | None:
    """The value of ``name`` from the first layer that has it."""
    for layer in layers:
        if name in layer:
            return layer[name]
    return None


def as_list(value: Any, name: str, source: str) -> list[Any]:
    """A list from a YAML/JSON list, a comma-separated option, or a repeated option of comma-separated values."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [item for v in value for item in (as_list(v, name, source) if isinstance(v, str) else [v])]
    raise ConfigError(f"{name} from {source} must be a list or comma-separated text, not {value!r}")


def as_floats(value: Any, name: str, source: str, count: int | None = None) -> tuple[float, ...]:
    items = as_list(value, name, source)
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} from {source} must be numbers, got {value!r}") from None
    if count is not None and len(numbers) != count:
        raise ConfigError(f"{name} from {source} must have {count} numbers, got {len(numbers)}")
    return numbers


def is_file(value: Any) -> bool:
    """Whether ``value`` names an existing file (a long list of names is no path: it is not looked up)."""
    try:
        return isinstance(value, (str, Path)) and Path(value).is_file()
    except OSError:  # "File name too long"
        return False


def read_classes(value: Any, source: str) -> tuple[str, ...]:
    """Class names from a list, comma-separated text, or a text file with one name per line."""
    if is_file(value):
        names = [line.strip() for line in Path(value).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [str(v) for v in as_list(value, "classes", source)]
    if not names:
        raise ConfigError(f"classes from {source} is empty")
    return tuple(names)


def read_thresholds(value: Any, source: str, classes: tuple[str, ...]) -> tuple[float, ...]:
    """Per-class thresholds from a list (class order), a mapping, or a JSON/CSV file of either.

    A CSV holds one row per class (``class,threshold``, header optional); ``builder thresholds`` writes JSON.
    """
    if is_file(value):
        path = Path(value)
        source = str(path)
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
            if table.shape[1] != 2:
                raise ConfigError(f"{path} must have two columns, class and threshold")
            if not _is_number(table.iloc[0, 1]):
                table = table.iloc[1:]  # a header row
            value = dict(zip(table.iloc[:, 0], table.iloc[:, 1]))
        else:
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"cannot read thresholds from {path}: {e}") from None
            if isinstance(value, Mapping) and "thresholds" in value:
                value = value["thresholds"]
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - set(classes))
        missing = [c for c in classes if c not in value]
        if unknown or missing:
            raise ConfigError(
                f"thresholds from {source} must name every class once: unknown {unknown}, missing {missing}"
            )
        value = [value[c] for c in classes]
    numbers = as_floats(value, "thresholds", source, count=len(classes))
    bad = [f"{c}={t}" for c, t in zip(classes, numbers) if not 0.0 <= t <= 1.0]
    if bad:
        raise ConfigError(f"thresholds from {source} must lie in [0, 1]: {', '.join(bad)}")
    return numbers


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# keys of a model's constructor arguments that name a file for it to read (timm's checkpoint_path, pretrained_cfg's
# file): a packed model reads nothing but the weights in its bundle
FILE_KEYS = frozenset({"checkpoint_path", "pretrained_path", "pretrained_file", "initial_checkpoint", "weights_path",
                       "cache_dir", "file"})


def refuse_file_keys(kwargs: Mapping[str, Any], name: str, source: str) -> None:
    """A ConfigError naming the first key of ``kwargs`` (at any depth) that names a file for the model to read."""
    todo: list[tuple[str, Any]] = [(name, kwargs)]
    seen = 0
    while todo and seen < 10_000:
        where, value = todo.pop(0)
        seen += 1
        if not isinstance(value, Mapping):
            continue
        for key, inner in value.items():
            if str(key) in FILE_KEYS and inner not in (None, "", {}):
                raise ConfigError(
                    f"{source}: {where}.{key} names a file ({inner!r}) for the model's constructor to read; a packed "
                    "model never reads a file its settings name, only the fold's own weights: remove the key from the "
                    "training config, or give the constructor's arguments with --model-kwargs"
                )
            todo.append((f"{where}.{key}", inner))


def read_mapping(value: Any, name: str, source: str) -> dict[str, Any]:
    """A mapping given inline, as JSON text, or as a JSON/YAML file."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, Path)):
        text = Path(value).read_text(encoding="utf-8") if is_file(value) else str(value)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{name} from {source} is not a mapping: {e}") from None
        if isinstance(data, Mapping):
            return dict(data)
    raise ConfigError(f"{name} from {source} must be a mapping (or a JSON/YAML file of one), not {value!r}")
