"""TTA views: dihedral transforms of an NCHW batch, stacked so that one forward pass sees every view.

A batch is a numpy array (the engines' input, made on the host) or a torch tensor (eager models' input, on their
device); each view is the same rearrangement of pixels in either, so the two give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from submission.manifest import TTA_PRESETS


def _flip(x: Any, axis: int) -> Any:
    return np.flip(x, axis) if isinstance(x, np.ndarray) else x.flip(axis)


def _rot90(x: Any, k: int) -> Any:
    return np.rot90(x, k, (-2, -1)) if isinstance(x, np.ndarray) else x.rot90(k, (-2, -1))


def _transpose(x: Any) -> Any:
    return np.swapaxes(x, -2, -1) if isinstance(x, np.ndarray) else x.transpose(-2, -1)


_VIEWS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda x: x,
    "hflip": lambda x: _flip(x, -1),
    "vflip": lambda x: _flip(x, -2),
    "rot90": lambda x: _rot90(x, 1),
    "rot180": lambda x: _rot90(x, 2),
    "rot270": lambda x: _rot90(x, 3),
    "transpose": _transpose,
    "antitranspose": lambda x: _transpose(_rot90(x, 2)),
}


def view(batch: Any, name: str) -> Any:
    """One named view of an (..., H, W) array or tensor."""
    return _VIEWS[name](batch)


def views_of(preset: str) -> Sequence[str]:
    return TTA_PRESETS[preset]


def stack_views(batch: Any, preset: str | Sequence[str]) -> Any:
    """[B, C, H, W] -> [V * B, C, H, W]: view 0 of every image, then view 1, ... (split with ``.reshape(V, B, ...)``);
    the views of a preset, or the named ones."""
    names = views_of(preset) if isinstance(preset, str) else preset
    if len(names) == 1:
        return view(batch, names[0])
    if isinstance(batch, np.ndarray):
        return np.concatenate([view(batch, n) for n in names])
    import torch  # a tensor's views: torch is there

    return torch.cat([view(batch, n) for n in names])
