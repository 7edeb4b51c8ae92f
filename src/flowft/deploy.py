"""Loading trained policies for users: `flowft.load_policy(path).act(obs)`; no pickle anywhere."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from flowft.config import Sampler
from flowft.errors import ConfigError
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig, sample_ode_zero
from flowft.utils.checkpoint import CheckpointError, NoCheckpointError, latest_checkpoint, read_checkpoint_json
from flowft.utils.config_io import from_dict
from flowft.utils.manifest import MANIFEST, CheckpointWarning, check_dir

# the fields that change the actor's parameters: a BC checkpoint must agree on all of them with the run it starts
ARCH_FIELDS = ("hidden", "activation", "time_embed", "time_embed_dim")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (-> its newest usable checkpoint / its BC checkpoint). A named
    checkpoint dir must be intact (manifest verified); a run dir falls back past damaged checkpoints with a
    warning naming the damaged file."""
    p = Path(path)
    if (p / "checkpoints").is_dir():
        return latest_checkpoint(p)
    for ckpt in (p, p / "checkpoint"):  # a checkpoint dir, or a BC run dir
        if (ckpt / "model.safetensors").exists() or (ckpt / MANIFEST).exists():
            result = check_dir(ckpt)
            if not result.usable:
                raise CheckpointError(f"damaged checkpoint: {result.problem}")
            return ckpt
    raise NoCheckpointError(f"{path}: not a flowft checkpoint or run directory (no model.safetensors)")


def _policy_config(cfg: dict, ckpt: Path) -> FlowPolicyConfig:
    try:
        raw = cfg["policy"] if cfg.get("kind") == "bc" else cfg["algo"]["policy"]
        return from_dict(FlowPolicyConfig, raw)
    except (KeyError, TypeError, ValueError) as err:  # a hand-edited or foreign config.json
        raise CheckpointError(f"{ckpt / 'config.json'}: no readable policy config ({type(err).__name__}: {err})") from None


def _load_actor(ckpt: Path) -> tuple[FlowPolicy, dict]:
    from flowft.utils.checkpoint import load_modules

    cfg = read_checkpoint_json(ckpt / "config.json")
    d = cfg["dims"]
    policy = FlowPolicy(d["obs_dim"], d["act_dim"], d["chunk_len"], _policy_config(cfg, ckpt))
    load_modules(ckpt / "model.safetensors", {"actor": policy})
    return policy.eval(), cfg


def load_bc_actor(path: str | Path, dims: dict, policy_cfg: FlowPolicyConfig,
                  task: str | None = None) -> dict[str, torch.Tensor]:
    """Actor weights of a BC checkpoint, after checking that it fits this run's env dims and architecture.
    A checkpoint of another `task` with the same dims loads (a task variant may be meant) but with a warning:
    the dims alone cannot tell toy from toy-fixed."""
    ckpt = resolve_checkpoint(path)
    cfg = read_checkpoint_json(ckpt / "config.json")
    if cfg.get("dims") != dims:
        raise ConfigError(f"--run.bc-checkpoint {ckpt}: dims {cfg.get('dims')} do not match this task's {dims} "
                         "(wrong task or chunk size?)")
    if task is not None and cfg.get("task") not in (None, task):
        warnings.warn(f"--run.bc-checkpoint {ckpt} was pretrained on task {cfg['task']!r}, this run is task "
                      f"{task!r} (same dims, so it loads); pass the BC checkpoint of {task!r} if that was not meant",
                      CheckpointWarning, stacklevel=2)
    bc_policy = _policy_config(cfg, ckpt)
    bad = [f for f in ARCH_FIELDS if getattr(bc_policy, f) != getattr(policy_cfg, f)]
    if bad:
        raise ConfigError(f"--run.bc-checkpoint {ckpt}: actor architecture differs in {bad} "
                         f"({[getattr(bc_policy, f) for f in bad]} vs {[getattr(policy_cfg, f) for f in bad]}); "
                         "pretrain with the same --size (and --policy.* flags) as the finetuning preset")
    policy, _ = _load_actor(ckpt)
    return policy.state_dict()


def load_algorithm(ckpt: Path, device: torch.device, seed: int = 0):
    """Rebuild the algorithm of a training checkpoint with its saved weights -> (algorithm, TrainConfig)."""
    from flowft.config import load_train_config
    from flowft.registry import get_algorithm
    from flowft.utils.checkpoint import load_modules

    cfg = read_checkpoint_json(ckpt / "config.json")
    tcfg = load_train_config(cfg)
    d = cfg["dims"]
    algo = get_algorithm(tcfg.algo_name).cls(tcfg.algo, d["obs_dim"], d["act_dim"], d["chunk_len"], device, seed)
    load_modules(ckpt / "model.safetensors", algo.modules())
    return algo, tcfg


def act_functions(ckpt: Path, device: torch.device, seed: int) -> tuple[dict, dict, str]:
    """sampler name -> act(obs [N, Do] tensor) -> [N, H, Da], for a BC or a training checkpoint.

    Returns (functions, checkpoint config, default sampler). A training checkpoint acts through its algorithm, so
    methods whose deployed policy is more than the flow actor (DSRL's noise actor, residual RL, QC/EXPO's critic
    selection) deploy exactly as they were evaluated; the default sampler is the method's headline one.
    """
    cfg = read_checkpoint_json(ckpt / "config.json")
    gen = torch.Generator(device=device).manual_seed(seed)
    if cfg.get("kind") == "bc":
        policy, _ = _load_actor(ckpt)
        policy.to(device)
        return ({"ode": lambda o: policy.sample_ode(o, generator=gen),
                 "ode_zero": lambda o: sample_ode_zero(policy, o),
                 "sde": lambda o: policy.sample_sde(o, 1, generator=gen).actions[0]}, cfg, "ode")
    from flowft.algos.base import act_sampler
    from flowft.registry import get_algorithm

    algo, tcfg = load_algorithm(ckpt, device, seed)
    fns = {m: (lambda o, m=m: act_sampler(algo, o, m, gen)) for m in get_args(Sampler)}
    return fns, cfg, get_algorithm(tcfg.algo_name).headline


class DeployedPolicy:
    """A trained policy with its normalisers. act(obs [Do] or [N, Do]) -> chunk [H, Da] or [N, H, Da]."""

    def __init__(self, fns: dict, config: dict, default_mode: str, device: torch.device):
        self.fns, self.config, self.default_mode, self.device = fns, config, default_mode, device
        d = config["dims"]
        self.obs_dim, self.chunk_len = d["obs_dim"], d["chunk_len"]

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.fns)

    def act(self, obs: np.ndarray, mode: Sampler | None = None) -> np.ndarray:
        """mode: ode (deterministic, from a drawn start noise), ode_zero (the same from x0 = 0: one chunk per
        state), sde (one sample), bon (critic selection, training checkpoints only);
        default: the method's deployed sampler."""
        mode = mode or self.default_mode
        if mode not in self.fns:
            raise ValueError(f"mode '{mode}' is not available for this checkpoint; available: {self.modes}")
        o = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        single = o.ndim == 1
        if o.shape[-1] != self.obs_dim:
            raise ValueError(f"obs has {o.shape[-1]} dims, policy expects obs_dim={self.obs_dim}")
        a = self.fns[mode](o.reshape(-1, self.obs_dim)).cpu().numpy()
        return a[0] if single else a


def load_policy(path: str | Path, device: str = "cpu", seed: int = 0) -> DeployedPolicy:
    """Load the deployable policy of a run dir, training checkpoint dir or BC checkpoint."""
    dev = torch.device(device)
    fns, cfg, default = act_functions(resolve_checkpoint(path), dev, seed)
    return DeployedPolicy(fns, cfg, default, dev)
