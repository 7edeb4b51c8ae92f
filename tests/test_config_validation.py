"""Every numeric config value is checked when the config is built: a bad one is refused with one ConfigError line that
names its command-line flag and the allowed range, before anything is written (issue 19, failure 1)."""

from __future__ import annotations

import copy
import dataclasses
import math
import subprocess
import sys
import typing

import pytest

from flowft.algos.bc import BCConfig
from flowft.config import TrainConfig, load_train_config
from flowft.errors import ConfigError
from flowft.policies.flow import FlowPolicyConfig
from flowft.policies.gaussian import GaussianConfig
from flowft.presets import bc_preset, train_preset
from flowft.registry import algorithm_names, get_algorithm, task_names
from flowft.utils.config_io import from_dict, to_dict
from flowft.utils.validate import INT_POS, RATE, UNIT, integer, number, parse_cli

# one preset per algorithm config class (the OGPO variants share OGPOConfig)
ALGOS = ["ogpo-plus-ca", "dppo", "dsrl", "qc", "expo", "residual"]


def train_dict(algo: str = "ogpo-plus-ca") -> dict:
    """A preset as its run's config.json holds it (what `flowft resume` rebuilds)."""
    return {"algo_name": algo, **to_dict(train_preset(algo, "toy", "tiny"))}


def with_value(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    *heads, last = path.split(".")
    node = data
    for h in heads:
        node = node[h]
    assert last in node, f"no field {path}"
    node[last] = value
    return data


def flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def refused(build, path: str) -> str:
    """The message of the ConfigError that `build()` raises; it must be one line that starts with the flag."""
    with pytest.raises(ConfigError) as err:
        build()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(flag(path) + " "), msg
    return msg


# -------------------------------------------------------------------------------- every preset still builds
def test_every_preset_builds_and_reloads():
    """All algorithms x tasks x sizes and every BC preset pass their own checks, also when rebuilt from JSON."""
    built = 0
    for algo in algorithm_names():
        for task in task_names():
            for size in ("tiny", "mid", "paper"):
                cfg = train_preset(algo, task, size)
                assert load_train_config({"algo_name": algo, **to_dict(cfg)}) == cfg
                built += 1
    for task in task_names():
        for size in ("tiny", "mid", "paper"):
            bc = bc_preset(task, size, "demos.hdf5")
            assert from_dict(BCConfig, to_dict(bc)) == bc
            built += 1
    assert built == 3 * len(task_names()) * (len(algorithm_names()) + 1)


# ------------------------------------------------------------------------------ the bad values
BAD = [  # (algorithm, field path, bad value, what the message must say)
    ("ogpo-plus-ca", "run.keep_checkpoints", -1, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.keep_checkpoints", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "algo.batch_size", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "algo.ppo_batch_size", -3, "must be an integer >= 1"),
    ("ogpo-plus-ca", "algo.group_size", 1, "must be an integer >= 2"),
    ("ogpo-plus-ca", "algo.critic.num_heads", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "algo.policy.denoise_steps", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "algo.best_of_n", 0, "must be an integer >= 1"),
    ("qc", "algo.best_of_n", -2, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.ckpt_every", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.ckpt_every", -80, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.eval_every", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.log.log_every", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.log.log_every", -5, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.env_steps", -100, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.utd", -1.0, "must be a number >= 0 (0 = collect only, no updates)"),
    ("ogpo-plus-ca", "run.eval_episodes", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.eval_envs", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.num_envs", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "run.seed", -1, "must be an integer >= 0"),
    ("ogpo-plus-ca", "run.threads", 0, "must be an integer >= 1 (None = torch's choice)"),
    ("ogpo-plus-ca", "run.critic_diag_episodes", -1, "must be an integer >= 0 (0 = off)"),
    ("ogpo-plus-ca", "algo.gamma", 2.0, "must be a number in [0, 1]"),
    ("dsrl", "algo.gamma", -0.5, "must be a number in [0, 1]"),
    ("ogpo-plus-ca", "algo.clip_eps", -0.1, "must be a number > 0"),
    ("dppo", "algo.clip_eps", 0.0, "must be a number > 0"),
    ("ogpo-plus-ca", "algo.actor_lr", 0.0, "must be a number > 0"),
    ("ogpo-plus-ca", "algo.critic_lr", -1e-3, "must be a number > 0"),
    ("ogpo-plus-ca", "algo.actor_lr", math.nan, "must be a number > 0"),
    ("dppo", "algo.critic_lr", 0.0, "must be a number > 0"),
    ("expo", "algo.edit_lr", -3e-4, "must be a number > 0"),
    ("ogpo-plus-ca", "algo.tau_critic", 0.0, "must be a number in (0, 1]"),
    ("ogpo-plus-ca", "algo.tau_actor", 1.5, "must be a number in (0, 1]"),
    ("dsrl", "algo.tau", 0.0, "must be a number in (0, 1]"),
    ("qc", "algo.tau", 2.0, "must be a number in (0, 1]"),
    ("dppo", "algo.gae_lambda", 1.5, "must be a number in [0, 1]"),
    ("dppo", "algo.gamma_denoising", -0.1, "must be a number in [0, 1]"),
    ("dppo", "algo.minibatch_size", 0, "must be an integer >= 1"),
    ("dppo", "algo.rollout_steps", 0, "must be an integer >= 1"),
    ("dppo", "algo.min_std", 0.0, "must be a number > 0"),
    ("dppo", "algo.clip_eps_rate", 0.0, "must be a number > 0"),
    ("dppo", "algo.target_kl", 0.0, "must be a number > 0 (None = never stop early)"),
    ("expo", "algo.num_base", 0, "must be an integer >= 1"),
    ("expo", "algo.edit_bound", 0.0, "must be a number > 0"),
    ("residual", "algo.residual_scale", 0.0, "must be a number > 0"),
    ("residual", "algo.progressive_updates", -1, "must be an integer >= 0 (0 = always add the residual)"),
    ("dsrl", "algo.noise_bound", 0.0, "must be a number > 0"),
    ("dsrl", "algo.noise_critic_steps", 0, "must be an integer >= 1"),
    ("qc", "algo.batch_size", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "algo.bc_coeff", -1.0, "must be a number >= 0 (0 = no cloning term)"),
    ("ogpo-plus-ca", "algo.grad_diag_every", -1, "must be an integer >= 0 (0 = off)"),
    ("ogpo-plus-ca", "algo.actor_every", 0, "must be an integer >= 1"),
    ("ogpo-plus-ca", "algo.microbatch_chains", -1, "must be an integer >= 0 (0 = all at once;"),
    ("ogpo-plus-ca", "algo.policy.sde.sigma_b", -0.1, "must be a number >= 0"),
    ("ogpo-plus-ca", "algo.policy.sde.noise_clip", 0.0, "must be a number > 0"),
    ("ogpo-plus-ca", "algo.policy.hidden", [128, 0], "must be a tuple of integers >= 1"),
    ("ogpo-plus-ca", "algo.critic.hidden", [-1], "must be a tuple of integers >= 1"),
    ("ogpo-plus-ca", "algo.policy.time_embed_dim", 7, "must be even and >= 2"),
    ("ogpo-plus-ca", "algo.policy.obs_clip", 0.0, "must be a number > 0"),
    ("ogpo-plus-ca", "algo.critic.obs_clip", -1.0, "must be a number > 0"),
    ("expo", "algo.edit.hidden", [0], "must be a tuple of integers >= 1"),
]


@pytest.mark.parametrize("algo, path, value, says", BAD, ids=[f"{a}:{p}={v}" for a, p, v, _ in BAD])
def test_bad_value_names_the_flag_and_range(algo, path, value, says):
    """Rebuilt from a config dict (config.json, resume): the error names the full flag (--algo.policy.denoise-steps)."""
    msg = refused(lambda: load_train_config(with_value(train_dict(algo), path, value)), path)
    shown = tuple(value) if isinstance(value, list) else value  # JSON lists are read back as tuples
    assert says in msg and msg.endswith(f"got {shown!r}"), msg


CROSS = [  # constraints between fields that would otherwise fail deep inside (or silently do something else)
    ("ogpo-plus-ca", {"algo.ppo_batch_size": 128}, "algo.ppo_batch_size", "must be <= --algo.batch-size (64)"),
    ("ogpo-plus-ca", {"algo.actor_lr_floor": 1.0}, "algo.actor_lr_floor", "must be <= --algo.actor-lr"),
    ("ogpo-plus-ca", {"algo.lr_warmup": 30_000}, "algo.lr_warmup", "must be <= --algo.lr-cycle (20000)"),
    ("ogpo-plus-ca", {"algo.advantage": "penultimate", "algo.critic.num_heads": 1}, "algo.critic.num_heads",
     "must be >= 2 with --algo.advantage penultimate"),
    ("expo", {"algo.num_edit": 9}, "algo.num_edit", "must be <= --algo.num-base (8)"),
    ("dppo", {"algo.logprob_min": 2.0}, "algo.logprob_min", "must be < --algo.logprob-max (2.0)"),
    ("dsrl", {"algo.noise_actor.log_std_min": 3.0}, "algo.noise_actor.log_std_min",
     "must be < --algo.noise-actor.log-std-max"),
    ("dsrl", {"algo.variant": "sac"}, "algo.variant", "is not supported"),
    ("ogpo-plus-ca", {"run.eval_samplers": []}, "run.eval_samplers", "needs at least one sampler"),
    ("ogpo-plus-ca", {"run.start_eval_from_bc": True, "run.env_workers": 2}, "run.start_eval_from_bc",
     "is for the single-process loop (--run.env-workers 0)"),
    # off-policy: the first update samples a whole chunk (H = 4 steps) of every env; it crashed after the run dir
    ("ogpo-plus-ca", {"run.start_training": 0}, "run.start_training",
     "must be >= 25 (--run.num-envs 8, chunk length 4 of task 'toy'"),
    ("qc", {"run.start_training": 32, "run.overlap_updates": True}, "run.start_training", "must be >= 33"),
    ("ogpo-plus-ca", {"run.buffer_capacity": 16}, "run.buffer_capacity", "must be >= 32"),
    ("ogpo-plus-ca", {"algo.policy.time_embed": "mlp", "algo.policy.time_embed_dim": 2}, "algo.policy.time_embed_dim",
     "must be even and >= 4 (time_embed mlp)"),
]


@pytest.mark.parametrize("algo, values, path, says", CROSS, ids=[p for _, _, p, _ in CROSS])
def test_cross_field_constraints(algo, values, path, says):
    data = train_dict(algo)
    for p, v in values.items():
        data = with_value(data, p, v)
    assert says in refused(lambda: load_train_config(data), path)


@pytest.mark.parametrize("path, value", [("run.utd", 0.0), ("run.critic_diag_episodes", 0), ("run.start_training", 0),
                                         ("algo.grad_diag_every", 0), ("algo.bc_coeff", 0.0), ("algo.gamma", 0.0),
                                         ("algo.gamma", 1.0), ("algo.microbatch_chains", 0),
                                         ("algo.policy.sde.sigma_b", 0.0), ("algo.tau_critic", 1.0)])
def test_zero_and_edge_values_that_mean_something_are_accepted(path, value):
    data = with_value(train_dict(), path, value)
    if path == "run.start_training":
        data = with_value(train_dict("dppo"), path, value)  # on-policy: no replay warm-up to fill
    assert load_train_config(data) is not None


def _numeric_fields(cfg, prefix: str = ""):
    """(dotted path, kind) of every int / float / width-tuple field in a config tree; kind: int, float or widths."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, tp = getattr(cfg, f.name), hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if dataclasses.is_dataclass(value):
            yield from _numeric_fields(value, f"{prefix}{f.name}.")
        elif args[0] in (int, float) and tp is not bool:
            yield f"{prefix}{f.name}", args[0].__name__
        elif typing.get_origin(args[0]) is tuple and typing.get_args(args[0])[0] is int:
            yield f"{prefix}{f.name}", "widths"


BAD_BY_KIND = {"int": -10**9, "float": math.nan, "widths": [0]}  # outside every range / not a number at all


@pytest.mark.parametrize("algo", ALGOS)
def test_every_numeric_field_of_every_train_config_is_checked(algo):
    """No numeric field escapes: each one, set to a value outside any range (NaN for reals), is refused by name."""
    data, cfg = train_dict(algo), train_preset(algo, "toy", "tiny")
    paths = list(_numeric_fields(cfg))
    assert len(paths) > 25  # run.*, run.log.*, algo.*, algo.policy.*, algo.policy.sde.*, critics/heads
    for path, kind in paths:
        refused(lambda: load_train_config(with_value(data, path, BAD_BY_KIND[kind])), path)


def test_every_numeric_field_of_the_bc_config_is_checked():
    data = to_dict(bc_preset("toy", "tiny", "demos.hdf5"))
    paths = list(_numeric_fields(bc_preset("toy", "tiny", "demos.hdf5")))
    must = {"steps", "lr", "clip_max", "log.log_every", "policy.denoise_steps", "policy.sde.sigma_b"}
    assert must <= dict(paths).keys()
    for path, kind in paths:
        refused(lambda: from_dict(BCConfig, with_value(data, path, BAD_BY_KIND[kind])), path)


@pytest.mark.parametrize("path, value, says", [
    ("steps", 0, "must be an integer >= 1"), ("batch_size", -1, "must be an integer >= 1"),
    ("lr", 0.0, "must be a number > 0"), ("eval_episodes", 0, "must be an integer >= 1"),
    ("clip_max", 1.5, "must be a number in [0, 1]"), ("clip_threshold", -0.1, "must be a number >= 0"),
    ("clip_critic_heads", 0, "must be an integer >= 1"), ("max_episodes", 0, "must be an integer >= 1 (None = all)"),
    ("policy.denoise_steps", 0, "must be an integer >= 1"), ("log.log_every", 0, "must be an integer >= 1"),
    ("clip_threshold", 0.9, "must be <= --clip-max (0.5) with --gate confirmed"),
])
def test_bc_config_bad_values(path, value, says):
    data = to_dict(bc_preset("lift", "tiny", "demos.hdf5"))  # gate "confirmed"
    assert says in refused(lambda: from_dict(BCConfig, with_value(data, path, value)), path)


# ------------------------------------------------------------------ built from Python, and from the command line
def test_python_construction_names_the_field_the_same_way():
    cfg = train_preset("ogpo-plus-ca", "toy", "tiny")
    refused(lambda: dataclasses.replace(cfg.run, keep_checkpoints=-1), "run.keep_checkpoints")
    refused(lambda: dataclasses.replace(cfg.algo, clip_eps=-0.1), "algo.clip_eps")
    # a nested config built on its own names its fields under its usual field name
    refused(lambda: FlowPolicyConfig(denoise_steps=0), "policy.denoise_steps")
    with pytest.raises(ConfigError, match=r"^GaussianConfig\.log_std_min must be < GaussianConfig\.log_std_max"):
        GaussianConfig(log_std_min=3.0)  # three parents use it (noise actor, edit, residual): no single flag


@pytest.mark.parametrize("algo, args", [
    ("ogpo-plus-ca", ["--run.keep-checkpoints", "-1"]),
    ("ogpo-plus-ca", ["--algo.policy.denoise-steps", "0"]),
    ("ogpo-plus-ca", ["--algo.critic.num-heads", "0"]),
    ("ogpo-plus-ca", ["--algo.policy.sde.sigma-b", "-1"]),
    ("ogpo-plus-ca", ["--run.log.log-every", "0"]),
    ("ogpo-plus-ca", ["--algo.group-size", "1"]),
    ("dsrl", ["--algo.noise-actor.log-std-min", "5"]),
    ("expo", ["--algo.edit.hidden", "0"]),
])
def test_flags_in_messages_are_the_flags_tyro_parses(algo, args):
    """Parsed like `flowft train`: tyro accepted the flag, and the error names exactly that flag."""
    spec = get_algorithm(algo)
    with pytest.raises(ConfigError) as err:
        parse_cli(TrainConfig[spec.cfg_cls], default=train_preset(algo, "toy", "tiny"), args=args, prog="t")
    assert str(err.value).startswith(args[0] + " ") and "\n" not in str(err.value)


@pytest.mark.parametrize("args", [["--steps", "0"], ["--policy.denoise-steps", "0"], ["--log.log-every", "0"]])
def test_bc_flags_in_messages_are_the_flags_tyro_parses(args):
    with pytest.raises(ConfigError) as err:
        parse_cli(BCConfig, default=bc_preset("toy", "tiny", "d.hdf5"), args=args, prog="p")
    assert str(err.value).startswith(args[0] + " ")


@pytest.mark.parametrize("args, says", [
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--env-steps", "0"], "--env-steps must be an integer >= 1"),
    (["--demo-episodes", "-3"], "--demo-episodes must be an integer >= 1")])
def test_quickstart_arguments_are_checked_before_any_work(tmp_path, args, says):
    from flowft.quickstart import QuickstartArgs

    with pytest.raises(ConfigError) as err:
        parse_cli(QuickstartArgs, args=["--task", "toy", "--out-dir", str(tmp_path / "qs"), *args], prog="p")
    assert str(err.value).startswith(says)
    assert not (tmp_path / "qs").exists()


def test_cli_refuses_a_bad_value_in_one_line_before_creating_the_run_dir(tmp_path):
    """The issue's first case: `--run.keep-checkpoints -1` exited 0 and deleted every checkpoint."""
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "flowft", "train", "ogpo-plus-ca", "--task", "toy",
                           "--run.keep-checkpoints", "-1", "--run.out-dir", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "--run.keep-checkpoints must be an integer >= 1, got -1" in last, proc.stderr
    assert not out.exists() or not any(out.iterdir()), "no run dir may be created for a refused config"


# ------------------------------------------------------------------------------------------- the rules
def test_rules_describe_their_range_and_reject_non_numbers():
    assert INT_POS.describe() == "an integer >= 1" and UNIT.describe() == "a number in [0, 1]"
    assert RATE.describe() == "a number in (0, 1]"
    assert integer(0, note="0 = off", none="auto").describe() == "an integer >= 0 (0 = off; None = auto)"
    assert not INT_POS.ok(True) and not INT_POS.ok(2.0) and not INT_POS.ok(None) and INT_POS.ok(3)
    pos = number(gt=0)
    assert not pos.ok(math.inf) and not pos.ok(math.nan) and not pos.ok("1") and pos.ok(1) and pos.ok(1e-9)
    assert number(gt=0, none="off").ok(None)
