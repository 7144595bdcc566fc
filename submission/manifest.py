"""The bundle contract: ``manifest.json`` as frozen dataclasses, written by ``builder pack``, read by the runtime.

Every setting the runtime uses is in the manifest; reading it requires every field, so nothing falls back to
a default in code that could differ between pack time and run time. Values are validated when the
dataclasses are built, so a bad bundle fails at pack time, not on the leaderboard.

Schema version 5: a model is a timm architecture or the user's code (files frozen in the bundle and a factory);
its outputs are one or several heads; images may come with metadata features; a model's preprocessing may start
with the user's own function; the entry says how the image is run on its platform; a model's forward pass may run on
an exported engine (ONNX Runtime, OpenVINO) that passed an equivalence gate at pack time; a deadline and the order in
which a late run gives up views and models. Version 1 bundles (timm
models, one head), version 2 bundles (no preprocessing function), version 3 bundles (no entry: the generic one) and
version 4 bundles (every model on torch, no deadline) are upgraded when read.

The output formats sit below this contract: ``submission.formats`` reads a manifest through a protocol and imports
nothing of this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from submission import formats
from submission.atomic import atomic_path
from submission.errors import BundleError

SCHEMA_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)  # versions 1 to 4 are upgraded when read
MANIFEST_NAME = "manifest.json"
IMAGE_BUNDLE_DIR = "/opt/submission/bundle"  # where the bundle lies inside the submission image

TASKS = ("multiclass", "multilabel", "regression")  # softmax per head, sigmoid per output, the raw value
# TTA preset -> the views it averages; a view is a dihedral transform of the (H, W) plane.
TTA_PRESETS = {
    "none": ("identity",),
    "hflip": ("identity", "hflip"),
    "vflip": ("identity", "vflip"),
    "flips": ("identity", "hflip", "vflip", "rot180"),
    "d4": ("identity", "rot90", "rot180", "rot270", "hflip", "vflip", "transpose", "antitranspose"),
}
ROTATING_VIEWS = frozenset({"rot90", "rot270", "transpose", "antitranspose"})  # swap height and width
MERGE_MODES = ("mean", "gmean", "logits", "rank")  # rank: percentile ranks over the whole test set, averaged
DECODE_MODES = ("exact", "fast")  # fast: libjpeg decodes a large JPEG at 1/2, 1/4 or 1/8 scale before the resize
MODEL_SOURCES = ("timm", "code")  # timm.create_model, or the user's code frozen in the bundle
# what may run a model's forward pass -> the package that does: eager PyTorch, or the model exported to ONNX
ENGINES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}
METADATA_KINDS = ("categorical", "numeric", "count")
TIMM_RESERVED = ("pretrained", "pretrained_cfg_overlay", "checkpoint_path")  # timm kwargs the manifest may not set
CROP_MODES = ("center", "squash", "border")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
LABEL_AS = ("name", "index")
ENTRY_MODES = ("folder", "stream", "case")  # a folder -> a file; image paths on stdin -> lines; one case -> JSON
DEVICES = ("all", "cpu")  # the devices the image uses when none are asked for

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise BundleError(message)


def _choice(name: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = tuple(choices)
    _require(value in choices, f"{name} is {value!r}; expected one of: {', '.join(choices)}")


@dataclass(frozen=True)
class FileRef:
    path: str  # POSIX path relative to the bundle root, e.g. "weights/fold0.safetensors"
    sha256: str  # hex digest of the file's bytes, checked before the runtime uses the file

    def __post_init__(self) -> None:
        p = PurePosixPath(self.path)
        _require(
            bool(self.path) and not p.is_absolute() and ".." not in p.parts and "\\" not in self.path,
            f"file path {self.path!r} must be relative and stay inside the bundle",
        )
        _require(bool(_SHA256.fullmatch(self.sha256)), f"sha256 of {self.path!r} is not 64 lowercase hex digits")


@dataclass(frozen=True)
class Code:
    """The user's model code (or metadata encoder), frozen in the bundle and imported from there."""

    files: tuple[FileRef, ...]  # every file of the module or package, each with its sha256
    root: str  # the bundle folder the files' import paths start from, e.g. "code/3f2a9c0d1e2b4a5f"
    module: str  # the module to import from root, e.g. "model" or "mypkg.models"
    attribute: str  # what to call in that module: a function or a class, e.g. "build", "Net"

    def __post_init__(self) -> None:
        _require(bool(self.files), f"code {self.module!r} has no files")
        _require(all(f.path.startswith(self.root + "/") for f in self.files),
                 f"code files must lie under its root {self.root!r}")
        _require(bool(self.module) and bool(self.attribute), "code needs a module and an attribute")


@dataclass(frozen=True)
class Preprocess:
    input_size: tuple[int, int, int]  # (channels, height, width) of the model input; channels is 3 (RGB)
    crop_mode: str  # timm eval crop: "center" (shorter side to size/crop_pct, centre crop), "squash"
    # (both sides to size/crop_pct, centre crop; crop_pct 1.0 is a plain resize to H x W), "border"
    # (longer side to size/crop_pct, centre crop or pad with the mean colour)
    crop_pct: float  # fraction of the resized image the crop keeps, in (0, 1]
    interpolation: str  # PIL resampling filter used by the resize
    mean: tuple[float, float, float]  # per-channel mean of pixels scaled to [0, 1]
    std: tuple[float, float, float]  # per-channel std of pixels scaled to [0, 1]
    albumentations: dict[str, Any] | None = None  # A.to_dict() of an eval transform that replaces resize
    # and normalisation: applied as saved to the RGB uint8 array, its output is the model input
    function: Code | None = None  # the user's function, called once on each decoded image before the resize
    # (or albumentations): (H, W, 3) uint8 RGB array -> array, or PIL image -> PIL image

    def __post_init__(self) -> None:
        c, h, w = self.input_size
        _require(c == 3, f"input_size {self.input_size}: only 3-channel (RGB) models are supported")
        _require(h > 0 and w > 0, f"input_size {self.input_size}: height and width must be positive")
        _choice("crop_mode", self.crop_mode, CROP_MODES)
        _require(0.0 < self.crop_pct <= 1.0, f"crop_pct is {self.crop_pct}; expected a value in (0, 1]")
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _require(all(s > 0 for s in self.std), f"std {self.std} must be positive")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self.input_size[1], self.input_size[2]


@dataclass(frozen=True)
class ModelSpec:
    name: str  # fold name used in logs and errors, e.g. "fold0"
    source: str  # "timm": timm.create_model(arch, pretrained=False, **kwargs); "code": code's factory(**kwargs)
    arch: str  # timm: the model name; code: how the user named the factory ("model.py:build"), for people
    code: Code | None  # the frozen factory (source "code"), else None
    kwargs: dict[str, Any]  # keyword arguments of timm.create_model (num_classes included) or of the factory
    output: str | int | None  # which output of forward() the heads come from, when it returns a tuple or dict
    takes_metadata: bool  # forward(image, meta): the model also takes the image's metadata features
    weights: FileRef  # safetensors state_dict, loaded with strict=True
    weight: float  # ensemble weight, > 0; weights are normalised over the models
    preprocess: Preprocess
    engine: str = "torch"  # what runs the forward pass: "torch", or "onnx" / "openvino" on the exported graph
    exported: FileRef | None = None  # the ONNX graph (its heads side by side, [batch, outputs]) an engine runs
    gate: dict[str, Any] = field(default_factory=dict)  # the equivalence gate's figures at pack time (engines only)

    def __post_init__(self) -> None:
        _require(bool(self.name), "model name must not be empty")
        _choice(f"model {self.name!r}: engine", self.engine, tuple(ENGINES))
        _require((self.exported is not None) == (self.engine != "torch"),
                 f"model {self.name!r}: an exported graph goes with an engine other than torch, and only with it")
        _choice(f"model {self.name!r}: source", self.source, MODEL_SOURCES)
        _require(bool(self.arch), f"model {self.name!r}: arch must not be empty")
        _require((self.code is not None) == (self.source == "code"),
                 f"model {self.name!r}: code goes with source 'code', and only with it")
        _require(self.weight > 0, f"model {self.name!r}: ensemble weight must be positive, got {self.weight}")
        if self.source == "timm":
            reserved = set(TIMM_RESERVED) & set(self.kwargs)
            _require(not reserved, f"model {self.name!r}: kwargs may not set {', '.join(sorted(reserved))}")


@dataclass(frozen=True)
class Head:
    name: str  # e.g. "mask"; a single-head model's head is named "output"
    size: int  # outputs of this head


@dataclass(frozen=True)
class MetaColumn:
    name: str  # the metadata CSV's column (for "count": the column whose equal values form a group)
    kind: str  # "categorical" (one-hot), "numeric" (one number), "count" (rows of the image's group in the file)
    categories: tuple[str, ...]  # categorical: the one-hot vocabulary, in feature order; an unknown value is all 0
    fill: float  # numeric: the value of a blank cell (before log1p, shift and scale)
    log1p: bool  # numeric and count: log(1 + x) first
    shift: float  # numeric and count: subtracted next (a mean; 0 for none)
    scale: float  # numeric and count: divided by last (a std, or 90 for an age; 1 for none)

    def __post_init__(self) -> None:
        _choice(f"metadata column {self.name!r}: kind", self.kind, METADATA_KINDS)
        _require(self.kind != "categorical" or bool(self.categories),
                 f"metadata column {self.name!r}: a categorical column needs its categories")
        _require(self.scale != 0, f"metadata column {self.name!r}: scale must not be 0")

    @property
    def width(self) -> int:
        return len(self.categories) if self.kind == "categorical" else 1


@dataclass(frozen=True)
class Metadata:
    file: str | None  # the metadata CSV's default path, relative to the test folder (e.g. "test.csv")
    id_column: str  # the column holding each row's image id (the sample submission's id rules apply)
    columns: tuple[MetaColumn, ...]  # the declared encoding, in the model's feature order (empty with an encoder)
    encoder: Code | None  # the user's function: every row of the file as a DataFrame (+ "path") -> [N, width]
    width: int | None  # features per image; None: an encoder's, known once it has run on the metadata file

    def __post_init__(self) -> None:
        _require((self.encoder is None) != (not self.columns), "metadata needs either declared columns or an encoder")
        if self.columns:
            declared = sum(c.width for c in self.columns)
            _require(declared == self.width, f"metadata columns give {declared} features, but width is {self.width}")
        _require(self.width is None or self.width > 0, "metadata width must be positive")
        _require(self.width is not None or self.encoder is not None, "declared metadata columns have a width")


@dataclass(frozen=True)
class Decision:
    thresholds: tuple[float, ...]  # multilabel: one threshold per class, in class order; multiclass: empty
    at_least_one: bool  # multilabel: a row where no class reaches its threshold gets its most probable class
    top_k: int  # how many class names the "labels" format writes for multiclass (most probable first); 1 otherwise
    positive_class: str | None  # "binary" format of a multiclass task: the class whose probability is written
    cutoffs: tuple[float, ...]  # regression: grade = how many cutoffs the value reaches; () writes the value itself
    new_class: str | None  # top-k: a class name inserted where the next probability falls below new_threshold
    new_threshold: float | None


@dataclass(frozen=True)
class Output:
    format: str  # a registered output format (``submission.formats.FORMATS``)
    id_column: str  # name of the id column
    columns: tuple[str, ...]  # the CSV header in order: the id column, then the label column or one per class
    label_as: str  # "name" or "index": what label cells hold (class name, or its position in classes)
    decimals: int  # digits after the decimal point in probability cells

    def __post_init__(self) -> None:
        _choice("output format", self.format, formats.FORMATS)
        _choice("label_as", self.label_as, LABEL_AS)
        _require(bool(self.id_column), "id_column must not be empty")
        _require(
            len(self.columns) >= 2 and self.columns[0] == self.id_column,
            f"columns {list(self.columns)} must start with the id column {self.id_column!r} and have at least one more",
        )
        _require(len(set(self.columns)) == len(self.columns), f"columns {list(self.columns)} repeat a name")
        _require(0 <= self.decimals <= 12, f"decimals is {self.decimals}; expected 0 to 12")


@dataclass(frozen=True)
class Entry:
    """How the image is run on its platform, with no arguments: where the input is, what it writes where."""

    platform: str  # the platform it was packed for ("generic", "evalai", "aisg", ...), for messages
    mode: str  # "folder": every image of a folder -> one file; "stream": image paths on stdin -> one line each on
    # stdout, in input order; "case": the one image of a case folder -> one JSON value
    input: str  # the test folder when none is given; $VAR and ${VAR:-default} are expanded at run time
    output: str  # the file written when --out is not given, expanded likewise ("-": stdout)
    metadata: str | None  # the metadata CSV when --metadata is not given, expanded (empty after expansion: none)
    weights: str | None  # the folder holding the bundle's weights/ when the image holds none (a model tarball)
    line: str | None  # stream mode: one answer line, a template over {proba} and {label}: "{proba:.4f}\t{label}"
    devices: str  # "all" (every GPU it can drive, else the CPU) or "cpu", when --devices is not given

    def __post_init__(self) -> None:
        _choice("entry mode", self.mode, ENTRY_MODES)
        _choice("entry devices", self.devices, DEVICES)
        _require(bool(self.input) and bool(self.output), "the entry needs an input and an output")
        _require((self.mode == "stream") == (self.line is not None), "a line template goes with stream mode, only")
        if self.line is not None:
            try:
                self.line.format(proba=0.5, label=1)
            except (KeyError, IndexError, ValueError) as e:
                raise BundleError(f"the entry's line template {self.line!r} is not a template of proba and label: "
                                  f"{e}") from None
        _require(self.weights is None or self.weights.startswith("/"), "the entry's weights folder must be absolute")


_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def expand(text: str, environ: typing.Mapping[str, str]) -> str:
    """An entry path with ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` expanded as a shell expands them (the default
    where the variable is unset or empty)."""
    def one(found: re.Match) -> str:
        value = environ.get(found.group(1) or found.group(3), "")
        return value or (found.group(2) or "")
    return _VARIABLE.sub(one, text)


@dataclass(frozen=True)
class Deadline:
    """The watchdog's defaults: by when a run must have written its file, and what it gives up first when late."""

    seconds: float | None  # from the runtime's start (None: no deadline unless --deadline gives one)
    drop_order: tuple[str, ...]  # "view:hflip", "model:fold4": dropped in this order for the batches left

    def __post_init__(self) -> None:
        _require(self.seconds is None or self.seconds > 0, f"deadline seconds is {self.seconds}; expected > 0")
        _require(len(set(self.drop_order)) == len(self.drop_order), f"drop_order repeats: {_repeated(self.drop_order)}")
        for item in self.drop_order:
            _require(item.partition(":")[0] in ("view", "model") and bool(item.partition(":")[2]),
                     f"drop_order item {item!r} is neither 'view:NAME' nor 'model:NAME'")


GENERIC_ENTRY = Entry(platform="generic", mode="folder", input="/data", output="/output/submission.csv",
                      metadata=None, weights=None, line=None, devices="all")


@dataclass(frozen=True)
class Manifest:
    schema_version: int  # version of this contract; the runtime refuses any other
    task: str  # "multiclass" (softmax, one class per image) or "multilabel" (sigmoid, any number)
    classes: tuple[str, ...]  # class names in the order of the probabilities the heads combine into
    heads: tuple[Head, ...]  # what every model outputs; several heads combine into the classes: multiclass by
    # product (first head most significant: class = mask*6 + gender*3 + age), multilabel by concatenation
    models: tuple[ModelSpec, ...]  # the ensemble: every fold of every architecture
    tta: str  # TTA preset name (see TTA_PRESETS)
    merge: str  # "mean" of probabilities, "gmean" (geometric mean), "logits" (mean of logits, then activation)
    decode: str  # "exact", or "fast": a JPEG over twice the largest resize target is decoded at reduced scale
    decision: Decision
    output: Output
    sample_submission: FileRef | None  # the competition's sample: the output follows its rows' order
    metadata: Metadata | None  # per-image features from a CSV beside the images (None: images only)
    requirements: tuple[str, ...]  # "name==version" the user's code needs beyond the runtime's own packages
    entry: Entry = GENERIC_ENTRY  # how the image is run on its platform
    deadline: Deadline | None = None  # the watchdog's defaults (None: no deadline, the default drop order)
    provenance: dict[str, Any] = field(default_factory=dict)  # where each setting came from, builder version:
    # written by the builder for people, never read by the runtime

    def __post_init__(self) -> None:
        _require(
            self.schema_version == SCHEMA_VERSION,
            f"schema_version is {self.schema_version}; this runtime reads {SCHEMA_VERSION}",
        )
        _choice("task", self.task, TASKS)
        n = len(self.classes)
        _require(n > 0, "classes must not be empty")
        _require(all(isinstance(c, str) and c for c in self.classes), "class names must be non-empty strings")
        _require(len(set(self.classes)) == n, f"class names repeat: {_repeated(self.classes)}")
        _require(len(self.models) > 0, "models must not be empty")
        _require(len({m.name for m in self.models}) == len(self.models), "model names repeat")
        _require(
            len({m.weights.path for m in self.models}) == len(self.models), "two models share one weights file"
        )
        _require(len(self.heads) > 0 and all(h.size > 0 for h in self.heads), "heads must be one or more, each of size > 0")
        _require(len({h.name for h in self.heads}) == len(self.heads), "head names repeat")
        _require(self.class_count == n, f"the heads {[(h.name, h.size) for h in self.heads]} give {self.class_count} "
                                        f"{self.task} classes, but there are {n} class names")
        needs = [m.name for m in self.models if m.takes_metadata]
        _require(not needs or self.metadata is not None, f"models {needs} take metadata, but the manifest declares none")
        _choice("tta", self.tta, TTA_PRESETS)
        if ROTATING_VIEWS & set(TTA_PRESETS[self.tta]):
            for m in self.models:
                h, w = m.preprocess.size
                _require(h == w, f"tta {self.tta!r} rotates images, but model {m.name!r} takes {h}x{w} (not square)")
        _choice("merge", self.merge, MERGE_MODES)
        _choice("decode", self.decode, DECODE_MODES)
        if self.decode == "fast":
            own = [m.name for m in self.models if m.preprocess.albumentations is not None or m.preprocess.function]
            _require(not own, f"decode 'fast' shrinks JPEGs before timm's resize, but models {own} use an "
                              "albumentations transform or their own preprocessing, which sees the image as decoded; "
                              "use decode 'exact'")
        self._check_decision()
        self._check_output()
        self._check_deadline()

    def _check_deadline(self) -> None:
        if self.deadline is None:
            return
        views, names = TTA_PRESETS[self.tta], [m.name for m in self.models]
        for item in self.deadline.drop_order:
            kind, _, name = item.partition(":")
            known = views[1:] if kind == "view" else names
            _require(name in known, f"drop_order names {item!r}, but the {kind}s that may be dropped are {list(known)}"
                                    + (" (the first view is always kept)" if kind == "view" else ""))
        dropped = [i for i in self.deadline.drop_order if i.startswith("model:")]
        _require(len(dropped) < len(names), "drop_order drops every model; one must stay")
        _require(self.deadline.seconds is None or self.merge != "rank",
                 "a deadline cannot drop work under merge 'rank' (ranks are taken over the whole test set)")

    def drop_order(self) -> tuple[str, ...]:
        """What a late run gives up, in order: the manifest's, or else the views from the last to the second, then
        the models from the lightest (the last of equal weight first) to the second heaviest."""
        if self.deadline is not None and self.deadline.drop_order:
            return self.deadline.drop_order
        views = [f"view:{v}" for v in reversed(TTA_PRESETS[self.tta][1:])]
        order = sorted(range(len(self.models)), key=lambda i: (self.models[i].weight, -i))
        return tuple(views + [f"model:{self.models[i].name}" for i in order[:-1]])

    def _check_decision(self) -> None:
        d, n = self.decision, len(self.classes)
        if self.task == "multilabel":
            _require(len(d.thresholds) == n, f"{len(d.thresholds)} thresholds given for {n} classes")
            _require(all(0.0 <= t <= 1.0 for t in d.thresholds), "thresholds must lie in [0, 1]")
        else:
            _require(not d.thresholds, "thresholds apply to multilabel tasks only")
            _require(not d.at_least_one, "at_least_one applies to multilabel tasks only")
        _require(1 <= d.top_k <= n + (d.new_class is not None), f"top_k is {d.top_k}; expected 1 to {n}")
        _require(d.positive_class is None or d.positive_class in self.classes,
                 f"positive_class {d.positive_class!r} is not one of the classes {list(self.classes)}")
        _require(list(d.cutoffs) == sorted(d.cutoffs), f"cutoffs {list(d.cutoffs)} must be in increasing order")
        _require(not d.cutoffs or self.task == "regression", "cutoffs apply to regression tasks only")
        _require((d.new_class is None) == (d.new_threshold is None), "new_class and new_threshold go together")
        if self.task == "regression":
            _require(self.class_count == 1, f"a regression model has one output, not {self.class_count}")
            _require(self.merge in ("mean", "logits"), f"merge {self.merge!r} does not apply to regression; use mean")
        if self.merge == "rank":
            _require(len(self.heads) == 1, "merge 'rank' ranks one head's probabilities; the models have several heads")

    def _check_output(self) -> None:
        spec = formats.get(self.output.format)
        _require(
            self.task in spec.tasks,
            f"output format {spec.name!r} does not fit a {self.task} task; use one of: "
            + ", ".join(name for name, f in formats.FORMATS.items() if self.task in f.tasks),
        )
        problem = spec.check_manifest(self)
        _require(problem is None, problem or "")

    @property
    def class_count(self) -> int:
        """The classes the heads combine into: the product of their sizes (multiclass), else their sum."""
        sizes = [h.size for h in self.heads]
        return math.prod(sizes) if self.task == "multiclass" else sum(sizes)

    @property
    def files(self) -> tuple[FileRef, ...]:
        """Every file of the bundle besides manifest.json (a file shared by several models is listed once)."""
        refs = [m.weights for m in self.models]
        refs += [m.exported for m in self.models if m.exported is not None]
        refs += [f for m in self.models if m.code is not None for f in m.code.files]
        refs += [f for m in self.models if m.preprocess.function is not None for f in m.preprocess.function.files]
        if self.metadata is not None and self.metadata.encoder is not None:
            refs += list(self.metadata.encoder.files)
        if self.sample_submission is not None:
            refs.append(self.sample_submission)
        return tuple({r.path: r for r in refs}.values())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON text: fixed key order, so the same manifest always gives the same bytes."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise BundleError("manifest must be a JSON object")
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise BundleError(
                f"manifest schema_version is {version!r}, but this runtime reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; pack the bundle again with the builder that matches this runtime"
            )
        if version == 1:
            data = _upgrade_v1(data)
        if data.get("schema_version") == 2:
            data = _upgrade_v2(data)
        if data.get("schema_version") == 3:
            data = {**data, "schema_version": 4, "entry": dataclasses.asdict(GENERIC_ENTRY)}
        if data.get("schema_version") == 4:
            data = _upgrade_v4(data)
        return parse_json(cls, data, "manifest")


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 manifest (timm models, one output of num_classes) in version 2's form."""
    models = []
    for m in data.get("models", []):
        if not isinstance(m, dict):
            return data  # malformed: let the parse name the key
        m = dict(m)
        kwargs = {"num_classes": m.pop("num_classes", None), **(m.get("kwargs") or {})}
        models.append({**m, "source": "timm", "code": None, "kwargs": kwargs, "output": None, "takes_metadata": False})
    classes = data.get("classes") or []
    decision = data.get("decision")
    if isinstance(decision, dict):
        decision = {**decision, "positive_class": None, "cutoffs": [], "new_class": None, "new_threshold": None}
    return {**data, "schema_version": 2, "models": models, "metadata": None, "requirements": [],
            "decode": "exact", "heads": [{"name": "output", "size": len(classes)}], "decision": decision}


def _upgrade_v2(data: dict[str, Any]) -> dict[str, Any]:
    """A version 2 manifest (no preprocessing function) in version 3's form."""
    models = []
    for m in data.get("models", []):
        if not isinstance(m, dict) or not isinstance(m.get("preprocess"), dict):
            return data  # malformed: let the parse name the key
        models.append({**m, "preprocess": {**m["preprocess"], "function": None}})
    return {**data, "schema_version": 3, "models": models}


def _upgrade_v4(data: dict[str, Any]) -> dict[str, Any]:
    """A version 4 manifest (every model on torch) in version 5's form."""
    if not all(isinstance(m, dict) for m in data.get("models", [])):
        return data  # malformed: let the parse name the key
    models = [{**m, "engine": "torch", "exported": None, "gate": {}} for m in data.get("models", [])]
    return {**data, "schema_version": SCHEMA_VERSION, "models": models, "deadline": None}


def _repeated(items: typing.Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({x for x in items if x in seen or seen.add(x)})


def parse_json(tp: Any, value: Any, where: str) -> Any:
    """Build ``tp`` (a manifest dataclass or a field type) from JSON data, naming the key path in every error."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise BundleError(f"{where}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = sorted(set(value) - set(names))
        missing = [n for n in names if n not in value]
        if unknown:
            raise BundleError(f"{where}: unknown key(s) {unknown}; expected {names}")
        if missing:
            raise BundleError(f"{where}: missing key(s) {missing}")
        kwargs = {n: parse_json(hints[n], value[n], f"{where}.{n}") for n in names}
        try:
            return tp(**kwargs)
        except BundleError as e:
            raise BundleError(f"{where}: {e}") from None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner:  # str | int: the first that fits
            try:
                return parse_json(option, value, where)
            except BundleError:
                if option is inner[-1]:
                    raise
        raise BundleError(f"{where}: unexpected {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise BundleError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise BundleError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(parse_json(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise BundleError(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise BundleError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(bundle: Path) -> Manifest:
    """Read and validate ``bundle/manifest.json``."""
    path = Path(bundle) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path} not found; pass --bundle with the folder that `builder pack` wrote")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); pack the bundle again") from None
    try:
        return Manifest.from_dict(data)
    except BundleError as e:
        raise BundleError(f"{path}: {e}") from None


def resolve_path(bundle: Path, relative: str) -> Path:
    """The on-disk path of a bundle path, refusing anything that leaves the bundle (through symlinks too)."""
    root = Path(bundle).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise BundleError(f"{relative} resolves outside the bundle {root}; pack the bundle again")
    return path


def resolve_file(bundle: Path, ref: FileRef) -> Path:
    return resolve_path(bundle, ref.path)


def weights_root(bundle: Path, manifest: Manifest) -> Path:
    """Where the bundle's ``weights/`` lies: in the bundle, or, where the image holds none, in the folder the platform
    extracts the model tarball to (``entry.weights``, Grand Challenge's /opt/ml/model)."""
    inside = any((Path(bundle) / m.weights.path).exists() for m in manifest.models)
    return Path(manifest.entry.weights) if manifest.entry.weights and not inside else Path(bundle)


def verify_files(bundle: Path, manifest: Manifest) -> None:
    """Check that every file the manifest names exists and has its recorded sha256."""
    weights = {m.weights.path for m in manifest.models}
    root = weights_root(bundle, manifest)
    for ref in manifest.files:
        folder = root if ref.path in weights else Path(bundle)
        path = resolve_file(folder, ref)
        if not path.is_file():
            if folder != Path(bundle):
                raise BundleError(f"bundle file {ref.path} is in neither the bundle nor {folder}, where the platform "
                                  "extracts the model tarball: upload the model tarball `builder export` wrote")
            raise BundleError(f"bundle file {ref.path} is missing from {bundle}; pack the bundle again")
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise BundleError(
                f"bundle file {ref.path} has sha256 {actual}, but the manifest records {ref.sha256}: "
                "the file changed after packing; pack the bundle again"
            )


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    """Write ``bundle/manifest.json`` atomically."""
    path = Path(bundle) / MANIFEST_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(manifest.to_json(), encoding="utf-8")
    return path
