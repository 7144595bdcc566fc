"""The platforms the image (or the export) is made for: one profile module each, registered here.

``PLATFORMS`` maps a name to its profile; adding a platform is one module and one line below.
"""

from __future__ import annotations

from builder.errors import ConfigError
from builder.platforms import (
    aicrowd,
    aisg,
    codabench,
    dacon,
    drivendata,
    evalai,
    generic,
    grand_challenge,
    kaggle,
)
from builder.platforms.base import Limits, Platform, Sandbox

PLATFORMS: dict[str, Platform] = {}


def register(platform: Platform) -> Platform:
    PLATFORMS[platform.name] = platform
    return platform


for _module in (generic, evalai, aisg, grand_challenge, aicrowd, kaggle, codabench, drivendata, dacon):
    register(_module.PLATFORM)


def get(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ConfigError(f"unknown platform {name!r}; expected one of: {', '.join(PLATFORMS)}") from None


__all__ = ["PLATFORMS", "Limits", "Platform", "Sandbox", "get", "register"]
