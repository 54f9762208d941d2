"""Evaluating a driving policy on the car sim: episodes with fixed seeds, greedy behaviours, optional
observation attack, under a chosen V2V delay; the figures `rtctl bench marl` reports. Also the sim's
throughput (agent-steps per second of one core, masks included)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from rtctl.policies.marl_actor import MarlActorPolicy
from rtctl.vehicles.attack import pgd_attack
from rtctl.vehicles.episodes import run_batch, summarise
from rtctl.v2v.config import InjectionConfig

from rtctl.vehicles.envs import make_vec_env
from rtctl.vehicles.scripted import scripted_policy


def evaluate(policy: str | Path | None, scenario: str, n_agents: int, episodes: int, seed: int, shield: bool,
             v2v: bool, delay: InjectionConfig, attack_eps: float = 0.0, attack_steps: int = 10) -> dict:
    """policy: an exported `policy.pt`, "scripted" for the scripted driver (`rtctl.vehicles.scripted`, the
    warm start's demonstrator), or None for a uniformly random allowed behaviour (the R_random baseline).
    attack_eps > 0: each observation is replaced by its PGD worst case in the L∞ ε-ball."""
    env = make_vec_env(scenario, n_agents, episodes, seed, shield=shield, v2v=v2v, delay=delay)
    if policy == "scripted":
        act = scripted_policy
    elif policy is None:
        rng = np.random.default_rng(seed)

        def act(obs, mask):
            a = np.argmax(np.where(mask, rng.random(mask.shape), -1.0), axis=-1)
            return a, np.zeros(a.shape)
    else:
        actor = MarlActorPolicy(policy).actor

        def act(obs, mask):
            o, m = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(mask)
            if attack_eps > 0:
                o = pgd_attack(actor, o, m, attack_eps, attack_steps)
            with torch.no_grad():
                a = actor.logits(o, m).argmax(-1).numpy()
            return a, np.zeros(a.shape)
    out = run_batch(env, act, seed)
    return summarise([out["stats"]], env.params.policy_dt)


def throughput(scenario: str, n_envs: int, steps: int, shield: bool, seed: int = 0) -> dict:
    """Agent-steps per CPU-second of this process (one core), random allowed behaviours, V2V with the
    time-varying delay; episodes restart when the batch is done."""
    from rtctl.vehicles.envs import TIME_VARYING

    env = make_vec_env(scenario, 3, n_envs, seed, shield=shield, v2v=True, delay=TIME_VARYING)
    rng = np.random.default_rng(seed)
    obs, mask = env.reset()
    done_steps = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        if env.all_done():
            obs, mask = env.reset()
        a = np.argmax(np.where(mask, rng.random(mask.shape) + 0.5 * (np.arange(env.K) == 1), -1.0), axis=-1)
        live = int((~env.done).sum())
        obs, mask, *_ = env.step(a)
        done_steps += live
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"agent_steps": done_steps, "cpu_s": cpu, "wall_s": wall, "per_cpu_s": done_steps / max(cpu, 1e-9)}
