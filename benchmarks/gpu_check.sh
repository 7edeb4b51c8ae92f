#!/usr/bin/env bash
# GPU checks in one short script (a lent GPU machine has minutes, not hours): the CUDA tests (the fast path's CUDA-graph
# test included), the fast-path modes on the GPU (issue 18: eager vs --run.compile, i.e. torch.compile with CUDA graphs,
# vs bf16, tiny and paper learners: $OUT/fast_path.md), the update-time benchmark on the GPU (each learner size; OGPO's
# micro-batched imagination on and off; fp32 and TF32 matmuls) with the same machine's CPU as the reference, and the toy
# quickstart end to end with --device cuda.
#     bash benchmarks/gpu_check.sh OUT_DIR        (docs/benchmarks.md "GPU" has the results and the exact call)
# Needs flowft importable (pip install -e . or PYTHONPATH=src) and a CUDA build of torch; simulators are not needed.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)" \
    | tee -a "$OUT/gpu.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_fastpath.py 2>&1 \
    | tee "$OUT/pytest_gpu.log"
# eager vs compiled (mode reduce-overhead = CUDA graphs; the table names the mode each row really ran) vs bf16, one
# process per size so that one size's failure or timeout does not hide the other's rows
{
  timeout 240 python3 benchmarks/update_speed.py --device cuda --sizes tiny --repeats 30 \
      --modes eager compile eager/bf16 compile/bf16-nograd compile/bf16
  timeout 300 python3 benchmarks/update_speed.py --device cuda --sizes paper --repeats 20 \
      --modes eager compile compile/bf16
} 2>&1 | tee "$OUT/fast_path.md"
{
  timeout 120 python3 benchmarks/update_speed.py --device cuda --repeats 10 --microbatch-chains 1024 0
  timeout 90 python3 benchmarks/update_speed.py --device cuda --repeats 10 --microbatch-chains 1024 0 \
      --matmul-precision high
  timeout 100 python3 benchmarks/update_speed.py --device cpu --threads "$(nproc)" --repeats 3
} 2>&1 | tee "$OUT/update_speed.md"
start=$(date +%s)
timeout 200 python3 -m flowft quickstart --task toy --device cuda --out-dir /tmp/qs-cuda 2>&1 | tee "$OUT/quickstart_toy_cuda.log"
echo "quickstart wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/quickstart_toy_cuda.log"
