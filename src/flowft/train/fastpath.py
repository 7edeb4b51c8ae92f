"""Fast path for the OGPO update (issue 18): torch.compile'd network calls and optional bf16 autocast.

`UpdatePath` is how an algorithm evaluates the networks of its update. The default instance is plain eager fp32 and
gives bitwise the results of calling the modules directly. `--run.compile` compiles (dynamic=False: the shapes are
fixed per run, one graph each) the K-step SDE imagination chain with its velocity MLP (noise given), the critic
ensemble's no-grad scoring and its TD-step training forward and backward (AOTAutograd); on CUDA also the
teacher-forced chain log-prob and the CFM term, all captured as CUDA graphs (mode="reduce-overhead"); `COMPILED` says
why not on CPU. Every random draw stays outside the compiled functions, from the same generator in the same order as
the eager path, so compiled updates follow the eager ones up to float rounding and exact resume holds.

`--run.precision`: bf16-nograd runs the no-grad imagination and critic scoring under bf16 autocast; bf16 also the
teacher-forced log-probs, the critic TD step and the CFM term (mixed precision: weights, optimizer state, chains and
log-prob sums stay fp32). The PPO ratio must be 1 at theta = theta_old, so whenever the chain was imagined in bf16
the old log-probs are not the sampler's but the teacher-forced log-prob of the EMA actor through the very calls
(function, precision, rows and shapes) that give the new ones (`old_log_prob_rows`).

`enable_fast_path` compiles by running one real update on a synthetic buffer (every graph the run needs, backward
included), then restores every weight, optimizer state, generator and counter; where that fails (no C++ compiler,
unsupported platform, a compile error) the run goes eager with one warning.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from flowft.data.buffer import ReplayBuffer
from flowft.policies.flow import SDESample

if TYPE_CHECKING:
    from flowft.algos.base import Algorithm

Precision = Literal["fp32", "bf16-nograd", "bf16"]
PRECISIONS = ("fp32", "bf16-nograd", "bf16")
COMPILED = {"cpu": ("imagine", "score", "critic"), "cuda": ("imagine", "score", "critic", "log_prob", "cfm")}
"""The pieces torch.compile'd, per device type. On CPU not the teacher-forced log-prob (one batched call already,
matmul- and GELU-bound: forward + backward 12.3 -> 11.7 ms, whole update no faster) nor the CFM term (64 rows, ~1 %
of an update); docs/benchmarks.md (issue 18). On CUDA both too: CUDA graphs remove their kernel launches. With the
gelu-tanh activation compiling the log-prob on CPU gains 6-10 %, but the whole update stays slower than with erf GELU
(second pass in the same doc); `pieces` / update_speed.py's "compile+log_prob" modes measure such variants."""


ROW_BUCKET = 64
"""Under bf16 a log-prob call over a subset of the chains pads it to a multiple of this many rows: oneDNN builds its
bf16 kernels per shape (a new row count took 4x a cached one, Lift dims, 1 thread), and the number of live chains
changes at every update; fp32 calls stay unpadded (MKL has no per-shape kernels)."""


def _autocast(device: torch.device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


# Pure functions (no RNG, no tensor-valued branch, no .item()): what torch.compile traces. Flags are Python constants.
def _imagine(policy, obs, x0, eps, bf16: bool):
    with _autocast(obs.device, bf16):
        s = policy.sde_given(obs, x0, eps)
    return s.actions, s.chain, s.logp


def _score(critic, obs, actions, bf16: bool):
    with _autocast(obs.device, bf16):
        return critic(obs, actions).float()


def _critic(critic, obs, actions, bf16: bool):  # = _score, but its own dynamo cache: the critic's training graphs
    with _autocast(obs.device, bf16):
        return critic(obs, actions).float()


def _log_prob(policy, obs, chain, bf16: bool):
    with _autocast(obs.device, bf16):
        return policy.log_prob(obs, chain).float()


def _cfm(policy, obs, actions, valid, x0, t, bf16: bool):
    with _autocast(obs.device, bf16):
        return policy.cfm_loss_given(obs, actions, valid, x0, t).float()


_FUNCTIONS = {"imagine": _imagine, "score": _score, "critic": _critic, "log_prob": _log_prob, "cfm": _cfm}
_COMPILED_BY_MODE: dict[tuple, dict] = {}


def _key(mode: str, device_type: str, pieces: tuple[str, ...] | None) -> tuple:
    return (mode, device_type) if pieces is None else (mode, device_type, tuple(sorted(pieces)))


def _functions(mode: str | None, device_type: str = "cpu", pieces: tuple[str, ...] | None = None) -> dict:
    """One set of torch.compile wrappers per (mode, device type, pieces) for the whole process: every algorithm (and
    every Trainer of a test session) shares the compiled graphs instead of recompiling them (dynamo's recompile
    limit). `pieces`: the functions to compile (default COMPILED[device type]; benchmarks/update_speed.py varies it)."""
    if mode is None:
        return dict(_FUNCTIONS)
    key = _key(mode, device_type, pieces)
    compiled = COMPILED.get(device_type, COMPILED["cuda"]) if pieces is None else pieces
    if key not in _COMPILED_BY_MODE:
        _COMPILED_BY_MODE[key] = {k: torch.compile(f, dynamic=False, mode=mode) if k in compiled else f
                                  for k, f in _FUNCTIONS.items()}
    return _COMPILED_BY_MODE[key]


def bf16_supported(device: torch.device) -> bool:
    """bf16 matmuls that are fast: AVX512-BF16 / AMX (oneDNN) on CPU, bf16 support on the GPU."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class UpdatePath:
    """Network calls of an update: eager or compiled (`mode` = torch.compile mode, None = eager), and precision:
    fp32 | bf16-nograd (bf16 autocast for the no-grad imagination and critic scoring) | bf16 (also for the
    teacher-forced log-probs, old and new alike, the critic TD step and the CFM term: mixed precision, weights,
    optimizer state, chains and log-prob sums stay fp32)."""

    def __init__(self, device: torch.device, mode: str | None = None, precision: Precision = "fp32",
                 pieces: tuple[str, ...] | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if pieces is not None and not set(pieces) <= set(_FUNCTIONS):
            raise ValueError(f"pieces must be among {tuple(_FUNCTIONS)}, got {pieces!r}")
        self.device, self.mode, self.precision, self.pieces = device, mode, precision, pieces
        self.bf16_nograd, self.bf16_train = precision != "fp32", precision == "bf16"
        self.cudagraphs = mode == "reduce-overhead"
        self.fn = _functions(mode, device.type, pieces)
        self.skip_zero_weight = True  # log_prob_rows' split; False = one call over every chain (update_speed.py)

    def __repr__(self) -> str:
        pieces = "" if self.pieces is None or self.mode is None else f", pieces={'+'.join(sorted(self.pieces))}"
        return f"UpdatePath(compile={self.mode or 'off'}, precision={self.precision}{pieces})"

    def sample_sde(self, policy, obs: torch.Tensor, G: int, generator: torch.Generator | None,
                   logp: bool = True) -> SDESample:
        """= policy.sample_sde(obs, G, generator) (same draws). A chain imagined in bf16 gets (with `logp`) its
        log-prob recomputed by `log_prob`, the function and precision of the new log-probs: the sampler's own differs
        by up to 2e-4 where compiled and eager code round bf16 intermediates differently (measured, CPU)."""
        if self.cudagraphs:  # a new step: the previous update's graph outputs may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        x0, eps = policy.sde_noise(obs.shape[0] * G, obs.device, generator)  # drawn eagerly, in eager's order
        with torch.no_grad():
            s = SDESample(*self.fn["imagine"](policy, obs, x0, eps, self.bf16_nograd))
            if logp and self.bf16_nograd:
                s.logp = self.fn["log_prob"](policy, obs, s.chain, self.bf16_train)
        return s

    @torch.no_grad()
    def score(self, critic, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Target-critic scores (no grad): obs [..., Do], actions [..., H, Da] -> fp32 [M, ...]."""
        return self.fn["score"](critic, obs, actions, self.bf16_nograd)

    def critic(self, critic, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The online critic's training forward (differentiable) -> fp32 [M, ...]."""
        return self.fn["critic"](critic, obs, actions, self.bf16_train)

    def log_prob(self, policy, obs: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-prob (differentiable): obs [B, Do], chain [G, B, K+1, d] -> fp32 [G, B]."""
        return self.fn["log_prob"](policy, obs, chain, self.bf16_train)

    def log_prob_rows(self, policy, obs: torch.Tensor, chain: torch.Tensor, rows: torch.Tensor,
                      others: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log-probs of the chains [G, B, K+1, d] (obs [B, Do]) with an autograd graph for the chains
        where rows [G, B] (bool) only -> (differentiable fp32 [n] of those chains, row-major; detached fp32 [G, B]:
        every chain, or with `others` False those chains and NaN elsewhere). A PPO chain whose weight is 0 adds
        nothing to the loss or its gradient; only the ratio statistics may want its log-prob (`others`), and its
        no-grad forward costs about a third of a forward + backward (Lift dims, 512 chains, 1 thread: 19.7 -> 11.3
        CPU ms at 30 % rows with a gradient; docs/benchmarks.md). One call over every chain where the log-prob is
        compiled (fixed shapes) and when every row needs its gradient."""
        fixed = self.fn["log_prob"] is not _log_prob or not self.skip_zero_weight
        if fixed or bool(rows.all()):
            logp = self.log_prob(policy, obs, chain)  # [G, B]
            return logp[rows], logp.detach()
        S = obs.unsqueeze(0).expand(*rows.shape, obs.shape[-1])  # [G, B, Do]
        out = torch.full(rows.shape, float("nan"), device=chain.device)  # [G, B]
        if others:
            with torch.no_grad():
                out[~rows] = self._subset(policy, S[~rows], chain[~rows])
        live = self._subset(policy, S[rows], chain[rows]) if rows.any() else out.new_zeros(0)  # [n]
        out[rows] = live.detach()
        return live, out

    def _subset(self, policy, obs: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Log-probs of n chains: obs [n, Do], chain [n, K+1, d] -> [n]; under bf16 computed over n rounded up to a
        multiple of ROW_BUCKET (copies of the last chain, dropped after)."""
        n, pad = obs.shape[0], (-obs.shape[0]) % ROW_BUCKET if self.bf16_train else 0
        if pad:
            obs, chain = torch.cat([obs, obs[-1:].expand(pad, -1)]), torch.cat([chain, chain[-1:].expand(pad, -1, -1)])
        return self.log_prob(policy, obs, chain.unsqueeze(0))[0, :n]

    @torch.no_grad()
    def old_log_prob_rows(self, policy_target, obs: torch.Tensor, chain: torch.Tensor, rows: torch.Tensor,
                          others: bool, sampled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The old log-probs paired with `log_prob_rows(policy, obs, chain, rows, others)`: (fp32 [n] of the chains
        where rows [G, B], fp32 [G, B]). Imagined in fp32: the sampler's own log-probs `sampled` [G, B]. Imagined in
        bf16 (the sampler's would differ by up to 2e-4): the EMA actor's teacher-forced log-probs through the same
        calls as the new ones, rows and shapes included, so the ratio is exactly 1 at theta = theta_old while the
        chains of zero weight still skip every log-prob forward (none at all without `others`)."""
        if not self.bf16_nograd:
            return sampled[rows], sampled
        return self.log_prob_rows(policy_target, obs, chain, rows, others)

    def cfm_loss(self, policy, obs, actions, valid, generator: torch.Generator | None) -> torch.Tensor:
        """= policy.cfm_loss(obs, actions, valid, generator): the same x0 then t draws, then the pure loss."""
        x0 = torch.randn(obs.shape[0], policy.flat_dim, device=obs.device, generator=generator)
        t = torch.rand(obs.shape[0], device=obs.device, generator=generator)
        return self.fn["cfm"](policy, obs, actions, valid, x0, t, self.bf16_train)


# ------------------------------------------------------------------------------------------------ enabling
def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def synthetic_buffer(obs_dim: int, act_dim: int, chunk_len: int, seed: int = 0) -> ReplayBuffer:
    """Random transitions with finished and successful episodes: every branch of an update can sample from it."""
    buf, rng = ReplayBuffer(2, 256, obs_dim, act_dim, chunk_len, seed=seed), np.random.default_rng(seed)
    for t in range(64):
        done = np.array([t % 16 == 15, t % 24 == 23])
        buf.add_batch(rng.standard_normal((2, obs_dim)), rng.uniform(-1, 1, (2, act_dim)), -np.ones(2), done,
                      np.zeros(2, bool), rng.standard_normal((2, obs_dim)), done)
    return buf


def _snapshot(algo: Algorithm) -> dict:
    return {"modules": {k: copy.deepcopy(m.state_dict()) for k, m in algo.modules().items()},
            "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in algo.optimizers().items()},
            "generators": {k: g.get_state() for k, g in algo.generators().items()},
            "extra": copy.deepcopy(algo.extra_state()), "torch_rng": torch.random.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(algo.device) if algo.device.type == "cuda" else None}


def _restore(algo: Algorithm, snap: dict) -> None:
    for k, m in algo.modules().items():
        m.load_state_dict(snap["modules"][k])  # in place: parameter identity (and the compiled graphs) survive
        for p in m.parameters():
            p.grad = None
    for k, o in algo.optimizers().items():
        o.load_state_dict(snap["optimizers"][k])
    for k, g in algo.generators().items():
        g.set_state(snap["generators"][k])
    algo.load_extra_state(snap["extra"])
    torch.random.set_rng_state(snap["torch_rng"])
    if snap["cuda_rng"] is not None:
        torch.cuda.set_rng_state(snap["cuda_rng"], algo.device)


def _warm_up(algo: Algorithm, path: UpdatePath) -> None:
    """Compile every graph of a real update (the actor step too: past any critic-only warm-up), then restore."""
    snap, buf = _snapshot(algo), synthetic_buffer(algo.obs_dim, algo.act_dim, algo.chunk_len)
    algo.fast = path
    try:
        algo.grad_steps = max(algo.grad_steps, int(getattr(algo.cfg, "critic_warmup", 0)))
        for _ in range(3 if path.cudagraphs else 1):  # CUDA graphs are recorded on a later call than the first
            algo.update(buf)
    finally:
        _restore(algo, snap)


def enable_fast_path(algo: Algorithm, compile: bool, precision: Precision,
                     pieces: tuple[str, ...] | None = None, modes: tuple[str, ...] | None = None) -> UpdatePath:
    """The UpdatePath for `algo` on its device (sets algo.fast); falls back with one warning where it cannot run.
    `pieces`: which functions to compile (default: COMPILED for the device); `modes`: the torch.compile modes to try
    in order (default: reduce-overhead then default on CUDA, default on CPU)."""
    if precision != "fp32" and not bf16_supported(algo.device):
        _warn(f"--run.precision {precision}: this {algo.device.type} has no fast bf16 matmuls; running fp32")
        precision = "fp32"
    algo.fast = UpdatePath(algo.device, None, precision)
    if not compile:
        return algo.fast
    modes = modes or (("reduce-overhead", "default") if algo.device.type == "cuda" else ("default",))
    errors = []
    for mode in modes:
        try:
            path = UpdatePath(algo.device, mode, precision, pieces)  # torch.compile raises on unsupported Pythons
            _warm_up(algo, path)
        except Exception as err:  # noqa: BLE001 - any compiler failure means: do not compile
            first = (str(err).strip().splitlines() or [""])[0][:300]
            errors.append(f"mode={mode}: {type(err).__name__}: {first}")
            _COMPILED_BY_MODE.pop(_key(mode, algo.device.type, pieces), None)
            torch._dynamo.reset()
            continue
        algo.fast = path
        if errors:
            _warn(f"--run.compile: {errors[0]}; compiled with mode={mode} instead")
        return path
    algo.fast = UpdatePath(algo.device, None, precision)
    _warn(f"--run.compile: torch.compile failed ({'; '.join(errors)}); running the update eager. Compiling needs a "
          "C++ compiler on CPU (Triton on GPU) and a platform torch.compile supports")
    return algo.fast
