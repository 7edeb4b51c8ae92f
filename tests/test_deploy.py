"""`flowft.load_policy`: BC and training checkpoints deploy through the same act functions as evaluation."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from flowft import load_policy
from flowft.deploy import _load_actor, load_algorithm
from flowft.train.loop import Trainer
from flowft.utils.checkpoint import latest_checkpoint
from helpers import make_bc_checkpoint, tiny_train_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    bc = make_bc_checkpoint(root)
    cfg = tiny_train_config(bc, root, env_steps=320, start_training=160)
    t = Trainer(replace(cfg, run=replace(cfg.run, run_name="r", eval_samplers=("ode", "ode_zero", "bon"))))
    t.run()
    return t.run_dir, bc


def test_training_checkpoint_deploys_through_its_algorithm(run_dir):
    rd, _ = run_dir
    pol = load_policy(rd, seed=3)
    assert pol.default_mode == "ode" and set(pol.modes) == {"ode", "ode_zero", "sde", "bon"}
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    algo, _ = load_algorithm(latest_checkpoint(rd), torch.device("cpu"))
    expected = algo.actor.sample_ode(torch.as_tensor(obs), generator=torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_array_equal(pol.act(obs), expected)
    assert pol.act(obs[0], mode="bon").shape == (4, 2)


def test_bc_checkpoint_has_no_critic_mode(run_dir):
    _, bc = run_dir
    pol = load_policy(bc)
    with pytest.raises(ValueError, match=r"mode 'bon' is not available.*'ode', 'ode_zero', 'sde'"):
        pol.act(np.zeros(6), mode="bon")


def test_ode_zero_mode_deploys_the_ode_from_zero_noise(run_dir):
    """mode ode_zero: the flow's ODE from x0 = 0 for a BC checkpoint, the algorithm's for a training one; the same
    chunk on every call (no noise drawn)."""
    rd, bc = run_dir
    obs = np.random.default_rng(2).normal(size=(5, 6)).astype(np.float32)
    policy, _ = _load_actor(bc)
    expected = policy.sample_ode(torch.as_tensor(obs), noise=torch.zeros(5, policy.flat_dim)).numpy()
    pol = load_policy(bc)
    np.testing.assert_array_equal(pol.act(obs, mode="ode_zero"), expected)
    trained = load_policy(rd, seed=4)
    first = trained.act(obs, mode="ode_zero")
    np.testing.assert_array_equal(first, trained.act(obs, mode="ode_zero"))
    assert not np.array_equal(trained.act(obs, mode="ode"), trained.act(obs, mode="ode"))
    import csv

    rows = [r for r in csv.DictReader((rd / "metrics.csv").open()) if r.get("eval/ode_zero/success")]
    assert len(rows) >= 2 and all(0.0 <= float(r["eval/ode_zero/success"]) <= 1.0 for r in rows)
    assert all(r["eval/ode/success"] and r["eval/bon/success"] for r in rows)  # logged side by side


def _eval_actors_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("eval_actors", Path(__file__).parents[1] / "benchmarks" /
                                                  "eval_actors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_eval_actors_zero_start_is_the_ode_from_x0_zero(run_dir):
    """The zero-start samplers integrate the ODE from x0 = 0: the same chunk whatever the generator, equal to
    sample_ode with zero noise, while the plain ODE sampler's chunk depends on the drawn x0."""
    mod = _eval_actors_module()
    algo, _ = load_algorithm(latest_checkpoint(run_dir[0]), torch.device("cpu"))
    obs = torch.as_tensor(np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32))
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    zero = [mod.SAMPLERS["ode_zero"](algo, obs, g) for g in gens]
    torch.testing.assert_close(zero[0], zero[1], rtol=0, atol=0)
    torch.testing.assert_close(zero[0], algo.actor.sample_ode(obs, noise=torch.zeros(5, algo.actor.flat_dim)))
    drawn = [mod.SAMPLERS["ode"](algo, obs, torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert not torch.equal(drawn[0], drawn[1])
    ema = mod.SAMPLERS["ode_ema_zero"](algo, obs, gens[0])
    torch.testing.assert_close(ema, algo.actor_target.sample_ode(obs, noise=torch.zeros(5, algo.actor.flat_dim)))


def test_eval_actors_compares_current_and_ema_actor_on_the_same_episodes(run_dir):
    """benchmarks/eval_actors.py: with the EMA actor set to the current one, the two ODE evaluations are the same
    episodes with the same actions, so they read the same; Best-of-N is the third row. The zero-start pair too."""
    mod = _eval_actors_module()
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
    zero = mod.eval_actors(latest_checkpoint(rd), episodes=8, envs=4, seed=5, samplers=("ode_zero", "ode_ema_zero"))
    assert [r["sampler"] for r in zero] == ["ode_zero", "ode_ema_zero"] and drop(zero[0]) == drop(zero[1])
