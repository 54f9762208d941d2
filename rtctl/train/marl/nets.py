"""Networks of the MARL trainer: centralised critic, value normaliser, and the PGD observation attack that
gives the worst-case actions. The shared actor is `rtctl.policies.marl_actor.MaskedActor` (what trials load)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtctl.policies.marl_actor import MaskedActor as Actor
from rtctl.policies.mlp import mlp

__all__ = ["Actor", "Critic", "ValueNorm", "mlp"]


class Critic(nn.Module):
    """Centralised: V(state(), agent one-hot, the agent's own observation) for every agent — MAPPO's
    agent-specific global state (Yu et al. 2022, §4: global state plus the agent's local features). With
    state() alone (world poses) the critic had to learn each agent's gaps to the parked cars from raw
    coordinates, and the actor never learned to change lanes out of a standstill."""

    def __init__(self, state_dim: int, n_agents: int, hidden: list[int], obs_dim: int = 0) -> None:
        super().__init__()
        self.n_agents, self.obs_dim = n_agents, obs_dim
        self.net = mlp(state_dim + n_agents + obs_dim, hidden, 1)

    def forward(self, state: torch.Tensor, obs: torch.Tensor | None = None) -> torch.Tensor:
        """state (..., state_dim), obs (..., n_agents, obs_dim) → values (..., n_agents)."""
        lead, n = state.shape[:-1], self.n_agents
        eye = torch.eye(n).expand(*lead, n, n)
        parts = [state.unsqueeze(-2).expand(*lead, n, state.shape[-1]), eye]
        if self.obs_dim:
            parts.append(obs)
        return self.net(torch.cat(parts, -1)).squeeze(-1)

    def one(self, state: torch.Tensor, obs: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        """Flat samples: state (N, state_dim), obs (N, obs_dim), agent (N,) → (N,)."""
        parts = [state, F.one_hot(agent, self.n_agents).float()]
        if self.obs_dim:
            parts.append(obs)
        return self.net(torch.cat(parts, -1)).squeeze(-1)


class ValueNorm(nn.Module):
    """Running mean / variance of the value targets (MAPPO's ValueNorm, debiased EMA)."""

    def __init__(self, beta: float = 0.99999) -> None:
        super().__init__()
        self.beta = beta
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("mean_sq", torch.zeros(()))
        self.register_buffer("debias", torch.zeros(()))

    def update(self, x: torch.Tensor) -> None:
        b = self.beta
        self.mean.mul_(b).add_(x.mean() * (1 - b))
        self.mean_sq.mul_(b).add_((x ** 2).mean() * (1 - b))
        self.debias.mul_(b).add_(1 - b)

    def _stats(self):
        d = self.debias.clamp(min=1e-5)
        mean = self.mean / d
        var = (self.mean_sq / d - mean ** 2).clamp(min=1e-2)
        return mean, var.sqrt()

    def normalize(self, x):
        m, s = self._stats()
        return (x - m) / s

    def denormalize(self, x):
        m, s = self._stats()
        return x * s + m
