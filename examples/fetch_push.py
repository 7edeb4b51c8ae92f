"""Bring your own environment, end to end: gymnasium-robotics FetchPush (docs/own_env.md).

    python examples/fetch_push.py                 # the guide's budget (see docs/own_env.md for time and results)
    python examples/fetch_push.py --smoke         # a seconds-long smoke run of every stage (tests/test_own_env.py)

FetchPush needs three adapter options to meet flowft's env contract: its success flag is `is_success` (a float),
it does not end an episode on success, and its observation is a Dict (flattened here as observation ++ desired_goal,
28 dims). The spec string below records all of it; a run's config.json keeps it, so `flowft eval RUN_DIR` and
`flowft resume RUN_DIR` rebuild this env with no launcher. Run from the repository root (the spec names the expert as
`examples.fetch_push:expert`, imported from the working directory).
"""

from __future__ import annotations

import sys

import numpy as np

import flowft

TASK = flowft.env_task("gymnasium_robotics:FetchPush-v4", success_key="is_success", terminate_on_success=True,
                       sparse_reward=True, obs_keys=["observation", "desired_goal"],
                       expert="examples.fetch_push:expert")


def expert(obs: np.ndarray) -> np.ndarray:
    """Scripted push: hover behind the block (on the far side from the goal), descend, push it through the goal.

    obs[0:3] gripper position, obs[3:6] block position, obs[25:28] goal (the flattened layout above); action = (dx,
    dy, dz, gripper) in [-1, 1], 1 = 5 cm per step; the gripper stays closed."""
    grip, block, goal = obs[0:3], obs[3:6], obs[25:28]
    push = goal[:2] - block[:2]
    push = push / max(np.linalg.norm(push), 1e-6)
    behind = block[:2] - 0.06 * push  # where the fingers touch the block's far side
    off_line = np.linalg.norm(grip[:2] - behind)
    low = grip[2] < block[2] + 0.02
    if off_line > (0.03 if low else 0.01):  # not behind the block: go there above it, so as not to knock it
        target = np.array([*behind, block[2] + 0.06]) if not low or off_line > 0.05 else np.array([*grip[:2], 1.0])
    elif not low:
        target = np.array([*behind, block[2]])  # descend behind the block
    else:
        target = np.array([*(goal[:2] - 0.02 * push), block[2]])  # push through the goal
    return np.clip(np.append((target - grip) / 0.05 * 2.0, -1.0), -1.0, 1.0).astype(np.float32)


# ---- the pipeline: demos -> clipped BC -> OGPO -> eval + video (the guide's user code) ----------------------------
GUIDE = {"demos": 40, "bc": {}, "run": {"env_steps": 30_000}, "eval_episodes": 64, "video": True}
SMOKE = {"demos": 4, "bc": {"steps": 20, "eval_every": 10, "min_steps": 0, "eval_episodes": 2, "eval_envs": 2,
                            "confirm_episodes": 2, "plateau_window": 5},
         "run": {"env_steps": 240, "start_training": 120, "eval_every": 240, "eval_episodes": 2, "eval_envs": 2,
                 "num_envs": 2, "ckpt_every": 240}, "eval_episodes": 2, "video": False}


def main(out: str = "runs/fetch_push", budget: dict = GUIDE, task: str = TASK) -> dict:
    from flowft.algos.bc import pretrain
    from flowft.data.readers.hdf5 import write_demos
    from flowft.evaluation_cli import run_eval
    from flowft.presets import bc_preset, train_preset
    from flowft.train.loop import Trainer

    spec = flowft.get_task(task)  # builds the env once and checks it against the env contract
    write_demos(f"{out}/demos.hdf5", spec.demos(budget["demos"], seed=0), spec.meta())
    bc_checkpoint, bc = pretrain(bc_preset(task, "tiny", f"{out}/demos.hdf5", out_dir=out, **budget["bc"]))
    trainer = Trainer(train_preset("ogpo-plus-ca", task, "tiny", bc_checkpoint=str(bc_checkpoint), out_dir=out,
                                   **budget["run"]))
    trainer.run()
    results = run_eval(str(trainer.run_dir), samplers=("ode",), episodes=budget["eval_episodes"], envs=4, seed=0,
                       device="cpu", video=budget["video"])
    return {"bc_success": bc["eval/success"], "ode_success": results["ode"]["success"], "run_dir": trainer.run_dir}


if __name__ == "__main__":  # AsyncVectorEnv workers re-import this file: the pipeline stays under the guard
    print(main(budget=SMOKE if "--smoke" in sys.argv else GUIDE))
