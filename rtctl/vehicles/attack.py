"""The observation attack robust MAPPO trains against and the evaluation measures under (RSR-RSMARL)."""
from __future__ import annotations

import torch

from rtctl.policies.marl_actor import MaskedActor as Actor


def pgd_attack(actor: Actor, obs: torch.Tensor, mask: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """Observation perturbation δ, ‖δ‖∞ ≤ eps, that moves the policy furthest from its clean action
    distribution (maximises KL(π(·|o) ‖ π(·|o+δ))); `steps` signed-gradient steps of size 2.5·eps/steps
    from a random start (Madry et al.). Returns the perturbed observations (no gradient)."""
    with torch.no_grad():
        p_clean = torch.softmax(actor.logits(obs, mask), -1)
    delta = (torch.rand_like(obs) * 2 - 1) * eps
    step = 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        logp = torch.log_softmax(actor.logits(obs + delta, mask), -1)
        kl = (p_clean * (torch.log(p_clean.clamp(min=1e-12)) - logp)).sum(-1).sum()
        (g,) = torch.autograd.grad(kl, delta)
        delta = (delta.detach() + step * g.sign()).clamp(-eps, eps)
    return (obs + delta).detach()
