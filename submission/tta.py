"""TTA views: dihedral transforms of an NCHW batch, stacked so that one forward pass sees every view."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from submission.manifest import TTA_PRESETS

_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "rot180": lambda x: x.rot90(2, (-2, -1)),
    "rot270": lambda x: x.rot90(3, (-2, -1)),
    "transpose": lambda x: x.transpose(-2, -1),
    "antitranspose": lambda x: x.rot90(2, (-2, -1)).transpose(-2, -1),
}


def view(batch: torch.Tensor, name: str) -> torch.Tensor:
    """One named view of an (..., H, W) tensor."""
    return _VIEWS[name](batch)


def views_of(preset: str) -> Sequence[str]:
    return TTA_PRESETS[preset]


def stack_views(batch: torch.Tensor, preset: str | Sequence[str]) -> torch.Tensor:
    """[B, C, H, W] -> [V * B, C, H, W]: view 0 of every image, then view 1, ... (split with ``.view(V, B, ...)``);
    the views of a preset, or the named ones."""
    names = views_of(preset) if isinstance(preset, str) else preset
    if len(names) == 1:
        return batch
    return torch.cat([view(batch, n) for n in names])
