"""GPU path: the same update and sampler on CUDA (skipped without a GPU)."""

import numpy as np
import pytest
import torch

from flowft.algos.ogpo import OGPO
from flowft.data.buffer import ReplayBuffer
from flowft.presets import ogpo_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_ogpo_update_and_act_on_cuda():
    dev = torch.device("cuda")
    algo = OGPO(ogpo_config("ogpo-plus-ca", "toy", "tiny"), 6, 2, 4, dev, seed=0)
    buf = ReplayBuffer(2, 2000, 6, 2, 4)
    rng = np.random.default_rng(0)
    for t in range(100):
        d = np.array([t % 20 == 19, False])
        buf.add_batch(rng.standard_normal((2, 6)), rng.uniform(-1, 1, (2, 2)), -np.ones(2), d, np.zeros(2, bool),
                      rng.standard_normal((2, 6)), d)
    assert len(algo._slices(1024)) == 1  # microbatch_chains=None: one slice on CUDA (8 slices of 1024 on CPU)
    stats = algo.update(buf)
    assert all(np.isfinite(v) for v in stats.values())
    chunk = algo.act(torch.randn(3, 6, device=dev), "explore")
    assert chunk.shape == (3, 4, 2) and chunk.device.type == "cuda"
    obs = torch.randn(5, 6, device=dev)
    s = algo.actor.sample_sde(obs, 4)
    lp = algo.actor.log_prob(obs, s.chain)
    assert lp.dtype == torch.float32 and lp.shape == (4, 5)
    assert torch.allclose(lp, s.logp, atol=1e-4)  # ratio = 1 at theta = theta_bar on the GPU too
