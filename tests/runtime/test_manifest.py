"""The bundle contract: JSON round trip, validation with named keys, file integrity."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from submission.errors import BundleError
from submission.manifest import (
    MANIFEST_NAME,
    FileRef,
    Manifest,
    load_manifest,
    verify_files,
)
from tests.bundles import (
    decision,
    manifest,
    output,
    preprocess,
    save_model,
    with_sample,
    write_bundle,
)

SHA = "0" * 64


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    models = (save_model(root, "fold0", "test_resnet", 3, preprocess(32), seed=0),)
    m = with_sample(root, manifest(models, fmt="label"), ["a", "b"])
    write_bundle(root, m)
    return root, m


def test_json_round_trip_is_exact(bundle):
    root, m = bundle
    loaded = load_manifest(root)
    assert loaded == m
    assert loaded.to_json() == (root / MANIFEST_NAME).read_text(encoding="utf-8")


def test_files_lists_weights_and_sample(bundle):
    _, m = bundle
    assert [f.path for f in m.files] == ["weights/fold0.safetensors", "sample_submission.csv"]


def edit(root, tmp_path, change):
    data = json.loads((root / MANIFEST_NAME).read_text())
    change(data)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d.update(schema_version=6), "schema_version is 6, but this runtime reads versions 1, 2, 3, 4, 5"),
        (lambda d: d.pop("schema_version"), "schema_version is None"),
        (lambda d: d.update(colour="red"), "manifest: unknown key(s) ['colour']"),
        (lambda d: d.pop("merge"), "manifest: missing key(s) ['merge']"),
        (lambda d: d["models"][0]["preprocess"].update(crop_pct=1.5), "models[0].preprocess: crop_pct is 1.5"),
        (lambda d: d["models"][0]["preprocess"].update(input_size=[3, 32]), "models[0].preprocess.input_size: expected 3 values"),
        (lambda d: d["models"][0]["preprocess"].update(input_size=[1, 32, 32]), "only 3-channel (RGB)"),
        (lambda d: d["models"][0]["preprocess"].update(interpolation="cubic"), "interpolation is 'cubic'; expected one of: nearest"),
        (lambda d: d["heads"][0].update(size="3"), "heads[0].size: expected int, got str '3'"),
        (lambda d: d["heads"][0].update(size=True), "heads[0].size: expected int, got bool"),
        (lambda d: d["heads"][0].update(size=5), "the heads [('output', 5)] give 5 multiclass classes, but there are 3"),
        (lambda d: d["models"][0].update(source="onnx"), "models[0]: model 'fold0': source is 'onnx'; expected one of: timm, code"),
        (lambda d: d["models"][0].update(source="code"), "code goes with source 'code', and only with it"),
        (lambda d: d["models"][0].update(engine="tensorrt"), "engine is 'tensorrt'; expected one of: torch, onnx, openvino"),
        (lambda d: d["models"][0].update(engine="onnx"), "an exported graph goes with an engine other than torch, and only"),
        (lambda d: d["models"][0].update(takes_metadata=True), "models ['fold0'] take metadata, but the manifest declares none"),
        (lambda d: d["models"][0].update(weight=0), "ensemble weight must be positive"),
        (lambda d: d["models"][0].update(kwargs={"pretrained": True}), "kwargs may not set pretrained"),
        (lambda d: d["models"][0]["weights"].update(path="/etc/passwd"), "must be relative and stay inside the bundle"),
        (lambda d: d["models"][0]["weights"].update(path="weights/../../x"), "must be relative and stay inside"),
        (lambda d: d["models"][0]["weights"].update(sha256="abc"), "is not 64 lowercase hex digits"),
        (lambda d: d.update(tta="d8"), "tta is 'd8'; expected one of: none, hflip, vflip, flips, d4"),
        (lambda d: d.update(merge="max"), "merge is 'max'; expected one of: mean, gmean, logits, rank"),
        (lambda d: d.update(decode="draft"), "decode is 'draft'; expected one of: exact, fast"),
        (lambda d: (d.update(decode="fast"), d["models"][0]["preprocess"].update(albumentations={"transform": {}})),
         "decode 'fast' shrinks JPEGs before timm's resize, but models ['fold0'] use an albumentations transform"),
        (lambda d: d.update(task="ranking"), "task is 'ranking'; expected one of: multiclass, multilabel, regression"),
        (lambda d: d.update(classes=["a", "b", "a"]), "class names repeat: ['a']"),
        (lambda d: d.update(models=[]), "models must not be empty"),
        (lambda d: d["decision"].update(thresholds=[0.5, 0.5, 0.5]), "thresholds apply to multilabel tasks only"),
        (lambda d: d["decision"].update(top_k=2), "top_k applies to the 'labels' format of multiclass tasks, not to 'label'"),
        (lambda d: d["output"].update(columns=["id"]), "must start with the id column 'id' and have at least one more"),
        (lambda d: d["output"].update(columns=["image", "label"]), "must start with the id column 'id'"),
        (lambda d: d["output"].update(format="csv"), "output format is 'csv'"),
        (lambda d: d["output"].update(label_as="both"), "label_as is 'both'"),
    ],
)
def test_invalid_manifest_names_the_key(bundle, tmp_path, change, expected):
    root, _ = bundle
    with pytest.raises(BundleError) as e:
        load_manifest(edit(root, tmp_path, change))
    assert expected in str(e.value)
    assert str(tmp_path / MANIFEST_NAME) in str(e.value)


def as_version_1(data: dict) -> dict:
    """A version 2 manifest of timm models with one head, written as version 1 was."""
    models = [{k: v for k, v in m.items() if k not in ("source", "code", "output", "takes_metadata")} for m in data["models"]]
    for m in models:
        m["num_classes"] = m["kwargs"].pop("num_classes")
    return {k: v for k, v in {**data, "schema_version": 1, "models": models}.items()
            if k not in ("heads", "metadata", "requirements")}


def test_a_version_1_manifest_is_read_as_version_2(bundle, tmp_path):
    root, m = bundle
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(as_version_1(m.to_dict())))
    assert load_manifest(tmp_path) == m


def test_not_json_and_missing_manifest(tmp_path):
    with pytest.raises(BundleError, match="not found; pass --bundle"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="is not valid JSON"):
        load_manifest(tmp_path)


def test_task_format_and_decision_rules(bundle):
    _, m = bundle
    with pytest.raises(BundleError, match="output format 'label' does not fit a multilabel task; use one of: binary, labels, onehot, probs"):
        replace(m, task="multilabel", decision=decision((0.5,) * 3))
    with pytest.raises(BundleError, match="2 thresholds given for 3 classes"):
        replace(m, task="multilabel", output=output("onehot", m.classes), decision=decision((0.5, 0.5)))
    with pytest.raises(BundleError, match="thresholds must lie in"):
        replace(m, task="multilabel", output=output("onehot", m.classes), decision=decision((0.5, 1.5, 0.5)))
    with pytest.raises(BundleError, match="do not match classes"):
        replace(m, output=output("probs", ("class_0", "class_1", "other")))
    with pytest.raises(BundleError, match="writes two columns"):
        replace(m, output=output("label", m.classes, columns=("id", "a", "b")))
    labels = replace(m, output=output("labels", m.classes), decision=decision(top_k=3))
    assert labels.decision.top_k == 3
    with pytest.raises(BundleError, match="top_k is 4; expected 1 to 3"):
        replace(labels, decision=decision(top_k=4))


def test_rotating_tta_needs_square_inputs(tmp_path):
    model = save_model(tmp_path, "fold0", "test_resnet", 3, preprocess((32, 48)), seed=0)
    assert manifest((model,), tta="flips").tta == "flips"  # flips and rot180 keep the shape
    with pytest.raises(BundleError, match="tta 'd4' rotates images, but model 'fold0' takes 32x48"):
        manifest((model,), tta="d4")


def test_verify_files_names_the_changed_file(bundle, tmp_path):
    root, m = bundle
    verify_files(root, m)
    copy = tmp_path / "b"
    copy.mkdir()
    (copy / "weights").mkdir()
    (copy / "sample_submission.csv").write_bytes((root / "sample_submission.csv").read_bytes())
    with pytest.raises(BundleError, match="bundle file weights/fold0.safetensors is missing"):
        verify_files(copy, m)
    (copy / "weights" / "fold0.safetensors").write_bytes((root / "weights" / "fold0.safetensors").read_bytes() + b"x")
    with pytest.raises(BundleError, match="weights/fold0.safetensors has sha256 .* but the manifest records"):
        verify_files(copy, m)


def test_symlink_leaving_the_bundle_is_refused(bundle, tmp_path):
    root, m = bundle
    outside = tmp_path / "outside.csv"
    outside.write_bytes((root / "sample_submission.csv").read_bytes())
    copy = tmp_path / "b"
    (copy / "weights").mkdir(parents=True)
    (copy / "weights" / "fold0.safetensors").write_bytes((root / "weights" / "fold0.safetensors").read_bytes())
    os.symlink(outside, copy / "sample_submission.csv")
    with pytest.raises(BundleError, match="sample_submission.csv resolves outside the bundle"):
        verify_files(copy, m)


def test_fileref_validates_directly():
    assert FileRef("weights/a.safetensors", SHA).path == "weights/a.safetensors"
    with pytest.raises(BundleError):
        FileRef("a\\b", SHA)


def test_manifest_from_dict_rejects_non_objects():
    with pytest.raises(BundleError, match="must be a JSON object"):
        Manifest.from_dict([1, 2])
