"""Scripted Franka Kitchen experts (resolved-rate IK on privileged MuJoCo state).

The FrankaKitchen-v1 action is a joint *velocity* (x2 rad/s) that the env integrates from the last
(noisy) observed joint position into a position-actuator target. The controller here:

* end-effector twist ``[v; w]`` from a proportional law on the ``end_effector`` site position and
  orientation, mapped to the 7 arm joints with damped least squares
  ``qd = J^T (J J^T + 1e-3 I)^-1 [v; w]`` (``mujoco.mj_jacSite``);
* a gravity-sag feed-forward ``qfrc_bias / kp / 0.08`` (without it the position actuators leave
  several cm of steady-state error);
* ``a = clip(qd / 2, -1, 1)``; gripper ``+1`` opens and ``-1`` closes.

Each subtask is a *skill*: a Python generator that reads the true simulator state and yields
actions; it returns when its waypoints are done (or on a per-phase step budget). Skills start and
end near a common "home" pose, so they can be chained in any order.

Nothing here imports gymnasium-robotics at module import time; the functions take the
``KitchenEnv`` from :mod:`flowft.envs.kitchen`.
"""

from __future__ import annotations

from typing import Callable, Generator, Iterator

import numpy as np

SKILLS = ("microwave", "kettle", "light switch", "slide cabinet", "bottom burner")

Action = np.ndarray
Skill = Generator[Action, None, None]


def _rot(axis: str, ang: float) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class KitchenController:
    """Resolved-rate IK controller plus waypoint helpers for one FrankaKitchen-v1 instance."""

    def __init__(self, base_env, rng: np.random.Generator | None = None):
        import mujoco  # local import: optional dependency

        self._mj = mujoco
        self.env = base_env  # gymnasium_robotics KitchenEnv (unwrapped)
        self.m = base_env.model
        self.d = base_env.data
        self.sid = self.m.site("end_effector").id
        self.kp_act = self.m.actuator_gainprm[:7, 0].copy()
        self.jlo = self.m.jnt_range[:7, 0].copy()
        self.jhi = self.m.jnt_range[:7, 1].copy()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.grip = 1.0
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        self.R0 = self.d.site_xmat[self.sid].reshape(3, 3).copy()
        self.home = self.d.site_xpos[self.sid].copy()
        self.R = self.R0.copy()
        self.grip = 1.0

    def site(self, name: str) -> np.ndarray:
        return self.d.site_xpos[self.m.site(name).id].copy()

    def qpos(self, joint: str) -> float:
        return float(self.d.qpos[self.m.jnt_qposadr[self.m.joint(joint).id]])

    @property
    def ee(self) -> np.ndarray:
        return self.d.site_xpos[self.sid].copy()

    # -- control -------------------------------------------------------------------------------
    def action(self, target: np.ndarray, R: np.ndarray | None = None, grip: float | None = None,
               kp: float = 5.0, vmax: float = 0.7, kr: float = 3.0) -> Action:
        mj, m, d = self._mj, self.m, self.d
        R = self.R if R is None else R
        grip = self.grip if grip is None else grip
        x = d.site_xpos[self.sid]
        Rm = d.site_xmat[self.sid].reshape(3, 3)
        v = kp * (np.asarray(target) - x)
        nv = np.linalg.norm(v)
        if nv > vmax:
            v *= vmax / nv
        w = kr * 0.5 * sum(np.cross(Rm[:, i], R[:, i]) for i in range(3))
        jp = np.zeros((3, m.nv))
        jr = np.zeros((3, m.nv))
        mj.mj_jacSite(m, d, jp, jr, self.sid)
        J = np.vstack([jp[:, :7], jr[:, :7]])
        q = d.qpos[:7]
        lo, hi = self.jlo, self.jhi
        active = np.ones(7, bool)
        for _ in range(3):  # drop joints that sit at a limit and would be pushed further into it
            Ja = J * active
            qd = Ja.T @ np.linalg.solve(Ja @ Ja.T + 1e-3 * np.eye(6), np.r_[v, w])
            bad = active & (((q < lo + 0.03) & (qd < 0)) | ((q > hi - 0.03) & (qd > 0)))
            if not bad.any():
                break
            active &= ~bad
        qd = np.where(active, qd, 0.0)
        qd = qd + (d.qfrc_bias[:7] / self.kp_act) / 0.08
        a = np.zeros(9)
        a[:7] = np.clip(qd / 2.0, -1.0, 1.0)
        a[7:] = grip
        return a

    def goto(self, target: np.ndarray | Callable[[], np.ndarray], tol: float = 0.015,
             max_steps: int = 60, grip: float | None = None, R: np.ndarray | None = None,
             rot_tol: float = 0.15, **kw) -> Iterator[Action]:
        """Servo to ``target`` (a point or a callable returning one) until within ``tol``."""
        if grip is not None:
            self.grip = grip
        if R is not None:
            self.R = R
        for _ in range(max_steps):
            tgt = target() if callable(target) else target
            if np.linalg.norm(tgt - self.ee) < tol and self._rot_err() < rot_tol:
                return
            yield self.action(tgt, **kw)

    def hold(self, n: int, grip: float | None = None, target: np.ndarray | None = None) -> Iterator[Action]:
        if grip is not None:
            self.grip = grip
        tgt = self.ee if target is None else target
        for _ in range(n):
            yield self.action(tgt)

    def _rot_err(self) -> float:
        Rm = self.d.site_xmat[self.sid].reshape(3, 3)
        return float(np.linalg.norm(0.5 * sum(np.cross(Rm[:, i], self.R[:, i]) for i in range(3))))

    def go_home(self) -> Iterator[Action]:
        """Retreat towards the robot (-y) and return near the home pose with the gripper open."""
        self.grip = 1.0
        p = self.ee
        if np.linalg.norm(p - self.home) < 0.08:
            return
        back = np.array([p[0], min(p[1], self.home[1] + 0.2), max(p[2], self.home[2] - 0.1)])
        yield from self.goto(back, tol=0.05, max_steps=20, vmax=0.6)
        yield from self.goto(self.home, tol=0.08, max_steps=30, R=self.R0, rot_tol=0.3, vmax=0.6)


# ---------------------------------------------------------------------------------------------
# Skills. Offsets are in metres in the world frame (x right, y away from the robot, z up).
# ``jit`` adds a small random offset per episode so that demonstrations are not all identical.
# ---------------------------------------------------------------------------------------------


def _jit(c: KitchenController, scale: float) -> np.ndarray:
    return c.rng.uniform(-scale, scale, size=3) if scale > 0 else np.zeros(3)


def skill_microwave(c: KitchenController, jitter: float = 0.0) -> Skill:
    h = c.site("microhandle_site") + _jit(c, jitter) * np.array([1, 0, 1])
    anchor = c.d.xanchor[c.m.joint("microwave").id].copy()
    yield from c.goto(h + [0.0, -0.12, 0.0], tol=0.02, max_steps=60, grip=1.0, R=c.R0)
    yield from c.goto(h + [0.0, -0.01, 0.0], tol=0.012, max_steps=40)
    yield from c.hold(6, grip=-1.0)
    # follow the door arc while holding the handle
    r = np.linalg.norm((h - anchor)[:2])
    phi0 = np.arctan2(h[1] - anchor[1], h[0] - anchor[0])
    for _ in range(90):
        ang = c.qpos("microwave")
        if ang < -0.6:
            break
        phi = phi0 + ang - 0.25
        tgt = np.array([anchor[0] + r * np.cos(phi), anchor[1] + r * np.sin(phi), h[2]])
        yield c.action(tgt, vmax=0.35)
    yield from c.hold(3, grip=1.0)
    p = c.ee
    yield from c.goto(p + [0.06, -0.10, 0.0], tol=0.02, max_steps=25)
    yield from c.go_home()


def skill_slide(c: KitchenController, jitter: float = 0.0) -> Skill:
    s = c.site("slide_site") + _jit(c, jitter) * np.array([0, 0, 1])
    yield from c.goto(s + [-0.10, -0.15, 0.0], tol=0.02, max_steps=60, grip=1.0, R=c.R0)
    yield from c.goto(s + [-0.06, -0.02, 0.0], tol=0.015, max_steps=40)
    for _ in range(60):
        if c.qpos("slide_cabinet") > 0.25:
            break
        yield c.action(c.site("slide_site") + [-0.04, -0.02, 0.0] + [0.10, 0, 0], vmax=0.4)
    yield from c.goto(c.ee + [0.0, -0.15, 0.0], tol=0.03, max_steps=25)
    yield from c.go_home()


def skill_light(c: KitchenController, jitter: float = 0.0) -> Skill:
    s = c.site("light_site") + _jit(c, jitter) * np.array([0, 0, 1]) * 0.5
    yield from c.goto(s + [0.11, -0.15, 0.0], tol=0.02, max_steps=60, grip=1.0, R=c.R0)
    yield from c.goto(s + [0.06, -0.05, 0.0], tol=0.015, max_steps=40)
    for _ in range(50):
        if c.qpos("light_switch") < -0.55:
            break
        yield c.action(c.site("light_site") + [0.06, -0.05, 0.0] + [-0.12, 0, 0], vmax=0.4)
    yield from c.goto(c.ee + [0.0, -0.12, 0.0], tol=0.03, max_steps=25)
    yield from c.go_home()


def skill_kettle(c: KitchenController, jitter: float = 0.0) -> Skill:
    """Side grasp of the kettle's top handle (a bar along world x) with the wrist rolled 90 deg so
    the fingers close vertically around it, lift, carry to the top-left burner, release."""
    # roll about the approach axis (world +y) so that the fingers separate along z
    Rg = _rot("y", -np.pi / 2) @ c.R0
    bar = c.site("kettle_site") + _jit(c, jitter) * np.array([1, 0, 0])
    off = bar - c.d.xpos[c.m.body("kettle").id]  # grasp point relative to the kettle origin
    high = max(bar[2] + 0.15, c.home[2])
    yield from c.goto(np.array([bar[0], bar[1] - 0.20, high]), tol=0.04, max_steps=35, grip=1.0, R=Rg,
                      rot_tol=0.3)
    yield from c.goto(bar + [0.0, -0.16, 0.0], tol=0.02, max_steps=30)
    yield from c.goto(bar + [0.0, -0.005, 0.0], tol=0.012, max_steps=30, vmax=0.3)
    yield from c.hold(6, grip=-1.0)
    yield from c.goto(bar + [0.0, 0.0, 0.10], tol=0.02, max_steps=20, vmax=0.2)
    goal = np.array([-0.23, 0.75, 1.62])
    # carry slowly: the kettle hangs from a pinch on a bar and swings about it if accelerated
    yield from c.goto(goal + off + [0, 0, 0.06], tol=0.04, max_steps=50, vmax=0.15)
    yield from c.goto(goal + off + [0, 0, -0.01], tol=0.015, max_steps=20, vmax=0.15)
    yield from c.hold(6, grip=1.0)
    # centre the open fingers on the bar, then slide out backwards
    for _ in range(40):
        b = c.site("kettle_site")
        if c.ee[1] < b[1] - 0.15:
            break
        yield c.action(np.array([b[0], c.ee[1] - 0.05, b[2]]), vmax=0.15)
    yield from c.go_home()


def skill_bottom_burner(c: KitchenController, jitter: float = 0.0) -> Skill:
    """Turn knob 2 (bottom burner): grasp the knob face-on and roll the wrist."""
    k = c.site("knob2_site")
    yield from c.goto(k + [0.0, -0.15, 0.0], tol=0.02, max_steps=60, grip=1.0, R=c.R0)
    yield from c.goto(k + [0.0, -0.03, 0.0], tol=0.012, max_steps=40)
    yield from c.hold(6, grip=-1.0)
    for i in range(1, 36):
        if c.qpos("knob_Joint_2") < -0.9:
            break
        R = _rot("y", 0.04 * i) @ c.R0
        c.R = R
        yield c.action(k + [0.0, -0.03, 0.0])
    yield from c.hold(4, grip=1.0)
    yield from c.goto(c.ee + [0.0, -0.12, 0.0], tol=0.03, max_steps=25)
    yield from c.go_home()


SKILL_FNS = {
    "microwave": skill_microwave,
    "kettle": skill_kettle,
    "light switch": skill_light,
    "slide cabinet": skill_slide,
    "bottom burner": skill_bottom_burner,
}


def chain(c: KitchenController, tasks: tuple[str, ...] | list[str], jitter: float = 0.0) -> Skill:
    for t in tasks:
        yield from SKILL_FNS[t](c, jitter=jitter)
    while True:  # idle at home until the episode ends
        yield c.action(c.home, R=c.R0, grip=1.0)
