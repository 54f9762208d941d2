"""The multi-task actor-critic update (DDPG/TD3 family) with a pluggable gradient combiner.

One task-agnostic actor, one or two task-conditioned critics. Every update takes one batch per task (or a
single pooled batch), forms one critic loss and one actor loss per batch, and combines the per-task
gradients (PCGrad by default) before a single optimiser step for the critics and one for the actor; the
target networks then follow by Polyak averaging. With ``gamma = 0`` the critic regresses the immediate
reward: the one-step (bandit) sizing mode of RobustAnalog.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rtctl.policies.mlp import Actor, mlp

from rtctl.train.multitask.combine import combine
from rtctl.train.multitask.config import AgentConfig
from rtctl.train.multitask.replay import Batch



class Critic(nn.Module):
    """Q(obs, action, task code); ``task_dim`` may be 0 (a task-blind critic)."""

    def __init__(self, obs_dim: int, act_dim: int, task_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim + task_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act, task], dim=-1)).squeeze(-1)

class TaskEncoder:
    """Task index -> critic input: one-hot, z-scored variation parameters, or nothing."""

    def __init__(self, kind: str, n_tasks: int, params: np.ndarray | None = None) -> None:
        self.kind = kind
        if kind == "onehot":
            self.table = np.eye(n_tasks, dtype=np.float32)
        elif kind == "params":
            if params is None or params.shape[1] == 0:
                raise ValueError("critic_input 'params' needs numeric variation parameters")
            sd = params.std(axis=0)
            self.table = ((params - params.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        elif kind == "none":
            self.table = np.zeros((n_tasks, 0), dtype=np.float32)
        else:
            raise ValueError(f"unknown critic task input {kind!r} (onehot, params, none)")

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    def __call__(self, tasks: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.table[np.asarray(tasks, dtype=int)])


def _flat_grads(loss: torch.Tensor, params: Sequence[nn.Parameter]) -> torch.Tensor:
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, params)])


def _assign(params: Sequence[nn.Parameter], flat: torch.Tensor) -> None:
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i:i + n].view_as(p).clone()
        i += n


class Learner:
    def __init__(self, obs_dim: int, act_dim: int, encoder: TaskEncoder, cfg: AgentConfig, combiner: str,
                 cagrad_c: float, seed: int) -> None:
        torch.manual_seed(seed)
        self.cfg, self.encoder, self.combiner, self.cagrad_c = cfg, encoder, combiner, cagrad_c
        self.actor = Actor(obs_dim, act_dim, cfg.hidden)
        self.critics = nn.ModuleList(Critic(obs_dim, act_dim, encoder.dim, cfg.hidden)
                                     for _ in range(2 if cfg.twin else 1))
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_targets = copy.deepcopy(self.critics)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.opt_critic = torch.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.updates = 0

    # -- acting -------------------------------------------------------------------------------------
    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.actor(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).double().numpy()

    def actor_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self.actor.state_dict().items()}

    # -- update -------------------------------------------------------------------------------------
    def _step(self, losses: list[torch.Tensor], params: list[nn.Parameter], opt: torch.optim.Optimizer,
              rng: np.random.Generator) -> float:
        opt.zero_grad(set_to_none=True)
        if self.combiner == "sum" or len(losses) == 1:
            flat, conflict = _flat_grads(torch.stack(losses).sum(), params), float("nan")
        else:
            grads = torch.stack([_flat_grads(loss, params) for loss in losses])
            comb = combine(grads, self.combiner, rng, self.cagrad_c)
            flat, conflict = comb.grad, comb.conflict_rate
        if self.cfg.grad_clip > 0:
            norm = flat.norm()
            if norm > self.cfg.grad_clip:
                flat = flat * (self.cfg.grad_clip / norm)
        _assign(params, flat)
        opt.step()
        return conflict

    def _tensors(self, b: Batch):
        t = lambda x: torch.from_numpy(np.asarray(x, dtype=np.float32))  # noqa: E731
        return t(b.obs), t(b.act), t(b.rew), t(b.next_obs), t(b.done), self.encoder(b.task)

    def update(self, batches: list[Batch], rng: np.random.Generator) -> dict[str, float]:
        if not batches:
            return {}
        cfg = self.cfg
        data = [self._tensors(b) for b in batches]
        critic_losses = []
        for obs, act, rew, nxt, done, z in data:
            with torch.no_grad():
                if cfg.gamma > 0:
                    a2 = self.actor_target(nxt)
                    if cfg.twin and cfg.target_noise > 0:
                        eps = torch.randn(a2.shape, generator=self.gen) * cfg.target_noise
                        a2 = (a2 + eps.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)).clamp(-1, 1)
                    q2 = torch.min(torch.stack([c(nxt, a2, z) for c in self.critic_targets]), dim=0).values
                    y = rew + cfg.gamma * (1 - done) * q2
                else:
                    y = rew
            critic_losses.append(sum(F.mse_loss(c(obs, act, z), y) for c in self.critics))
        stats = {"critic_loss": float(torch.stack(critic_losses).detach().mean()),
                 "critic_conflict": self._step(critic_losses, list(self.critics.parameters()), self.opt_critic, rng)}
        self.updates += 1
        if self.updates % cfg.policy_delay == 0:
            actor_losses = [-self.critics[0](obs, self.actor(obs), z).mean() for obs, _, _, _, _, z in data]
            stats["actor_loss"] = float(torch.stack(actor_losses).detach().mean())
            stats["actor_conflict"] = self._step(actor_losses, list(self.actor.parameters()), self.opt_actor, rng)
            self._polyak()
        return stats

    def _polyak(self) -> None:
        tau = self.cfg.tau
        with torch.no_grad():
            for net, targ in ((self.actor, self.actor_target), (self.critics, self.critic_targets)):
                for p, pt in zip(net.parameters(), targ.parameters()):
                    pt.mul_(1 - tau).add_(p, alpha=tau)

    # -- checkpoint ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critics": self.critics.state_dict(),
                "actor_target": self.actor_target.state_dict(), "critic_targets": self.critic_targets.state_dict(),
                "opt_actor": self.opt_actor.state_dict(), "opt_critic": self.opt_critic.state_dict(),
                "gen": self.gen.get_state(), "updates": self.updates}

    def load_state_dict(self, s: dict) -> None:
        self.actor.load_state_dict(s["actor"])
        self.critics.load_state_dict(s["critics"])
        self.actor_target.load_state_dict(s["actor_target"])
        self.critic_targets.load_state_dict(s["critic_targets"])
        self.opt_actor.load_state_dict(s["opt_actor"])
        self.opt_critic.load_state_dict(s["opt_critic"])
        self.gen.set_state(s["gen"])
        self.updates = int(s["updates"])
