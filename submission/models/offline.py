"""Constructing a model without the network or a download cache: pretrained-weight loading is intercepted.

Competition code builds its model the way it trained it: ``timm.create_model(name, pretrained=True)``,
``torchvision.models.efficientnet_b7(weights=...)``, ``torch.hub.load(...)``, ``model_zoo.load_url(...)``. Every
one of those weights is overwritten a moment later by the fold's checkpoint, loaded strictly, so while a factory
runs (``no_downloads``):

- timm's pretrained loading (any source) and ``checkpoint_path`` are skipped;
- ``torch.hub.load_state_dict_from_url`` (and its aliases: ``model_zoo.load_url``, torchvision's weights) returns
  a stand-in that fits whatever model it is loaded into, minus the keys the code removes from it;
- ``torch.hub.load`` of ``pytorch/vision`` builds the torchvision model; other hub repositories need their code
  frozen with the model code instead (a named error);
- ``huggingface_hub`` downloads and ``torch.hub.download_url_to_file`` are refused with a named error;
- torch's and Hugging Face's caches point at an empty folder, so no earlier download is read either.

Every request is recorded, so ``builder pack`` can say which weights a constructor asked for.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import timm  # noqa: F401  (its download entry points must be imported to be patched)
import torch
import torchvision

from submission.errors import BundleError

_ORIGINAL_LOAD_STATE_DICT = torch.nn.Module.load_state_dict


class Downloaded(dict):
    """Stands in for a state_dict that a constructor downloads: loading it into a module is a no-op that reports
    as missing only the keys the code removed from it (as if the download fitted the module exactly)."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source
        self.removed: set[str] = set()

    def pop(self, key: Any, *default: Any) -> Any:
        self.removed.add(key)
        return default[0] if default else None

    def __delitem__(self, key: Any) -> None:
        self.removed.add(key)


def _load_state_dict(module: torch.nn.Module, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
    if not isinstance(state_dict, Downloaded):
        return _ORIGINAL_LOAD_STATE_DICT(module, state_dict, strict=strict, assign=assign)
    missing = [k for k in module.state_dict() if k in state_dict.removed]
    if strict and missing:
        raise RuntimeError(f"Error(s) in loading state_dict for {type(module).__name__}: Missing key(s) {missing}")
    return torch.nn.modules.module._IncompatibleKeys(missing, [])


def _patches(asked: list[str]) -> dict[tuple[str, str], Callable[..., Any]]:
    """(module, attribute) -> replacement, for every download entry point that is importable here."""

    def from_url(url: str, *args: Any, **kwargs: Any) -> Downloaded:
        asked.append(f"weights from {url}")
        return Downloaded(url)

    def timm_pretrained(model: torch.nn.Module, pretrained_cfg: Any = None, *args: Any, **kwargs: Any) -> None:
        cfg = pretrained_cfg if isinstance(pretrained_cfg, dict) else getattr(model, "pretrained_cfg", None) or {}
        name = cfg.get("hf_hub_id") or cfg.get("architecture") or type(model).__name__
        tag = f".{cfg['tag']}" if cfg.get("tag") and "." not in str(name) else ""
        asked.append(f"timm pretrained weights of {name}{tag}")

    def timm_checkpoint(model: torch.nn.Module, checkpoint_path: str, *args: Any, **kwargs: Any) -> None:
        asked.append(f"timm checkpoint_path {checkpoint_path}")

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            target = " ".join(str(a) for a in args[:2])
            raise BundleError(
                f"the model's constructor asks for {what} {target!r}, which needs the network and cannot be stood in "
                "for (it is code or configuration, not weights): build the model from code and settings in your "
                "model code instead"
            )
        return refused

    def hub_load(repo_or_dir: str, model: str, *args: Any, source: str = "github", **kwargs: Any) -> Any:
        if source != "local" and str(repo_or_dir).split(":")[0] == "pytorch/vision":
            for key in ("trust_repo", "force_reload", "verbose", "skip_validation"):
                kwargs.pop(key, None)
            asked.append(f"torch.hub.load('{repo_or_dir}', '{model}') built from the installed torchvision")
            return getattr(torchvision.models, model)(*args, **kwargs)
        if source == "local":
            return original_hub_load(repo_or_dir, model, *args, source=source, **kwargs)
        raise BundleError(
            f"the model's constructor calls torch.hub.load({repo_or_dir!r}, {model!r}), which downloads that "
            "repository's code: copy the repository's model code into your model code folder and build the model "
            "from it (its weights come from the checkpoint)"
        )

    original_hub_load = torch.hub.load
    patches: dict[tuple[str, str], Callable[..., Any]] = {
        ("torch.hub", "load_state_dict_from_url"): from_url,
        ("torch.hub", "download_url_to_file"): refuse("a download of"),
        ("torch.hub", "load"): hub_load,
        ("timm.models._builder", "load_pretrained"): timm_pretrained,
        ("timm.models._builder", "load_custom_pretrained"): timm_pretrained,
        ("timm.models._factory", "load_checkpoint"): timm_checkpoint,
        ("timm.models._hub", "load_model_config_from_hf"): refuse("the Hugging Face Hub config of"),
        ("huggingface_hub", "hf_hub_download"): refuse("a Hugging Face Hub download of"),
        ("huggingface_hub", "snapshot_download"): refuse("a Hugging Face Hub download of"),
    }
    return {key: value for key, value in patches.items() if key[0] in sys.modules}


def _rebind(old: Any, new: Any) -> None:
    """Point every module-level name bound to ``old`` at ``new`` (``from torch.hub import load_state_dict_from_url``
    bound it in many modules)."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if value is old:
                namespace[name] = new


@contextlib.contextmanager
def no_downloads() -> Iterator[list[str]]:
    """Within: pretrained-weight downloads are stood in for and recorded in the yielded list; other downloads
    are refused; the torch and Hugging Face caches are an empty folder."""
    asked: list[str] = []
    patches = _patches(asked)
    originals = {key: getattr(sys.modules[key[0]], key[1]) for key in patches}
    saved_env = {k: os.environ.get(k) for k in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    with tempfile.TemporaryDirectory(prefix="no-downloads-") as empty:
        os.environ.update(TORCH_HOME=empty, HF_HOME=empty, HF_HUB_CACHE=empty, HF_HUB_OFFLINE="1")
        for key, new in patches.items():
            _rebind(originals[key], new)
        torch.nn.Module.load_state_dict = _load_state_dict
        try:
            yield asked
        finally:
            torch.nn.Module.load_state_dict = _ORIGINAL_LOAD_STATE_DICT
            for key, new in patches.items():
                _rebind(new, originals[key])
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
