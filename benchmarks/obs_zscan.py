"""How far a run's online states sit from its BC demonstrations, in the units the networks read.

Loads a training checkpoint directory (model.safetensors with the policy's observation normaliser, and the
buffer.safetensors that `--run.save-buffer` writes next to it), z-scores every stored observation with the
normaliser fitted on the BC demonstrations, and prints the share of states with some |z| above a threshold and,
per coordinate, the demos' std and the median / 99th percentile / max |z| (docs/tasks.md, "observation z-scores").

    python benchmarks/obs_zscan.py RUN/checkpoints/0000050000 [--threshold 10] [--sample 100000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file


def zscan(ckpt: Path, threshold: float = 10.0, sample: int = 100_000, seed: int = 0) -> dict:
    """-> {"states": n, "share_over": share of states with some |z| > threshold, "std": [Do], "quantiles": [3, Do]}"""
    for name in ("model.safetensors", "buffer.safetensors"):
        if not (ckpt / name).is_file():
            raise SystemExit(f"obs_zscan: {ckpt / name} not found (a training checkpoint saved with its buffer)")
    model, buf = load_file(ckpt / "model.safetensors"), load_file(ckpt / "buffer.safetensors")
    obs = buf["obs"].reshape(-1, buf["obs"].shape[-1]).float()  # [N*C, Do]
    obs = obs[obs.abs().sum(1) > 0]  # slots never written are zeros
    scale, shift = model["actor.obs_normalizer.scale"], model["actor.obs_normalizer.shift"]
    z = ((obs - shift) / scale).abs()  # [n, Do]
    rows = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[:sample]
    q = torch.quantile(z[rows], torch.tensor([0.5, 0.99, 1.0]), dim=0)  # [3, Do]
    return {"states": len(z), "share_over": (z.max(1).values > threshold).float().mean().item(),
            "std": scale.tolist(), "quantiles": q.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="a training checkpoint directory (with buffer.safetensors)")
    ap.add_argument("--threshold", type=float, default=10.0, help="|z| counted as far off the demos")
    ap.add_argument("--sample", type=int, default=100_000, help="states sampled for the quantiles")
    args = ap.parse_args()
    r = zscan(args.checkpoint, args.threshold, args.sample)
    print(f"{r['states']} states; share with some |z| > {args.threshold:g}: {r['share_over']:.3f}")
    print("| coordinate | demos' std | median / 99th percentile / max |z| |\n|---|---|---|")
    q = r["quantiles"]
    for i, s in enumerate(r["std"]):
        print(f"| {i} | {s:.4f} | " + " / ".join(f"{q[j][i]:.1f}" for j in range(3)) + " |")


if __name__ == "__main__":
    main()
