"""Algorithm interface used by the shared training loop (train/loop.py). Algorithms never step environments."""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from flowft.data.buffer import ReplayBuffer
from flowft.errors import FlowftError
from flowft.policies.flow import zero_start
from flowft.train import fastpath

ActMode = Literal["explore", "ode", "sde", "bon"]
"""explore: the data-collection sampler; ode: deterministic Euler policy; sde: one SDE sample; bon: Best-of-N SDE."""


def act_sampler(algo: "Algorithm", obs: torch.Tensor, sampler: str,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """`algo.act` for an evaluation sampler (config.Sampler): the act modes, plus ode_zero = the ode policy with
    every flow ODE chain started from x0 = 0 (one deterministic chunk per state; a deterministic algorithm such as
    DSRL, whose ode policy already picks its own noise, reads the same as ode)."""
    if sampler == "ode_zero":
        with zero_start():
            return algo.act(obs, "ode", generator=generator)
    return algo.act(obs, sampler, generator=generator)


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over every parameter per step: the critic ensemble's step 0.9 -> 0.36
    ms at M = 10, tiny, 1 thread; docs/benchmarks.md). Its state has the same format as the foreach kernel's, so
    checkpoints from either resume in the other."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


class DivergenceError(FlowftError, RuntimeError):
    """A loss or parameter became NaN/inf; the loop stops and keeps the last good checkpoint."""


def check_finite(stats: dict[str, float], where: str) -> None:
    bad = [k for k, v in stats.items() if not math.isfinite(v)]
    if bad:
        raise DivergenceError(f"{where}: non-finite {bad} (values {[stats[k] for k in bad]})")


def load_bc(actor_state: dict[str, torch.Tensor], policies: tuple[nn.Module, ...],
            critics: tuple[nn.Module, ...] = ()) -> None:
    """Start from a BC checkpoint: its weights into every flow-policy copy (trainable, frozen base, EMA/target) and
    its observation/action normalisers (part of the policy state) into every critic ensemble."""
    for policy in policies:
        policy.load_state_dict(actor_state)
    for critic in critics:
        critic.copy_normalizers(policies[0].obs_normalizer, policies[0].act_normalizer)


class Algorithm(ABC):
    name: ClassVar[str]
    on_policy: ClassVar[bool] = False
    """On-policy algorithms (DPPO) train from rollouts (train/onpolicy.py) instead of the replay buffer: the loop
    acts through act_rollout, stores decisions, and calls update_rollout every `rollout_steps` env steps per env."""
    rollout_steps: int = 0
    """On-policy only: env steps per env between updates."""
    has_fast_path: ClassVar[bool] = False
    """The update evaluates its networks through `self.fast` (train/fastpath.py), so --run.compile/--run.precision
    apply to it."""

    def __init__(self, cfg: Any, obs_dim: int, act_dim: int, chunk_len: int, device: torch.device, seed: int):
        self.cfg, self.obs_dim, self.act_dim, self.chunk_len, self.device = cfg, obs_dim, act_dim, chunk_len, device
        # Separate generators: training noise and acting noise never perturb each other (exact resume).
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.act_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.head_gen = torch.Generator().manual_seed(seed + 2)  # CPU: random critic-head choices
        self.grad_steps = 0
        self.fast = fastpath.UpdatePath(device)  # eager fp32 until enable_fast_path

    def enable_fast_path(self, compile: bool, precision: str) -> None:
        """--run.compile / --run.precision (train/fastpath.py); the Trainer calls it once, before loading weights.
        Algorithms without a fast path run eager fp32 and say so once."""
        if not self.has_fast_path:
            if compile or precision != "fp32":
                warnings.warn(f"{self.name}: no fast path (--run.compile / --run.precision); running eager fp32",
                              RuntimeWarning, stacklevel=2)
            return
        fastpath.enable_fast_path(self, compile, precision)

    @abstractmethod
    def act(self, obs: torch.Tensor, mode: ActMode, generator: torch.Generator | None = None) -> torch.Tensor:
        """obs [N, Do] (raw env obs) -> action chunk [N, H, Da] in env action space."""

    @abstractmethod
    def update(self, buffer: ReplayBuffer) -> dict[str, float]:
        """One gradient update (samples its own batches); returns train/ metrics."""

    def act_rollout(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """On-policy acting: obs [n, Do] -> (chunk [n, H, Da], extras {name: [n, ...]} stored per decision)."""
        raise NotImplementedError(f"{type(self).__name__} is not an on-policy algorithm")

    def update_rollout(self, rollout: Any) -> dict[str, float]:
        """On-policy update from a finished rollout (train/onpolicy.RolloutStorage); returns train/ metrics."""
        raise NotImplementedError(f"{type(self).__name__} is not an on-policy algorithm")

    def critic_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor | None:
        """Critic-quality diagnostic hook (critics/diagnostics.py, train/critic_diag/*): obs [n, Do] raw, executed
        chunks actions [n, H, Da] env space -> Q per head [M, n] of the ensemble the policy follows, trained with
        per-env-step discount `cfg.gamma` (critics/targets.py). None (default): no Q(s, a_chunk) critic."""
        return None

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Everything saved to model.safetensors; `actor` must be the deployable FlowPolicy."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        ...

    def generators(self) -> dict[str, torch.Generator]:
        return {"gen": self.gen, "act_gen": self.act_gen, "head_gen": self.head_gen}

    def extra_state(self) -> dict:
        return {"grad_steps": self.grad_steps}

    def load_extra_state(self, state: dict) -> None:
        self.grad_steps = int(state["grad_steps"])
