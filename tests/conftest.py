import os

import pytest
import torch

# at most 2 torch threads per test process, and one per core in all: the README's test command runs 2 pytest-xdist
# workers (-n 2), and more threads than cores make BLAS and inductor's OpenMP kernels stall on each other
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def bf16_anywhere(monkeypatch):
    """bf16 precision modes as on a CPU with bf16 matmuls (AVX512-BF16/AMX), on any CPU: autocast runs bf16 everywhere
    (emulated, slowly, where oneDNN has no bf16 kernels), so the numerics these tests check are the same; only
    enable_fast_path's fall-back to fp32 on such CPUs (a speed choice, tested on its own) is bypassed."""
    from flowft.train import fastpath

    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: True)
