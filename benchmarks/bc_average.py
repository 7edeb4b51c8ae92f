"""Does a moving average of the BC weights (`flowft pretrain --ema`) make a stronger start than the raw weights?

One BC training with the tiny preset's network, lr and batch (no gate), and at each of --at the ODE success on
--episodes episodes of the raw weights and of each --ema average, all on the BC gate confirmation's reset seeds for that
step (so a raw reading here equals a confirmation the gate would have made there). One JSON line per step to stdout
and --out. docs/tasks.md "Averaged BC weights" has the numbers.

    python benchmarks/bc_average.py --task can --demos can-s1-n40.hdf5 --seed 1 --at 10000 20000 --ema 0.999
    python benchmarks/bc_average.py --task can --demos can-s1-n20.hdf5 --seed 1 --at 10000 20000 40000 --ema \
        --time-embed mlp   (the authors' time embedding instead of the preset's; docs/tasks.md "Time embedding")
    python benchmarks/bc_average.py --task can --demos can-s1-n20.hdf5 --seed 1 --at 10000 15000 --ema \
        --obs-norm none    (raw observations, the authors' choice; or --obs-clip 10: z-scores clipped at +-10)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time

import numpy as np
import torch

from flowft.algos import bc
from flowft.critics.ensemble import polyak
from flowft.data.load import load_demos
from flowft.envs.make import make_vec_env
from flowft.policies.flow import FlowPolicy
from flowft.presets import bc_preset
from flowft.registry import get_task
from flowft.utils.seeding import seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="can")
    ap.add_argument("--demos", required=True, help="demo file (flowft demos)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--at", type=int, nargs="+", default=[10_000, 20_000], help="BC steps to evaluate at")
    ap.add_argument("--ema", type=float, nargs="*", default=[0.999], help="averaging decays (as --ema); none: raw only")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--envs", type=int, default=8, help="evaluation envs, stepped in this process")
    ap.add_argument("--time-embed", choices=["scaled", "mlp"], default=None,
                    help="the velocity MLP's flow-time embedding (as --policy.time-embed); default: the preset's")
    ap.add_argument("--obs-norm", choices=["zscore", "none"], default=None,
                    help="the policy's observation normalisation (as --policy.obs-norm); default: the preset's")
    ap.add_argument("--obs-clip", type=float, default=None,
                    help="clip the z-scored observations at +-this (as --policy.obs-clip); default: the preset's")
    ap.add_argument("--out", default=None, help="also append the JSON lines here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    seed_everything(a.seed)
    task = get_task(a.task)
    H = task.chunk_len
    probe = task.make(False)
    bounds = (probe.action_space.low, probe.action_space.high)
    probe.close()
    # the task's tiny BC preset: its network, lr, batch and demo reading; the confirmation on --episodes episodes
    cfg = bc_preset(a.task, "tiny", a.demos, seed=a.seed, confirm_episodes=a.episodes, confirm_sampler="ode")
    if a.time_embed is not None:
        cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, time_embed=a.time_embed))
    if a.obs_norm is not None:
        cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, obs_norm=a.obs_norm))
    if a.obs_clip is not None:
        cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, obs_clip=a.obs_clip))
    data = load_demos(a.demos, cfg.demos_format, cfg.read_options(bounds))
    policy = FlowPolicy(data.obs.shape[1], data.actions.shape[1], H, cfg.policy)
    policy.fit_normalizers(torch.from_numpy(data.obs), torch.from_numpy(data.actions))
    averages = {d: copy.deepcopy(policy) for d in a.ema}
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng, gen = np.random.default_rng(a.seed), torch.Generator().manual_seed(a.seed)
    venv = make_vec_env(task, a.envs, vectorization="sync")  # one process: fair to experiments sharing the CPU
    cpu = torch.device("cpu")

    def success(pol: FlowPolicy, step: int) -> float:  # exactly the gate's confirmation at this step
        return bc._evaluate(pol, None, venv, H, cfg, "confirm", step, cpu)["success"]

    t0 = time.time()
    for step in range(1, max(a.at) + 1):
        obs, actions, valid = data.sample_chunks(cfg.batch_size, H, rng)
        loss = policy.cfm_loss(obs, actions, valid, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for d, m in averages.items():
            polyak(m, policy, bc.ema_rate(d, step))
        if step in a.at:
            row = {"step": step, "time_embed": cfg.policy.time_embed, "obs_norm": cfg.policy.obs_norm,
                   "obs_clip": cfg.policy.obs_clip, "loss": loss.item(), "raw": success(policy, step),
                   **{f"ema{d}": success(m, step) for d, m in averages.items()}, "wall": time.time() - t0}
            print(json.dumps(row), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    venv.close()


if __name__ == "__main__":
    main()
