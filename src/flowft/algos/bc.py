"""Behaviour-cloning pretraining of the flow policy with the paper's "clip to <= 50 %" start.

Default gate (`gate="confirmed"`, bc_gate.py): once the BC loss has flattened (`min_steps` and a windowed-mean
plateau test), every `eval_every` steps a cheap check (`eval_episodes` episodes of `clip_sampler`) that reaches
`clip_threshold` triggers a confirmation: `confirm_episodes` episodes of the ODE policy, the policy the finetuning run
starts from and reports. BC stops when the confirmed success lies in [clip_threshold, clip_max] and saves exactly the
confirmed weights; an overshoot above clip_max rolls back to the previous check (`overshoot`). `gate="first-check"`
is the earlier rule: stop at the first periodic check with success >= clip_threshold (bc_runner.run_bc_training).
The "bon" sampler is the online rollout sampler, Best-of-N SDE scored by a freshly initialised (untrained) critic
ensemble, exactly what the paper-size finetuning run executes at its step 0; `sde` (one SDE sample) and `ode` too.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from flowft import __version__
from flowft.algos.bc_gate import ClipGate, LossPlateau
from flowft.critics.ensemble import polyak
from flowft.data.load import load_demos
from flowft.data.readers import ReadOptions
from flowft.envs.make import make_vec_env, release_vec_env
from flowft.errors import DataError
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.registry import get_task, task_slug
from flowft.train.evaluate import eval_stream, evaluate
from flowft.train.runguard import children_ignore_stop_signals
from flowft.utils.checkpoint import atomic_dir, commit_dir, save_modules
from flowft.utils.config_io import to_dict, write_json
from flowft.utils.manifest import CHECKPOINT_FORMAT
from flowft.utils.provenance import record as record_provenance
from flowft.utils.logging import Logger, LogConfig, console
from flowft.utils.seeding import seed_everything
from flowft.utils.validate import (INT_NONNEG, INT_POS, LOG_RULES, NONNEG, POS, UNIT, check, integer, number, rules,
                                   sub_rules)


@dataclass(frozen=True)
class BCConfig:
    demos: str
    """Demonstrations: a robomimic-style HDF5 file (`flowft demos` writes one; real robomimic files work too) or a
    Minari dataset already on disk (directory or dataset id; never downloaded)."""
    demos_format: Literal["auto", "robomimic", "minari"] = "auto"
    """Reader of --demos; auto picks by the file's layout (docs/data.md)."""
    task: str = "toy"
    """Task whose env evaluates the clip checks (`flowft info` lists the built-in ones); set by --task."""
    policy: FlowPolicyConfig = field(default_factory=FlowPolicyConfig)
    steps: int = 500_000
    """Maximum gradient steps (500k square/kitchen, 50k Adroit in the paper)."""
    batch_size: int = 256
    """Action chunks per gradient step."""
    lr: float = 3e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights (as in Diffusion Policy), warmed up as
    min(ema, (1 + t) / (10 + t)) at step t. When > 0 the averaged weights are the policy: every clip check, the
    confirmation and the saved checkpoint use them. 0: the raw weights (every published BC)."""
    eval_every: int = 5_000
    """Gradient steps between clip checks (5k square, 1k Adroit)."""
    eval_episodes: int = 64
    """Episodes of the periodic (cheap) check; with gate="confirmed" it only triggers a confirmation."""
    eval_envs: int = 16
    """Parallel envs of the clip checks."""
    clip: bool = True
    """Clip the BC start at >= clip_threshold success (the paper's clipped BC start); False trains `steps` steps."""
    clip_threshold: float = 0.45
    """Success rate at which BC stops (the paper's clip: 45 %)."""
    clip_sampler: Literal["bon", "sde", "ode"] = "bon"
    """Sampler of the periodic check. bon: the online rollout sampler with an untrained critic (reference). Its
    argmax over a random critic tends to pick worse chunks than a plain SDE sample (measured: lift 0.16 vs 0.69);
    `ode` is the policy the confirmation and the finetuning runs' evaluations read (docs/tasks.md)."""
    gate: Literal["confirmed", "first-check"] = "confirmed"
    """confirmed: clip only after the loss has flattened, on a confirmation of `confirm_episodes` ODE episodes in
    [clip_threshold, clip_max] (module doc). first-check: the earlier rule, stop at the first periodic check with
    success >= clip_threshold (no plateau test, no confirmation; it overshoots on fast-rising curves)."""
    min_steps: int = 0
    """Gradient steps before the plateau test may pass (gate="confirmed")."""
    plateau_window: int = 500
    """Steps per window of the plateau test: the loss has flattened when the mean BC loss over the last window
    improved on the window before by less than plateau_tol (relative)."""
    plateau_tol: float = 0.02
    """Relative improvement between two consecutive loss windows below which the loss counts as flat."""
    confirm_episodes: int = 64
    """Episodes of the confirmation (the paper's evaluation size), on reset seeds disjoint from the cheap check's."""
    confirm_sampler: Literal["ode", "sde", "bon"] = "ode"
    """Sampler of the confirmation: ode is the deterministic policy the finetuning runs evaluate at step 0."""
    confirm_start: bool = True
    """Also read, at every confirmation, the exact episodes a finetuning run from the saved weights evaluates at step 0
    (its reset seeds, generator and `start_eval_envs` envs; ODE) and confirm with the higher of the two reads: the
    run's recorded start is then <= clip_max whenever the gate clipped, and the independent read keeps the choice from
    resting on those 64 episodes' luck. Needs confirm_sampler ode. (A 7-demo Lift BC confirmed 0.42 on the
    independent read alone, and its run read 0.55 at step 0.)"""
    start_seed: int | None = None
    """Seed of the finetuning run whose step-0 evaluation the start read repeats; None: this BC's seed (as
    `flowft quickstart` and the benchmark suites use)."""
    start_eval_envs: int = 8
    """Evaluation envs of that finetuning run (--run.eval-envs; its episodes depend on it). Its evaluation must also
    have confirm_episodes episodes (--run.eval-episodes)."""
    clip_max: float = 0.5
    """Ceiling of the confirmed success: the paper's BC start is <= 50 %."""
    overshoot: Literal["rollback", "continue"] = "rollback"
    """A confirmation above clip_max: rollback confirms the previous check's weights (loss already flat) and stops
    with the best confirmed weights <= clip_max (highest success; possibly an earlier check that confirmed below
    clip_threshold), continuing only if there are none; continue keeps training. Without a stop, `steps` ends the run:
    the final weights are confirmed and the best confirmed weights <= clip_max are saved (else the lowest, flagged
    bc/over_ceiling)."""
    clip_critic_heads: int = 10
    """Heads of the untrained critic that scores Best-of-N during the clip check (the finetuning preset's M)."""
    only_success: bool = True
    """Train only on successful demo episodes (which ones: --success-rule)."""
    max_episodes: int | None = None
    """Read at most this many (kept) demo episodes, in file order; None = all."""
    obs_keys: tuple[str, ...] = ()
    """Observation keys of the demo file, concatenated in this order (must be the env's order). Empty: the file's
    env_args["obs_keys"], else sorted (HDF5) or observation, desired_goal, achieved_goal, rest sorted (Minari),
    with a warning (docs/data.md)."""
    success_key: str | None = None
    """Name of the demo episodes' success flag (an attribute, a per-step array, or infos/<key>); None: `success`,
    then `is_success`."""
    success_rule: Literal["auto", "flag", "terminal", "reward", "all"] = "auto"
    """Which demo episodes succeeded. flag: the success key; terminal: the last dones/terminations entry; reward:
    any reward >= --success-reward; all: every episode; auto: the flag if stored, else (Minari) termination, else
    sparse non-negative integer rewards reaching the task count. Dense or negative rewards are never guessed
    (docs/data.md)."""
    success_reward: float | None = None
    """Threshold of --success-rule reward (0 for the -1/0 sparse reward, 1 for a 0/1 goal reward)."""
    seed: int = 0
    """Seed of the weights, the minibatches and the clip checks' resets."""
    device: str = "cpu"
    """torch device (cpu, cuda, cuda:N)."""
    threads: int | None = None
    """torch threads; None: torch's choice."""
    out_dir: str = "runs"
    """Parent directory of the run directory."""
    run_name: str | None = None
    """Run directory name; None: bc-TASK-sSEED-DATE-TIME."""
    log: LogConfig = field(default_factory=lambda: LogConfig(log_every=1000))

    def __post_init__(self):
        # first-check ignores clip_max; a threshold above 1 is its way of never clipping
        check(self, _RULES, "", lambda c, flag: [
            (c.gate != "confirmed" or c.clip_threshold <= c.clip_max, "clip_threshold",
             f"must be <= {flag('clip_max')} ({c.clip_max}) with --gate confirmed"),
            ((c.success_rule == "reward") == (c.success_reward is not None), "success_reward",
             f"is needed with {flag('success_rule')} reward and only with it"),
            (c.success_key is None or bool(c.success_key.strip()), "success_key", "must be a non-empty name"),
            (not c.confirm_start or c.confirm_sampler == "ode", "confirm_start",
             f"repeats the finetuning run's step-0 ODE evaluation, so it needs {flag('confirm_sampler')} ode"),
            *sub_rules(c, "log", LOG_RULES)])

    def read_options(self, action_bounds=None) -> ReadOptions:
        """The demo reader's options (flowft.data.readers) from this config."""
        return ReadOptions(self.obs_keys, self.success_key, self.success_rule, self.success_reward, self.only_success,
                           self.max_episodes, action_bounds)


_RULES = rules({
    ("steps", "batch_size", "eval_every", "eval_episodes", "eval_envs", "plateau_window", "confirm_episodes",
     "clip_critic_heads", "start_eval_envs"): INT_POS, ("min_steps", "seed"): INT_NONNEG, "lr": POS,
    "start_seed": integer(0, none="this BC's seed"),
    ("weight_decay", "plateau_tol"): NONNEG, "ema": number(ge=0, lt=1, note="0 turns the average off"),
    "clip_threshold": number(ge=0, note="> 1 never clips with --gate first-check"), "clip_max": UNIT,
    "max_episodes": integer(1, none="all"), "threads": integer(1, none="torch's choice"),
    "success_reward": number(none="no threshold (rules other than reward)")})


def pretrain(cfg: BCConfig) -> tuple[Path, dict]:
    """Train, clip, save. Returns (checkpoint dir, result: the recorded evaluation and the bc/* gate fields)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    task = get_task(cfg.task)
    # the demos are checked against one env's spaces before the evaluation workers start (minutes on a simulator)
    probe = task.make(False)
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    obs_dim, act_dim, H = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape)), task.chunk_len
    data = load_demos(cfg.demos, cfg.demos_format, cfg.read_options((act_space.low, act_space.high)))
    if data.obs.shape[1] != obs_dim or data.actions.shape[1] != act_dim:
        raise DataError(f"{cfg.demos}: demo obs/action dims {data.obs.shape[1]}/{data.actions.shape[1]} do not match "
                        f"task '{cfg.task}' ({obs_dim}/{act_dim})")
    venvs: dict[int, object] = {}  # evaluation envs by count (the start read's start_eval_envs may differ)

    def venv_of(n: int):
        if n not in venvs:
            with children_ignore_stop_signals():  # a run that reuses them (shared_vec_envs) needs them past a Ctrl-C
                venvs[n] = make_vec_env(task, n)
        return venvs[n]

    venv_of(cfg.eval_envs)  # before training: a broken env fails here, not at the first check
    policy = FlowPolicy(obs_dim, act_dim, H, cfg.policy).to(device)
    policy.fit_normalizers(torch.from_numpy(data.obs), torch.from_numpy(data.actions))
    # the policy that is checked and saved: the trained weights, or their moving average (--ema)
    shown = copy.deepcopy(policy) if cfg.ema > 0 else policy
    bon = _clip_gate(policy, cfg, H, device) if "bon" in (cfg.clip_sampler, cfg.confirm_sampler) else None

    def evaluate(kind: str, step: int) -> dict:
        venv = venv_of(cfg.start_eval_envs if kind == "start" else cfg.eval_envs)
        return _evaluate(shown, bon, venv, H, cfg, kind, step, device)

    gate = ClipGate(cfg, shown, evaluate) if cfg.clip and cfg.gate == "confirmed" else None
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.out_dir) / (cfg.run_name or f"bc-{task_slug(cfg.task)}-s{cfg.seed}-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=False)
    config = {"kind": "bc", "flowft_version": __version__, "task": cfg.task, "bc": to_dict(cfg),
              "policy": to_dict(cfg.policy), "dims": {"obs_dim": obs_dim, "act_dim": act_dim, "chunk_len": H},
              "env_meta": data.env_meta, "demos_meta": data.demo_meta}
    write_json(run_dir / "config.json", config)
    record_provenance(run_dir)
    logger = Logger(run_dir, cfg.log, config)
    try:
        step, result = _train(cfg, policy, shown, data, H, device, logger, evaluate, gate)
        if gate is not None:  # the confirmed weights to save are loaded into `shown` here (it may evaluate)
            result = {**gate.finish(step), "bc/gate": cfg.gate}
    finally:
        for v in venvs.values():
            release_vec_env(v)
    if gate is not None:
        (run_dir / "gate.json").write_text(json.dumps({"checks": gate.history, "result": result}, indent=1,
                                                      default=float))
        print(f"[bc] saved step {result['bc/steps']}: {cfg.confirm_sampler} success {result['eval/success']:.3f} "
              f"on {cfg.confirm_episodes} episodes (clipped={result['bc/clipped']}, "
              f"rolled_back={result['bc/rolled_back']}, over_ceiling={result['bc/over_ceiling']})", file=sys.stderr)
    final = run_dir / "checkpoint"
    tmp = atomic_dir(final)
    save_modules(tmp / "model.safetensors", {"actor": shown})
    # format_version: the manifest written by commit_dir is then required (a missing one reads as damage)
    write_json(tmp / "config.json", {"format_version": CHECKPOINT_FORMAT, **config, "result": result})
    commit_dir(tmp, final)
    logger.close()
    return final, result


def ema_rate(decay: float, step: int) -> float:
    """Polyak rate of --ema's average after gradient step `step` (1-based): 1 - min(decay, (1 + t) / (10 + t)), so
    early steps move the average fast and it settles at 1 - decay."""
    return 1 - min(decay, (1 + step) / (10 + step))


def _train(cfg: BCConfig, policy: FlowPolicy, shown: FlowPolicy, data, H: int, device, logger: Logger, evaluate,
           gate: ClipGate | None) -> tuple[int, dict]:
    """The BC gradient steps and periodic checks; returns (last step, result of the first-check / no-clip path).
    `shown` is the policy the checks read: `policy` itself, or (cfg.ema > 0) its moving average, updated here."""
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    plateau = gate.plateau if gate is not None else LossPlateau(cfg.plateau_window, cfg.plateau_tol)
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator(device=device).manual_seed(cfg.seed)
    # a bar over the step budget (with ETA to it: a clip can stop earlier); check lines are written above it
    bar = tqdm(total=cfg.steps, desc="BC", unit="step", dynamic_ncols=True, disable=None if cfg.log.progress else True)
    try:
        step, result = _steps(cfg, policy, shown, data, H, device, logger, evaluate, gate, opt, plateau, rng, gen,
                              bar)
    finally:
        bar.close()
    clipped = bool(cfg.clip and result.get("eval/success", 0) >= cfg.clip_threshold)
    return step, {**result, "bc/steps": step, "bc/clipped": clipped, "bc/gate": cfg.gate if cfg.clip else "none"}


def _steps(cfg: BCConfig, policy: FlowPolicy, shown: FlowPolicy, data, H: int, device, logger: Logger, evaluate, gate,
           opt, plateau, rng, gen, bar) -> tuple[int, dict]:
    """Gradient steps until the budget or a clip; returns (last step, result of the first-check / no-clip path)."""
    result: dict = {}
    for step in range(1, cfg.steps + 1):
        obs, actions, valid = (x.to(device) for x in data.sample_chunks(cfg.batch_size, H, rng))
        loss = policy.cfm_loss(obs, actions, valid, generator=gen)
        if not torch.isfinite(loss):
            raise RuntimeError(f"BC loss became {loss.item()} at step {step}; nothing was saved")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if shown is not policy:
            polyak(shown, policy, ema_rate(cfg.ema, step))
        plateau.update(loss.item())
        bar.update(1)
        losses = {"train/bc_loss": loss.item(), "train/bc_loss_smooth": plateau.smoothed(),
                  "train/bc_loss_improvement": plateau.improvement()}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if gate is not None:
                stop = gate.check(step)
                rec = gate.history[-1]
                logger.log({**losses, "bc/flat": float(rec["flat"]), **{f"eval/{k}": rec[k] for k in
                            ("cheap", "confirmed") if k in rec}}, 0, step)
                console(f"[bc {step:>7d}] loss={losses['train/bc_loss_smooth']:.4f} "
                        f"(improvement {losses['train/bc_loss_improvement']:+.3f}/window, flat={rec['flat']}) "
                        f"cheap={rec.get('cheap', math.nan):.3f} confirmed={rec.get('confirmed', math.nan):.3f}")
                if stop:
                    break
                continue
            result = {f"eval/{k}": v for k, v in evaluate("cheap", step).items()}
            logger.log({**losses, **result}, 0, step)
            console(f"[bc {step:>7d}] loss={losses['train/bc_loss_smooth']:.4f} success={result['eval/success']:.3f}")
            if cfg.clip and result["eval/success"] >= cfg.clip_threshold:
                break
        elif step % cfg.log.log_every == 0:
            logger.log(losses, 0, step)
            bar.set_postfix(loss=f"{losses['train/bc_loss_smooth']:.4f}", refresh=False)
    return step, result


def _clip_gate(policy: FlowPolicy, cfg: BCConfig, H: int, device):
    """The Best-of-N rollout sampler with an untrained critic, built once (same critic at every clip check,
    global RNG untouched); `_evaluate` loads the current BC weights into its actor."""
    from flowft.algos.ogpo import OGPO, OGPOConfig
    from flowft.critics.ensemble import CriticConfig

    acfg = OGPOConfig(policy=cfg.policy, critic=CriticConfig(num_heads=cfg.clip_critic_heads, hidden=cfg.policy.hidden))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return OGPO(acfg, policy.obs_dim, policy.act_dim, H, device, cfg.seed)


def _evaluate(policy: FlowPolicy, bon, venv, H: int, cfg: BCConfig, kind: str, step: int, device) -> dict:
    """One gate evaluation. kind "cheap": the periodic check; "confirm": the confirmation, on its own reset-seed
    stream (seed + 30 000) so that it never re-reads the cheap check's episodes; "start": the finetuning run's
    step-0 ODE evaluation (train/evaluate.py eval_stream; venv must have start_eval_envs envs)."""
    if kind == "start":
        reset_seed, stream, gen_seed = eval_stream(cfg.seed if cfg.start_seed is None else cfg.start_seed, 0)
        start_gen = torch.Generator(device=device).manual_seed(gen_seed)
        return evaluate(lambda o: policy.sample_ode(o, generator=start_gen), venv, H, cfg.confirm_episodes,
                        seed=reset_seed, stream=stream, device=device,
                        progress="BC start read" if cfg.log.progress else None)
    sampler, episodes, offset = ((cfg.clip_sampler, cfg.eval_episodes, 0) if kind == "cheap" else
                                 (cfg.confirm_sampler, cfg.confirm_episodes, 10_000))
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + step + 1_000_003 * (offset > 0))
    if sampler == "bon":
        bon.init_from_bc(policy.state_dict())
        act = lambda o: bon.act(o, "bon", generator=gen)  # noqa: E731
    elif sampler == "sde":
        act = lambda o: policy.sample_sde(o, 1, generator=gen).actions[0]  # noqa: E731
    else:
        act = lambda o: policy.sample_ode(o, generator=gen)  # noqa: E731
    return evaluate(act, venv, H, episodes, seed=cfg.seed + 20_000 + offset, stream=step, device=device,
                    progress=f"BC {kind} check" if cfg.log.progress else None)
