#!/usr/bin/env bash
# The GPU check, for a machine with one NVIDIA GPU and a fresh checkout (about 6 minutes): the CUDA tests, then the
# benchmark on the GPU (eager with autocast and channels_last; ONNX Runtime's CUDA provider where onnxruntime-gpu
# is installed) in the compute-bound regime and for each engine. Figures go to $OUT (or ./gpu-check) as JSON.
#
#     bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv | tee "$out/gpu.csv"
python3 - <<'PY' | tee "$out/versions.txt"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "arch list", torch.cuda.get_arch_list())
for name in ("timm", "onnxruntime", "openvino"):
    try:
        module = importlib.import_module(name)
        extra = getattr(module, "get_available_providers", lambda: "")()
        print(name, module.__version__, extra)
    except ImportError:
        print(name, "not installed")
PY
python3 -c "import submission, builder" 2>/dev/null || python3 -m pip install --quiet --no-deps -e . >/dev/null

status=0
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/runtime/test_cuda.py tests/runtime/test_shards.py \
    2>&1 | tail -15 | tee "$out/cuda_tests.txt" || status=1
timeout 150 python3 benchmarks/bench_inference.py --regime compute --device cuda --images 256 --folds 5 --repeat 2 \
    --out "$out/compute_cuda.json" || status=1
timeout 150 python3 benchmarks/bench_inference.py --regime engines --device cuda --images 256 --folds 3 --repeat 2 \
    --out "$out/engines_cuda.json" || status=1
echo "figures in $out/"
exit $status
