"""An exported graph run by ONNX Runtime or OpenVINO in place of the eager forward pass: the same inputs (the
normalised batch, and the metadata features where the model takes them), the heads side by side as one [batch,
outputs] tensor out. Everything before (decode, preprocessing, TTA views) and after (heads, merge, formats) is the
runtime's own, unchanged.

Thread pools are sized to the CPU quota (a container limited with --cpus still sees every host core), and ONNX
Runtime's do not spin while they wait, leaving the cores to the loader processes; ONNX Runtime takes the CUDA
provider when the device is a GPU and the installed build has it (onnxruntime-gpu).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from submission.errors import BundleError

INPUTS = ("image", "meta")  # the exported graph's input names, in forward's order
OUTPUT = "logits"  # its one output: every head's logits side by side


class Engine:
    """What the prediction loop calls instead of an eager model: ``engine(x)`` or ``engine(x, meta)``, numpy float32
    in, the heads' logits side by side out. ``device`` is the runtime's (``devices.Device``, or a torch.device)."""

    name = ""

    def __init__(self, path: Path, device: Any, threads: int):
        self.path, self.device, self.threads = Path(path), device, max(1, threads)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def drives_gpus() -> bool:
        """Whether the installed build runs on a GPU when the device is one (else it runs on the CPU)."""
        return False

    def __call__(self, x: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        feeds = {"image": np.ascontiguousarray(x, dtype=np.float32)}
        if meta is not None:
            feeds["meta"] = np.ascontiguousarray(meta, dtype=np.float32)
        return np.asarray(self.run(feeds))


class OnnxRuntime(Engine):
    name = "onnx"

    def __init__(self, path: Path, device: Any, threads: int):
        super().__init__(path, device, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BundleError("a model runs on ONNX Runtime, but onnxruntime is not installed; pack again (the image "
                              "installs it), or pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        options.log_severity_level = 3
        # idle threads sleep rather than spin: the loader processes decode on the same cores meanwhile
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and self.drives_gpus():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # noqa: BLE001 (ONNX Runtime raises its own types)
            raise BundleError(f"ONNX Runtime cannot load {path.name}: {e}") from None
        self.inputs = {i.name for i in self.session.get_inputs()}

    @staticmethod
    def drives_gpus() -> bool:
        try:
            import onnxruntime as ort
        except ImportError:
            return False
        return "CUDAExecutionProvider" in ort.get_available_providers()  # onnxruntime-gpu's

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([OUTPUT], {k: v for k, v in feeds.items() if k in self.inputs})[0]


class OpenVino(Engine):
    name = "openvino"

    def __init__(self, path: Path, device: Any, threads: int):
        super().__init__(path, device, threads)
        os.environ.setdefault("OPENVINO_TELEMETRY", "0")
        try:
            import openvino as ov
        except ImportError:
            raise BundleError("a model runs on OpenVINO, but openvino is not installed; pack again (the image installs "
                              "it), or pip install openvino") from None
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                               {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32"})
        except Exception as e:  # noqa: BLE001 (OpenVINO raises its own types)
            raise BundleError(f"OpenVINO cannot load {path.name}: {e}") from None
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        self.request = self.compiled.create_infer_request()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = self.request.infer({name: feeds[name] for name in self.inputs})
        return next(iter(result.values()))


ENGINES = {engine.name: engine for engine in (OnnxRuntime, OpenVino)}


def open_engine(name: str, path: Path, device: Any, threads: int) -> Engine:
    """The exported graph at ``path`` on ``name``'s runtime."""
    return ENGINES[name](path, device, threads)
