"""run.overlap_updates: updates run while the envs step. Known answers: each update sees exactly the buffer of
the previous env step (N transitions fewer than without overlap), the run is the same for sync and async envs,
off = the old order, and resume stays bit-identical. Also the loop's logged evaluation time."""

from dataclasses import replace

import pytest
import torch

from flowft.train.collector import ChunkCollector
from flowft.train.loop import Trainer
from helpers import final_weights, full_and_resumed_runs, make_bc_checkpoint, tiny_train_config


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


def _run_with_spy(cfg) -> tuple[Trainer, list[tuple[int, int]]]:
    """Train and record (env steps counted, transitions per env in the buffer) at every update."""
    tr = Trainer(cfg)
    seen, update = [], tr.algo.update

    def spy(buffer):
        seen.append((tr.env_steps, buffer.total))
        return update(buffer)

    tr.algo.update = spy
    tr.run()
    return tr, seen


@pytest.mark.parametrize("overlap", [False, True])
def test_updates_see_the_buffer_up_to_the_previous_step(bc, tmp_path, overlap):
    N = 4
    cfg = tiny_train_config(bc, tmp_path, env_steps=320, overlap_updates=overlap, run_name=f"o{overlap}")
    _, seen = _run_with_spy(cfg)
    assert seen and seen[0][0] == cfg.run.start_training
    lag = 1 if overlap else 0  # transitions per env not yet stored when the update runs
    assert all(total == steps // N - lag for steps, total in seen), seen[:5]


def test_overlap_is_independent_of_vectorization(bc, tmp_path):
    weights = {}
    for vec in ("sync", "async"):
        cfg = tiny_train_config(bc, tmp_path, env_steps=320, overlap_updates=True, vectorization=vec, run_name=vec)
        Trainer(cfg).run()
        weights[vec] = final_weights(tmp_path / vec)
    assert weights["sync"].keys() == weights["async"].keys()
    for k in weights["sync"]:
        assert torch.equal(weights["sync"][k], weights["async"][k]), k


def test_overlap_changes_the_run_and_resumes_bit_identically(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, overlap_updates=True)
    full, _, part, _ = full_and_resumed_runs(cfg, stop_at=320)
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = Trainer(replace(cfg, run=replace(cfg.run, overlap_updates=False, run_name="plain")))
    plain.run()
    c = final_weights(plain.run_dir)
    assert any(not torch.equal(a[k], c[k]) for k in a), "overlap_updates had no effect"


def test_collector_rejects_unpaired_async_calls():
    from flowft.envs.make import make_vec_env, reset_vec_env
    from flowft.registry import get_task

    task = get_task("toy")
    venv = make_vec_env(task, 2, vectorization="sync")
    col = ChunkCollector(venv, task.chunk_len, torch.device("cpu"))
    col.start(reset_vec_env(venv, 0, 0))
    act = lambda o: torch.zeros(o.shape[0], task.chunk_len, 2)  # noqa: E731
    with pytest.raises(RuntimeError, match="step_wait called without step_async"):
        col.step_wait()
    col.step_async(act)
    with pytest.raises(RuntimeError, match="step_async called twice"):
        col.step_async(act)
    res = col.step_wait()  # the pair completes: one env step of the zero chunk
    assert res.actions.shape == (2, 2) and not res.actions.any()
    venv.close()


def test_logged_eval_seconds_include_the_rows_own_eval(bc, tmp_path):
    import csv

    cfg = tiny_train_config(bc, tmp_path, eval_every=320, run_name="timing")
    Trainer(cfg).run()
    rows = [r for r in csv.DictReader((tmp_path / "timing" / "metrics.csv").open()) if r.get("time/eval_s")]
    evals = {int(r["env_steps"]): float(r["time/eval_s"]) for r in rows if r.get("eval/ode/success")}
    assert sorted(evals) == [320, 640]
    assert 0 < evals[320] < evals[640], evals  # cumulative, each row counting its own evaluation
