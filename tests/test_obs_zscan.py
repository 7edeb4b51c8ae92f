"""benchmarks/obs_zscan.py: how far a run's stored states sit from its BC demonstrations in z-score units."""

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file


def test_obs_zscan_reads_the_states_z_scores_under_the_bc_normaliser(tmp_path):
    """benchmarks/obs_zscan.py on a hand-made checkpoint: written slots only, |z| under the stored normaliser."""
    spec = importlib.util.spec_from_file_location("obs_zscan", Path(__file__).parents[1] / "benchmarks" / "obs_zscan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    save_file({"actor.obs_normalizer.shift": torch.tensor([1.0, 0.0]),
               "actor.obs_normalizer.scale": torch.tensor([0.01, 2.0])}, tmp_path / "model.safetensors")
    obs = torch.zeros(2, 3, 2)  # [N envs, C slots, Do]; the last slot of env 1 is never written
    obs[0] = torch.tensor([[1.0, 2.0], [1.5, 0.0], [1.05, -4.0]])  # |z| rows: (0, 1), (50, 0), (5, 2)
    obs[1, :2] = torch.tensor([[0.9, 30.0], [1.0, 0.5]])  # (10, 15), (0, 0.25)
    save_file({"obs": obs}, tmp_path / "buffer.safetensors")
    r = mod.zscan(tmp_path, threshold=10.0)
    assert r["states"] == 5
    assert r["share_over"] == pytest.approx(2 / 5)  # rows with 50 and 15 (10 is not above 10)
    assert r["quantiles"][2] == pytest.approx([50.0, 15.0])  # max |z| per coordinate
    assert r["quantiles"][0] == pytest.approx([5.0, 1.0])  # medians
    (tmp_path / "buffer.safetensors").unlink()
    with pytest.raises(SystemExit, match="buffer.safetensors not found"):
        mod.zscan(tmp_path)
