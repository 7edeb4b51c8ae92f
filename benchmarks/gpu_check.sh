#!/usr/bin/env bash
# GPU checks in one short script (a lent GPU machine has minutes, not hours): the CUDA tests, the update-time
# benchmark on the GPU (each learner size; OGPO's micro-batched imagination on and off; fp32 and TF32 matmuls) with
# the same machine's CPU as the reference, and the toy quickstart end to end with --device cuda.
#     bash benchmarks/gpu_check.sh OUT_DIR        (docs/benchmarks.md "GPU" has the results and the exact call)
# Needs flowft importable (pip install -e . or PYTHONPATH=src) and a CUDA build of torch; simulators are not needed.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)" \
    | tee -a "$OUT/gpu.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log"
{
  timeout 120 python3 benchmarks/update_speed.py --device cuda --repeats 10 --microbatch-chains 1024 0
  timeout 90 python3 benchmarks/update_speed.py --device cuda --repeats 10 --microbatch-chains 1024 0 \
      --matmul-precision high
  timeout 100 python3 benchmarks/update_speed.py --device cpu --threads "$(nproc)" --repeats 3
} 2>&1 | tee "$OUT/update_speed.md"
start=$(date +%s)
timeout 200 python3 -m flowft quickstart --task toy --device cuda --out-dir /tmp/qs-cuda 2>&1 | tee "$OUT/quickstart_toy_cuda.log"
echo "quickstart wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/quickstart_toy_cuda.log"
