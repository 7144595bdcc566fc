"""A model's forward output -> one [rows, size] logits tensor per head, as the manifest declares the heads.

The output may be a tensor, a tuple or list, or a dict. ``spec.output`` picks one element of a tuple (index) or
dict (key) first. Then a tuple is matched to the heads by position, a dict by head name, and a single tensor is
one head, or several side by side (split by the heads' sizes, in order). A regression model's [rows] output is
one column. The output's arrays are torch tensors (an eager model) or numpy arrays (an engine), and each head's
logits stay of their kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

import numpy as np

from submission.errors import BundleError
from submission.manifest import Head, ModelSpec


def _is_array(value: object) -> bool:
    """A torch tensor or a numpy array: what has a shape and a dimension count."""
    return hasattr(value, "shape") and hasattr(value, "ndim") and not isinstance(value, (str, bytes))


def _as_float(part: Any) -> Any:
    return part.astype(np.float32) if isinstance(part, np.ndarray) else part.float()


def describe(output: object) -> str:
    if _is_array(output):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return "a dict {" + ", ".join(f"{k!r}: {describe(v)}" for k, v in output.items()) + "}"
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of " + ", ".join(describe(v) for v in output)
    return f"a {type(output).__name__}"


def _pick(output: object, spec: ModelSpec) -> object:
    if spec.output is None:
        return output
    try:
        return output[spec.output]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        raise BundleError(f"model {spec.name!r}: output {spec.output!r} cannot be taken from {describe(output)}") from None


def split(output: object, spec: ModelSpec, heads: Sequence[Head], rows: int) -> list[Any]:
    """Float logits of each head, [rows, size]; a BundleError names what the model returned and what was expected."""
    output = _pick(output, spec)
    expected = ", ".join(f"{h.name} [{rows}, {h.size}]" for h in heads)

    def fail() -> BundleError:
        return BundleError(f"model {spec.name!r} returned {describe(output)} for {rows} images; the heads expect "
                           f"{expected}" + ("; choose one output with --model-output" if spec.output is None and
                                            isinstance(output, (tuple, list, Mapping)) and len(heads) == 1 else ""))

    if isinstance(output, Mapping):
        if not all(h.name in output for h in heads):
            raise fail()
        parts = [output[h.name] for h in heads]
    elif isinstance(output, (tuple, list)):
        if len(output) != len(heads):
            raise fail()
        parts = list(output)
    elif _is_array(output):
        if output.ndim == 1 and len(heads) == 1 and heads[0].size == 1:
            output = output[:, None]
        if output.ndim != 2 or output.shape[1] != sum(h.size for h in heads):
            raise fail()
        ends = list(accumulate(h.size for h in heads))
        parts = [output[:, end - head.size:end] for head, end in zip(heads, ends)]
    else:
        raise fail()
    for head, part in zip(heads, parts):
        if not _is_array(part) or tuple(part.shape) != (rows, head.size):
            raise fail()
    return [_as_float(p) for p in parts]
