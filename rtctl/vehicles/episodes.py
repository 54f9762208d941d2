"""Episodes of the vectorised multi-car env: run a batch with any act function, and the benchmark's figures.

Shared by evaluation (`rtctl.vehicles.evaluate`) and the MAPPO trainer (`rtctl.train.marl`), which keeps the
trajectories for its update.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def run_batch(env, act_fn: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
              seed: int | None = None) -> dict[str, Any]:
    """act_fn(obs (E,n,D), mask (E,n,K)) → (actions (E,n), log-probs (E,n))."""
    obs, mask = env.reset(seed)
    traj: dict[str, list] = {k: [] for k in ("obs", "mask", "state", "act", "logp", "rew", "live", "term")}
    stats = {"collided": 0, "off_road": 0, "interventions": 0, "live_steps": 0}
    hit_episode = np.zeros(env.E, dtype=bool)
    returns = np.zeros((env.E, env.n))
    while True:
        traj["obs"].append(obs)
        traj["mask"].append(mask)
        traj["state"].append(env.state())
        if env.all_done():
            break
        act, logp = act_fn(obs, mask)
        obs, mask, r, term, trunc, info = env.step(act)
        for k, v in (("act", act), ("logp", logp), ("rew", r), ("live", info.live), ("term", term)):
            traj[k].append(v)
        returns += r
        stats["collided"] += int(info.collided.sum())
        stats["off_road"] += int(info.off_road.sum())
        stats["interventions"] += int(info.intervened.sum())
        stats["live_steps"] += int(info.live.sum())
        hit_episode |= (info.collided | info.off_road).any(axis=1)
    done_t = env.finish_step[env.finish_step >= 0]
    stats.update(episodes=env.E, agents=env.E * env.n, collision_episodes=int(hit_episode.sum()),
                 completed=int(done_t.size), completion_steps=done_t.astype(float).tolist(),
                 returns=returns.ravel().tolist(), steps=env.t)
    out = {k: np.stack(v) for k, v in traj.items()}
    out["stats"] = stats
    return out


def summarise(stats: list[dict], policy_dt: float) -> dict[str, float]:
    """Episode figures over several batches (the benchmark's columns)."""
    tot = (lambda k: sum(s[k] for s in stats))
    times = [t * policy_dt for s in stats for t in s["completion_steps"]]
    rets = [r for s in stats for r in s["returns"]]
    return {"episodes": tot("episodes"), "collisions": tot("collided") + tot("off_road"),
            "car_collisions": tot("collided"), "off_road": tot("off_road"),
            "collision_episodes": tot("collision_episodes"),
            "completion_rate": tot("completed") / max(tot("agents"), 1),
            "completion_time_s": float(np.mean(times)) if times else float("nan"),
            "mean_return": float(np.mean(rets)) if rets else float("nan"),
            "intervention_rate": tot("interventions") / max(tot("live_steps"), 1)}
