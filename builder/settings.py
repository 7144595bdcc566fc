"""Where each pack setting comes from: command-line options, then the config file, then the checkpoints.

Every resolved value keeps its source, so ``builder pack`` can say where each setting came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from builder.errors import ConfigError

# Every setting a config file may hold (the same names as the options, with underscores).
SETTINGS = {
    "arch": "timm model name, e.g. convnext_tiny",
    "num_classes": "number of classes of the model head",
    "img_size": "input height and width (one number, or [height, width])",
    "input_size": "model input as [3, height, width]",
    "crop_pct": "fraction kept by the eval centre crop, in (0, 1]",
    "crop_mode": "center, squash or border (timm's eval crop modes)",
    "interpolation": "resize filter: bilinear, bicubic, nearest, box, hamming, lanczos",
    "mean": "per-channel normalisation mean, three numbers",
    "std": "per-channel normalisation std, three numbers",
    "model_kwargs": "extra timm.create_model keyword arguments (a mapping)",
    "albumentations": "a JSON file with A.to_dict() of the eval transform (or the mapping itself)",
    "task": "multiclass or multilabel",
    "classes": "class names in the order of the model outputs",
    "id_column": "name of the id column",
    "format": "label, onehot, probs or labels",
    "label_as": "name or index: what label cells hold",
    "tta": "none, hflip, vflip, flips or d4",
    "merge": "mean, gmean or logits",
    "thresholds": "per-class thresholds (multilabel): a list in class order, a mapping, or a JSON/CSV file",
    "at_least_one": "multilabel: give every image its most probable class when none passes",
    "top_k": "multiclass 'labels' format: class names per row",
    "decimals": "digits after the decimal point in probability cells",
    "fold_weights": "ensemble weight of each fold, in fold order",
}


@dataclass(frozen=True)
class Sourced:
    value: Any
    source: str  # "--arch", "pack.yaml [arch]", "fold0/args.yaml [model]", "timm default for resnet18", ...


Layer = Mapping[str, Sourced]


def option_layer(options: Mapping[str, Any]) -> dict[str, Sourced]:
    """The options given on the command line (None means not given)."""
    return {k: Sourced(v, "--" + k.replace("_", "-")) for k, v in options.items() if v is not None}


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
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown}; known settings: {', '.join(SETTINGS)}")
    return {k: Sourced(v, f"{path.name} [{k}]") for k, v in data.items() if v is not None}


def carried_layer(carried: Mapping[str, tuple[Any, str]]) -> dict[str, Sourced]:
    return {k: Sourced(v, source) for k, (v, source) in carried.items()}


def lookup(name: str, *layers: Layer) -> Sourced | None:
    """The value of ``name`` from the first layer that has it."""
    for layer in layers:
        if name in layer:
            return layer[name]
    return None


def as_list(value: Any, name: str, source: str) -> list[Any]:
    """A list from a YAML/JSON list or a comma-separated option."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
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


def read_classes(value: Any, source: str) -> tuple[str, ...]:
    """Class names from a list, comma-separated text, or a text file with one name per line."""
    if isinstance(value, (str, Path)) and Path(value).is_file():
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
    if isinstance(value, (str, Path)) and Path(value).is_file():
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


def read_mapping(value: Any, name: str, source: str) -> dict[str, Any]:
    """A mapping given inline, as JSON text, or as a JSON/YAML file."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, Path)):
        text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else str(value)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{name} from {source} is not a mapping: {e}") from None
        if isinstance(data, Mapping):
            return dict(data)
    raise ConfigError(f"{name} from {source} must be a mapping (or a JSON/YAML file of one), not {value!r}")
