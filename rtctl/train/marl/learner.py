"""MAPPO update (shared masked actor, centralised critic on state(), value normalisation) and its robust
variant (worst-case Q from PGD actions weighted into the advantage, KL smoothness in the ε-ball).

Data: the time-major batches of `rtctl.vehicles.episodes.run_batch`. An agent contributes samples while it is live;
its advantage bootstraps from V(state) when the batch ended by truncation, not when the agent ended.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from rtctl.train.marl.config import MarlConfig
from rtctl.train.marl.nets import Actor, Critic, ValueNorm, mlp
from rtctl.vehicles.attack import pgd_attack


def _t(x, dtype=torch.float32):
    return torch.as_tensor(np.array(x), dtype=dtype)  # a copy: rollouts from Ray are read-only


class MarlLearner:
    def __init__(self, cfg: MarlConfig, obs_dim: int, n_actions: int, state_dim: int, n_agents: int) -> None:
        self.cfg = cfg
        p, r = cfg.ppo, cfg.robust
        torch.manual_seed(cfg.seed)
        self.actor = Actor(obs_dim, n_actions, p.hidden)
        self.critic = Critic(state_dim, n_agents, p.hidden, obs_dim)
        self.vnorm = ValueNorm()
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=p.actor_lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=p.critic_lr)
        self.robust = r.kind == "pgd"
        if self.robust:
            self.qw = mlp(obs_dim, p.hidden, n_actions)
            self.qw_target = copy.deepcopy(self.qw)
            self.opt_q = torch.optim.Adam(self.qw.parameters(), lr=r.q_lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.demos: dict[str, torch.Tensor] | None = None  # kept for the DAPG term (warm_start.bc_weight)
        self.updates = 0

    # -- data ---------------------------------------------------------------------------------------------
    def _values(self, state: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            v = self.critic(state, obs)
            return self.vnorm.denormalize(v) if self.cfg.ppo.value_norm else v

    def _gae(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.cfg.ppo
        V = self._values(_t(b["state"]), _t(b["obs"]))  # (T+1, E, n)
        r, live, term = _t(b["rew"]), _t(b["live"]), _t(b["term"])
        cont = live * (1.0 - term)
        T = r.shape[0]
        adv = torch.zeros_like(r)
        last = torch.zeros_like(r[0])
        for t in reversed(range(T)):
            delta = r[t] + p.gamma * V[t + 1] * cont[t] - V[t]
            # the next step's advantage belongs to the same agent only if it was still live then
            nxt = cont[t] * (live[t + 1] if t + 1 < T else torch.zeros_like(cont[t]))
            last = delta + p.gamma * p.gae_lambda * nxt * last
            adv[t] = last
        return adv, adv + V[:-1]

    def _flatten(self, batches: list[dict]) -> dict[str, torch.Tensor]:
        cols: dict[str, list] = {k: [] for k in ("obs", "mask", "next_obs", "next_mask", "act", "logp", "adv",
                                                 "ret", "state", "rew", "cont", "agent")}
        for b in batches:
            adv, ret = self._gae(b)
            live = np.array(b["live"], dtype=bool)
            T, E, n = live.shape
            sel = (lambda x: torch.as_tensor(np.asarray(x)[live]))
            cols["obs"].append(sel(b["obs"][:-1]))
            cols["mask"].append(sel(b["mask"][:-1]))
            cols["next_obs"].append(sel(b["obs"][1:]))
            cols["next_mask"].append(sel(b["mask"][1:]))
            cols["act"].append(sel(b["act"]).long())
            cols["logp"].append(sel(b["logp"]).float())
            cols["adv"].append(adv[torch.as_tensor(live)])
            cols["ret"].append(ret[torch.as_tensor(live)])
            cols["state"].append(sel(np.broadcast_to(b["state"][:-1, :, None, :], (T, E, n, b["state"].shape[-1]))))
            cols["rew"].append(sel(b["rew"]).float())
            cont = np.asarray(b["live"], dtype=float) * (1.0 - np.asarray(b["term"], dtype=float))
            cols["cont"].append(sel(cont).float())
            cols["agent"].append(sel(np.broadcast_to(np.arange(n), (T, E, n))).long())
        return {k: torch.cat(v) for k, v in cols.items()}

    # -- warm start ---------------------------------------------------------------------------------------
    def warm_start(self, batches: list[dict]) -> dict[str, float]:
        """Fit the actor to the demonstrator's behaviours (masked cross-entropy) and the critic to the
        discounted returns of its episodes. Returns the final losses and the actor's agreement."""
        w, p = self.cfg.warm_start, self.cfg.ppo
        d = self._flatten(batches)
        ret = torch.cat([_discounted(b, p.gamma) for b in batches])
        if p.value_norm:
            self.vnorm.update(ret)
        target = self.vnorm.normalize(ret) if p.value_norm else ret
        opt_a = torch.optim.Adam(self.actor.parameters(), lr=w.lr)
        opt_c = torch.optim.Adam(self.critic.parameters(), lr=w.lr)
        N = d["obs"].shape[0]
        mb = min(N, 4096)
        # class-balanced: a lane change is one decision among ~100 lane keeps (the change is latched), and
        # unweighted cloning agreed on 98.5 % of samples while never changing lanes
        weight = self.keep_demos(d)
        for _ in range(w.epochs):
            perm = torch.randperm(N, generator=self.gen)
            for k in range(0, N, mb):
                i = perm[k:k + mb]
                ce = F.cross_entropy(self.actor.logits(d["obs"][i], d["mask"][i]), d["act"][i], weight=weight)
                opt_a.zero_grad()
                ce.backward()
                opt_a.step()
                vl = F.huber_loss(self.critic.one(d["state"][i], d["obs"][i], d["agent"][i]), target[i], delta=10.0)
                opt_c.zero_grad()
                vl.backward()
                opt_c.step()
        with torch.no_grad():
            agree = (self.actor.logits(d["obs"], d["mask"]).argmax(-1) == d["act"]).float().mean().item()
        return {"warm_ce": ce.item(), "warm_value_loss": vl.item(), "warm_agreement": agree, "warm_samples": N}

    def keep_demos(self, d: dict) -> torch.Tensor:
        """Hold the demonstrations (flattened batches, or raw ones) for the DAPG term; returns the class
        weights of the cloning loss."""
        if isinstance(d, list):
            d = self._flatten(d)
        N = d["act"].shape[0]
        count = torch.bincount(d["act"], minlength=self.actor.n_actions).float()
        weight = (N / (count.clamp(min=1.0) * (count > 0).sum())).clamp(max=100.0).sqrt()
        self.demos = {"obs": d["obs"], "mask": d["mask"], "act": d["act"], "weight": weight}
        return weight

    # -- update -------------------------------------------------------------------------------------------
    def update(self, batches: list[dict], progress: float) -> dict[str, float]:
        p, rc = self.cfg.ppo, self.cfg.robust
        d = self._flatten(batches)
        N = d["obs"].shape[0]
        adv = d["adv"]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        out: dict[str, float] = {"samples": float(N)}
        weight = rc.weight * min(1.0, progress / rc.weight_warmup) if self.robust else 0.0
        obs_adv = None
        if self.robust:
            obs_adv = pgd_attack(self.actor, d["obs"], d["mask"], rc.epsilon, rc.pgd_steps)
            out["q_loss"] = self._update_q(d)
            with torch.no_grad():
                q = self.qw(d["obs"]).masked_fill(~d["mask"], 0.0)
                pi = torch.softmax(self.actor.logits(d["obs"], d["mask"]), -1)
                a_rob = q.gather(1, d["act"][:, None]).squeeze(1) - (pi * q).sum(-1)
                a_rob = (a_rob - a_rob.mean()) / (a_rob.std() + 1e-8)
            adv = adv + weight * a_rob
        if p.value_norm:
            self.vnorm.update(d["ret"])
        ret_n = self.vnorm.normalize(d["ret"]) if p.value_norm else d["ret"]
        idx_all = torch.randperm(N, generator=self.gen)
        mb = max(1, N // p.minibatches)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "kl_smooth": 0.0, "approx_kl": 0.0,
                 "bc_loss": 0.0}
        ws = self.cfg.warm_start
        bc_w = ws.bc_weight * ws.bc_decay ** self.updates if self.demos is not None else 0.0
        self.updates += 1
        out["bc_weight"] = bc_w
        n_upd = 0
        for _ in range(p.epochs):
            idx_all = idx_all[torch.randperm(N, generator=self.gen)]
            for k in range(p.minibatches):
                i = idx_all[k * mb:(k + 1) * mb]
                dist = self.actor.dist(d["obs"][i], d["mask"][i])
                logp = dist.log_prob(d["act"][i])
                ratio = torch.exp(logp - d["logp"][i])
                surr = torch.min(ratio * adv[i], ratio.clamp(1 - p.clip, 1 + p.clip) * adv[i])
                ent = dist.entropy().mean()
                loss = -surr.mean() - p.entropy_coef * ent
                if obs_adv is not None and rc.kl_coef > 0:
                    clean = dist.probs.detach()
                    logp_adv = torch.log_softmax(self.actor.logits(obs_adv[i], d["mask"][i]), -1)
                    kl = (clean * (torch.log(clean.clamp(min=1e-12)) - logp_adv)).sum(-1).mean()
                    loss = loss + rc.kl_coef * kl
                    stats["kl_smooth"] += kl.item()
                if bc_w > 0:
                    j = torch.randint(0, self.demos["act"].shape[0], (len(i),), generator=self.gen)
                    bc = F.cross_entropy(self.actor.logits(self.demos["obs"][j], self.demos["mask"][j]),
                                         self.demos["act"][j], weight=self.demos["weight"])
                    loss = loss + bc_w * bc
                    stats["bc_loss"] += bc.item()
                self.opt_actor.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.actor.parameters(), p.grad_clip)
                self.opt_actor.step()
                v = self.critic.one(d["state"][i], d["obs"][i], d["agent"][i])
                vloss = F.huber_loss(v, ret_n[i], delta=10.0)
                self.opt_critic.zero_grad()
                (p.value_coef * vloss).backward()
                torch.nn.utils.clip_grad_norm_(self.critic.parameters(), p.grad_clip)
                self.opt_critic.step()
                stats["policy_loss"] += -surr.mean().item()
                stats["value_loss"] += vloss.item()
                stats["entropy"] += ent.item()
                stats["approx_kl"] += (d["logp"][i] - logp).mean().item()
                n_upd += 1
        out.update({k: v / n_upd for k, v in stats.items()})
        out["robust_weight"] = weight
        return out

    def _update_q(self, d: dict) -> float:
        """Worst-case Q: target r + γ·Q_target(o', a_worst(o')), a_worst = the actor's choice under the PGD
        perturbation of o' (what an adversary in the ε-ball makes it do)."""
        p, rc = self.cfg.ppo, self.cfg.robust
        pert = pgd_attack(self.actor, d["next_obs"], d["next_mask"], rc.epsilon, rc.pgd_steps)
        with torch.no_grad():
            a_w = self.actor.logits(pert, d["next_mask"]).argmax(-1)
            q_next = self.qw_target(d["next_obs"]).gather(1, a_w[:, None]).squeeze(1)
            y = d["rew"] + p.gamma * d["cont"] * q_next
        total = 0.0
        N = y.shape[0]
        mb = max(1, N // p.minibatches)
        for _ in range(p.epochs):
            perm = torch.randperm(N, generator=self.gen)
            for k in range(p.minibatches):
                i = perm[k * mb:(k + 1) * mb]
                q = self.qw(d["obs"][i]).gather(1, d["act"][i][:, None]).squeeze(1)
                loss = F.smooth_l1_loss(q, y[i])
                self.opt_q.zero_grad()
                loss.backward()
                self.opt_q.step()
                total += loss.item()
                with torch.no_grad():
                    for tp, sp in zip(self.qw_target.parameters(), self.qw.parameters()):
                        tp.mul_(1 - rc.q_tau).add_(sp, alpha=rc.q_tau)
        return total / (p.epochs * p.minibatches)

    # -- persistence --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        s = {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(), "vnorm": self.vnorm.state_dict(),
             "opt_actor": self.opt_actor.state_dict(), "opt_critic": self.opt_critic.state_dict(),
             "updates": self.updates}
        if self.robust:
            s.update(qw=self.qw.state_dict(), qw_target=self.qw_target.state_dict(), opt_q=self.opt_q.state_dict())
        return s

    def load_state_dict(self, s: dict) -> None:
        self.actor.load_state_dict(s["actor"])
        self.updates = int(s.get("updates", 0))
        self.critic.load_state_dict(s["critic"])
        self.vnorm.load_state_dict(s["vnorm"])
        self.opt_actor.load_state_dict(s["opt_actor"])
        self.opt_critic.load_state_dict(s["opt_critic"])
        if self.robust:
            self.qw.load_state_dict(s["qw"])
            self.qw_target.load_state_dict(s["qw_target"])
            self.opt_q.load_state_dict(s["opt_q"])


def _discounted(b: dict, gamma: float) -> torch.Tensor:
    """Discounted return from each live step of a batch (an agent's episode ends when it does; a
    truncated one is not bootstrapped: the demonstrations' critic target is their Monte-Carlo return)."""
    r, live, term = (np.asarray(b[k], dtype=float) for k in ("rew", "live", "term"))
    g = np.zeros_like(r)
    acc = np.zeros(r.shape[1:])
    for t in reversed(range(r.shape[0])):
        acc = r[t] + gamma * acc * (1.0 - term[t]) * live[t]
        g[t] = acc
    return torch.as_tensor(g[live.astype(bool)], dtype=torch.float32)
