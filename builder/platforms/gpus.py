"""GPU kinds, their compute capabilities, and whether a torch build can drive them.

A CUDA build carries machine code for some architectures (``sm_75``) and possibly PTX (``compute_90``) that newer
GPUs compile at load. A GPU of capability X.Y runs a build that has ``sm_X.y`` with y <= Y (the same major), or PTX
of capability <= X.Y; otherwise nothing runs ("no kernel image is available"). torch reports its build's list
without a GPU (``torch._C._cuda_getArchFlags()``).
"""

from __future__ import annotations

import re

from builder.errors import ConfigError

CAPABILITY = {  # GPU kind -> compute capability
    "K80": (3, 7), "P100": (6, 0), "P4": (6, 1), "V100": (7, 0), "T4": (7, 5), "A100": (8, 0), "A10": (8, 6),
    "A10G": (8, 6), "A40": (8, 6), "RTX3090": (8, 6), "L4": (8, 9), "RTX4090": (8, 9), "H100": (9, 0), "H200": (9, 0),
}


def arch_list() -> tuple[str, ...]:
    """The architectures the installed torch build carries (the image pins the same build), e.g. ("sm_75", ...)."""
    import torch

    flags = torch._C._cuda_getArchFlags() if hasattr(torch._C, "_cuda_getArchFlags") else ""
    return tuple(flags.split()) if flags else ()


def parse_arch(text: str, name: str, source: str) -> tuple[int, int]:
    """"sm_70", "7.0" or "70" -> (7, 0)."""
    found = re.fullmatch(r"(?:sm_?|compute_)?(\d+?)\.?(\d)", str(text).strip().lower())
    if not found:
        raise ConfigError(f"{name} from {source} is {text!r}; write it as sm_70 (a V100), sm_75 (a T4), sm_80 (an A100)")
    return int(found.group(1)), int(found.group(2))


def check_fit(gpus: dict[str, tuple[int, int]], archs: tuple[str, ...], where: str) -> None:
    """A ConfigError naming each GPU (kind: capability) the build cannot drive, the build's list, and what to do."""
    if not archs:
        return  # a CPU build: it never uses a GPU, there is nothing to misfit
    from submission.devices import drivable  # the runtime's own rule (it imports torch: not at the CLI's start)

    bad = {kind: cap for kind, cap in gpus.items() if not drivable(cap, archs)}
    if bad:
        named = ", ".join(kind if kind.startswith("sm_") else f"{kind} (sm_{major}{minor})"
                          for kind, (major, minor) in bad.items())
        raise ConfigError(
            f"{where} runs on {named}, which the pinned torch build cannot drive: it carries {' '.join(archs)}. Pack "
            "with a torch build for an older CUDA that lists that architecture (install it here: the image pins the "
            "host's build), or pass --devices cpu to run on the CPU knowingly"
        )
