"""Scripted demonstration generators for robosuite Lift / PickPlaceCan / NutAssemblySquare.

The experts are feedback controllers on privileged state (object poses from the
robosuite observation dict and a few env attributes), driving the OSC_POSE action:
``a[:3] = clip(gain * (target - eef_pos), -1, 1)`` (OSC delta, 5 cm per unit), ``a[3:6]``
a yaw servo (Square only, zero otherwise), ``a[6] = -1`` open / ``+1`` close, sequenced
by a small phase machine. Recipes follow ``shared/docs/simulators_and_data.md`` §4a/§7.1.

Demos are "ph-like": unimodal and near-optimal (``style="clean"``). ``style="operator"``
(operator_noise.py) perturbs the expert per episode and adds correlated noise, pauses and
ramped gripper commands. Neither is the robomimic human data.

Usage::

    from flowft.envs.robosuite_experts import generate_episodes, env_metadata
    eps = generate_episodes("lift", n=50, seed=0)
    good = [e for e in eps if e["success"]]
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from .demo_progress import episode_done
from .operator_noise import (STYLES, TASK_PROFILES, ExpertParams, OperatorLayer, OperatorNoise, draw_episode,
                             episode_rng)
from .operator_noise import quat_xyzw_to_mat as _quat_xyzw_to_mat
from .robosuite_tasks import TASKS, RobosuiteEnv, env_metadata

__all__ = ["EXPERT_TASKS", "LiftExpert", "CanExpert", "SquareExpert", "make_expert", "rollout_expert",
           "generate_episodes", "env_metadata", "OBS_META"]

EXPERT_TASKS = ("lift", "can", "square")


def OBS_META(task: str) -> dict[str, Any]:  # noqa: N802 - name requested by the integrator
    """Alias of :func:`flowft.envs.robosuite_tasks.env_metadata` (JSON-able)."""
    return env_metadata(task)


def _move(eef: np.ndarray, target: np.ndarray, grip: float, dyaw: float = 0.0, gain: float = 10.0) -> np.ndarray:
    a = np.zeros(7)
    a[:3] = np.clip(gain * (np.asarray(target) - np.asarray(eef)), -1.0, 1.0)
    a[5] = np.clip(3.0 * dyaw, -1.0, 1.0)
    a[6] = grip
    return a


def _wrap(x: float, half_period: float) -> float:
    """Wrap angle ``x`` into [-half_period, half_period) with period 2*half_period."""
    p = 2.0 * half_period
    return (x + half_period) % p - half_period


OPEN, CLOSE = -1.0, 1.0


class _PhaseExpert:
    """Phase machine base: ``act(env)`` returns a 7-D action in [-1, 1]."""

    def __init__(self, params: ExpertParams | None = None) -> None:
        self.params = params or ExpertParams()  # per-episode strategy (operator style); defaults = clean
        self.reset()

    def _mv(self, eef: np.ndarray, target: np.ndarray, grip: float) -> np.ndarray:
        return _move(eef, target, grip, gain=self.params.gain)

    def reset(self) -> None:
        self.phase = 0
        self.k = 0  # steps spent in the current phase
        self.anchor: np.ndarray | None = None

    def _next(self, anchor: np.ndarray | None = None) -> None:
        self.phase += 1
        self.k = 0
        self.anchor = None if anchor is None else np.array(anchor, dtype=float)

    def act(self, env: RobosuiteEnv) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# Lift
# --------------------------------------------------------------------------------------


class LiftExpert(_PhaseExpert):
    """above cube +8 cm -> descend to cube -0.5 cm -> close 8 steps -> lift 10 cm."""

    def act(self, env: RobosuiteEnv) -> np.ndarray:
        o = env.obs_dict()
        eef, cube, p = o["robot0_eef_pos"], o["cube_pos"], self.params
        self.k += 1
        if self.phase == 0:
            tgt = cube + [0, 0, 0.08 * p.hover_scale]
            if np.linalg.norm(tgt - eef) < p.arrive_tol or self.k > 60:  # timeout: a shaky operator never settles
                self._next()
            return self._mv(eef, tgt, OPEN)
        if self.phase == 1:
            tgt = cube + [0, 0, -0.005] + p.grasp_offset
            if np.linalg.norm(tgt - eef) < 0.008 or self.k > 40:
                self._next(anchor=eef)
            return self._mv(eef, tgt, OPEN)
        if self.phase == 2:
            if self.k >= 8 + p.close_extra:
                self._next(anchor=self.anchor + [0, 0, 0.1])
            return self._mv(eef, self.anchor, CLOSE)
        return self._mv(eef, self.anchor, CLOSE)


# --------------------------------------------------------------------------------------
# PickPlaceCan
# --------------------------------------------------------------------------------------


class CanExpert(_PhaseExpert):
    """above can -> descend -> close -> lift -> over the target bin -> lower -> open -> retreat."""

    def act(self, env: RobosuiteEnv) -> np.ndarray:
        o = env.obs_dict()
        rs = env.rs_env
        eef, can, p = o["robot0_eef_pos"], o["Can_pos"], self.params
        goal = np.asarray(rs.target_bin_placements[rs.object_to_id["can"]], dtype=float)
        self.k += 1
        if self.phase == 0:  # above the can
            tgt = can + [0, 0, 0.10 * p.hover_scale]
            if np.linalg.norm(tgt - eef) < p.arrive_tol or self.k > 60:  # timeouts: a shaky operator never settles
                self._next()
            return self._mv(eef, tgt, OPEN)
        if self.phase == 1:  # descend (timeout: fingers hit the bin floor at z ~ 0.87)
            tgt = can + [0, 0, 0.005] + p.grasp_offset
            if np.linalg.norm(tgt - eef) < 0.012 or self.k >= 40:
                self._next(anchor=eef)
            return self._mv(eef, tgt, OPEN)
        if self.phase == 2:  # close
            a = self._mv(eef, self.anchor, CLOSE)
            if self.k >= 10 + p.close_extra:
                self._next()
            return a
        if self.phase == 3:  # lift
            tgt = np.array([eef[0], eef[1], goal[2] + 0.20])
            if abs(tgt[2] - eef[2]) < 0.01 or self.k > 40:
                self._next()
            return self._mv(eef, tgt, CLOSE)
        if self.phase == 4:  # carry over the goal
            tgt = np.array([goal[0], goal[1], goal[2] + 0.20])
            if np.linalg.norm((tgt - eef)[:2]) < p.arrive_tol or self.k > 80:
                self._next()
            return self._mv(eef, tgt, CLOSE)
        if self.phase == 5:  # lower
            tgt = np.array([goal[0], goal[1], goal[2] + 0.10])
            if np.linalg.norm(tgt - eef) < 0.01 or self.k >= 40:
                self._next(anchor=eef)
            return self._mv(eef, tgt, CLOSE)
        if self.phase == 6:  # open
            if self.k >= 5:
                self._next(anchor=self.anchor + [0, 0, 0.05])
            return self._mv(eef, self.anchor, OPEN)
        return self._mv(eef, self.anchor, OPEN)  # retreat up (success needs the gripper away)


# --------------------------------------------------------------------------------------
# NutAssemblySquare
# --------------------------------------------------------------------------------------


class SquareExpert(_PhaseExpert):
    """Grasp the square nut's handle with a yaw servo, carry it over peg1, align, lower, open.

    Recovery (at most ``MAX_RETRIES`` times per episode): a missed grasp (fingers fully
    closed, or the nut not lifted) or a nut that left the hand re-opens and re-grasps
    the nut where it lies; a nut that jams on top of the peg is lifted and re-aligned.
    """

    HANDLE_OFFSET = 0.054
    CARRY_Z = 1.05
    MAX_RETRIES = 3

    def reset(self) -> None:
        super().reset()
        self.retries = 0
        self.best_z = np.inf
        self.stall = 0

    def act(self, env: RobosuiteEnv) -> np.ndarray:
        o = env.obs_dict()
        rs = env.rs_env
        eef = o["robot0_eef_pos"]
        nut = o["SquareNut_pos"]
        grip_w = float(o["robot0_gripper_qpos"][0] - o["robot0_gripper_qpos"][1])
        Rg = _quat_xyzw_to_mat(o["robot0_eef_quat"])
        Rn = _quat_xyzw_to_mat(o["SquareNut_quat"])
        handle = nut + self.HANDLE_OFFSET * Rn[:, 0]
        finger_yaw = math.atan2(Rg[1, 1], Rg[0, 1])
        grasp_yaw = math.atan2(Rn[1, 1], Rn[0, 1])
        dyaw_grasp = _wrap(grasp_yaw - finger_yaw, math.pi / 2)
        nut_yaw = math.atan2(Rn[1, 0], Rn[0, 0])
        dyaw_place = _wrap(-nut_yaw, math.pi / 4)
        peg = np.asarray(rs.sim.data.body_xpos[rs.peg1_body_id], dtype=float)
        table_z = float(rs.table_offset[2])
        can_retry = self.retries < self.MAX_RETRIES
        self.k += 1

        if self.phase == 0:  # above the handle, aligning the finger axis
            tgt = handle + [0, 0, 0.08]
            if (np.linalg.norm(tgt - eef) < 0.01 and abs(dyaw_grasp) < 0.05) or self.k >= 100:
                self._next()
            return _move(eef, tgt, OPEN, dyaw=dyaw_grasp)
        if self.phase == 1:  # descend onto the handle
            tgt = handle + [0, 0, -0.005]
            if np.linalg.norm(tgt - eef) < 0.01 or self.k >= 40:
                self._next(anchor=eef)
            return _move(eef, tgt, OPEN, dyaw=dyaw_grasp)
        if self.phase == 2:  # close
            a = _move(eef, self.anchor, CLOSE)
            if self.k >= 10:
                if grip_w < 0.01 and can_retry:  # closed on nothing: start over
                    self.retries += 1
                    self.phase, self.k = 0, 0
                else:
                    self._next()
            return a
        if self.phase == 3:  # lift
            tgt = np.array([eef[0], eef[1], self.CARRY_Z])
            if abs(tgt[2] - eef[2]) < 0.01 or self.k >= 60:
                if nut[2] < table_z + 0.1 and can_retry:  # nut not in hand: start over
                    self.retries += 1
                    self.phase, self.k = 0, 0
                    return _move(eef, eef, OPEN)
                self._next()
            return _move(eef, tgt, CLOSE)
        d_xy = peg[:2] - nut[:2]
        if self.phase in (4, 5) and np.linalg.norm(handle - eef) > 0.04 and can_retry:
            self.retries += 1  # the nut slipped out of the hand: re-grasp where it lies
            self.phase, self.k = 0, 0
            return _move(eef, eef + [0, 0, 0.02], OPEN)
        if self.phase == 4:  # carry: nut centre over the peg, nut yaw to a multiple of pi/2
            tgt = np.array([eef[0] + d_xy[0], eef[1] + d_xy[1], self.CARRY_Z])
            if (np.linalg.norm(d_xy) < 0.005 and abs(dyaw_place) < 0.05) or self.k >= 80:
                self._next()
                self.best_z, self.stall = np.inf, 0
            return _move(eef, tgt, CLOSE, dyaw=dyaw_place)
        if self.phase == 5:  # lower while keeping alignment
            tgt = np.array([eef[0] + d_xy[0], eef[1] + d_xy[1], eef[2] - 0.2])
            a = _move(eef, tgt, CLOSE, dyaw=dyaw_place, gain=5.0)
            a[:2] = np.clip(10.0 * d_xy, -1, 1)
            if nut[2] < self.best_z - 0.002:
                self.best_z, self.stall = nut[2], 0
            else:
                self.stall += 1
            if nut[2] < table_z + 0.04 or self.k >= 80:
                self._next(anchor=eef)
            elif self.stall >= 10 and nut[2] > table_z + 0.05 and can_retry:  # jammed: re-align
                self.retries += 1
                self.phase, self.k = 4, 0
            return a
        if self.phase == 6:  # open
            if self.k >= 5:
                self._next(anchor=self.anchor + [0, 0, 0.08])
            return _move(eef, self.anchor, OPEN)
        return _move(eef, self.anchor, OPEN)  # retreat


_EXPERTS: dict[str, type[_PhaseExpert]] = {"lift": LiftExpert, "can": CanExpert, "square": SquareExpert}


def make_expert(task: str) -> _PhaseExpert:
    if task not in _EXPERTS:
        raise ValueError(f"no scripted expert for {task!r}; available: {list(_EXPERTS)}")
    return _EXPERTS[task]()


# --------------------------------------------------------------------------------------
# rollouts
# --------------------------------------------------------------------------------------


def rollout_expert(
    env: RobosuiteEnv,
    expert: _PhaseExpert,
    seed: int | None,
    action_noise: float = 0.0,
    noise_rng: np.random.Generator | None = None,
    operator: OperatorLayer | None = None,
) -> dict[str, Any]:
    """One episode of ``expert`` on ``env`` (reset with ``seed``); returns an episode dict.

    ``operator`` (operator style) turns the expert's actions into an operator's (operator_noise.py);
    ``action_noise`` is the std of i.i.d. Gaussian noise added on top (then clipped to [-1, 1]).
    The *executed* (noisy) action is recorded.
    """
    if action_noise > 0 and noise_rng is None:
        noise_rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    expert.reset()
    keys = env.task_spec.obs_keys
    obs_buf: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    acts, rews, dones = [], [], []
    success = False
    while True:
        for k, v in env.low_dim_obs().items():
            obs_buf[k].append(v)
        if operator is not None:
            a = operator.act(lambda: expert.act(env), env.obs_dict()["robot0_eef_quat"])
        else:
            a = expert.act(env)
        if action_noise > 0:
            a = a + action_noise * noise_rng.standard_normal(a.shape)
        a = np.clip(a, -1.0, 1.0).astype(np.float32)
        _, r, term, trunc, info = env.step(a)
        acts.append(a)
        rews.append(r)
        dones.append(bool(term))
        success = success or bool(info["success"])
        if term or trunc:
            break
    return {
        "obs": {k: np.stack(v).astype(np.float32) for k, v in obs_buf.items()},
        "actions": np.stack(acts).astype(np.float32),
        "rewards": np.asarray(rews, dtype=np.float32),
        "dones": np.asarray(dones, dtype=bool),
        "success": bool(success),
    }


def generate_episodes(
    task: str,
    n: int,
    seed: int,
    action_noise: float = 0.0,
    progress: bool = False,
    env: RobosuiteEnv | None = None,
    callback: Callable[[int, dict], None] | None = None,
    style: str = "clean",
    profile: OperatorNoise | None = None,
) -> list[dict]:
    """Roll out the scripted expert for ``n`` episodes (failed ones included, flagged).

    Episode ``i`` resets with a seed drawn from ``np.random.SeedSequence(seed)``, so
    different ``seed`` values give disjoint, reproducible initial states. ``style`` is
    ``clean`` (the scripted expert + ``action_noise``) or ``operator`` (per-episode expert
    draws and operator noise from ``profile``, default ``OperatorNoise()``, seeded by
    (seed, i); ``action_noise`` adds i.i.d. noise on top). Each episode:
    ``{"obs": {key: [T, dim] float32}, "actions": [T, Da] float32, "rewards": [T] float32,
    "dones": [T] bool (True at the last step iff terminated by success), "success": bool,
    "style": {style, action_noise, params}, "perturbation": per-episode draws (operator)}``;
    ``obs[key][t]`` is the observation before ``actions[t]``.
    """
    if task not in _EXPERTS:
        raise ValueError(f"no scripted expert for {task!r}; available: {list(_EXPERTS)}")
    if style not in STYLES:
        raise ValueError(f"unknown demo style {style!r}; available: {STYLES}")
    profile = profile or TASK_PROFILES.get(task, OperatorNoise())
    meta = {"style": style, "action_noise": float(action_noise)}
    if style == "operator":
        meta["params"] = profile.metadata()
    own_env = env is None
    if env is None:
        env = RobosuiteEnv(task)
    elif env.task != task:
        raise ValueError(f"env is for task {env.task!r}, not {task!r}")
    ep_seeds = np.random.SeedSequence(seed).generate_state(max(n, 1), dtype=np.uint32)[:n]
    noise_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    episodes: list[dict] = []
    t0 = time.perf_counter()
    try:
        for i, s in enumerate(ep_seeds):
            expert, operator, extra = make_expert(task), None, {}
            if style == "operator":
                rng = episode_rng(seed, i)
                draw = draw_episode(profile, rng)
                # Square's expert has its own constants and yaw servo: only the action-level noise applies
                expert = _EXPERTS[task](draw.expert if task != "square" else None)
                operator = OperatorLayer(profile, draw, rng, yaw_free=task == "square")
                extra = {"perturbation": draw.metadata()}
            ep = {**rollout_expert(env, expert, int(s), action_noise, noise_rng, operator), "style": meta, **extra}
            episodes.append(ep)
            episode_done(ep)
            if callback is not None:
                callback(i, ep)
            if progress:
                n_ok = sum(e["success"] for e in episodes)
                print(f"[{task}] episode {i + 1}/{n}: len={len(ep['actions'])} success={ep['success']} "
                      f"(total {n_ok}/{i + 1}, {time.perf_counter() - t0:.1f}s)", flush=True)
    finally:
        if own_env:
            env.close()
    return episodes


if __name__ == "__main__":  # python -m flowft.envs.robosuite_experts TASK N [SEED] [NOISE] [STYLE]
    import sys

    _a = sys.argv[1:] + [None] * 5
    _task, _n, _seed = _a[0] or "lift", int(_a[1] or 10), int(_a[2] or 0)
    _t = time.perf_counter()
    _eps = generate_episodes(_task, _n, _seed, float(_a[3] or 0.0), progress=True, style=_a[4] or "clean")
    _dt, _lens = time.perf_counter() - _t, [len(e["actions"]) for e in _eps]
    print(f"{_task}: success {sum(e['success'] for e in _eps)}/{_n}; mean length {np.mean(_lens):.1f}; "
          f"{_dt:.1f}s total, {_dt / max(_n, 1):.2f}s/episode; {sum(_lens)} transitions")
