"""OGPO's policy-extraction ablations (issue 5): AWR weights, AWR-FM, FPO / FPO++ ratios, BPTT through the ODE
sampler, the grad_a Q variance diagnostic (issue 6 (h)), and toy smoke runs of the extraction presets."""

import copy
import csv
import math
from dataclasses import replace

import pytest
import torch
import tyro

from flowft.algos.ogpo import OGPO, OGPOConfig
from flowft.config import TrainConfig
from flowft.critics.ensemble import CriticConfig, CriticEnsemble
from flowft.objectives.awr import awr_fm_loss, awr_weights
from flowft.objectives.bptt import bptt_actor_loss
from flowft.objectives.fpo import cfm_mc_losses, fpo_clip_loss, fpo_log_ratio, spo_penalty
from flowft.objectives.gradq_variance import q_gradient_at_mean, variance_along_direction
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.presets import ogpo_config, train_preset
from flowft.train.loop import Trainer
from flowft.utils.logging import LogConfig
from helpers import make_bc_checkpoint, tiny_train_config
from toy_checks import assert_toy_eval

EXTRACTION_PRESETS = ["ogpo-awr", "ogpo-awr-fm", "ogpo-fpo", "ogpo-bptt"]


def _policy(seed=0, act_dim=2, chunk=2, K=4):
    torch.manual_seed(seed)
    return FlowPolicy(3, act_dim, chunk, FlowPolicyConfig(hidden=(32, 32), denoise_steps=K))


# ------------------------------------------------------------------------------------------------------ AWR
ADV = torch.tensor([-20.0, -5.0, 0.0, 5.0, 40.0])
E = math.exp


@pytest.mark.parametrize("mode,kw,expected", [
    ("symmetric", {}, [E(-2), E(-0.5), 1.0, E(0.5), 20.0]),  # exp(4) = 54.6 clipped at 20
    ("asymmetric", {}, [1.0, 1.0, 1.0, E(0.5), 20.0]),  # reference: exp(max(0, A)/beta)
    ("asymmetric", {"beta_neg": 5.0}, [E(-4), E(-1), 1.0, E(0.5), 20.0]),  # colder negative side
    ("positive_only", {}, [0.0, 0.0, 0.0, E(0.5), 20.0]),
    ("symmetric", {"weight_max": 1.5}, [E(-2), E(-0.5), 1.0, 1.5, 1.5]),
])
def test_awr_weights_hand_computed(mode, kw, expected):
    w = awr_weights(ADV, beta=10.0, mode=mode, **kw)
    torch.testing.assert_close(w, torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_awr_bad_input_names_the_field():
    with pytest.raises(ValueError, match="awr_beta"):
        awr_weights(ADV, beta=0.0)
    with pytest.raises(ValueError, match="awr_mode"):
        awr_weights(ADV, beta=1.0, mode="both")
    with pytest.raises(ValueError, match="--algo.awr-weight-max"):
        OGPOConfig(awr_weight_max=-1.0)
    with pytest.raises(ValueError, match="--algo.n-mc"):
        OGPOConfig(n_mc=0)
    with pytest.raises(ValueError, match="--algo.grad-diag-every"):
        OGPOConfig(grad_diag_every=-1)


def test_awr_fm_loss_normalises_weights_per_group_index():
    losses = torch.tensor([[[0.0, 2.0], [2.0, 2.0]], [[2.0, 4.0], [2.0, 2.0]]])  # [n=2, G=2, B=2]: MC mean [[1,3],[2,2]]
    w = torch.tensor([[1.0, 3.0], [2.0, 2.0]])  # normalised over B: [[0.5, 1.5], [1, 1]]
    assert awr_fm_loss(losses, w).item() == pytest.approx((0.5 * 1 + 1.5 * 3 + 2 + 2) / 4)


# ------------------------------------------------------------------------------------------------------ FPO
def test_cfm_mc_losses_known_answer():
    x1 = torch.tensor([[1.0, -1.0]])  # [R=1, d=2]
    eps = torch.tensor([[[0.0, 0.0]], [[3.0, -0.5]]])  # [n=2, 1, 2]
    tau = torch.tensor([[0.3], [0.7]])
    zero_v = lambda x, t: torch.zeros_like(x)  # noqa: E731  (loss = |x1 - eps|^2)
    torch.testing.assert_close(cfm_mc_losses(zero_v, x1, tau, eps), torch.tensor([[2.0], [4.0 + 0.25]]))
    # Huber(delta=1): |diff| = (2, 0.5) -> 2*2 - 1 + 0.25
    torch.testing.assert_close(cfm_mc_losses(zero_v, x1, tau, eps, huber_delta=1.0)[1], torch.tensor([3.25]))
    # the exact conditional velocity x1 - eps gives zero loss, whatever tau
    exact = lambda x, t: (x1 - eps).reshape(-1, 2)  # noqa: E731  rows ordered [n, R]
    assert cfm_mc_losses(exact, x1, tau, eps).abs().max().item() == 0.0


def test_fpo_ratio_clamps():
    old, new = torch.tensor([[10.0, 1.0]]), torch.tensor([[0.0, 3.0]])
    assert fpo_log_ratio(old, new, loss_clamp=4.0, diff_clamp=5.0).tolist() == [[4.0, -2.0]]
    assert fpo_log_ratio(old, new, loss_clamp=100.0, diff_clamp=3.0).tolist() == [[3.0, -2.0]]


def test_fpo_per_sample_clipping_and_aspo_hand_computed():
    log_r = torch.log(torch.tensor([[1.5], [0.6]]))  # two (tau, eps) draws of one sample
    pos = torch.tensor([1.0])
    # FPO++: each draw clipped separately: mean(min(1.5, 1.2), min(0.6, 0.8)) = 0.9
    assert fpo_clip_loss(log_r, pos, 0.2).item() == pytest.approx(-0.9)
    # FPO: one ratio from the averaged log-ratio: r = sqrt(0.9) = 0.9487 inside [0.8, 1.2]
    assert fpo_clip_loss(log_r.mean(0, keepdim=True), pos, 0.2).item() == pytest.approx(-math.sqrt(0.9))
    # ASPO, A = -1, r = 1.5: r A - |A| (1.5 - 1.2)^2 / (4 * 0.2)
    assert fpo_clip_loss(log_r[:1], -pos, 0.2, aspo=True).item() == pytest.approx(1.5 + 0.09 / 0.8)
    assert spo_penalty(torch.tensor(1.1), torch.tensor(-3.0), 0.2).item() == 0.0  # inside the trust region


def _fpo_draws(policy, n=8, R=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(R, 3, generator=g)
    x1 = torch.rand(R, policy.flat_dim, generator=g) * 2 - 1
    tau, eps = torch.rand(n, R, generator=g), torch.randn(n, R, policy.flat_dim, generator=g)
    return obs.repeat(n, 1), x1, tau, eps


@pytest.mark.parametrize("per_sample", [True, False])
def test_fpo_ratio_is_one_at_theta_old(per_sample):
    new = _policy()
    old = copy.deepcopy(new).requires_grad_(False)
    obs_n, x1, tau, eps = _fpo_draws(new)
    l_new = cfm_mc_losses(new._velocity_fn(obs_n), x1, tau, eps, huber_delta=1.0)
    l_old = cfm_mc_losses(old._velocity_fn(obs_n), x1, tau, eps, huber_delta=1.0)
    log_r = fpo_log_ratio(l_old, l_new, per_sample, loss_clamp=1e6)
    assert log_r.shape == ((8, 5) if per_sample else (1, 5))
    assert torch.equal(torch.exp(log_r), torch.ones_like(log_r))  # every per-sample ratio exactly 1


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("per_sample", [True, False])
def test_fpo_ratio_moves_with_the_advantage(sign, per_sample):
    new = _policy()
    old = copy.deepcopy(new).requires_grad_(False)
    obs_n, x1, tau, eps = _fpo_draws(new)
    opt = torch.optim.SGD(new.parameters(), lr=1e-3)

    def log_ratio():
        l_new = cfm_mc_losses(new._velocity_fn(obs_n), x1, tau, eps)
        return fpo_log_ratio(cfm_mc_losses(old._velocity_fn(obs_n), x1, tau, eps), l_new, per_sample, 1e6, 1e6)

    fpo_clip_loss(log_ratio(), torch.full((5,), sign), clip_eps=0.5).backward()
    opt.step()
    with torch.no_grad():
        moved = log_ratio().mean().item()
    assert sign * moved > 0  # A > 0: the sample's (ELBO-proxy) likelihood rises, ratio > 1; A < 0: it falls


# ----------------------------------------------------------------------------------------------------- BPTT
def test_differentiable_sampler_equals_sample_ode_and_carries_gradient():
    pol = _policy(K=5)
    pol.obs_normalizer.fit_zscore(torch.randn(50, 3) * 3 + 1)  # non-trivial normalisation on the path
    obs, x0 = torch.randn(7, 3), torch.randn(7, pol.flat_dim) * 1.5  # some actions clip at +-1
    ref = pol.sample_ode(obs, noise=x0)
    out = pol.sample_ode_differentiable(obs, x0)
    assert out.shape == ref.shape == (7, 2, 2)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert out.requires_grad and not ref.requires_grad
    out.sum().backward()
    grads = [p.grad for p in pol.net.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_bptt_gradient_reaches_only_the_actor_and_climbs_q():
    pol = _policy()
    critic = CriticEnsemble(3, 2, 2, CriticConfig(num_heads=2, hidden=(16, 16))).requires_grad_(False)
    obs, x0 = torch.randn(6, 3), torch.randn(4, 6, pol.flat_dim) * 0.3
    loss, actions, q = bptt_actor_loss(pol, critic, obs, x0, "mean")
    assert actions.shape == (4, 6, 2, 2) and q.shape == (4, 6)
    loss.backward()
    assert all(p.grad is None for p in critic.parameters())
    assert sum(p.grad.abs().sum() for p in pol.parameters() if p.grad is not None) > 0
    # a known linear critic Q = <w, a>: BPTT steps move the ODE actions along w
    w = torch.tensor([1.0, -1.0, 0.5, 0.0])
    linear = lambda o, a: (a.flatten(-2) @ w).unsqueeze(0)  # noqa: E731  [1, S, B]
    opt = torch.optim.Adam(pol.parameters(), lr=1e-3)
    q0 = bptt_actor_loss(pol, linear, obs, x0)[2].mean().item()
    for _ in range(20):
        opt.zero_grad()
        bptt_actor_loss(pol, linear, obs, x0)[0].backward()
        opt.step()
    assert bptt_actor_loss(pol, linear, obs, x0)[2].mean().item() > q0 + 0.1


# ------------------------------------------------------------------------------------------ 6 (h) diagnostic
def test_variance_along_and_orthogonal_to_grad_q_known_answer():
    g = torch.Generator().manual_seed(0)
    B, d = 5, 6
    u = torch.nn.functional.normalize(torch.randn(B, d, generator=g), dim=-1)
    v = torch.randn(B, d, generator=g)
    v = torch.nn.functional.normalize(v - (v * u).sum(-1, keepdim=True) * u, dim=-1)  # v orthogonal to u
    mean, c = torch.randn(B, d, generator=g), torch.tensor([-2.0, 0.0, 1.0, 1.0])  # Var(c) = 6 / 3 = 2
    along_only = mean + c[:, None, None] * u  # [G, B, d]: spread only along u
    assert variance_along_direction(along_only, u) == pytest.approx((2.0, 0.0), abs=1e-5)
    orth_only = mean + c[:, None, None] * v
    assert variance_along_direction(orth_only, u) == pytest.approx((0.0, 2.0 / (d - 1)), abs=1e-5)
    iso = torch.randn(20_000, B, d, generator=g) * 0.5  # isotropic: both 0.25
    along, orth = variance_along_direction(iso, u)
    assert along == pytest.approx(0.25, rel=0.05) and orth == pytest.approx(0.25, rel=0.05)
    with pytest.raises(ValueError, match="G >= 2"):
        variance_along_direction(along_only[:1], u)


def test_q_gradient_at_the_group_mean():
    actions = torch.randn(8, 3, 2, 2)  # [G, B, H, Da]
    target = torch.randn(3, 2, 2)
    quad = lambda a: -((a - target) ** 2).sum((-2, -1))  # noqa: E731  grad = 2 (target - a)
    g = q_gradient_at_mean(quad, actions)
    expected = torch.nn.functional.normalize((target - actions.mean(0)).flatten(-2), dim=-1)
    torch.testing.assert_close(g, expected)


# --------------------------------------------------------------------------------------- presets and smoke
@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc_extraction"))


def test_fpo_update_has_ratio_one_before_any_step():
    algo = OGPO(replace(ogpo_config("ogpo-fpo", "toy", "tiny"), group_size=4), 6, 2, 4, torch.device("cpu"), 0)
    stats, actions, _ = algo._ode_group_loss(torch.randn(5, 6))
    assert stats["actor/ratio_mean"] == 1.0 and stats["actor/ratio_max"] == 1.0 and stats["actor/clip_frac"] == 0.0
    assert actions.shape == (4, 5, 4, 2)


def test_extraction_flag_overrides_any_ogpo_preset():
    default = train_preset("ogpo-plus-ca", "toy", "tiny")
    cfg = tyro.cli(TrainConfig[OGPOConfig], default=default, args=["--algo.extraction", "awr", "--algo.awr-mode",
                                                                     "positive_only"])
    assert cfg.algo.extraction == "awr" and cfg.algo.awr_mode == "positive_only"
    assert cfg.algo.advantage == "conservative"  # the rest of the preset is kept


@pytest.mark.parametrize("name", EXTRACTION_PRESETS)
def test_extraction_preset_smoke_run(name, bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, algo=name, env_steps=320, start_training=160, ckpt_every=320,
                            log=LogConfig(log_every=80))
    cfg = replace(cfg, algo=replace(cfg.algo, grad_diag_every=10))
    trainer = Trainer(cfg)
    res = trainer.run()
    assert trainer.algo.grad_steps >= 30
    assert "ode" in assert_toy_eval(res, cfg.run.eval_episodes, trainer.run_dir)
    rows = list(csv.DictReader((trainer.run_dir / "metrics.csv").open()))
    logged = [r for r in rows if r.get("train/actor/var_along_gradq")]
    assert logged, "diagnostic missing"
    for r in logged:
        for k in ("train/actor/pg_loss", "train/actor/var_along_gradq", "train/actor/var_orth_gradq",
                  "train/critic/loss"):
            assert math.isfinite(float(r[k])), (k, r[k])
        # G imagined chunks per state from random noise: spread both along grad_a Q and across it (a zero means the
        # diagnostic read one sample, the wrong axis or a collapsed group)
        assert float(r["train/actor/var_along_gradq"]) > 0.0 and float(r["train/actor/var_orth_gradq"]) > 0.0
    params = trainer.algo.actor.state_dict().values()
    assert all(torch.isfinite(p).all() for p in params if p.is_floating_point())
