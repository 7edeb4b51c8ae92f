"""Built-in tasks. Simulator modules import their simulator only when an env is built, so the core install and
`flowft info` never need robosuite or gymnasium-robotics.

`builtin_tasks()` returns the specs; the registry registers them. This module does not import the registry, so the
two do not import each other.
"""

from __future__ import annotations

from flowft.envs import adroit, kitchen, operator_noise, robosuite_experts, robosuite_tasks, toy
from flowft.envs.taskspec import TaskSpec

_TASKS: list[TaskSpec] = []
_add = _TASKS.append


def builtin_tasks() -> list[TaskSpec]:
    return list(_TASKS)


_add(TaskSpec(
    name="toy",
    make=lambda render=False: toy.ToyReachEnv(render_mode="rgb_array" if render else None),
    generate=lambda n, seed, action_noise=0.1: toy.generate_episodes(n, seed, action_noise),
    meta=toy.env_meta, vectorization="sync", chunk_len=4, gamma=0.99, denoise_steps=5, simulator=False,
))
_add(TaskSpec(
    name="toy-fixed",
    make=lambda render=False: toy.ToyReachEnv(random_goals=False, render_mode="rgb_array" if render else None),
    generate=lambda n, seed, action_noise=0.1: toy.generate_episodes(n, seed, action_noise, random_goals=False),
    meta=toy.env_meta, vectorization="sync", chunk_len=4, gamma=0.99, denoise_steps=5, simulator=False,
))


def _no_expert(task: str):
    def generate(n, seed, action_noise=0.0):
        raise NotImplementedError(f"no scripted expert for '{task}': bring a robomimic HDF5 file "
                                  "(e.g. low_dim_v15.hdf5) and pass it to `flowft pretrain --demos`")
    return generate


# robomimic tasks on robosuite 1.5.2 (algorithm_reference §1.7: H=4, or 8 for transport/toolhang; gamma 0.999 there)
for _name in robosuite_tasks.TASKS:
    _long = _name in ("tool_hang", "transport")
    _add(TaskSpec(
        name=_name,
        make=lambda render=False, _t=_name: robosuite_tasks.RobosuiteEnv(_t, render=render),
        generate=(lambda n, seed, action_noise=0.0, style="clean", _t=_name:
                  robosuite_experts.generate_episodes(_t, n, seed, action_noise, style=style))
        if _name in robosuite_experts.EXPERT_TASKS else _no_expert(_name),
        meta=lambda _t=_name: robosuite_tasks.env_metadata(_t),
        vectorization="async", chunk_len=8 if _long else 4, gamma=0.999 if _long else 0.99, denoise_steps=10,
        extra="robomimic", demo_styles=operator_noise.TASK_STYLES.get(_name, ()),
    ))

# Adroit (gymnasium-robotics): H=4, K=3, gamma 0.95. `door` etc. = the OGPO authors' task definition (+10 / -0.1,
# no termination, success at step 200); `door-terminate` etc. = flowft's earlier -1 / 0 terminate-on-success
# definition (the committed door results were made with it). See flowft/envs/adroit.py.
for _name in adroit.ADROIT_ALL_TASKS:
    _add(TaskSpec(
        name=_name,
        make=lambda render=False, _t=_name: adroit.AdroitEnv(_t, render=render),
        generate=lambda n, seed, action_noise=0.1, _t=_name: adroit.generate_episodes(_t, n, seed, action_noise),
        meta=lambda _t=_name: adroit.env_meta(_t),
        vectorization="sync", chunk_len=4, gamma=0.95, denoise_steps=3, extra="adroit",
    ))

# Franka Kitchen with D4RL-style datasets; the task list is the dataset's target set
for _ds in ("complete", "partial", "mixed"):
    _add(TaskSpec(
        name=f"kitchen-{_ds}",
        make=lambda render=False, _d=_ds: kitchen.KitchenEnv(kitchen.DATASET_TASKS[_d], render=render),
        generate=lambda n, seed, action_noise=0.1, _d=_ds: kitchen.generate_episodes(n, seed, _d, action_noise),
        meta=lambda _d=_ds: kitchen.env_meta(kitchen.DATASET_TASKS[_d], 600, dataset=_d),
        vectorization="async", chunk_len=4, gamma=0.99, denoise_steps=10, extra="kitchen",
    ))
