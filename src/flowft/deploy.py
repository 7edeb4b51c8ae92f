"""Loading trained policies for users: `flowft.load_policy(path).act(obs)`; no pickle anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.utils.checkpoint import latest_checkpoint
from flowft.utils.config_io import from_dict, read_json

ARCH_FIELDS = ("hidden", "activation", "time_embed_dim")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (-> its latest checkpoint / its BC checkpoint)."""
    p = Path(path)
    if (p / "model.safetensors").exists():
        return p
    if (p / "checkpoints" / "last.txt").exists():
        return latest_checkpoint(p)
    if (p / "checkpoint" / "model.safetensors").exists():  # BC run dir
        return p / "checkpoint"
    raise FileNotFoundError(f"{path}: not a flowft checkpoint or run directory (no model.safetensors)")


def _policy_config(cfg: dict) -> FlowPolicyConfig:
    raw = cfg["policy"] if cfg.get("kind") == "bc" else cfg["algo"]["policy"]
    return from_dict(FlowPolicyConfig, raw)


def _load_actor(ckpt: Path) -> tuple[FlowPolicy, dict]:
    from flowft.utils.checkpoint import load_modules

    cfg = read_json(ckpt / "config.json")
    d = cfg["dims"]
    policy = FlowPolicy(d["obs_dim"], d["act_dim"], d["chunk_len"], _policy_config(cfg))
    load_modules(ckpt / "model.safetensors", {"actor": policy})
    return policy.eval(), cfg


def load_bc_actor(path: str | Path, dims: dict, policy_cfg: FlowPolicyConfig) -> dict[str, torch.Tensor]:
    """Actor weights of a BC checkpoint, after checking that it fits this run's env dims and architecture."""
    ckpt = resolve_checkpoint(path)
    cfg = read_json(ckpt / "config.json")
    if cfg.get("dims") != dims:
        raise ValueError(f"BC checkpoint {ckpt}: dims {cfg.get('dims')} do not match this task's {dims} "
                         "(wrong task or chunk size?)")
    bc_policy = _policy_config(cfg)
    bad = [f for f in ARCH_FIELDS if getattr(bc_policy, f) != getattr(policy_cfg, f)]
    if bad:
        raise ValueError(f"BC checkpoint {ckpt}: actor architecture differs in {bad} "
                         f"({[getattr(bc_policy, f) for f in bad]} vs {[getattr(policy_cfg, f) for f in bad]}); "
                         "pretrain with the same --size as the finetuning preset")
    policy, _ = _load_actor(ckpt)
    return policy.state_dict()


class DeployedPolicy:
    """A trained flow policy with its normalisers. act(obs [Do] or [N, Do]) -> chunk [H, Da] or [N, H, Da]."""

    def __init__(self, policy: FlowPolicy, config: dict, device: str = "cpu", seed: int = 0):
        self.policy, self.config = policy.to(device), config
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def chunk_len(self) -> int:
        return self.policy.chunk_len

    def act(self, obs: np.ndarray, mode: Literal["ode", "sde"] = "ode") -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        single = o.ndim == 1
        if o.shape[-1] != self.policy.obs_dim:
            raise ValueError(f"obs has {o.shape[-1]} dims, policy expects obs_dim={self.policy.obs_dim}")
        o = o.reshape(-1, self.policy.obs_dim)
        if mode == "ode":
            a = self.policy.sample_ode(o, generator=self.gen)
        else:
            a = self.policy.sample_sde(o, 1, generator=self.gen).actions[0]
        a = a.cpu().numpy()
        return a[0] if single else a


def load_policy(path: str | Path, device: str = "cpu", seed: int = 0) -> DeployedPolicy:
    """Load the deployable actor of a run dir, checkpoint dir or BC checkpoint."""
    policy, cfg = _load_actor(resolve_checkpoint(path))
    return DeployedPolicy(policy, cfg, device, seed)
