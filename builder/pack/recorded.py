"""What a training run recorded -> pack settings, each with where it was found.

Sources: timm's train.py ``args`` (in the checkpoint and as ``args.yaml``), Lightning's ``hyper_parameters``
(flat, or a Hydra config nested under any key), timm's Hugging Face ``config.json`` (``architecture``,
``num_classes``, ``model_args``, ``pretrained_cfg``, ``label_names``). Nested configs are searched by dotted
path: ``cfg.model.name`` names the architecture, ``cfg.data.img_size`` the input size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

Found = dict[str, tuple[Any, str]]  # setting -> (value, where it was found)

# key (the last part of a dotted path) -> setting; values must be plain (str, number, list), never a mapping
_KEYS = {
    "model": "arch", "arch": "arch", "model_name": "arch", "architecture": "arch", "backbone": "arch",
    "encoder_name": "arch", "timm_model": "arch",
    "num_classes": "num_classes", "n_classes": "num_classes", "num_labels": "num_classes",
    "img_size": "img_size", "image_size": "img_size", "input_size": "input_size",
    "crop_pct": "crop_pct", "crop_mode": "crop_mode", "interpolation": "interpolation",
    "mean": "mean", "std": "std", "model_kwargs": "model_kwargs",
}
_MODEL_PARENTS = {"model", "backbone", "encoder", "net", "network", "arch"}  # model.name -> arch
# arguments of timm.create_model that pack sets itself; one that names a file stays, for model_kwargs to refuse
_FACTORY_ARGS = {"num_classes", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay"}
_LOSS_KEYS = {"loss", "criterion", "loss_fn", "loss_name", "loss_type", "objective"}
_MULTILABEL_LOSS = re.compile(r"bce|binary|sigmoid|multilabel|multi_label|asl|asymmetric", re.IGNORECASE)
_MULTICLASS_LOSS = re.compile(r"cross.?entropy|\bce\b|softmax|nll|label.?smooth|focal", re.IGNORECASE)
_REGRESSION_LOSS = re.compile(r"mse|\bl1\b|smooth.?l1|huber|rmse|mae|regression", re.IGNORECASE)


def _walk(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every entry, breadth first: shallow keys come before nested ones."""
    nested = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        yield path, value
        if isinstance(value, Mapping) and depth < 4:
            nested.append((value, path))
    for value, path in nested:
        yield from _walk(value, f"{path}.", depth + 1)


def _given(value: Any) -> bool:
    """None, "" and {} mean "the model's default" in timm's args."""
    if value is None or (isinstance(value, str) and value == ""):
        return False
    return bool(value) if isinstance(value, Mapping) else True


def settings_in(data: Mapping[str, Any], source: str) -> Found:
    """The pack settings a training config records (``source`` names the config in the found values)."""
    found: Found = {}
    for path, value in _walk(data):
        key = path.rsplit(".", 1)[-1]
        parent = path.rsplit(".", 2)[-2] if "." in path else ""
        setting = _KEYS.get(key)
        if key == "name" and parent in _MODEL_PARENTS:
            setting = "arch"
        if setting is None or setting in found or not _given(value):
            continue
        if setting == "arch" and not isinstance(value, str):
            continue
        if setting != "model_kwargs" and isinstance(value, Mapping):
            continue
        found[setting] = (value, f"{source} [{path}]")
    hint = task_hint(data, source)
    if hint is not None:
        found["task"] = hint
    return found


def task_hint(data: Mapping[str, Any], source: str) -> tuple[str, str] | None:
    """The task a training config implies: timm's ``bce_loss``, a loss named in the config, or an explicit task."""
    for path, value in _walk(data):
        key = path.rsplit(".", 1)[-1].lower()
        where = f"{source} [{path}]"
        if key == "bce_loss" and isinstance(value, bool):
            return ("multilabel", f"{where} is true: a sigmoid per class") if value else (
                "multiclass", f"{where} is false: cross-entropy over a softmax")
        if key in ("multilabel", "multi_label") and isinstance(value, bool):
            return ("multilabel" if value else "multiclass"), f"{where} is {str(value).lower()}"
        if key == "task" and isinstance(value, str) and value.lower() in ("multiclass", "multilabel", "regression"):
            return value.lower(), where
        if key in _LOSS_KEYS and isinstance(value, str):
            for pattern, task in ((_REGRESSION_LOSS, "regression"), (_MULTILABEL_LOSS, "multilabel"),
                                  (_MULTICLASS_LOSS, "multiclass")):
                if pattern.search(value):
                    return task, f"{where} is {value!r}"
    return None


def settings_in_hf_config(config: Mapping[str, Any], source: str) -> Found:
    """timm's Hugging Face ``config.json``: the architecture, its arguments, the eval transform, the class names."""
    found: Found = {}
    pretrained = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), Mapping) else config
    if isinstance(config.get("architecture"), str):
        found["arch"] = (config["architecture"], f"{source} [architecture]")
    num = config.get("num_classes", pretrained.get("num_classes"))
    if isinstance(num, int):
        found["num_classes"] = (num, f"{source} [num_classes]")
    model_args = config.get("model_args") if isinstance(config.get("model_args"), Mapping) else {}
    kwargs = {k: v for k, v in model_args.items()  # the rest are for timm.create_model
              if k not in _FACTORY_ARGS or (isinstance(v, Mapping) and "file" in v)}
    if kwargs:
        found["model_kwargs"] = (kwargs, f"{source} [model_args]")
    where = "pretrained_cfg." if pretrained is not config else ""
    for key in ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std"):
        if _given(pretrained.get(key)):
            found[key] = (pretrained[key], f"{source} [{where}{key}]")
    names = config.get("label_names", pretrained.get("label_names"))
    if isinstance(names, Mapping):  # {index: name} where the ids have gaps
        names = [names[k] for k in sorted(names, key=lambda k: int(k))]
    if isinstance(names, (list, tuple)) and names:
        found["classes"] = ([str(n) for n in names], f"{source} [label_names]")
    return found
