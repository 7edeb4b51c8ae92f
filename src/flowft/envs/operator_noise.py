"""Operator-style demonstrations: how a teleoperating person differs from the scripted robosuite experts.

The scripted experts (robosuite_experts.py) are one feedback law with fixed constants: every episode approaches at
the same height with the same gain, the rotation actions are exactly zero and the gripper is exactly +-1. A flow
policy clones that almost perfectly from a few dozen demos, so BC lands far above the paper's <= 50 % start and the
"clip" can only catch it mid-training with an unflattened loss (issue 17). Human data (robomimic `ph`) differs in
three ways, modelled here, all deterministic per (seed, episode index):

* per-episode strategy: P gain, approach height, grasp-point offset and how long the gripper is held closed before
  lifting are drawn per episode (`ExpertParams`, read by the Lift/Can experts; neutral values = the clean expert);
* operator noise on every action dim, rotation included: an Ornstein-Uhlenbeck (AR(1)) process, i.e. slow
  correlated drift rather than i.i.d. jitter, plus a small white part; the operator corrects the orientation drift
  it causes (a proportional pull back to the episode's starting orientation), so rotation actions vary and stay
  predictable from the observed end-effector quaternion;
* pauses (a few steps of near-zero motion, the expert's phase clock stopped) and gripper commands that ramp between
  open and close and never sit exactly at +-1 (robosuite's Panda gripper reads only the command's sign).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

STYLES = ("operator", "clean")
"""Demo styles of the robosuite experts: `operator` (this module) or `clean` (the scripted expert, optionally with
i.i.d. Gaussian action noise, the behaviour before issue 17)."""
TASK_PROFILES: dict[str, "OperatorNoise"] = {}  # filled below the class: per-task operator profiles
TASK_STYLES = {"lift": ("operator", "clean"), "can": ("operator", "clean"), "square": ("clean", "operator")}
"""Demo styles per expert task, default first. Square stays clean by default: its expert is already at 0.84-0.96
success and its BC does not reach the clip (docs/tasks.md); operator style there adds only the action-level noise."""


@dataclass(frozen=True)
class ExpertParams:
    """Per-episode knobs of the Lift/Can experts; the defaults reproduce the clean scripted expert exactly."""

    gain: float = 10.0
    """P gain of the OSC position servo (action = gain * position error, clipped)."""
    hover_scale: float = 1.0
    """Multiplies the approach height above the object (Lift 8 cm, Can 10 cm)."""
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Added to the grasp target (m): off-centre grasps."""
    close_extra: int = 0
    """Extra steps the gripper closes before the lift starts (negative = lift earlier)."""
    arrive_tol: float = 0.01
    """Distance (m) at which a hover / carry waypoint counts as reached."""


@dataclass(frozen=True)
class OperatorNoise:
    """The operator-style noise profile (`flowft demos --style operator`). Ranges are (low, high) of uniform draws
    per episode; stds are in action units ([-1, 1]; 1 = 5 cm or 0.5 rad per control step)."""

    gain: tuple[float, float] = (6.0, 14.0)
    hover_scale: tuple[float, float] = (0.6, 1.6)
    grasp_offset_std: float = 0.005
    """Std (m) of the per-episode grasp-point offset in x, y and z."""
    close_extra: tuple[int, int] = (-2, 6)
    arrive_tol: tuple[float, float] = (0.01, 0.01)
    skill: tuple[float, float] = (0.5, 1.5)
    """Per-episode multiplier of the noise stds below (a steadier or a shakier operator)."""
    ou_std: float = 0.125
    """Stationary std of the correlated (OU) noise on every action dim but the gripper."""
    ou_tau: float = 8.0
    """Correlation time of the OU noise in control steps (20 Hz: 0.4 s)."""
    white_std: float = 0.03
    """Std of the i.i.d. part on every dim but the gripper."""
    rot_gain: float = 2.0
    """Action per radian of orientation error that pulls the gripper back to its starting orientation."""
    pause_prob: float = 0.03
    """Probability per step of starting a pause."""
    pause_steps: tuple[int, int] = (3, 12)
    pause_scale: float = 0.1
    """Motion left during a pause, as a fraction of the noise (a hand resting on the device)."""
    grip_ramp: tuple[int, int] = (2, 6)
    """Steps the gripper command takes from open to closed (drawn per episode)."""
    grip_jitter: float = 0.08
    """Scale of the random shrink of the gripper command's magnitude (never exactly +-1)."""

    def __post_init__(self):
        for name in ("gain", "hover_scale", "close_extra", "arrive_tol", "skill", "pause_steps", "grip_ramp"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"OperatorNoise.{name}: low {lo} > high {hi}")
        if self.ou_tau <= 0 or not 0 <= self.pause_prob <= 1 or self.grip_ramp[0] < 1:
            raise ValueError("OperatorNoise: need ou_tau > 0, 0 <= pause_prob <= 1 and grip_ramp >= 1")
        if min(self.grasp_offset_std, self.ou_std, self.white_std, self.rot_gain, self.pause_scale,
               self.grip_jitter) < 0:
            raise ValueError("OperatorNoise: stds and gains must be >= 0")

    def metadata(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# Can packs grasp, carry and place into the same 300-step horizon as Lift: an operator who settles each waypoint to
# 1 cm with this noise runs out of time (expert success 0.5, mostly at the horizon), so the can operator accepts
# 1.5-3 cm at the hover / carry waypoints and pauses less.
TASK_PROFILES.update(can=OperatorNoise(arrive_tol=(0.015, 0.03), pause_prob=0.02))


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The operator noise of episode `index` depends on (seed, index) only, not on earlier episodes' lengths."""
    return np.random.default_rng(np.random.SeedSequence([seed, 2, index]))


@dataclass(frozen=True)
class EpisodeDraw:
    """One episode's draws from an OperatorNoise profile (recorded per demo in the HDF5 file)."""

    expert: ExpertParams
    skill: float
    grip_ramp: int

    def metadata(self) -> dict:
        return {**asdict(self.expert), "grasp_offset": list(self.expert.grasp_offset), "skill": self.skill,
                "grip_ramp": self.grip_ramp}


def draw_episode(profile: OperatorNoise, rng: np.random.Generator) -> EpisodeDraw:
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    expert = ExpertParams(gain=u(profile.gain), hover_scale=u(profile.hover_scale),
                          grasp_offset=tuple(float(x) for x in rng.normal(0.0, profile.grasp_offset_std, 3)),
                          close_extra=int(rng.integers(profile.close_extra[0], profile.close_extra[1] + 1)),
                          arrive_tol=u(profile.arrive_tol))
    return EpisodeDraw(expert, u(profile.skill), int(rng.integers(profile.grip_ramp[0], profile.grip_ramp[1] + 1)))


class OUNoise:
    """AR(1) noise x_t = rho x_{t-1} + sqrt(1 - rho^2) std eps, rho = exp(-1/tau): stationary from the first step
    (x_0 ~ N(0, std^2)), with lag-k autocorrelation rho^k."""

    def __init__(self, dim: int, std: float, tau: float, rng: np.random.Generator):
        self.std, self.rho, self.rng = std, math.exp(-1.0 / tau), rng
        self.x = std * rng.standard_normal(dim)

    def __call__(self) -> np.ndarray:
        self.x = self.rho * self.x + math.sqrt(1.0 - self.rho ** 2) * self.std * self.rng.standard_normal(len(self.x))
        return self.x


def quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = (float(v) for v in q)
    n = x * x + y * y + z * z + w * w
    s = 2.0 / n if n > 0 else 0.0
    xx, yy, zz = x * x * s, y * y * s, z * z * s
    xy, xz, yz = x * y * s, x * z * s, y * z * s
    wx, wy, wz = w * x * s, w * y * s, w * z * s
    return np.array([[1.0 - (yy + zz), xy - wz, xz + wy],
                     [xy + wz, 1.0 - (xx + zz), yz - wx],
                     [xz - wy, yz + wx, 1.0 - (xx + yy)]])


def rotvec(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (log map; angles near pi are rare here and get a finite answer)."""
    angle = math.acos(max(-1.0, min(1.0, (np.trace(R) - 1.0) / 2.0)))
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    s = math.sin(angle)
    return v * (0.5 if s < 1e-6 else angle / (2.0 * s))


class OperatorLayer:
    """Turns the expert's actions into an operator's, step by step. `act(expert_act, eef_quat)` calls
    `expert_act()` only outside pauses, so the expert's phase timers stop while the operator rests."""

    def __init__(self, profile: OperatorNoise, draw: EpisodeDraw, rng: np.random.Generator, yaw_free: bool = False):
        self.p, self.draw, self.rng = profile, draw, rng
        self.yaw_free = yaw_free  # the Square expert servoes yaw itself: correct roll/pitch only
        self.ou = OUNoise(6, profile.ou_std * draw.skill, profile.ou_tau, rng)
        self.ref: np.ndarray | None = None
        self.grip, self.pause_left = -1.0, 0
        self.last = np.zeros(7)

    def _rotation_fix(self, eef_quat: np.ndarray) -> np.ndarray:
        R = quat_xyzw_to_mat(eef_quat)
        if self.ref is None:
            self.ref = R
        fix = self.p.rot_gain * rotvec(self.ref @ R.T)  # world-frame rotation from the current to the start pose
        if self.yaw_free:
            fix[2] = 0.0
        return fix

    def act(self, expert_act, eef_quat: np.ndarray) -> np.ndarray:
        noise = self.ou() + self.p.white_std * self.draw.skill * self.rng.standard_normal(6)
        fix = self._rotation_fix(eef_quat)
        if self.pause_left == 0 and self.rng.random() < self.p.pause_prob:
            self.pause_left = int(self.rng.integers(self.p.pause_steps[0], self.p.pause_steps[1] + 1))
        if self.pause_left > 0:
            self.pause_left -= 1
            a = np.zeros(7)
            a[:6] = self.p.pause_scale * noise
            a[3:6] += fix
            target = self.grip  # hold the gripper where it is
        else:
            a = np.array(expert_act(), dtype=float)
            a[:6] += noise
            a[3:6] += fix
            target = float(np.sign(a[6])) if a[6] != 0 else self.grip
        step = 2.0 / self.draw.grip_ramp
        self.grip = float(np.clip(self.grip + np.clip(target - self.grip, -step, step), -1.0, 1.0))
        a[6] = self.grip * (1.0 - min(0.5, abs(self.p.grip_jitter * self.rng.standard_normal())))
        self.last = np.clip(a, -1.0, 1.0)
        return self.last
