"""Fast path of the OGPO update (issue 18; train/fastpath.py): compiled updates equal eager ones, ratio = 1 at
theta = theta_old in every precision, no recompiles after the start, one warning and eager where compiling fails,
and exact resume with compile + bf16 + overlapped updates. The compiled graphs (toy tiny learner narrowed to 2x32,
1 thread) are shared by the whole module and cached on disk by inductor: the file takes ~30 s on the loaded 2-core
machine with that cache warm, ~3 min the first time on a machine (cold cache: 12 graphs to compile; 2 min 49 s beside
two training runs, 2026-11-29, of which the bf16 resume test 23 s: 105 s with the 2x128 preset learner, whose bf16
this CPU emulates)."""

import dataclasses

import numpy as np
import pytest
import torch

from flowft.algos.ogpo import OGPO
from flowft.data.buffer import ReplayBuffer
from flowft.presets import ogpo_config
from flowft.train import fastpath
from helpers import final_weights, full_and_resumed_runs, make_bc_checkpoint, random_buffer, tiny_train_config

UPDATES = 5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """1 torch thread, as the tiny presets train (the Trainer below sets it too, so every test shares one set of
    compiled graphs): inductor's OpenMP kernels on 2 threads of a loaded 2-core machine stall on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

ATOL = 1e-5  # fp32: compiled vs eager weights after UPDATES updates (measured 1.2e-7: fusion reorders float sums)


def small(cfg):
    """The toy tiny learner with 2x32 MLPs (2x128 in the preset): the same graphs to compile (compile time hardly
    depends on width), a fraction of the compute, which matters most for bf16 on CPUs that emulate it."""
    return dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, hidden=(32, 32)),
                               critic=dataclasses.replace(cfg.critic, hidden=(32, 32)))


def make_algo(compile: bool, precision: str = "fp32", device: str = "cpu") -> OGPO:
    torch.manual_seed(0)  # network init draws from the global generator (the Trainer seeds it per run)
    cfg = small(dataclasses.replace(ogpo_config("ogpo-plus-ca", "toy", "tiny"), critic_warmup=0))
    algo = OGPO(cfg, 6, 2, 4, torch.device(device), seed=0)
    algo.enable_fast_path(compile, precision)
    return algo


def state(algo: OGPO) -> dict[str, torch.Tensor]:
    out = {f"{n}.{k}": v.detach().cpu().clone() for n, m in algo.modules().items() for k, v in m.state_dict().items()}
    out.update({f"gen.{k}": g.get_state().clone() for k, g in algo.generators().items()})
    return out


def run_updates(algo: OGPO, buf: ReplayBuffer, n: int = UPDATES) -> list[dict]:
    buf.rng = np.random.default_rng(1)
    with torch._dynamo.config.patch(error_on_recompile=True):  # every graph was compiled by enable_fast_path
        return [algo.update(buf) for _ in range(n)]


@pytest.fixture(scope="module")
def eager_run():
    algo = make_algo(False)
    return run_updates(algo, random_buffer()), state(algo)


def test_warm_up_compiles_then_restores_everything():
    eager, fast = make_algo(False), make_algo(True)
    assert fast.fast.mode == "default" and eager.fast.mode is None
    assert fast.grad_steps == 0 and fast.actor_steps == 0 and not fast.actor_opt.state and not fast.critic_opt.state
    assert all(p.grad is None for m in fast.modules().values() for p in m.parameters())
    a, b = state(eager), state(fast)
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights, normalisers and every generator, bit for bit


def test_compiled_updates_equal_eager_ones(eager_run):
    stats_e, weights_e = eager_run
    fast = make_algo(True)
    stats_f = run_updates(fast, random_buffer())
    weights_f = state(fast)
    assert fast.actor_steps == UPDATES and any(s["actor/pg_loss"] != 0 for s in stats_f)
    for k in weights_e:  # the generators made the same draws: bit-equal states
        same = torch.equal if k.startswith("gen.") else lambda a, b: torch.allclose(a, b, atol=ATOL, rtol=0)
        assert same(weights_e[k], weights_f[k]), k
    for se, sf in zip(stats_e, stats_f):
        assert se.keys() == sf.keys()
        for k in se:
            assert sf[k] == pytest.approx(se[k], rel=1e-4, abs=1e-6), k


@pytest.mark.parametrize("precision", fastpath.PRECISIONS)
def test_compiled_ratio_is_one_at_theta_old_in_every_precision(precision, bf16_anywhere):
    """First update: the actor equals the EMA actor, so every chain's ratio is 1 (to float rounding) whatever the
    precision (eager: test_objectives)."""
    algo = make_algo(True, precision)
    assert algo.fast.precision == precision
    S = torch.randn(64, 6, generator=torch.Generator().manual_seed(3))
    imagined = algo.fast.sample_sde(algo.actor_target, S, 8, algo.gen)
    logp = algo.fast.log_prob(algo.actor, S, imagined.chain)
    assert logp.dtype == torch.float32 and imagined.chain.dtype == torch.float32
    assert (logp.detach() - imagined.logp).abs().max() < 1e-5
    stats = run_updates(algo, random_buffer(), 2)
    assert stats[0]["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-5) and stats[0]["actor/clip_frac"] == 0.0
    if precision != "fp32":  # imagined in bf16: old log-probs through the new ones' very calls, so exactly 1
        assert (stats[0]["actor/ratio_max"], stats[0]["actor/approx_kl"]) == (1.0, 0.0)
    assert all(np.isfinite(list(s.values())).all() for s in stats)


def test_a_failing_compiler_means_one_warning_and_eager(monkeypatch):
    def broken(mode, device_type="cpu", pieces=None):
        funcs = dict(fastpath._FUNCTIONS)
        if mode is not None:  # what a missing C++ compiler looks like to the caller: the first call raises
            funcs["imagine"] = lambda *a: (_ for _ in ()).throw(RuntimeError("InvalidCxxCompiler: no working C++"))
        return funcs

    monkeypatch.setattr(fastpath, "_functions", broken)
    monkeypatch.setattr(fastpath, "_COMPILED_BY_MODE", {})  # keep the module's compiled graphs for the other tests
    monkeypatch.setattr(torch._dynamo, "reset", lambda: None)
    with pytest.warns(RuntimeWarning, match="running the update eager") as record:
        algo = make_algo(True)
    assert len(record) == 1 and algo.fast.mode is None
    assert all(torch.equal(a, b) for a, b in zip(state(algo).values(), state(make_algo(False)).values()))


def test_algorithms_without_a_fast_path_warn_once():
    from flowft.algos.qc import QC, QCConfig
    from flowft.policies.flow import FlowPolicyConfig

    algo = QC(QCConfig(policy=FlowPolicyConfig(hidden=(16,), denoise_steps=2)), 6, 2, 4, torch.device("cpu"), seed=0)
    with pytest.warns(RuntimeWarning, match="no fast path"):
        algo.enable_fast_path(True, "fp32")
    assert algo.fast.mode is None


def test_bf16_falls_back_to_fp32_with_one_warning_where_the_cpu_has_no_bf16_matmuls(monkeypatch):
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: False)
    for precision in ("bf16-nograd", "bf16"):
        with pytest.warns(RuntimeWarning, match=f"--run.precision {precision}: this cpu has no fast bf16") as seen:
            algo = make_algo(False, precision)
        assert len(seen) == 1 and algo.fast.precision == "fp32" and not algo.fast.bf16_nograd
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: True)
    assert make_algo(False, "bf16").fast.precision == "bf16"


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"),
                              policy=small(ogpo_config("ogpo-plus-ca", "toy", "tiny")).policy)


def test_compiled_bf16_overlapped_run_resumes_bit_identically(bc, tmp_path, bf16_anywhere):
    cfg = tiny_train_config(bc, tmp_path, compile=True, precision="bf16", overlap_updates=True)
    cfg = dataclasses.replace(cfg, algo=small(cfg.algo))
    full, _, part, resumed = full_and_resumed_runs(cfg, stop_at=320)
    assert resumed.algo.fast.mode == "default" and resumed.algo.fast.precision == "bf16"
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full.algo.grad_steps == resumed.algo.grad_steps > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16-nograd's pieces are in these two
def test_cuda_graphs_fast_path_matches_eager(precision):
    eager, fast = make_algo(False, precision, "cuda"), make_algo(True, precision, "cuda")
    assert fast.fast.mode == "reduce-overhead", "CUDA graphs fell back (see the warning)"
    buf = random_buffer()
    stats_e, stats_f = run_updates(eager, buf, 3), run_updates(fast, buf, 3)
    assert stats_f[0]["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-5) and stats_f[0]["actor/clip_frac"] == 0.0
    tol = 1e-4 if precision == "fp32" else 2e-2  # TF32 is off; bf16 rounds differently when fused
    assert stats_f[0]["critic/loss"] == pytest.approx(stats_e[0]["critic/loss"], rel=100 * tol)
    a, b = state(eager), state(fast)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=tol) for k in a if not k.startswith("gen."))
    assert all(np.isfinite(list(s.values())).all() for s in stats_f)


def test_gelu_tanh_is_the_tanh_approximation_everywhere_it_is_asked_for():
    """gelu-tanh (the authors' flax nn.gelu, approximate=True) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
    within 4.8e-4 of the exact erf GELU (max at |x| ~ 2.7); in the velocity MLP, the time-embedding MLP and the
    critic when asked for."""
    from flowft.critics.ensemble import CriticEnsemble
    from flowft.policies.networks import ACTIVATIONS, MLPTimeEmbedding

    x = torch.linspace(-8, 8, 100_001, dtype=torch.float64)
    got, exact = ACTIVATIONS["gelu-tanh"]()(x), ACTIVATIONS["gelu"]()(x)
    want = 0.5 * x * (1 + torch.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    assert (got - want).abs().max() < 1e-12
    assert 4.6e-4 < (got - exact).abs().max() < 4.8e-4
    cfg = ogpo_config("ogpo-plus-ca", "toy", "tiny")
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, activation="gelu-tanh"),
                              critic=dataclasses.replace(cfg.critic, activation="gelu-tanh"))
    algo = OGPO(cfg, 6, 2, 4, torch.device("cpu"), seed=0)
    gelus = [m for m in [*algo.actor.modules(), *algo.critic.modules(), *MLPTimeEmbedding(8, "gelu-tanh").modules()]
             if isinstance(m, torch.nn.GELU)]
    assert len(gelus) == len(cfg.policy.hidden) + 2 and all(m.approximate == "tanh" for m in gelus)
    assert np.isfinite(list(algo.update(random_buffer()).values())).all()


def test_pieces_choose_what_is_compiled():
    """update_speed.py's "compile+log_prob" modes: only the named functions are wrapped (compiling is lazy: free here)."""
    path = fastpath.UpdatePath(torch.device("cpu"), "default", "fp32", ("imagine", "log_prob"))
    assert path.fn["score"] is fastpath._score and path.fn["cfm"] is fastpath._cfm
    assert path.fn["log_prob"] is not fastpath._log_prob and path.fn["imagine"] is not fastpath._imagine
    assert "pieces=imagine+log_prob" in repr(path)
    assert fastpath.UpdatePath(torch.device("cpu"), "default").fn is fastpath._functions("default", "cpu")
    with pytest.raises(ValueError, match="pieces must be among"):
        fastpath.UpdatePath(torch.device("cpu"), "default", "fp32", ("imagine", "optimizer"))


def test_update_speed_mode_names_a_torch_compile_mode(monkeypatch):
    """benchmarks/update_speed.py "compile@MODE": that torch.compile mode (enable_fast_path's `modes`); plain
    "compile" keeps the default (warm-up stubbed: compiling is lazy, so nothing compiles here)."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "update_speed", Path(__file__).resolve().parents[1] / "benchmarks" / "update_speed.py")
    us = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(us)
    monkeypatch.setattr(fastpath, "_warm_up", lambda algo, path: None)
    cpu = torch.device("cpu")
    algo, _, dims = us.mode_algo("tiny", "lift", 2, cpu, "compile@max-autotune-no-cudagraphs+log_prob")
    assert algo.fast.mode == "max-autotune-no-cudagraphs" and algo.fast.precision == "fp32"
    assert algo.fast.fn["log_prob"] is not fastpath._log_prob and dims[0] == "lift"
    assert us.mode_algo("tiny", "lift", 2, cpu, "compile/bf16")[0].fast.mode == "default"
    assert us.mode_algo("tiny", "lift", 2, cpu, "eager")[0].fast.mode is None


def test_bf16_log_prob_row_subsets_are_padded_to_a_bucket_then_cut(bf16_anywhere):
    """Under bf16 a subset of n chains goes through the log-prob as ceil(n / ROW_BUCKET) * ROW_BUCKET rows (oneDNN
    builds bf16 kernels per shape) and comes back as the n chains' own log-probs, in order; fp32 is not padded."""
    policy = make_algo(False).actor
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(70, 6, generator=g)  # [n, Do], n not a multiple of the bucket
    chain = policy.sample_sde(obs, 1, g).chain[0]  # [n, K+1, d]
    out = {}
    for precision in ("fp32", "bf16"):
        path, rows = fastpath.UpdatePath(torch.device("cpu"), None, precision), []
        inner = path.log_prob
        path.log_prob = lambda p, o, c, inner=inner, rows=rows: rows.append(o.shape[0]) or inner(p, o, c)
        out[precision] = path._subset(policy, obs, chain)
        assert rows == [128 if precision == "bf16" else 70] and out[precision].shape == (70,)
    err = (out["bf16"] - out["fp32"]).abs()
    shifted = (out["bf16"][1:] - out["fp32"][:-1]).abs()  # a chain paired with its neighbour's log-prob
    assert err.max() < 0.05 * shifted.mean(), (err.max(), shifted.mean())
