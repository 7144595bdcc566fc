"""Fold checkpoints on disk -> one state_dict and the settings it carries per fold, read without running code.

Layouts (``--models``):
- one checkpoint file, or checkpoint files directly in the folder, one per fold (``fold0.pth``, ``fold_1.safetensors``);
- one sub-folder per fold, holding what its training script left: timm's train.py (``model_best.pth.tar`` beside
  ``last.pth.tar``, ``checkpoint-*.pth.tar``, ``args.yaml``, ``summary.csv``), Lightning (``checkpoints/*.ckpt``),
  timm's Hugging Face layout (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``), or a script's own
  (``best.pth``, ``last.pth``: several candidates need ``--pick``);
- a single run's folder given as the models folder (its checkpoints are candidates of one fold);
- one folder per model (or experiment) holding its folds, the commonest layout of competition repositories:
  ``output/effnet_b4/weights_fold0.pth ... weights_fold4.pth``, or ``exp001/fold0/best.pth ...``: each file (or
  fold sub-folder) a fold of its folder's model, named ``effnet_b4/weights_fold0``.

Formats: bare state_dicts, safetensors, timm CheckpointSaver files, Lightning checkpoints, dicts with the weights
under ``state_dict``/``model_state_dict``/... Pickles are read by ``safe_pickle`` (metadata of any class as inert
data); a whole pickled module needs ``allow_unsafe``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

from builder.errors import CheckpointError
from builder.pack import safe_pickle
from builder.pack.recorded import Found, settings_in, settings_in_hf_config
from submission.inputs.images import natural_key

CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".tar")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # timm's save_for_hf / push_to_hub, in order of preference
SKIPPED_FOLDERS = {"wandb", "__pycache__", "lightning_logs_tmp"}
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict")
MAX_CONFIG_BYTES = 16 * 2**20  # a training config (args.yaml, config.json) larger than this is refused
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile
# names a training script gives the checkpoints of ONE run (not folds): best, last, epoch N, step N
_RUN_CHECKPOINT = re.compile(r"(model_best|best|last|final|checkpoint|ckpt|epoch|step)([-_=.].*)?", re.IGNORECASE)
_FOLD_NUMBER = re.compile(r"fold[-_ ]?(\d+)", re.IGNORECASE)  # "weights_fold3", "fold_1", "Fold-2_best"


@dataclass(frozen=True)
class FoldFile:
    name: str  # fold name: the file's stem, or the fold folder's name
    path: Path  # the weights file
    args_file: Path | None = None  # timm train.py's args.yaml for this fold, if there is one
    config_file: Path | None = None  # timm's Hugging Face config.json, for that layout
    why: str = ""  # why this file was chosen among the fold folder's candidates (empty when it was the only one)
    model: str | None = None  # the model folder it is a fold of, in a models x folds layout


@dataclass
class Checkpoint:
    fold: FoldFile
    state_dict: dict[str, torch.Tensor]  # as stored (prefixes are stripped when fitted to the model)
    entry: str  # where in the file the weights were: "state_dict_ema", "state_dict", "(bare state_dict)", ...
    carried: Found = field(default_factory=dict)  # setting -> (value, where it was found)


def _is_checkpoint(path: Path) -> bool:
    """A checkpoint file by its name; one so named that is not a regular file (a FIFO, a device, a broken link) is
    refused by name, unopened."""
    if path.name.startswith(".") or not path.name.lower().endswith(CHECKPOINT_SUFFIXES) or path.is_dir():
        return False
    if not path.is_file():
        what = "a broken link" if path.is_symlink() and not path.exists() else "not a regular file (a FIFO or a device)"
        raise CheckpointError(f"{path} is named like a checkpoint but is {what}; nothing was read from it: remove it")
    return True


def _stem(path: Path) -> str:
    name = path.name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_run_checkpoint(path: Path) -> bool:
    stem = _stem(path)
    return bool(_RUN_CHECKPOINT.fullmatch(stem)) and "fold" not in stem.lower()


def _hf_config(folder: Path) -> Path | None:
    """``folder/config.json`` when it is timm's Hugging Face config (it names the architecture)."""
    path = folder / "config.json"
    if not path.is_file() or not any((folder / w).is_file() for w in HF_WEIGHTS) or \
            path.stat().st_size > MAX_CONFIG_BYTES:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    return path if isinstance(data, dict) and "architecture" in data else None


def _listing(paths: list[Path], folder: Path) -> str:
    return ", ".join(str(p.relative_to(folder)) for p in paths)


def _choose(candidates: list[Path], folder: Path, pick: str | None) -> tuple[Path, str]:
    """The fold's checkpoint among ``candidates`` in ``folder``, and why it was chosen."""
    if pick is not None:
        matching = [p for p in candidates if fnmatch.fnmatch(p.name, pick)]
        if len(matching) != 1:
            found = _listing(matching, folder) or "none"
            raise CheckpointError(f"--pick {pick!r} must match exactly one checkpoint in {folder}; it matches: {found}")
        others = [p for p in candidates if p != matching[0]]
        return matching[0], f"--pick {pick!r}" + (f" (also there: {_listing(others, folder)})" if others else "")
    if len(candidates) == 1:
        return candidates[0], ""
    best = [p for p in candidates if p.name == "model_best.pth.tar"]
    timm_rest = all(p.name == "last.pth.tar" or re.fullmatch(r"checkpoint-\d+\.pth\.tar", p.name)
                    for p in candidates if p not in best)
    if len(best) == 1 and timm_rest:
        others = [p for p in candidates if p != best[0]]
        also = _listing(others, folder)
        return best[0], f"timm's train.py keeps its best epoch as model_best.pth.tar (also there: {also})"
    raise CheckpointError(
        f"{folder} holds several checkpoints ({_listing(candidates, folder)}) and none is the obvious one; choose "
        "with --pick (a file name pattern such as 'best.pth' or 'last.ckpt'), or keep only the one to submit"
    )


def _fold_in_folder(folder: Path, name: str, pick: str | None, models: Path) -> FoldFile | None:
    """The fold a folder holds: timm's Hugging Face layout, or the one checkpoint among its candidates."""
    config = _hf_config(folder)
    if config is not None:
        weights = [folder / w for w in HF_WEIGHTS if (folder / w).is_file()]
        why = "timm's Hugging Face layout (config.json)"
        if len(weights) > 1:
            why += f"; {weights[0].name} preferred to {weights[1].name}"
        return FoldFile(name, weights[0], None, config, why)
    candidates = sorted(
        (p for p in folder.rglob("*") if not _hidden_or_skipped(p.relative_to(folder)) and _is_checkpoint(p)),
        key=lambda p: natural_key(str(p.relative_to(folder))),
    )
    if not candidates:
        return None
    chosen, why = _choose(candidates, folder, pick)
    return FoldFile(name, chosen, _args_file(chosen.parent, folder, models), None, why)


def _args_file(*folders: Path) -> Path | None:
    for folder in folders:
        if (folder / "args.yaml").is_file():
            return folder / "args.yaml"
    return None


def find_folds(models: Path, pick: str | None = None) -> list[FoldFile]:
    """The fold checkpoints of ``models``: a file, checkpoint files directly inside, one per sub-folder, or the
    folder of a single run."""
    models = Path(models)
    if models.is_file():
        config = _hf_config(models.parent) if models.name in HF_WEIGHTS else None
        name = models.parent.name if config else _stem(models)
        return [FoldFile(name, models, _args_file(models.parent), config)]
    if not models.is_dir():
        raise CheckpointError(f"--models {models} does not exist")
    direct = sorted((p for p in models.iterdir() if _is_checkpoint(p)), key=lambda p: natural_key(p.name))
    if _hf_config(models) is not None or (direct and all(_is_run_checkpoint(p) for p in direct)):
        return [f for f in [_fold_in_folder(models, models.resolve().name, pick, models)] if f]  # one run's folder
    if pick is not None:
        direct = [p for p in direct if fnmatch.fnmatch(p.name, pick)]
    if direct:
        return [FoldFile(_stem(p), p, _args_file(models)) for p in direct]
    folds = []
    for sub in sorted(_subfolders(models), key=lambda d: natural_key(d.name)):
        found = _model_folds(sub, pick, models)
        if not found:
            fold = _fold_in_folder(sub, sub.name, pick, models)
            found = [fold] if fold is not None else []
        folds.extend(found)
    if not folds:
        raise CheckpointError(
            f"no checkpoints found in {models}: looked for {', '.join(CHECKPOINT_SUFFIXES)} files directly "
            "inside it, and then one per sub-folder"
        )
    return folds


def _subfolders(folder: Path) -> list[Path]:
    return [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in SKIPPED_FOLDERS]


def _fold_number(name: str) -> int | None:
    found = _FOLD_NUMBER.search(name)
    return int(found.group(1)) if found else None


def _model_folds(folder: Path, pick: str | None, models: Path) -> list[FoldFile]:
    """The folds of a model folder: two or more checkpoint files with distinct fold numbers in their names, or two or
    more fold sub-folders (``fold0/``, ``fold_1/``); empty when ``folder`` is one fold's own folder."""
    if _hf_config(folder) is not None:
        return []
    files = [p for p in folder.iterdir() if _is_checkpoint(p)]
    numbers: dict[int, list[Path]] = {}
    for f in files:
        n = _fold_number(_stem(f))
        if n is None:
            return []
        numbers.setdefault(n, []).append(f)
    if len(numbers) >= 2:
        found = []
        for _, group in sorted(numbers.items()):
            chosen, why = _choose(sorted(group, key=lambda p: natural_key(p.name)), folder, pick) \
                if len(group) > 1 or pick else (group[0], "")
            found.append(FoldFile(f"{folder.name}/{_stem(chosen)}", chosen, _args_file(folder, models), None, why,
                                  model=folder.name))
        return found
    children = [d for d in _subfolders(folder) if _fold_number(d.name) is not None]
    if files or len(children) < 2:
        return []
    found = []
    for child in sorted(children, key=lambda d: natural_key(d.name)):
        fold = _fold_in_folder(child, f"{folder.name}/{child.name}", pick, models)
        if fold is not None:
            found.append(FoldFile(fold.name, fold.path, fold.args_file or _args_file(folder), fold.config_file,
                                  fold.why, model=folder.name))
    return found if len(found) >= 2 else []


def _hidden_or_skipped(relative: Path) -> bool:
    return any(part.startswith(".") or part in SKIPPED_FOLDERS for part in relative.parts[:-1])


def _load_object(path: Path, allow_unsafe: bool) -> Any:
    try:
        with safe_pickle.bounded(safe_pickle.MAX_SECONDS):
            kind = safe_pickle.inspect(path)
            if path.name.lower().endswith(".safetensors"):
                return _load_safetensors(path)
            if allow_unsafe:
                return _load_unsafe(path, kind)
            obj = safe_pickle.load(path)
    except safe_pickle.Refused as e:
        raise CheckpointError(
            f"{path} refused: reading it would call {e.name}, which is not the constructor of plain data, so it "
            "could run code from the file; nothing of it was run. Re-save the checkpoint with "
            "torch.save({'state_dict': model.state_dict(), ...}), or, if you trust the file, pass --allow-unsafe-pickle"
        ) from None
    except safe_pickle.Rejected as e:
        unsafe = " Re-save it with torch.save(model.state_dict(), ...), or, if you trust the file, pass " \
                 "--allow-unsafe-pickle (it is converted to a state_dict at pack time)" if "TorchScript" in str(e) else ""
        raise CheckpointError(f"{path} refused: {e}.{unsafe}") from None
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    modules = safe_pickle.modules_in(obj)
    if modules:
        raise CheckpointError(
            f"{path} holds a whole pickled model ({modules[0]}), which only unsafe unpickling can rebuild: it runs "
            "the model's code from wherever the class lives. Re-save it with torch.save(model.state_dict(), ...), "
            "or, if you trust the file, pass --allow-unsafe-pickle (the weights are then converted to a state_dict "
            "at pack time, so the image never unpickles code)"
        )
    return obj


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None


def _load_unsafe(path: Path, kind: str) -> Any:
    """--allow-unsafe-pickle: full unpickling, or a TorchScript program loaded, both of which run code from the
    file; only the weights go on (a state_dict at pack time)."""
    try:
        if kind == "torchscript":
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
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
        value = obj.get(key)
        if isinstance(value, torch.nn.Module):
            return value.state_dict(), f"{key} (pickled module)"
        if _is_state_dict(value):
            return dict(value), key
    raise CheckpointError(
        f"{path} has no state_dict: its top-level keys are {sorted(map(str, obj))[:12]}; "
        f"expected a bare state_dict or one of {', '.join(EMA_KEYS + STATE_DICT_KEYS)}"
    )


def _read_config(path: Path) -> Any:
    """A training run's YAML or JSON config as plain data: size-bounded, cycles (YAML aliases) made markers."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise safe_pickle.Rejected(f"it holds {path.stat().st_size} bytes, over {MAX_CONFIG_BYTES} for a config")
        text = path.read_text(encoding="utf-8")
        return safe_pickle.plain(json.loads(text) if path.suffix == ".json" else yaml.safe_load(text))
    except (yaml.YAMLError, json.JSONDecodeError, OSError, UnicodeDecodeError, safe_pickle.Rejected) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


def _carried(obj: Any, fold: FoldFile) -> Found:
    """Settings found in the checkpoint (timm args, Lightning hparams, timm's arch key), in args.yaml and in
    timm's Hugging Face config.json; the first source that names a setting wins."""
    layers: list[Found] = []
    if fold.config_file is not None:
        config = _read_config(fold.config_file)
        if isinstance(config, Mapping):
            layers.append(settings_in_hf_config(config, f"{fold.config_file.parent.name}/{fold.config_file.name}"))
    if isinstance(obj, Mapping):
        for key in ("args", "hyper_parameters", "hparams", "config", "cfg"):
            try:
                recorded = safe_pickle.plain(obj.get(key))
            except safe_pickle.Rejected as e:
                raise CheckpointError(f"{fold.path} refused: its {key!r} cannot be read as settings: {e}") from None
            if isinstance(recorded, Mapping):
                layers.append(settings_in(recorded, f"{fold.path.name} {key}"))
    if fold.args_file is not None:
        args = _read_config(fold.args_file)
        if isinstance(args, Mapping):
            layers.append(settings_in(args, str(fold.args_file)))
    if isinstance(obj, Mapping) and isinstance(obj.get("arch"), str):
        layers.append({"arch": (obj["arch"], f"{fold.path.name} [arch]")})
    carried: Found = {}
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
