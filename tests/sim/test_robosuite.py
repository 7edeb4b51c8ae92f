"""robosuite (robomimic tasks) env family and scripted experts.

Fast (default-suite candidates, ~20-40 s incl. numba JIT warm-up on 2 cores):
    pytest tests/sim/test_robosuite.py -m "sim and not slow"
Everything (a few minutes):
    pytest tests/sim/test_robosuite.py -m sim
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.sim


def _need_robosuite():
    pytest.importorskip("robosuite")


@pytest.fixture(scope="module")
def lift_env():
    _need_robosuite()
    from flowft.envs.robosuite_tasks import RobosuiteEnv

    env = RobosuiteEnv("lift", seed=0)
    yield env
    env.close()


# --------------------------------------------------------------------------------------
# no robosuite needed
# --------------------------------------------------------------------------------------


def test_import_guard_without_robosuite():
    """Module import works without robosuite; constructing the env names the extra."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["robosuite"] = None  # makes `import robosuite` raise ImportError
        from flowft.envs import robosuite_tasks as rt
        from flowft.envs import robosuite_experts as rx
        assert rt.TASKS["lift"].obs_dim == 19
        json_meta = rx.OBS_META("square")
        try:
            rt.RobosuiteEnv("lift")
        except ImportError as e:
            assert "flowft[robomimic]" in str(e), str(e)
            print("OK")
        else:
            raise SystemExit("no ImportError")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")


def test_task_specs_and_metadata():
    from flowft.envs.robosuite_experts import OBS_META
    from flowft.envs.robosuite_tasks import TASKS, env_metadata

    assert set(TASKS) == {"lift", "can", "square", "tool_hang", "transport"}
    expect = {
        "lift": ("Lift", 300),
        "can": ("PickPlaceCan", 300),
        "square": ("NutAssemblySquare", 400),
        "tool_hang": ("ToolHang", 1000),
        "transport": ("TwoArmTransport", 800),
    }
    for k, (name, hor) in expect.items():
        assert (TASKS[k].env_name, TASKS[k].horizon) == (name, hor)
        assert TASKS[k].obs_keys[-1] == "object"
    assert TASKS["transport"].obs_keys[3:6] == ("robot1_eef_pos", "robot1_eef_quat", "robot1_gripper_qpos")
    meta = json.loads(json.dumps(env_metadata("can")))
    assert meta["env_name"] == "PickPlaceCan" and meta["controller"] == "OSC_POSE"
    assert meta["control_freq"] == 20 and meta["horizon"] == 300
    assert meta["obs_keys"] == ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
    assert OBS_META("lift")["env_name"] == "Lift"
    with pytest.raises(ValueError):
        env_metadata("stack")


# --------------------------------------------------------------------------------------
# fast Lift smoke test (default-suite candidate)
# --------------------------------------------------------------------------------------


def test_lift_smoke(lift_env):
    """Spaces, seeding, failure semantics, truncation and a scripted success on Lift."""
    from flowft.envs.robosuite_experts import LiftExpert

    env = lift_env
    assert env.observation_space.shape == (19,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (7,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert env.key_dims == {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}

    # seeding: same seed -> same state; different seed -> different cube placement
    o1, info = env.reset(seed=123)
    assert info["success"] is False
    o2, _ = env.reset(seed=123)
    o3, _ = env.reset(seed=124)
    assert o1.dtype == np.float32 and o1.shape == (19,)
    np.testing.assert_array_equal(o1, o2)
    assert np.abs(o1[9:12] - o3[9:12]).max() > 1e-3  # cube_pos is the first 3 of `object`
    # the flat obs is the concat of the robosuite keys
    d = env.obs_dict()
    np.testing.assert_allclose(o3[:3], d["robot0_eef_pos"], atol=1e-6)
    np.testing.assert_allclose(o3[9:], d["object-state"], atol=1e-6)

    # failure: doing nothing gives -1, no termination, no success
    env.reset(seed=0)
    for _ in range(15):
        obs, r, term, trunc, info = env.step(np.zeros(7))
        assert r == -1.0 and not term and not trunc and info["success"] is False
    assert env.elapsed_steps == 15

    # scripted success: terminates on the success step with reward 0 + bonus
    env.reset(seed=7)
    expert = LiftExpert()
    rewards = []
    for t in range(env.horizon):
        obs, r, term, trunc, info = env.step(expert.act(env))
        rewards.append(r)
        if term or trunc:
            break
    assert term and not trunc, "scripted Lift expert did not succeed"
    assert info["success"] is True and rewards[-1] == pytest.approx(0.0 + 5.0)
    assert all(r == -1.0 for r in rewards[:-1]) and len(rewards) < 100
    assert info["episode_return"] == pytest.approx(sum(rewards))
    # the cube really is lifted (robosuite's criterion: 4 cm above the table)
    assert env.obs_dict()["cube_pos"][2] > env.rs_env.model.mujoco_arena.table_offset[2] + 0.04


def test_lift_demo_generator(lift_env):
    """3 scripted Lift demos: all succeed, correct format, and replaying them reproduces them."""
    from flowft.envs.robosuite_experts import generate_episodes

    eps = generate_episodes("lift", n=3, seed=11, env=lift_env)
    assert [e["success"] for e in eps] == [True, True, True]
    for e in eps:
        T = len(e["actions"])
        assert set(e["obs"]) == {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"}
        assert e["obs"]["object"].shape == (T, 10) and e["obs"]["robot0_eef_quat"].shape == (T, 4)
        assert all(v.dtype == np.float32 for v in e["obs"].values())
        assert e["actions"].shape == (T, 7) and e["actions"].dtype == np.float32
        assert np.abs(e["actions"]).max() <= 1.0
        assert e["rewards"].shape == (T,) and e["dones"].dtype == bool
        assert e["dones"][-1] and not e["dones"][:-1].any()
        np.testing.assert_array_equal(e["rewards"][:-1], -1.0)
        assert e["rewards"][-1] == 5.0
    # the initial states differ between episodes
    assert np.abs(eps[0]["obs"]["object"][0, :3] - eps[1]["obs"]["object"][0, :3]).max() > 1e-3

    # same seed -> identical episode; obs[t] is the observation *before* actions[t]
    again = generate_episodes("lift", n=1, seed=11, env=lift_env)[0]
    np.testing.assert_array_equal(again["actions"], eps[0]["actions"])
    np.testing.assert_array_equal(again["obs"]["object"], eps[0]["obs"]["object"])
    seed0 = int(np.random.SeedSequence(11).generate_state(1, dtype=np.uint32)[0])
    obs, _ = lift_env.reset(seed=seed0)
    keys = list(eps[0]["obs"])
    for t, a in enumerate(eps[0]["actions"]):
        flat = np.concatenate([eps[0]["obs"][k][t] for k in keys])
        np.testing.assert_array_equal(obs, flat)
        obs, r, term, trunc, info = lift_env.step(a)
    assert term and info["success"]

    # action noise changes the actions (and stays in range)
    noisy = generate_episodes("lift", n=1, seed=11, action_noise=0.1, env=lift_env)[0]
    assert np.abs(noisy["actions"]).max() <= 1.0
    n = min(len(noisy["actions"]), len(eps[0]["actions"]))
    assert np.abs(noisy["actions"][:n] - eps[0]["actions"][:n]).mean() > 0.01


def test_lift_operator_style_demos(lift_env):
    """Operator-style Lift demos (issue 17): rotation and gripper actions vary, the style and per-episode draws are
    recorded, and the same (seed, episode) on the same env gives the same episode."""
    from flowft.envs.robosuite_experts import generate_episodes

    eps = generate_episodes("lift", n=2, seed=3, env=lift_env, style="operator")
    for e in eps:
        a = e["actions"]
        assert (a[:, 3:6].std(0) > 0.01).all() and np.abs(a).max() <= 1.0
        assert not np.isin(np.abs(a[:, 6]), [1.0]).any()
        assert e["style"]["style"] == "operator" and "gain" in e["perturbation"]
    assert eps[0]["perturbation"] != eps[1]["perturbation"]
    again = generate_episodes("lift", n=1, seed=3, env=lift_env, style="operator")[0]
    np.testing.assert_array_equal(again["actions"], eps[0]["actions"])


# --------------------------------------------------------------------------------------
# slower tests
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_lift_truncates_at_horizon(lift_env):
    lift_env.reset(seed=1)
    for t in range(1, 301):
        _, r, term, trunc, info = lift_env.step(np.zeros(7))
        assert r == -1.0 and not term
        assert trunc == (t == 300)
    assert info["episode_length"] == 300 and info["episode_return"] == -300.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "task,obs_dim,act_dim,object_dim",
    [("can", 23, 7, 14), ("square", 23, 7, 14), ("tool_hang", 53, 7, 44), ("transport", 59, 14, 41)],
)
def test_dims(task, obs_dim, act_dim, object_dim):
    _need_robosuite()
    from flowft.envs.robosuite_tasks import RobosuiteEnv

    env = RobosuiteEnv(task, seed=0)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (obs_dim,) and env.action_space.shape == (act_dim,)
        assert env.key_dims["object"] == object_dim
        obs, r, term, trunc, info = env.step(np.zeros(act_dim))
        assert obs.shape == (obs_dim,) and r == -1.0 and not term and info["success"] is False
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task,min_success", [("can", 3), ("square", 2)])
def test_demo_generator_can_square(task, min_success):
    _need_robosuite()
    from flowft.envs.robosuite_experts import generate_episodes

    eps = generate_episodes(task, n=3, seed=0)
    assert sum(e["success"] for e in eps) >= min_success
    for e in eps:
        assert e["obs"]["object"].shape == (len(e["actions"]), 14)
        if e["success"]:
            assert e["dones"][-1] and e["rewards"][-1] == 5.0
            assert (e["rewards"][:-1] == -1.0).all()
        else:
            assert not e["dones"].any() and (e["rewards"] == -1.0).all()


@pytest.mark.slow
def test_render_rgb_array():
    _need_robosuite()
    from flowft.envs.robosuite_tasks import RobosuiteEnv

    try:
        env = RobosuiteEnv("lift", seed=0, render=True, render_size=(64, 80))
        env.reset(seed=0)
        img = env.render()
    except Exception as e:  # no EGL/OSMesa on this machine
        pytest.skip(f"offscreen rendering unavailable: {e!r}")
    try:
        assert img.shape == (64, 80, 3) and img.dtype == np.uint8
        assert img.std() > 5  # not a blank frame
        # rendering does not change the dynamics
        env.step(np.zeros(7))
        assert env.render().shape == (64, 80, 3)
    finally:
        env.close()


@pytest.mark.sim
@pytest.mark.slow
def test_eval_video_of_lift_policy(tmp_path):
    """`flowft eval --video` renders offscreen (EGL) and writes an mp4; skipped where no GL backend works."""
    pytest.importorskip("robosuite")
    pytest.importorskip("imageio_ffmpeg")
    import subprocess
    import sys

    probe = subprocess.run([sys.executable, "-c", "import os; os.environ['MUJOCO_GL']='egl'; import mujoco; "
                            "mujoco.GLContext(64, 64).make_current()"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no EGL rendering backend on this machine")
    from flowft.cli import main
    from flowft.data.readers.hdf5 import write_demos
    from flowft.registry import get_task

    task = get_task("lift")
    write_demos(tmp_path / "d.hdf5", task.generate(3, 0, 0.0), task.meta())
    assert main(["pretrain", "--task", "lift", "--demos", str(tmp_path / "d.hdf5"), "--steps", "20",
                 "--eval-every", "20", "--eval-episodes", "1", "--eval-envs", "1", "--out-dir", str(tmp_path),
                 "--run-name", "bc"]) == 0
    assert main(["eval", str(tmp_path / "bc"), "--samplers", "ode", "--episodes", "1", "--envs", "1", "--video"]) == 0
    video = tmp_path / "bc" / "checkpoint" / "videos" / "eval_ode.mp4"
    assert video.exists() and video.stat().st_size > 10_000
