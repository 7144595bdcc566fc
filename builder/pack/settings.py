"""Every pack setting, declared once: its option, config key, help, choices and parser.

``SETTINGS`` makes the ``builder pack`` options, the config file's keys and the settings report. Each setting's
``parse`` turns what a person or a training run wrote (a YAML value, an option's text, a recorded arg) into its
typed value, or a ``ConfigError`` naming the setting, where the value came from, and the choices. ``resolve``
applies them: every value is parsed where it enters, and travels as a ``Sourced`` typed value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pandas as pd
import yaml

from builder import platforms
from builder.errors import ConfigError
from builder.platforms.gpus import parse_arch
from submission import formats
from submission.manifest import (
    CROP_MODES,
    DECODE_MODES,
    DEVICES,
    INTERPOLATIONS,
    LABEL_AS,
    MERGE_MODES,
    TASKS,
    TTA_PRESETS,
    Head,
)

T = TypeVar("T")
ENGINE_CHOICES = ("torch", "onnx", "openvino", "auto")  # the engine setting: auto times each on this machine
Parse = Callable[[Any, str, str], Any]  # (value, setting name, source) -> the typed value, or a ConfigError


@dataclass(frozen=True)
class Sourced(Generic[T]):
    value: T
    source: str  # "--arch", "pack.yaml [arch]", "fold0/args.yaml [model]", "timm default for resnet18", ...


# --- parsers: each names the setting, the source and what was expected ------------------------------------------

def _fail(name: str, source: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{name} from {source} must be {expected}, not {value!r}")


def text(value: Any, name: str, source: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    raise _fail(name, source, "text", value)


def choice(choices: Any) -> Parse:
    """One of ``choices`` (a tuple, or a mapping whose keys are the choices, read when parsing)."""
    def parse(value: Any, name: str, source: str) -> str:
        options = tuple(choices)
        if isinstance(value, str) and value.strip().lower() in options:
            return value.strip().lower()
        if isinstance(value, str) and value.strip() in options:
            return value.strip()
        raise ConfigError(f"{name} from {source} is {value!r}; expected one of: {', '.join(options)}")
    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def flag(value: Any, name: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise _fail(name, source, "true or false", value)


def integer(low: int | None = None, high: int | None = None) -> Parse:
    def parse(value: Any, name: str, source: str) -> int:
        whole = isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()) or (
            isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            raise _fail(name, source, "a whole number", value)
        number = int(float(value)) if not isinstance(value, str) else int(value.strip())
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"at least {low}" if high is None else f"from {low} to {high}"
            raise ConfigError(f"{name} from {source} is {number}; expected a whole number {bounds}")
        return number
    return parse


def number(low: float | None = None, high: float | None = None, open_low: bool = False) -> Parse:
    def parse(value: Any, name: str, source: str) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            x = float(value)
        except (TypeError, ValueError):
            raise _fail(name, source, "a number", value) from None
        if (low is not None and (x < low or (open_low and x == low))) or (high is not None and x > high):
            raise ConfigError(f"{name} from {source} is {x:g}; expected a number in {'(' if open_low else '['}{low:g}, "
                              f"{high:g}]")
        return x
    return parse


def as_list(value: Any, name: str, source: str) -> list[Any]:
    """A list from a YAML/JSON list, a comma-separated option, or a repeated option of comma-separated values."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [item for v in value for item in (as_list(v, name, source) if isinstance(v, str) else [v])]
    raise ConfigError(f"{name} from {source} must be a list or comma-separated text, not {value!r}")


def as_floats(value: Any, name: str, source: str, count: int | None = None) -> tuple[float, ...]:
    items = as_list(value if not isinstance(value, (int, float)) or isinstance(value, bool) else [value], name, source)
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} from {source} must be numbers, got {value!r}") from None
    if count is not None and len(numbers) != count:
        raise ConfigError(f"{name} from {source} must have {count} numbers, got {len(numbers)}")
    return numbers


def floats(count: int | None = None, positive: bool = False) -> Parse:
    def parse(value: Any, name: str, source: str) -> tuple[float, ...]:
        numbers = as_floats(value, name, source, count)
        if positive and any(x <= 0 for x in numbers):
            raise ConfigError(f"{name} from {source} must be positive numbers, got {list(numbers)}")
        return numbers
    return parse


def names(value: Any, name: str, source: str) -> tuple[str, ...]:
    items = tuple(str(v).strip() for v in as_list(value, name, source) if str(v).strip())
    if not items:
        raise ConfigError(f"{name} from {source} is empty")
    return items


def is_file(value: Any) -> bool:
    """Whether ``value`` names an existing file (a long list of names is no path: it is not looked up)."""
    try:
        return isinstance(value, (str, Path)) and Path(value).is_file()
    except OSError:  # "File name too long"
        return False


def existing_folder(value: Any, name: str, source: str) -> Path:
    if isinstance(value, (str, Path)) and str(value).strip() and Path(value).is_dir():
        return Path(value)
    raise ConfigError(f"{name} from {source}: {value!r} is not a folder")


def existing_file(value: Any, name: str, source: str) -> Path:
    if isinstance(value, (str, Path)) and str(value).strip():
        path = Path(value)
        if is_file(path):
            return path
        raise ConfigError(f"{name} from {source}: {path} does not exist or is not a file")
    raise _fail(name, source, "the path of a file", value)


def read_classes(value: Any, source: str, name: str = "classes") -> tuple[str, ...]:
    """Class names from a list, comma-separated text, or a text file with one name per line (spaces kept)."""
    if is_file(value):
        found = [line.strip() for line in Path(value).read_text(encoding="utf-8").splitlines() if line.strip()]
    elif isinstance(value, (list, tuple)):
        found = [str(v).strip() for v in value if str(v).strip()]
    else:
        found = [str(v) for v in as_list(value, name, source)]
    if not found:
        raise ConfigError(f"{name} from {source} is empty")
    repeated = sorted({c for c in found if found.count(c) > 1})
    if repeated:
        raise ConfigError(f"{name} from {source} repeats {repeated[:5]}")
    return tuple(found)


def class_names(value: Any, name: str, source: str) -> tuple[str, ...]:
    return read_classes(value, source, name)


def read_mapping(value: Any, name: str, source: str) -> dict[str, Any]:
    """A mapping given inline, as JSON/YAML text, or as a JSON/YAML file."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, Path)):
        text_ = Path(value).read_text(encoding="utf-8") if is_file(value) else str(value)
        try:
            data = yaml.safe_load(text_)
        except yaml.YAMLError as e:
            raise ConfigError(f"{name} from {source} is not a mapping: {e}") from None
        if isinstance(data, Mapping):
            return dict(data)
    raise ConfigError(f"{name} from {source} must be a mapping (or a JSON/YAML file of one), not {value!r}")


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


def model_kwargs(value: Any, name: str, source: str) -> dict[str, Any]:
    kwargs = read_mapping(value, name, source)
    refuse_file_keys(kwargs, name, source)
    return kwargs


def mapping_file(value: Any, name: str, source: str) -> dict[str, Any]:
    return read_mapping(value, name, source)


def code_ref(value: Any, name: str, source: str) -> str:
    """"FILE.py:ATTR" or "FOLDER:module.ATTR", whose path exists (what it names is checked when it is frozen)."""
    value = text(value, name, source)
    path, sep, attribute = value.rpartition(":")
    if not sep or not path or not attribute:
        raise ConfigError(f"{name} from {source} is {value!r}; write FILE.py:FUNCTION or FOLDER:module.FUNCTION")
    if not Path(path).exists():
        raise ConfigError(f"{name} from {source}: {path} does not exist")
    return value


def model_output(value: Any, name: str, source: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    value = text(value, name, source)
    return int(value) if value.lstrip("-").isdigit() else value


def image_size(value: Any, name: str, source: str) -> tuple[int, int, int]:
    """384, [384, 512] or "384,512" (height, width) -> (3, height, width)."""
    numbers = [v for v in as_floats(value, name, source)]
    if len(numbers) not in (1, 2) or any(v <= 0 or not float(v).is_integer() for v in numbers):
        raise ConfigError(f"{name} from {source} must be one whole number or height,width, got {value!r}")
    h, w = (numbers[0], numbers[0]) if len(numbers) == 1 else numbers
    return 3, int(h), int(w)


def input_size(value: Any, name: str, source: str) -> tuple[int, int, int]:
    c, h, w = as_floats(value, name, source, count=3)
    if min(c, h, w) <= 0 or not all(float(v).is_integer() for v in (c, h, w)):
        raise ConfigError(f"{name} from {source} must be three whole numbers 3,height,width, got {value!r}")
    return int(c), int(h), int(w)


def heads(value: Any, name: str, source: str) -> tuple[Head, ...]:
    """"mask=3,gender=2,age=3", or a mapping/list of name: size in order."""
    pairs = list(value.items()) if isinstance(value, Mapping) else [
        tuple(item.split("=", 1)) if isinstance(item, str) and "=" in item else (None, None)
        for item in as_list(value, name, source)]
    try:
        found = tuple(Head(str(n).strip(), int(size)) for n, size in pairs)
    except (TypeError, ValueError):
        found = ()
    if not found or any(h.size < 1 or not h.name or h.name == "None" for h in found):
        raise ConfigError(f"{name} from {source} is {value!r}; write name=size,... in the model's output order, "
                          "e.g. mask=3,gender=2,age=3")
    return found


def weights(value: Any, name: str, source: str) -> tuple[float, ...] | dict[str, float]:
    """Ensemble weights: a list in fold order, or a mapping of fold or model names to weights."""
    if isinstance(value, Mapping):
        out = {}
        for key, w in value.items():
            out[str(key)] = number(0.0, float("inf"), open_low=True)(w, f"{name}.{key}", source)
        return out
    return floats(positive=True)(value, name, source)


def thresholds(value: Any, name: str, source: str) -> tuple[float, ...] | dict[str, float]:
    """Per-class thresholds: a list (class order), a mapping {class: t}, or a JSON/CSV file of either; each in
    [0, 1]. They are put in class order once the classes are known."""
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
    unit = number(0.0, 1.0)
    if isinstance(value, Mapping):
        return {str(k): unit(v, f"{name}.{k}", source) for k, v in value.items()}
    return tuple(unit(v, name, source) for v in as_floats(value, name, source))


def cutoffs(value: Any, name: str, source: str) -> tuple[float, ...]:
    """Increasing cutoffs, or the JSON file ``builder thresholds --metric qwk`` writes."""
    if isinstance(value, (str, Path)) and str(value).endswith(".json") and is_file(value):
        value = json.loads(Path(value).read_text(encoding="utf-8")).get("cutoffs")
    found = as_floats(value, name, source)
    if list(found) != sorted(found):
        raise ConfigError(f"{name} from {source} must be increasing, got {list(found)}")
    return found


def column_list(value: Any, name: str, source: str) -> list[Mapping[str, Any]]:
    """The metadata columns: a YAML/JSON list of declarations, inline or in a file."""
    if is_file(value):
        try:
            value = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError) as e:
            raise ConfigError(f"cannot read the metadata columns {value}: {e}") from None
    if not isinstance(value, list) or not all(isinstance(c, Mapping) for c in value):
        raise ConfigError(f"{name} from {source} must be a list of column declarations "
                          f"({{name, type: categorical|numeric|count, ...}}), not {value!r}")
    return list(value)


def gpu_arch(value: Any, name: str, source: str) -> tuple[int, int]:
    return parse_arch(text(value, name, source), name, source)


def per_name(value: Any, name: str, source: str) -> dict[str, dict[str, Any]]:
    """``folds`` / ``models``: a mapping of names to mappings of settings (parsed by ``resolve``)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} from {source} must map names to settings, not {value!r}")
    out = {}
    for key, settings in value.items():
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{name}.{key} from {source} must be a mapping of settings")
        out[str(key)] = dict(settings)
    return out


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- the declarations -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One pack setting: the ``--option``, the config file key and the settings report are all made from this."""

    name: str  # the config file key; the option is --name-with-dashes
    type: type  # what the option takes on the command line: str, int, float, bool, Path or list
    help: str  # the --help text and the config file reference: whole sentences
    parse: Parse  # what a value becomes, checked
    default: Any = None  # the value when nothing else gives one (None: decided from the folds or the sample)
    per_fold: bool = False  # resolved for each fold, where the checkpoint may carry it
    flag: str | None = None  # the option's declaration when it is not --name, e.g. "--ema/--no-ema"
    cli: bool = True  # an option too (False: the config file only)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def choices(self) -> tuple[str, ...] | None:
        found = getattr(self.parse, "choices", None)
        return tuple(found) if found is not None else None


SETTINGS: tuple[Setting, ...] = (
    # where it runs
    Setting("platform", str, "The platform the image is made for: " + ", ".join(platforms.PLATFORMS) + " (where it "
            "finds the test data and writes its answer when run with no arguments, its limits and GPUs).",
            choice(platforms.PLATFORMS), "generic"),
    Setting("input_dir", str, "Where the test data lies when the image runs with no arguments (default: the "
            "platform's; $VAR and ${VAR:-default} are expanded at run time).", text),
    Setting("output_path", str, "The file the image writes when run with no arguments (default: the platform's).", text),
    Setting("competition", str, "The competition's name, the last part of its address: where a platform names its "
            "data folder after it (kaggle: /kaggle/input/NAME), and the notebook's competition source.", text),
    Setting("owner", str, "Your user name on the platform, for what an export names after it (kaggle: the "
            "datasets' and the notebook's USER/...; default: $KAGGLE_USERNAME, else ~/.kaggle/kaggle.json's).", text),
    Setting("devices", str, "The devices the image uses when none are asked for: all (every GPU the torch build can "
            "drive, else the CPU) or cpu (a platform GPU the build cannot drive, knowingly).", choice(DEVICES), "all"),
    Setting("deadline", float, "Seconds from the runtime's start by which the image must have written its file: a "
            "late run drops work for the batches left, in drop_order (default: the platform's time limit less 5%, at "
            "least a minute; 0: none).", number(0.0, float("inf"))),
    Setting("drop_order", str, "What a late run gives up first, in order: view:NAME and model:NAME, e.g. "
            "view:vflip,view:hflip,model:fold4 (default: the views from the last, then the lightest models).", names),
    Setting("gpu_arch", str, "The GPU it runs on, as sm_70 (a V100), sm_75 (a T4), sm_80 (an A100): pack fails when "
            "the pinned torch build cannot drive it (default: the platform's GPUs).", gpu_arch),
    # what to read
    Setting("sample_submission", Path, "The competition's sample_submission.csv: it fixes the id column, the columns, "
            "the format and the row order.", existing_file),
    Setting("leave_out", str, "Folds found that the ensemble leaves out, by name: fold3,fold4 (builder plan writes "
            "it).", names),
    Setting("pick", str, "A file name pattern that chooses the checkpoint in each fold's folder, e.g. 'last.ckpt'.", text),
    Setting("ema", bool, "Use state_dict_ema when a checkpoint has one (--no-ema: state_dict).", flag, True,
            flag="--ema/--no-ema"),
    Setting("allow_unsafe_pickle", bool, "Read checkpoints by full unpickling, which runs code from the file: for a "
            "whole pickled model (torch.save(model)) or a TorchScript archive you trust. It is converted to a "
            "state_dict at pack time.", flag, False, flag="--allow-unsafe-pickle"),
    # the model of each fold
    Setting("arch", str, "The timm model name of every fold (default: what the checkpoints record).", text, per_fold=True),
    Setting("num_classes", int, "Classes of the model head (default: from the checkpoint's classifier).", integer(1),
            per_fold=True),
    Setting("model_code", str, "Your model code instead of a timm name: FILE.py:FACTORY, or FOLDER:module.FACTORY "
            "(a function or class that returns the nn.Module); its files are frozen in the bundle.", code_ref,
            per_fold=True),
    Setting("model_kwargs", str, "Keyword arguments of timm.create_model or of your factory, as JSON, e.g. "
            "'{\"img_size\": 384}'.", model_kwargs, per_fold=True),
    Setting("model_output", str, "Which output of forward() to use when it returns a tuple (an index) or a dict "
            "(a key).", model_output, per_fold=True),
    Setting("folds", dict, "Settings of single folds, by fold name: {fold0: {model_code: ..., model_kwargs: ...}} "
            "(they override the file's other settings for that fold).", per_name, cli=False),
    Setting("models", dict, "Settings of the folds of one model folder, by the folder's name: {effnet_b4: {img_size: "
            "380}} (they override the file's other settings for those folds).", per_name, cli=False),
    Setting("requirements", list, "Packages your code imports beyond the runtime's (torch, timm, torchvision, ...): "
            "NAME, repeatable or a,b; they are pinned to the versions installed here.", names),
    # preprocessing of each fold
    Setting("img_size", str, "The model input size: 384, or 384,512 for height,width.", image_size, per_fold=True),
    Setting("input_size", str, "The model input as 3,height,width.", input_size, per_fold=True),
    Setting("crop_pct", float, "The fraction kept by the eval centre crop, in (0, 1]; 1.0 with --crop-mode squash is "
            "a plain resize.", number(0.0, 1.0, open_low=True), per_fold=True),
    Setting("crop_mode", str, "How the eval transform crops: center, squash or border (timm's eval crop modes).",
            choice(CROP_MODES), per_fold=True),
    Setting("interpolation", str, "The resize filter: bilinear, bicubic, nearest, box, hamming or lanczos.",
            choice(INTERPOLATIONS), per_fold=True),
    Setting("mean", str, "The normalisation mean, three numbers: 0.485,0.456,0.406.", floats(3), per_fold=True),
    Setting("std", str, "The normalisation std, three numbers.", floats(3, positive=True), per_fold=True),
    Setting("decode", str, "JPEG decoding: exact, or fast (a JPEG over twice the largest model input is decoded by "
            "libjpeg at 1/2, 1/4 or 1/8 scale before the same resize: faster on large photos, close to exact but "
            "not bit-identical; check with the benchmark).", choice(DECODE_MODES), "exact"),
    Setting("preprocess", str, "Your own preprocessing before the resize: FILE.py:FUNCTION, called once per decoded "
            "image with an (H, W, 3) uint8 RGB array (or a PIL image, when its first parameter is annotated so) and "
            "returning the same kind; its files are frozen in the bundle.", code_ref, per_fold=True),
    Setting("albumentations", Path, "A JSON file of A.to_dict(eval_transform), used instead of timm's resize and "
            "normalisation; the model input size is what the transform makes.", mapping_file, per_fold=True),
    # what runs the forward passes
    Setting("engine", str, "What runs each model's forward pass: torch, onnx (ONNX Runtime), openvino, or auto (each "
            "timed on this machine, the fastest that passes the equivalence gate kept). An engine runs the model "
            "exported to ONNX, kept only when it passes the gate against eager PyTorch.", choice(ENGINE_CHOICES),
            "torch"),
    Setting("engine_tolerance", float, "The equivalence gate's largest probability difference between an engine and "
            "eager PyTorch.", number(0.0, 1.0, open_low=True), 1e-4),
    Setting("gate_images", Path, "A folder of test images the equivalence gate compares on (default: generated "
            "images).", existing_folder),
    # the ensemble
    Setting("fold_weights", str, "The ensemble weight of each fold, in fold order: 1,1,2; or, in the config file, a "
            "mapping of fold or model folder names to weights (default: equal).", weights),
    Setting("tta", str, "The TTA preset: none, hflip, vflip, flips or d4.", choice(TTA_PRESETS), "none"),
    Setting("merge", str, "How folds and views are merged: mean, gmean (geometric), logits (the mean of logits) or "
            "rank (percentile ranks over the whole test set, averaged: for AUC; it keeps models x images x classes in "
            "memory).", choice(MERGE_MODES), "mean"),
    # metadata beside the images
    Setting("metadata_file", str, "Where the metadata CSV lies, relative to the test folder: test.csv, or ../test.csv "
            "beside it (the image also takes --metadata PATH).", text),
    Setting("metadata_id_column", str, "The metadata CSV's id column (default: the sample's id column, else the "
            "first).", text),
    Setting("metadata_columns", Path, "The metadata encoding: a YAML/JSON list of {name, type: categorical|numeric|"
            "count, categories, fill, log1p, normalize, scale} in the model's feature order.", column_list),
    Setting("metadata_encoder", str, "Your metadata encoder instead: FILE.py:FUNCTION, called once with every row of "
            "the metadata CSV (and a 'path' column); it returns an array of one row of features per CSV row.",
            code_ref),
    Setting("metadata_width", int, "The features your metadata encoder returns per image, when no --train-metadata "
            "shows it.", integer(1)),
    Setting("train_metadata", Path, "The training metadata CSV: vocabularies and statistics of the declared columns "
            "are taken from it, and the encoder is checked on it.", existing_file),
    # the task and the submission
    Setting("heads", str, "Several heads combined into the classes, in order: mask=3,gender=2,age=3 (multiclass: "
            "their product, first head most significant; multilabel: side by side).", heads),
    Setting("task", str, "The task: multiclass, multilabel or regression (default: from the sample, the folds' outputs "
            "and what their training recorded, or an error that asks).", choice(TASKS)),
    Setting("classes", str, "The class names in model output order: a,b,c, or a file with one per line.", class_names),
    Setting("id_column", str, "The name of the id column (default: the sample's first column, else 'id').", text),
    Setting("format", str, "The output format (default: inferred from the sample).", choice(formats.FORMATS)),
    Setting("label_as", str, "What label cells hold: name or index (default: inferred from the sample).",
            choice(LABEL_AS)),
    Setting("thresholds", Path, "Per-class thresholds (multilabel): a JSON list or {class: t}, or a CSV of "
            "class,threshold.", thresholds),
    Setting("oof", Path, "Out-of-fold probabilities (id + class columns): the thresholds are tuned on them (macro "
            "F1; see `builder thresholds`).", existing_file),
    Setting("oof_labels", Path, "The true labels of --oof.", existing_file),
    Setting("at_least_one", bool, "Multilabel: give a row with no class above its threshold its most probable "
            "class.", flag, False, flag="--at-least-one/--no-at-least-one"),
    Setting("top_k", int, "Class names per row, most probable first (this implies the space-separated 'labels' "
            "format).", integer(1)),
    Setting("new_class", str, "Top-k: a class name (e.g. new_whale) inserted where the next probability falls below "
            "--new-threshold.", text),
    Setting("new_threshold", float, "Top-k: the probability below which --new-class is inserted.", number(0.0, 1.0)),
    Setting("positive_class", str, "The class (name or index) whose probability one value column holds: the 'binary' "
            "format of a multiclass model (default for two classes: the second, or the one named 1/true/positive).",
            text),
    Setting("cutoffs", str, "Regression: cut the value into integer grades at these increasing cutoffs "
            "(0.5,1.5,2.5,3.5), or a JSON file from `builder thresholds --metric qwk`.", cutoffs),
    Setting("decimals", int, "Digits after the decimal point in probability cells.", integer(0, 12), 6),
)
BY_NAME = {s.name: s for s in SETTINGS}
PER_FOLD = tuple(s.name for s in SETTINGS if s.per_fold)
