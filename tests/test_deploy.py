"""`flowft.load_policy`: BC and training checkpoints deploy through the same act functions as evaluation."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from flowft import load_policy
from flowft.deploy import load_algorithm
from flowft.train.loop import Trainer
from flowft.utils.checkpoint import latest_checkpoint
from helpers import make_bc_checkpoint, tiny_train_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    bc = make_bc_checkpoint(root)
    cfg = tiny_train_config(bc, root, env_steps=320, start_training=160)
    t = Trainer(replace(cfg, run=replace(cfg.run, run_name="r")))
    t.run()
    return t.run_dir, bc


def test_training_checkpoint_deploys_through_its_algorithm(run_dir):
    rd, _ = run_dir
    pol = load_policy(rd, seed=3)
    assert pol.default_mode == "ode" and set(pol.modes) == {"ode", "sde", "bon"}
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    algo, _ = load_algorithm(latest_checkpoint(rd), torch.device("cpu"))
    expected = algo.actor.sample_ode(torch.as_tensor(obs), generator=torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_array_equal(pol.act(obs), expected)
    assert pol.act(obs[0], mode="bon").shape == (4, 2)


def test_bc_checkpoint_has_no_critic_mode(run_dir):
    _, bc = run_dir
    pol = load_policy(bc)
    with pytest.raises(ValueError, match=r"mode 'bon' is not available.*'ode', 'sde'"):
        pol.act(np.zeros(6), mode="bon")


def test_eval_actors_compares_current_and_ema_actor_on_the_same_episodes(run_dir):
    """benchmarks/eval_actors.py: with the EMA actor set to the current one, the two ODE evaluations are the same
    episodes with the same actions, so they read the same; Best-of-N is the third row."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("eval_actors", Path(__file__).parents[1] / "benchmarks" /
                                                  "eval_actors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rd, _ = run_dir
    real_load = mod.load_algorithm

    def same_actors(ckpt, device, seed):
        algo, cfg = real_load(ckpt, device, seed)
        algo.actor_target.load_state_dict(algo.actor.state_dict())
        return algo, cfg

    mod.load_algorithm = same_actors
    rows = mod.eval_actors(latest_checkpoint(rd), episodes=8, envs=4, seed=5)
    assert [r["sampler"] for r in rows] == ["ode", "ode_ema", "bon"] and all(r["episodes"] == 8 for r in rows)
    drop = lambda r: {k: v for k, v in r.items() if k not in ("sampler", "secs")}
    assert drop(rows[0]) == drop(rows[1])
