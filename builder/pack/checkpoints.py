"""Fold checkpoints on disk -> one state_dict and the settings it carries per fold, read safely.

Layouts: checkpoint files directly in the models folder (``fold0.pth``, ``fold_1.safetensors``) or one
sub-folder per fold (timm's train.py: ``fold0/model_best.pth.tar`` with ``args.yaml`` beside it; Lightning:
``fold0/checkpoints/*.ckpt``). Formats: bare state_dicts, safetensors, timm CheckpointSaver files, Lightning
checkpoints, whole pickled modules (only with ``allow_unsafe``).
"""

from __future__ import annotations

import argparse
import fnmatch
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

from builder.errors import CheckpointError
from submission.inputs.images import natural_key

CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".tar")
PREFERRED_STEMS = ("model_best", "best")  # timm's train.py keeps its best epoch as model_best.pth.tar
SKIPPED_FOLDERS = {"wandb", "__pycache__", "lightning_logs_tmp"}
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile


class _AttributeDict:
    """Stands in for Lightning's AttributeDict (a dict subclass): unpickles as a plain dict, without Lightning."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return dict()


SAFE_GLOBALS = [
    argparse.Namespace,
    (_AttributeDict, "lightning.fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
]


@dataclass(frozen=True)
class FoldFile:
    name: str  # fold name: the file's stem, or the sub-folder's name
    path: Path  # the checkpoint file
    args_file: Path | None  # timm train.py's args.yaml for this fold, if there is one


@dataclass
class Checkpoint:
    fold: FoldFile
    state_dict: dict[str, torch.Tensor]  # as stored (prefixes are stripped when fitted to the model)
    entry: str  # where in the file the weights were: "state_dict_ema", "state_dict", "(bare state_dict)", ...
    carried: dict[str, tuple[Any, str]] = field(default_factory=dict)  # setting -> (value, where it was found)


def _is_checkpoint(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower().endswith(CHECKPOINT_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _choose(candidates: list[Path], folder: Path, pick: str | None) -> Path:
    if pick is not None:
        candidates = [p for p in candidates if fnmatch.fnmatch(p.name, pick)]
        if len(candidates) != 1:
            found = ", ".join(str(p.relative_to(folder)) for p in candidates) or "none"
            raise CheckpointError(f"--pick {pick!r} must match exactly one checkpoint in {folder}; it matches: {found}")
        return candidates[0]
    if len(candidates) == 1:
        return candidates[0]
    preferred = [p for p in candidates if _stem(p).lower() in PREFERRED_STEMS]
    if len(preferred) == 1:
        return preferred[0]
    names = ", ".join(str(p.relative_to(folder)) for p in candidates)
    raise CheckpointError(
        f"{folder} holds several checkpoints ({names}); choose one per fold with --pick "
        "(a file name pattern such as 'last.ckpt'), or keep only the one to submit"
    )


def _args_file(*folders: Path) -> Path | None:
    for folder in folders:
        if (folder / "args.yaml").is_file():
            return folder / "args.yaml"
    return None


def find_folds(models: Path, pick: str | None = None) -> list[FoldFile]:
    """The fold checkpoints of ``models``: a file, checkpoint files directly inside, or one per sub-folder."""
    models = Path(models)
    if models.is_file():
        return [FoldFile(_stem(models), models, _args_file(models.parent))]
    if not models.is_dir():
        raise CheckpointError(f"--models {models} does not exist")
    direct = sorted((p for p in models.iterdir() if _is_checkpoint(p)), key=lambda p: natural_key(p.name))
    if pick is not None:
        direct = [p for p in direct if fnmatch.fnmatch(p.name, pick)]
    if direct:
        return [FoldFile(_stem(p), p, _args_file(models)) for p in direct]
    folds = []
    subfolders = [d for d in models.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in SKIPPED_FOLDERS]
    for sub in sorted(subfolders, key=lambda d: natural_key(d.name)):
        candidates = sorted(
            (p for p in sub.rglob("*") if _is_checkpoint(p) and not _hidden_or_skipped(p.relative_to(sub))),
            key=lambda p: natural_key(str(p)),
        )
        if candidates:
            chosen = _choose(candidates, sub, pick)
            folds.append(FoldFile(sub.name, chosen, _args_file(chosen.parent, sub, models)))
    if not folds:
        raise CheckpointError(
            f"no checkpoints found in {models}: looked for {', '.join(CHECKPOINT_SUFFIXES)} files directly "
            "inside it, and then one per sub-folder"
        )
    return folds


def _hidden_or_skipped(relative: Path) -> bool:
    return any(part.startswith(".") or part in SKIPPED_FOLDERS for part in relative.parts[:-1])


def _load_object(path: Path, allow_unsafe: bool) -> Any:
    if path.name.lower().endswith(".safetensors"):
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_unsafe:
            try:
                unsafe = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or str(e)
            except Exception:
                unsafe = str(e).splitlines()[0]
            raise CheckpointError(
                f"{path} can only be read by unsafe unpickling, which runs code from the file (it needs: {unsafe}). "
                "Re-save it with torch.save(model.state_dict(), ...), or, if you trust the file, pass "
                "--allow-unsafe-pickle"
            ) from None
    except Exception as e:
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read {path} even with --allow-unsafe-pickle: {type(e).__name__}: {e}") from None


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _extract(obj: Any, path: Path, use_ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict(), "(pickled module)"
    if _is_state_dict(obj):
        return dict(obj), "(bare state_dict)"
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict or a checkpoint dict")
    for key in (EMA_KEYS if use_ema else ()) + STATE_DICT_KEYS:
        if _is_state_dict(obj.get(key)):
            return dict(obj[key]), key
    raise CheckpointError(
        f"{path} has no state_dict: its top-level keys are {sorted(map(str, obj))[:12]}; "
        f"expected a bare state_dict or one of {', '.join(EMA_KEYS + STATE_DICT_KEYS)}"
    )


# Settings a training run records, as named by timm's train.py args, mapped to builder setting names.
_ARG_SETTINGS = {
    "model": "arch",
    "arch": "arch",
    "model_name": "arch",
    "num_classes": "num_classes",
    "img_size": "img_size",
    "input_size": "input_size",
    "crop_pct": "crop_pct",
    "crop_mode": "crop_mode",
    "mean": "mean",
    "std": "std",
    "interpolation": "interpolation",
    "model_kwargs": "model_kwargs",
}


def _settings_from_args(args: Mapping[str, Any], source: str) -> dict[str, tuple[Any, str]]:
    """The settings a training config records; None and "" mean "the model's default" in timm and are skipped."""
    found = {}
    for key, setting in _ARG_SETTINGS.items():
        value = args.get(key)
        if value is not None and value != "" and value != {} and setting not in found:
            found[setting] = (value, f"{source} [{key}]")
    return found


def _carried(obj: Any, fold: FoldFile) -> dict[str, tuple[Any, str]]:
    """Settings found in the checkpoint file (timm args, Lightning hparams, timm arch) and in args.yaml."""
    layers: list[dict[str, tuple[Any, str]]] = []
    if isinstance(obj, Mapping):
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            args = vars(args)
        if isinstance(args, Mapping):
            layers.append(_settings_from_args(args, f"{fold.path.name} args"))
        hparams = obj.get("hyper_parameters")
        if isinstance(hparams, Mapping):
            layers.append(_settings_from_args(hparams, f"{fold.path.name} hyper_parameters"))
    if fold.args_file is not None:
        try:
            args = yaml.safe_load(fold.args_file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
            raise CheckpointError(f"cannot read {fold.args_file}: {e}") from None
        if isinstance(args, Mapping):
            layers.append(_settings_from_args(args, str(fold.args_file)))
    if isinstance(obj, Mapping) and isinstance(obj.get("arch"), str):
        layers.append({"arch": (obj["arch"], f"{fold.path.name} [arch]")})
    carried: dict[str, tuple[Any, str]] = {}
    for layer in layers:
        for key, value in layer.items():
            carried.setdefault(key, value)
    return carried


def read_checkpoint(fold: FoldFile, *, use_ema: bool = True, allow_unsafe: bool = False) -> Checkpoint:
    obj = _load_object(fold.path, allow_unsafe)
    state, entry = _extract(obj, fold.path, use_ema)
    return Checkpoint(fold=fold, state_dict=state, entry=entry, carried=_carried(obj, fold))


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def fit_state_dict(
    state: Mapping[str, torch.Tensor], expected: set[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename ``state``'s keys to the model's: strip ``module.``/``_orig_mod.``, and for Lightning the
    attribute that holds the model (``model.``, ``net.``, ...), dropping what lies outside it (metrics, loss
    buffers). Returns the renamed state and the dropped keys; a state that cannot be fitted is returned
    with wrappers stripped, for a strict load to report exactly what is missing or unexpected.
    """
    plain = {_strip(k, WRAPPER_PREFIXES): v for k, v in state.items()}
    if set(plain) == expected:
        return plain, []
    for attribute in sorted({k.split(".", 1)[0] for k in plain if "." in k}):
        prefix = attribute + "."
        inside = {_strip(k[len(prefix) :], WRAPPER_PREFIXES): v for k, v in plain.items() if k.startswith(prefix)}
        if set(inside) == expected:
            return inside, sorted(k for k in plain if not k.startswith(prefix))
    return plain, []
