"""OGPO: Off-Policy Generative Policy Optimization (Patil et al., arXiv 2605.03065), OGPO+ and OGPO+CA.

Critic ensemble learned off-policy with chunked TD; actor improved by PPO inside the denoising chain
("in imagination"): B replay states x G SDE chains from the EMA target actor, scored by the target critics,
group Monte-Carlo baseline, clipped ratio of whole-chain log-probs. No backprop through the sampler, no grad_a Q.
`extraction` swaps the actor objective for the paper's ablations (AW-OGPO, AWR-FM, FPO/FPO++, BPTT; objectives/).
Reference: OGPO_public ogpo/agents/ogpo.py (actor_loss, critic_loss, sample_actions_BON); algorithm_reference §1.
Shapes: B states, G group, M heads, K steps, H chunk, Da, Do, d = H*Da, N envs. Knobs: OGPOConfig (ogpo_config.py).
"""

from __future__ import annotations

import copy

import torch

from flowft.algos.base import ActMode, Algorithm, adamw, check_finite, load_bc
from flowft.algos.ogpo_config import OGPOConfig
from flowft.critics.ensemble import CriticEnsemble, aggregate, pick_best, polyak
from flowft.critics.targets import chunk_returns, td_target
from flowft.data.buffer import ReplayBuffer
from flowft.objectives.advantages import advantages
from flowft.objectives.awr import awr_fm_loss, awr_weights
from flowft.objectives.bptt import bptt_actor_loss
from flowft.objectives.fpo import cfm_mc_losses, fpo_clip_loss, fpo_log_ratio
from flowft.objectives.gradq_variance import q_gradient_at_mean, variance_along_direction
from flowft.objectives.ppo import group_slices, ppo_clip_loss, ratio_stats
from flowft.policies.flow import FlowPolicy
from flowft.utils.schedules import restarting_warmup_cosine

__all__ = ["OGPO", "OGPOConfig"]  # the config lives in ogpo_config.py (its knobs and their ranges)


class OGPO(Algorithm):
    name, has_fast_path = "ogpo", True  # networks of the update go through self.fast (train/fastpath.py)

    def __init__(self, cfg: OGPOConfig, obs_dim: int, act_dim: int, chunk_len: int, device: torch.device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, chunk_len, device, seed)
        self.actor = FlowPolicy(obs_dim, act_dim, chunk_len, cfg.policy).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = CriticEnsemble(obs_dim, act_dim, chunk_len, cfg.critic).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adamw(self.actor.parameters(), cfg.actor_lr, cfg.weight_decay)
        self.critic_opt = adamw(self.critic.parameters(), cfg.critic_lr, cfg.weight_decay)
        self.actor_steps = 0  # actor updates so far (the actor lr schedule's clock)

    def init_from_bc(self, actor_state: dict[str, torch.Tensor]) -> None:
        """Start from a BC checkpoint: actor and EMA actor = BC weights; critics share its normalisers."""
        load_bc(actor_state, (self.actor, self.actor_target), (self.critic, self.critic_target))

    def extra_state(self) -> dict:
        return {**super().extra_state(), "actor_steps": self.actor_steps}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        # checkpoints written before actor_steps existed (and before actor_every): every update past the critic
        # warm-up had an actor step
        self.actor_steps = int(state.get("actor_steps", max(0, self.grad_steps - self.cfg.critic_warmup)))

    def modules(self):
        return {"actor": self.actor, "actor_target": self.actor_target,
                "critic": self.critic, "critic_target": self.critic_target}

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    @torch.no_grad()
    def critic_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        # the target critic: every OGPO decision reads it (Best-of-N acting, the actor's group advantages); the
        # online critic is only ever read inside its own TD loss
        return self.critic_target(obs, actions)

    # ------------------------------------------------------------------------------------------------ act
    @torch.no_grad()
    def act(self, obs: torch.Tensor, mode: ActMode, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = generator or self.act_gen
        if mode == "ode":
            return self.actor.sample_ode(obs, generator=gen)
        explore_bon = mode == "explore" and self.grad_steps >= self.cfg.bon_after_updates
        n = self.cfg.best_of_n if (explore_bon or mode == "bon") else 1
        s = self.actor_target.sample_sde(obs, n, generator=gen)  # actions [n, N, H, Da]
        if n == 1:
            return s.actions[0]
        q = self.critic_target(obs.unsqueeze(0).expand(n, *obs.shape), s.actions)  # [M, n, N]
        # an explicit generator (evaluation) also picks the heads, so evaluating never advances training RNG
        return pick_best(s.actions, q, self.cfg.bon_agg, self.head_gen if generator is None else gen)[0]

    # --------------------------------------------------------------------------------------------- update
    def update(self, buffer: ReplayBuffer) -> dict[str, float]:
        cfg = self.cfg
        batch = buffer.sample(cfg.batch_size).to(self.device)
        stats = {}
        past_warmup = self.grad_steps - cfg.critic_warmup
        if past_warmup >= 0 and past_warmup % cfg.actor_every == 0:
            stats = self.actor_step(batch.obs[: cfg.ppo_batch_size], buffer, batch)
        stats.update(self.critic_step(batch))
        if cfg.success_critic_step and buffer.can_sample(success=True):
            stats["critic/sb_loss"] = self.critic_step(buffer.sample(cfg.batch_size, success=True).to(self.device))["critic/loss"]
        self.grad_steps += 1
        check_finite(stats, f"ogpo update {self.grad_steps}")
        return stats

    def actor_step(self, S: torch.Tensor, buffer: ReplayBuffer, batch) -> dict[str, float]:
        cfg = self.cfg
        self.actor_opt.zero_grad(set_to_none=True)
        # q: the target critic's scores [G, M, B] of the imagined group (None for bptt, which has no group)
        stats, actions, q = {"ppo": self._ppo_loss, "awr": self._ppo_loss, "awr_fm": self._ode_group_loss, "fpo":
                             self._ode_group_loss, "bptt": self._bptt_loss}[cfg.extraction](S)  # backward() inside
        if cfg.bc_coeff > 0:
            use_sb = cfg.bc_source == "success" and buffer.can_sample(success=True)
            bc = buffer.sample(cfg.batch_size, success=True).to(self.device) if use_sb else batch
            bc_loss = self.fast.cfm_loss(self.actor, bc.obs, bc.actions, bc.valid, self.gen)
            (cfg.bc_coeff * bc_loss).backward()
            stats.update({"actor/bc_loss": bc_loss.item(), "actor/bc_on_success": float(use_sb)})
        if cfg.bon_distill_coeff > 0 and self.grad_steps >= cfg.bon_after_updates:
            stats.update(self._bon_distill(S, actions, q))  # backward() inside
        # the schedule counts actor updates, not grad_steps: the critic-only warm-up must not use up the actor's
        # lr warm-up (the reference counts from the actor's first step; recipe audit)
        lr = restarting_warmup_cosine(self.actor_steps, cfg.actor_lr, cfg.actor_lr_floor, cfg.lr_warmup, cfg.lr_cycle,
                                      cfg.lr_restart)
        for group in self.actor_opt.param_groups:
            group["lr"] = lr
        grad_norm = torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip, foreach=True)
        self.actor_opt.step()
        self.actor_steps += 1
        polyak(self.actor_target, self.actor, cfg.tau_actor)
        stats.update({"actor/grad_norm": grad_norm.item(), "actor/lr": lr})
        if cfg.grad_diag_every and self.grad_steps % cfg.grad_diag_every == 0:
            g = q_gradient_at_mean(lambda a: self.critic_target(S, a).mean(0), actions)  # unit grad_a Q [B, d]
            along, orth = variance_along_direction(actions.flatten(-2), g)
            stats.update({"actor/var_along_gradq": along, "actor/var_orth_gradq": orth})
        return stats

    def _bon_distill(self, S: torch.Tensor, actions: torch.Tensor, q: torch.Tensor) -> dict[str, float]:
        """Best-of-N distillation: CFM of the online actor on the chunk Best-of-N acting would execute at each
        state, picked among the first best_of_n imagined actions [G, B, H, Da] of this actor step by their
        target-critic scores q [G, M, B] (the same EMA actor, target critic and `bon_agg` as acting), so the ODE
        policy follows the critic's choice."""
        cfg, n = self.cfg, self.cfg.best_of_n
        with torch.no_grad():
            picked, score = pick_best(actions[:n], q[:n].transpose(0, 1), cfg.bon_agg, self.head_gen)  # [B, H, Da]
        loss = self.fast.cfm_loss(self.actor, S, picked, None, self.gen)
        (cfg.bon_distill_coeff * loss).backward()
        gain = (score.max(0).values - score.mean(0)).mean()  # how far the pick sits above an average candidate
        return {"actor/distill_loss": loss.item(), "actor/distill_q_gain": gain.item()}

    def _slices(self, B: int) -> list[slice]:
        return group_slices(self.cfg.group_size, B, self.cfg.microbatch_chains, self.device.type)

    @torch.no_grad()
    def _group_advantages(self, S: torch.Tensor, actions: torch.Tensor, slices: list[slice]):
        """Target-critic scores of the group's final actions [G, B, H, Da] -> (q [G, M, B], adv [G, B], stats)."""
        cfg, (G, B) = self.cfg, actions.shape[:2]
        S_rep = S.unsqueeze(0).expand(G, B, self.obs_dim)
        q = torch.cat([self.fast.score(self.critic_target, S_rep[sl], actions[sl]) for sl in slices], 1).transpose(0, 1)
        adv = advantages(q, cfg.advantage, cfg.normalize_group)  # [G, B]
        if cfg.adv_clip_min is not None:
            adv = adv.clamp_min(cfg.adv_clip_min)
        stats = {"actor/adv_abs_mean": adv.abs().mean().item(), "actor/adv_std": adv.std().item(),
                 "actor/adv_zero_frac": (adv == 0).float().mean().item(), "actor/q_imagined_mean": q.mean().item(),
                 "actor/q_disagreement": q.std(1).mean().item()}  # std over heads, averaged
        return q, adv, stats

    def _awr_weights(self, adv: torch.Tensor, stats: dict) -> torch.Tensor:
        w = awr_weights(adv, self.cfg.awr_beta, self.cfg.awr_mode, self.cfg.awr_weight_max, self.cfg.awr_beta_neg)
        stats.update({"actor/awr_weight_mean": w.mean().item(), "actor/awr_weight_max": w.max().item()})
        return w  # [G, B]

    def _ppo_loss(self, S: torch.Tensor):
        """OGPO (§1.4): G SDE chains per state from the EMA actor, clipped whole-chain ratio; AW-OGPO (§1.9) puts
        the AWR weights in place of A."""
        cfg, G, slices = self.cfg, self.cfg.group_size, self._slices(S.shape[0])
        with torch.no_grad():  # old log-probs below (old_log_prob_rows: bf16 imagination needs the live rows first)
            imagined = self.fast.sample_sde(self.actor_target, S, G, self.gen, logp=False)  # chain [G, B, K+1, d]
            q, adv, stats = self._group_advantages(S, imagined.actions, slices)
            w = self._awr_weights(adv, stats) if cfg.extraction == "awr" else adv  # [G, B]
        live_all = w != 0  # [G, B]: a chain of weight 0 adds nothing to the loss (sign consensus zeroes ~70 %)
        every = cfg.ratio_stats == "all" or not bool(live_all.any())  # the chains the ratio statistics average over
        pg_loss, new_logp, old_logp = 0.0, [], []
        for sl in slices:  # gradient accumulation: sum of slice means weighted by slice size = the full mean
            live = live_all[sl]  # [g, B]
            # teacher-forced, fp32: [n] of the live chains (graph), [g, B] detached (NaN where skipped) for the stats
            logp, logp_all = self.fast.log_prob_rows(self.actor, S, imagined.chain[sl], live, others=every)
            old, old_all = self.fast.old_log_prob_rows(self.actor_target, S, imagined.chain[sl], live, every,
                                                       imagined.logp[sl])  # [n], [g, B]
            if logp.numel():  # the slice mean = (live share) x the mean over its live chains
                loss = ppo_clip_loss(logp, old, w[sl][live], cfg.clip_eps)
                loss = loss * (logp.numel() / live.numel())
                (loss * (live.shape[0] / G)).backward()
                pg_loss += loss.item() * live.shape[0] / G
            new_logp.append(logp_all)
            old_logp.append(old_all)
        log_ratio = torch.cat(new_logp) - torch.cat(old_logp)  # [G, B]
        log_ratio = log_ratio if every else log_ratio[live_all]  # [G, B] or [n]
        stats.update({f"actor/{k}": v for k, v in ratio_stats(log_ratio, cfg.clip_eps).items()})
        stats["actor/pg_loss"] = pg_loss
        return stats, imagined.actions, q

    def _ode_group_loss(self, S: torch.Tensor):
        """AWR-FM and FPO/FPO++ (§1.9, §4.4): G ODE samples per state from the EMA actor (the reference's
        `_sample_actions_ode`), the same group advantage, then per-(tau, eps) CFM losses of the current actor."""
        cfg, G, B, n = self.cfg, self.cfg.group_size, S.shape[0], self.cfg.n_mc
        slices, S_rep = self._slices(B), S.unsqueeze(0).expand(G, B, self.obs_dim)
        with torch.no_grad():
            actions = self.actor_target.sample_ode(S_rep.reshape(G * B, -1), generator=self.gen).unflatten(0, (G, B))
            q, adv, stats = self._group_advantages(S, actions, slices)  # actions [G, B, H, Da]
            x1 = self.actor.normalize_actions(actions)  # [G, B, d] flow space
            fpo, huber = cfg.extraction == "fpo", cfg.fpo_huber_delta if cfg.extraction == "fpo" else None
            w = None if fpo else self._awr_weights(adv, stats)  # [G, B]
        pg_loss, log_rs, d = 0.0, [], x1.shape[-1]
        for sl in slices:
            g = x1[sl].shape[0]
            xs, obs_n = x1[sl].reshape(g * B, d), S_rep[sl].reshape(g * B, -1).repeat(n, 1)  # obs rows [n, g*B]
            tau = torch.rand(n, g * B, device=self.device, generator=self.gen)  # a (tau, eps) per MC index and sample
            eps = torch.randn(n, g * B, d, device=self.device, generator=self.gen)
            l_new = cfm_mc_losses(self.actor._velocity_fn(obs_n), xs, tau, eps, huber)  # [n, g*B]
            if fpo:
                with torch.no_grad():  # theta_old = EMA actor on the same draws: ratio = 1 at theta = theta_old
                    l_old = cfm_mc_losses(self.actor_target._velocity_fn(obs_n), xs, tau, eps, huber)
                log_rs.append(fpo_log_ratio(l_old, l_new, cfg.fpo_per_sample, cfg.fpo_loss_clamp, cfg.fpo_diff_clamp))
                loss = fpo_clip_loss(log_rs[-1], adv[sl].reshape(-1), cfg.clip_eps, cfg.fpo_aspo)
            else:
                loss = awr_fm_loss(l_new.view(n, g, B), w[sl])
            (loss * (g / G)).backward()
            pg_loss += loss.item() * g / G
        if fpo:
            stats.update({f"actor/{k}": v for k, v in ratio_stats(torch.cat(log_rs, 1), cfg.clip_eps).items()})
        stats["actor/pg_loss"] = pg_loss
        return stats, actions, q

    def _bptt_loss(self, S: torch.Tensor):
        """BPTT baseline (§4.6): maximise `target_agg` target Q of ODE(theta, s, x0) through the whole sampler."""
        x0 = torch.randn(self.cfg.bptt_samples, S.shape[0], self.actor.flat_dim, device=self.device, generator=self.gen)
        loss, actions, q = bptt_actor_loss(self.actor, self.critic_target, S, x0, self.cfg.target_agg, self.head_gen)
        loss.backward()
        return {"actor/pg_loss": loss.item(), "actor/q_imagined_mean": q.mean().item()}, actions.detach(), None

    def critic_step(self, batch) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            R, discount, valid = chunk_returns(batch.rewards, batch.terminals, batch.ends, cfg.gamma)
            next_a = self.fast.sample_sde(self.actor_target, batch.boot_obs, 1, self.gen, logp=False).actions[0]
            next_q = aggregate(self.fast.score(self.critic_target, batch.boot_obs, next_a), cfg.target_agg, self.head_gen)
            y = td_target(R, discount, next_q)  # [B]
        q = self.fast.critic(self.critic, batch.obs, batch.actions)  # [M, B]
        w = valid[:, -1] if cfg.drop_partial_chunks else torch.ones_like(y)
        # each head regresses to the same target: sum over heads of its weighted MSE
        loss = (((q - y) ** 2) * w).sum(-1).div(w.sum().clamp_min(1.0)).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip, foreach=True)
        self.critic_opt.step()
        polyak(self.critic_target, self.critic, cfg.tau_critic)
        return {"critic/loss": loss.item() / self.critic.M, "critic/q_mean": q.mean().item(),
                "critic/q_std_heads": q.std(0).mean().item(), "critic/target_mean": y.mean().item()}
