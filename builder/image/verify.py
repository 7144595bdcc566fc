"""An image in the engine + the image its inputs make -> whether they are exactly the same, and where not, the
first layer (or config field) that differs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from builder.image.layers import ImageSpec


@dataclass(frozen=True)
class Verdict:
    image: str  # as the user named it
    actual_id: str
    expected_id: str
    difference: str | None  # the first layer or config field that differs; None: the very image

    @property
    def same(self) -> bool:
        return self.actual_id == self.expected_id


def compare(image: str, attrs: Mapping[str, Any], expected: ImageSpec, names: Sequence[str]) -> Verdict:
    """Compare the engine's ``attrs`` of ``image`` with ``expected``, whose layers ``names`` names bottom first."""
    actual = ImageSpec.of(attrs)
    difference = None
    if attrs["Id"] != expected.id:
        difference = _first_difference(actual, expected, names)
    return Verdict(image, attrs["Id"], expected.id, difference)


def _first_difference(actual: ImageSpec, expected: ImageSpec, names: Sequence[str]) -> str:
    for i, (have, want) in enumerate(zip(actual.diff_ids, expected.diff_ids)):
        if have != want:
            return f"layer {i + 1} of {len(expected.diff_ids)} ({names[i]}): the image has {have}, the inputs make {want}"
    if len(actual.diff_ids) != len(expected.diff_ids):
        return f"the image has {len(actual.diff_ids)} layers, the inputs make {len(expected.diff_ids)}"
    for key in sorted(set(actual.config) | set(expected.config)):
        have, want = actual.config.get(key), expected.config.get(key)
        if have == want:
            continue
        if isinstance(have, dict) and isinstance(want, dict):
            for label in sorted(set(have) | set(want)):
                if have.get(label) != want.get(label):
                    return f"config {key} {label}: the image has {have.get(label)!r}, the inputs make {want.get(label)!r}"
        return f"config {key}: the image has {have!r}, the inputs make {want!r}"
    return "the config differs in a field the builder does not write (architecture, os, created or history)"
