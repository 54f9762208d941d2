"""How far the SO-101's position servos lag the commanded joint targets in MuJoCo — the numbers the arm
shield's tracking-error margin is set from.

The shield's model (safety/arm.py): during a tick the joint stays within
    e = |q − ū|  (measured at the tick's start: gravity sag, lag carried over)
      + e0       (what the error can grow by within a tick regardless of speed)
      + τ · v    (servo lag: v the fastest the target may move this tick or moved last tick)
of the segment from the last target ū to the new one. `tracking_samples` drives the simulated arm with
random smooth targets at several speed limits (holding every tenth tick, like a stop), and
`fit_tracking_model` finds the smallest e0 per joint for a given τ that bounds every sample; a held-out
seed then checks the fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from .arm_env import MODEL_PATH

# Sampled joint range: inside the limits and away from the table, where the arm moves freely.
Q_LO = np.array([-1.5, -1.2, -1.2, -1.2, -2.5, -0.1])
Q_HI = np.array([1.5, 0.6, 1.2, 1.2, 2.5, 1.5])


@dataclass
class TrackingSamples:
    speed: np.ndarray  # (N, 6) rad/s: the last tick's target step / dt (known before this tick's command)
    growth: np.ndarray  # (N, 6) rad: worst deviation from the commanded segment − deviation at tick start
    start: np.ndarray  # (N, 6) rad: |q − ū| at the tick's start
    limit: np.ndarray  # (N,) rad/s: the speed limit the targets were drawn under


def tracking_samples(rate_hz: float = 30.0, speeds=(0.5, 1.0, 1.5, 2.0, 2.5), accel: float = 40.0,
                     episodes: int = 20, ticks: int = 90, seed: int = 0) -> TrackingSamples:
    model = mujoco.MjModel.from_xml_path(str(MODEL_PATH))
    data = mujoco.MjData(model)
    dt = 1.0 / rate_hz
    sub = max(1, int(round(dt / model.opt.timestep)))
    rng = np.random.default_rng(seed)
    V, G, S, L = [], [], [], []
    for vmax in speeds:
        for _ in range(episodes):
            mujoco.mj_resetData(model, data)
            q0 = rng.uniform(Q_LO, Q_HI)
            data.qpos[:] = q0
            data.ctrl[:] = q0
            mujoco.mj_forward(model, data)
            if data.ncon:
                continue
            for _ in range(200):  # settle (gravity sag) before the first command
                mujoco.mj_step(model, data)
            ubar, last, contact, ev, eg, es = data.ctrl.copy(), np.zeros(6), False, [], [], []
            for t in range(ticks):
                hold = t % 10 == 9
                step = np.zeros(6) if hold else np.clip(last + rng.uniform(-1, 1, 6) * accel * dt * dt,
                                                         -vmax * dt, vmax * dt)
                u = np.clip(ubar + step, Q_LO, Q_HI)
                step = u - ubar
                start = np.abs(data.qpos - ubar)
                lo, hi = np.minimum(ubar, u), np.maximum(ubar, u)
                data.ctrl[:] = u
                worst = np.zeros(6)
                for _ in range(sub):
                    mujoco.mj_step(model, data)
                    contact |= data.ncon > 0
                    worst = np.maximum(worst, np.maximum(lo - data.qpos, data.qpos - hi))
                ev.append(np.abs(last) / dt)
                eg.append(np.maximum(worst, 0.0) - start)
                es.append(start)
                ubar, last = u, step
            if not contact:  # a collision is not tracking error; the shield keeps the arm out of those
                V += ev
                G += eg
                S += es
                L += [vmax] * len(es)
    return TrackingSamples(np.array(V), np.array(G), np.array(S), np.array(L))


def fit_tracking_model(s: TrackingSamples, lag_s: float) -> np.ndarray:
    """Smallest per-joint e0 with growth ≤ e0 + lag_s · speed on every sample."""
    return np.maximum(0.0, (s.growth - lag_s * s.speed).max(axis=0))


def violations(s: TrackingSamples, e0, lag_s: float) -> int:
    return int((s.growth > np.asarray(e0) + lag_s * s.speed + 1e-12).sum())
