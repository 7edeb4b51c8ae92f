import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
