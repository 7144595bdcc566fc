"""The runtime in someone else's environment: a code platform (Kaggle, Codabench, DrivenData, Dacon) runs an export of the
bundle with its own Python, torch and timm. The export holds this package, the bundle, the versions it was packed
with (``PINS``) and a check of its own: a few images and the probabilities the packing run gave them (``CHECK``).

At start, before any CSV is written, the versions found are compared with the pins and each difference is said;
then the check's images are predicted here and compared with the packing run's probabilities. A difference that
changes a model's definition or its preprocessing fails there, with the largest difference, instead of writing a
wrong CSV; then the run goes on as ``python -m submission`` does, with the arguments given (none: the platform's
paths, as packed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from submission import __main__ as command
from submission.errors import BundleError, SubmissionError
from submission.notebook import installed_version
from submission.runner import Options, probabilities

BUNDLE = "bundle"  # the export's model/ folder holds the bundle, this package, the pins and the check
PINS = "pins.json"  # {distribution: version} of the packing environment
CHECK = "check"  # images/, probabilities.json: {"ids": [...], "probabilities": [[...], ...]}, and the metadata
CHECK_METADATA = "metadata.csv"  # in CHECK: the images' metadata rows, for models that take metadata
TOLERANCE = 1e-4  # the largest probability difference the check allows (the engines' gate uses the same)


def version_differences(pins: dict[str, str]) -> list[str]:
    """"timm 1.0.20 here, packed with 1.0.31" for each pinned distribution whose version here differs."""
    found = []
    for name, packed in sorted(pins.items()):
        here = installed_version(name)
        if here != packed:
            found.append(f"{name} {here or 'not installed'} here, packed with {packed}")
    return found


def check(model: Path, differences: list[str]) -> float:
    """The check's images predicted here against the packing run's probabilities: the largest difference; over
    ``TOLERANCE``, a ``BundleError`` that names it and the versions that differ."""
    recorded = json.loads((model / CHECK / "probabilities.json").read_text())
    metadata = model / CHECK / CHECK_METADATA
    ids, probs = probabilities(model / CHECK / "images", model / BUNDLE,
                               Options(ignore_sample=True, quiet=True, workers=0, devices="cpu",
                                       metadata=metadata if metadata.is_file() else None))
    if ids != recorded["ids"]:
        raise BundleError(f"the check's images are {ids}, its probabilities are of {recorded['ids']}: export again")
    largest = float(np.max(np.abs(probs - np.asarray(recorded["probabilities"], dtype=np.float64))))
    if largest > TOLERANCE:
        why = "; ".join(differences) if differences else "no pinned version differs (another library, or the hardware)"
        raise BundleError(
            f"this environment predicts the bundle's own {len(ids)} check images differently from the packing run: "
            f"largest probability difference {largest:.2e} (tolerance {TOLERANCE:g}); versions: {why}. No CSV was "
            "written: install the packed versions (the export's requirements) or pack in this environment")
    return largest


def main(model: Path, argv: list[str]) -> int:
    """The versions compared, the check run, then ``python -m submission`` with ``argv`` on the export's bundle."""
    try:
        differences = version_differences(json.loads((model / PINS).read_text()))
        for line in differences:
            print(f"warning: {line}", file=sys.stderr, flush=True)
        largest = check(model, differences)
        print(f"check: the bundle's {CHECK} images as at packing (largest probability difference {largest:.1e})",
              file=sys.stderr, flush=True)
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return command.main([*argv, "--bundle", str(model / BUNDLE)])


if __name__ == "__main__":  # python -m submission.hosted, with the export's model/ folder on the path
    raise SystemExit(main(Path(__file__).resolve().parents[1], sys.argv[1:]))
