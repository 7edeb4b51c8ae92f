"""Update-time benchmark: tiny / mid / paper OGPO updates vs this machine's dense-matmul floor, or (--modes) the
fast path's modes side by side (issue 18: --run.compile / --run.precision).

    python benchmarks/update_speed.py [--device cpu|cuda] [--threads 2] [--repeats 3] [--sizes tiny mid paper]
        [--microbatch-chains 1024 0] [--matmul-precision highest|high]
    python benchmarks/update_speed.py --modes eager compile eager/bf16 compile/bf16-nograd compile/bf16
        [--task lift] [--heads 10] [--sizes tiny] [--threads 1] [--repeats 30]
    python benchmarks/update_speed.py --breakdown compile/bf16 --task lift --heads 10 --sizes tiny --threads 1 \
        --repeats 20   (CPU ms per piece of the update)
    python benchmarks/update_speed.py --clock cpu --modes eager compile/bf16 eager/fp32/gelu-tanh \
        compile+log_prob/bf16/gelu-tanh ... (--clock cpu: CPU seconds of this process, for a machine loaded beyond
        its cores; use it with --threads 1)

For each learner size it builds OGPO on synthetic data of the size's intended task (tiny: the toy task, Do=6, Da=2,
H=4, K=5; mid and paper: robomimic Square, Do=23, Da=7, H=4, K=10), counts the FLOPs
of one full update (actor imagination + PPO step + BC term + critic TD step) with torch's FlopCounterMode, times
the update, and compares with the floor = FLOPs / (measured dense fp32 matmul throughput). One run measures
everything, so the ratios are comparable even on a noisy shared machine.

With --modes it builds one OGPO per mode ("eager" or "compile", optionally "/precision", optionally "/activation" for
the velocity MLP and the critic, e.g. "compile/bf16/gelu-tanh"; "eager+allrows" sends every PPO chain through the
log-prob's autograd graph, as before chains of zero advantage were skipped (the ratio statistics then cover every
chain); "+allstats" keeps the skip but averages the ratio statistics over every chain (`ratio_stats all`, a no-grad
forward of the zero-advantage chains); "+foreach" steps AdamW with the foreach kernel instead of the fused one
(as before); so "eager+allrows+foreach" is the eager update before both; "compile+log_prob+cfm" compiles those
pieces on top of fastpath.COMPILED's; "compile@max-autotune-no-cudagraphs" picks the torch.compile mode) from the
same seed, compiles (time reported), then times the modes round-robin, one update each per round, so that load
changes hit every mode alike; the table gives the median and the minimum ms per update and both ratios to the first
mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from flowft.algos.ogpo import OGPO
from flowft.data.buffer import ReplayBuffer
from flowft.presets import SIZES, ogpo_config
from flowft.registry import get_task

DIMS = {"tiny": ("toy", 6, 2), "mid": ("square", 23, 7), "paper": ("square", 23, 7)}  # task, Do, Da
H = 4


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device, n=2048, k=512, repeats=20) -> float:
    """Dense fp32 GEMM throughput at the MLP's shapes ([rows, 512] @ [512, 512])."""
    a, b = torch.randn(n * 8, k, device=device), torch.randn(k, k, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * a.shape[0] * k * k * repeats / (time.perf_counter() - t) / 1e9


def filled_buffer(OBS: int, ACT: int, seed=0) -> ReplayBuffer:
    buf = ReplayBuffer(8, 80_000, OBS, ACT, H, seed=seed)
    rng = np.random.default_rng(seed)
    for t in range(2_000):
        done = rng.random(8) < 0.01
        buf.add_batch(rng.standard_normal((8, OBS)), rng.uniform(-1, 1, (8, ACT)), -np.ones(8), done,
                      np.zeros(8, bool), rng.standard_normal((8, OBS)), done & (rng.random(8) < 0.5))
    return buf


def bench(size: str, device, repeats: int, microbatch_chains: int | None = None) -> dict:
    task, OBS, ACT = DIMS[size]
    # critic_warmup=0: the simulator presets (mid) run critic-only updates first; time the full update
    cfg = dataclasses.replace(ogpo_config("ogpo-plus-ca", task, size), critic_warmup=0)
    if microbatch_chains is not None:  # 0 = all G*B chains in one slice (no gradient accumulation)
        cfg = dataclasses.replace(cfg, microbatch_chains=microbatch_chains)
    algo = OGPO(cfg, OBS, ACT, H, device, seed=0)
    buf = filled_buffer(OBS, ACT)
    algo.update(buf)  # warm-up (allocator, kernels)
    with FlopCounterMode(display=False) as fc:
        algo.update(buf)
    flops = fc.get_total_flops()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        algo.update(buf)
        sync(device)
        times.append(time.perf_counter() - t)
    mb = "" if microbatch_chains is None else f", microbatch {microbatch_chains}"
    return {"size": f"{size} ({task}{mb})", "gflop": flops / 1e9, "seconds": statistics.median(times)}


def mode_algo(size: str, task: str | None, heads: int | None, device, mode: str) -> tuple[OGPO, float, tuple]:
    """OGPO for one --modes entry, compiled (seconds reported) and warmed up; its dims (task, Do, Da)."""
    task, OBS, ACT = (task, *_dims(task)) if task else DIMS[size]
    cfg = dataclasses.replace(ogpo_config("ogpo-plus-ca", task, size), critic_warmup=0)
    if "+allstats" in mode:  # ratio statistics over every chain (a no-grad forward of the zero-advantage ones)
        cfg = dataclasses.replace(cfg, ratio_stats="all")
    if heads:
        cfg = dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, num_heads=heads))
    how, precision, activation = (mode.split("/") + ["", ""])[:3]
    how, *extra = how.split("+")  # compile+log_prob+cfm: compile these pieces too (fastpath.COMPILED)
    how, _, compile_mode = how.partition("@")  # compile@MODE: that torch.compile mode instead of the default one
    if activation:
        cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, activation=activation),
                                  critic=dataclasses.replace(cfg.critic, activation=activation))
    torch.manual_seed(0)
    algo = OGPO(cfg, OBS, ACT, H, device, seed=0)
    t = time.perf_counter()
    allrows = "allrows" in extra  # eager+allrows: every PPO chain through the graph, as before the zero-weight skip
    if "foreach" in extra:  # +foreach: the foreach AdamW kernel the optimizers used before the fused one
        for name, opt in algo.optimizers().items():
            group = opt.param_groups[0]
            setattr(algo, f"{name}_opt", torch.optim.AdamW(group["params"], lr=group["lr"],
                                                           weight_decay=group["weight_decay"], foreach=True))
    extra = [e for e in extra if e not in ("allrows", "allstats", "foreach")]
    # imported here, not at the top: update_across_commits.py imports this module's buffer and head helpers
    # under checkouts older than the fast path
    from flowft.train import fastpath

    pieces = tuple(dict.fromkeys([*fastpath.COMPILED[device.type], *extra])) if extra else None
    fastpath.enable_fast_path(algo, how == "compile", precision or "fp32", pieces,
                              (compile_mode,) if compile_mode else None)  # printed below: a fallback shows as off
    algo.fast.skip_zero_weight = not allrows
    print(f"built {size} {mode}: {algo.fast}, {time.perf_counter() - t:.1f} s", flush=True)  # survives a timeout
    return algo, time.perf_counter() - t, (task, OBS, ACT)


def _dims(task: str) -> tuple[int, int]:
    """(Do, Da) from the task's metadata (no simulator needed)."""
    meta = get_task(task).meta()
    if "obs_dim" not in meta:  # the toy task
        return next((o, a) for t, o, a in DIMS.values() if t == task)
    return int(meta["obs_dim"]), int(meta["action_dim"])


@torch.no_grad()
def agree_heads(algo: OGPO, spread: float) -> None:
    """Both critics' heads := head 0's weights + N(0, spread^2) noise (fixed seed): a fresh ensemble's random heads
    disagree in sign on 99 % of the group advantages, so sign consensus would zero nearly every PPO chain; trained
    critics on Lift / Can zeroed 61-77 % (train/actor/adv_zero_frac)."""
    gen = torch.Generator().manual_seed(0)
    for critic in (algo.critic, algo.critic_target):
        for p in critic.parameters():
            if p.dim() and p.shape[0] == algo.critic.M:
                p.copy_(p[:1].expand_as(p) + spread * torch.randn(p.shape, generator=gen))


def compare_modes(size: str, task: str | None, heads: int | None, device, modes: list[str], rounds: int,
                  clock=time.perf_counter, heads_spread: float | None = None) -> None:
    built = [mode_algo(size, task, heads, device, m) for m in modes]
    task, OBS, ACT = built[0][2]
    buf = filled_buffer(OBS, ACT)
    times: dict[str, list[float]] = {m: [] for m in modes}
    zero: dict[str, list[float]] = {m: [] for m in modes}  # share of PPO chains with a zero advantage
    for algo, _, _ in built:
        if heads_spread is not None:
            agree_heads(algo, heads_spread)
        for _ in range(3):  # allocator, caches, CUDA graph recording
            algo.update(buf)
    for _ in range(rounds):
        for m, (algo, _, _) in zip(modes, built):
            sync(device)
            t = clock()
            stats = algo.update(buf)
            sync(device)
            times[m].append(clock() - t)
            zero[m].append(stats.get("actor/adv_zero_frac", float("nan")))
    med0, min0 = statistics.median(times[modes[0]]), min(times[modes[0]])
    M, K = built[0][0].critic.M, built[0][0].actor.cfg.denoise_steps
    for m, (algo, compile_s, _) in zip(modes, built):
        med, mn = statistics.median(times[m]), min(times[m])
        print(f"| {size} ({task}, Do={OBS}, Da={ACT}, M={M}, K={K}) | {torch.get_num_threads()} | {m} ({algo.fast}) | "
              f"{compile_s:.1f} | {med * 1e3:.2f} | {mn * 1e3:.2f} | {med0 / med:.2f}x | {min0 / mn:.2f}x | "
              f"{statistics.mean(zero[m]):.2f} |", flush=True)


def breakdown(size: str, task: str | None, heads: int | None, device, mode: str, n: int) -> None:
    """CPU ms per piece of the update (--breakdown MODE): each piece's function wrapped with a process_time timer,
    n updates; min and median per update, and the pieces of the fastest update (CPU only, one mode per process)."""
    import flowft.algos.ogpo as ogpo_module

    algo, _, (_, OBS, ACT) = mode_algo(size, task, heads, device, mode)
    buf, acc = filled_buffer(OBS, ACT), {}
    for _ in range(3):
        algo.update(buf)

    def wrap(obj, name: str, label: str) -> None:
        f = getattr(obj, name)

        def timed(*a, **k):
            t = time.process_time()
            out = f(*a, **k)
            acc[label] = acc.get(label, 0.0) + time.process_time() - t
            return out
        setattr(obj, name, timed)

    wrap(buf, "sample", "buffer samples (+ .to)")
    for name in ["sample_sde", "score", "critic", "log_prob", "cfm_loss"]:
        wrap(algo.fast, name, f"fast.{name} (forward)")
    wrap(algo.actor_opt, "step", "actor AdamW step")
    wrap(algo.critic_opt, "step", "critic AdamW step")
    wrap(torch.Tensor, "backward", "every .backward()")
    wrap(torch.nn.utils, "clip_grad_norm_", "gradient clipping")
    for name in ["polyak", "ppo_clip_loss", "ratio_stats", "advantages", "chunk_returns", "aggregate", "td_target"]:
        wrap(ogpo_module, name, name)
    totals, per = [], []
    for _ in range(n):
        acc.clear()
        t = time.process_time()
        algo.update(buf)
        totals.append(time.process_time() - t)
        per.append(dict(acc))
    best = per[min(range(n), key=totals.__getitem__)]
    print(f"{mode}: CPU ms / update min {min(totals) * 1e3:.2f}, median {statistics.median(totals) * 1e3:.2f}")
    print("| piece | min | median | in the fastest update |\n|---|---|---|---|")
    for k in sorted(best, key=lambda k: -best[k]):
        v = [p.get(k, 0.0) * 1e3 for p in per]
        print(f"| {k} | {min(v):.2f} | {statistics.median(v):.2f} | {best[k] * 1e3:.2f} |")
    print(f"| everything else | | | {(min(totals) - sum(best.values())) * 1e3:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch thread counts to measure (each row's floor uses the same count)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mid", "paper"], choices=list(SIZES))
    ap.add_argument("--microbatch-chains", type=int, nargs="+", default=[None],
                    help="OGPO's microbatch_chains values to measure (default: the preset's None = 1024 chains per "
                         "slice on CPU, one slice on CUDA; 0 = one slice)")
    ap.add_argument("--matmul-precision", default="highest", choices=["highest", "high"],
                    help="torch.set_float32_matmul_precision: 'high' allows TF32 on NVIDIA GPUs (floor measured alike)")
    ap.add_argument("--modes", nargs="+", default=None,
                    help="compare fast-path modes instead: eager | compile, optionally /fp32 | /bf16-nograd | /bf16, "
                         "optionally /ACTIVATION (e.g. gelu-tanh) for actor and critic; compile@MODE for a "
                         "torch.compile mode (e.g. max-autotune-no-cudagraphs) (ratios to the first mode)")
    ap.add_argument("--task", default=None, help="--modes: the task whose dims to use (default: the size's)")
    ap.add_argument("--heads", type=int, default=None, help="--modes: critic heads M (default: the preset's)")
    ap.add_argument("--heads-spread", type=float, default=None,
                    help="--modes: set the critics' heads to head 0 plus N(0, S^2) noise, so that sign consensus "
                         "zeroes a realistic share of the advantages (0.6-0.8 on Lift / Can; fresh random heads: "
                         "0.99); the table's last column reads the share (default: the fresh heads)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="--modes: wall = time.perf_counter; cpu = time.process_time, the CPU seconds this process "
                         "used (all its threads): on a machine loaded beyond its cores it excludes the time the "
                         "update waited for a core, which wall time counts in full (CPU only)")
    ap.add_argument("--breakdown", default=None, metavar="MODE",
                    help="instead: CPU ms per piece of the update in one --modes-style MODE (e.g. compile/bf16), "
                         "--repeats updates, the first --threads and --sizes entries")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_float32_matmul_precision(args.matmul_precision)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, fp32 matmul precision {args.matmul_precision}, "
          f"clock {args.clock}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.breakdown:
        torch.set_num_threads(args.threads[0])
        breakdown(args.sizes[0], args.task, args.heads, device, args.breakdown, args.repeats)
        return
    if args.modes:
        unit = "CPU ms" if args.clock == "cpu" else "ms"
        print(f"| size (task, dims) | threads | mode | compile s | median {unit} / update | min {unit} | x median "
              "| x min | zero-advantage share |")
        print("|---|---|---|---|---|---|---|---|---|")
        for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            for s in args.sizes:
                clock = time.process_time if args.clock == "cpu" else time.perf_counter
                compare_modes(s, args.task, args.heads, device, args.modes, args.repeats, clock, args.heads_spread)
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        return
    print("| size (task) | threads | GFLOP / update | measured s / update | matmul GFLOP/s | floor s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        before = matmul_gflops(device)
        rows = [bench(s, device, args.repeats if s != "tiny" else 20, mb)
                for s in args.sizes for mb in args.microbatch_chains]
        gf = statistics.mean([before, matmul_gflops(device)])  # floor measured around the updates, same threads
        for r in rows:
            floor = r["gflop"] / gf
            print(f"| {r['size']} | {threads} | {r['gflop']:.2f} | {r['seconds']:.4f} | {gf:.1f} | {floor:.4f} | "
                  f"{r['seconds'] / floor:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
