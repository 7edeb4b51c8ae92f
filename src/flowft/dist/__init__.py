"""Scale-out (issue 21, docs/scaling.md), imported only when asked for, so the single-process path never loads Ray.

- driver.py  : `DistTrainer`, the learner side of distributed acting (`flowft train ALGO --run.env-workers N`): Ray
               env-worker actors feed this process's replay buffer; weights go back through the object store.
- worker.py  : `EnvWorker`, the Ray actor that owns a vector env and an acting copy of the algorithm.
- buffers.py : `WorkerBuffers`, one replay ring per worker, sampled as one buffer.
- ddp.py     : the data-parallel learner update over torch.distributed (torchrun, gloo on CPU / nccl on GPU).
- ddp_train.py: `DDPTrainer`, `torchrun --nproc-per-node W -m flowft train ...`: every rank runs the loop on the
               same envs and buffer, the update is data-parallel, rank 0 owns the run dir.
"""

import os


def trainer_class(cfg):
    """The trainer `flowft train/resume` builds: the single-process loop; this package's Ray driver when
    --run.env-workers > 0 (only then is Ray imported); the data-parallel learner under torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from flowft.dist.ddp_train import DDPTrainer

        return DDPTrainer
    if cfg.run.env_workers > 0:
        from flowft.dist.driver import DistTrainer

        return DistTrainer
    from flowft.train.loop import Trainer

    return Trainer

