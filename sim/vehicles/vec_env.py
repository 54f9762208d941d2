"""`CarsVecEnv`: E episodes of one scenario stepped together (the training and benchmark workhorse).

Each policy step (policy_dt, 10 Hz) every live agent picks a discrete behaviour; the injected
`controller` has already evaluated every behaviour of every agent at the current state (action mask,
the command to apply for each behaviour, and the shield's intervention); the chosen behaviour's command is
held for the step and tracked by the low-level loop at control_dt (50 Hz: steering servo rate limit, road
curvature feed-forward). Humans are re-planned every control step. Episodes of a batch start and end
together (the V2V delay line runs on one clock): an agent that collides, leaves the road or completes its
route is removed and waits, masked, until every episode of the batch is done or max_steps is reached.

Lane changes are latched (as highway-env's target lane index): a change behaviour moves the lane an agent
drives to, `drive_lane`, by its offset, and every later behaviour (keep lane, the acceleration bins) carries
on into that lane; a single 0.1 s choice of "keep lane" no longer turns a car back mid-change, so one
decision starts a whole manoeuvre (without the latch a lane change needed ~10 consecutive equal choices and
MAPPO never found it).

controller(ego (B,4), nb (B,C,NB_COLS), cx (B,C,CX_COLS) | None, lanes (B,)) → (mask (B,K) bool, u (B,K,2) road-relative
(accel, steer), intervention (B,K) ≥ 0) and attributes `lane_offsets` (K,) ints, `stop_index` (int).
link: None (no V2V: perception only) or an object with reset() and step(t, msgs (E,n,MSG_DIM)) →
(received (E,n,n,MSG_DIM), age_s (E,n,n)) — `tables.IdealLink` or rtctl.v2v.inject.StepDelayLine.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import dynamics as dyn
from .observe import ObsConfig, obs_dim, observe
from .scenarios import OBSTACLE, make_scenario
from .tables import Perception, broadcast, known_cars, perception_bias, shield_tables
from .traffic import human_commands


@dataclass(frozen=True)
class RewardConfig:
    progress: float = 1.0  # per step at the target speed
    team_share: float = 0.2  # part of the progress term that is the team's mean (research note §1)
    intervention: float = 0.5  # × the shield's weighted change of the chosen behaviour's command
    emergency_stop: float = 0.3
    collision: float = 10.0
    completion: float = 5.0


@dataclass
class StepInfo:
    collided: np.ndarray  # (E, n) this step: hit a car or an obstacle
    off_road: np.ndarray  # (E, n)
    completed: np.ndarray  # (E, n)
    intervention: np.ndarray  # (E, n) shield change of the chosen command (0 when not live)
    intervened: np.ndarray  # (E, n) bool: the shield changed it, or the behaviour was masked
    live: np.ndarray  # (E, n) bool: agents that acted this step


class CarsVecEnv:
    def __init__(self, scenario: str, n_agents: int, n_envs: int, controller, link=None, seed: int = 0,
                 obs_cfg: ObsConfig = ObsConfig(), reward: RewardConfig = RewardConfig(),
                 perception: Perception = Perception(), obs_noise: float = 0.0) -> None:
        self.name, self.n, self.E = scenario, n_agents, n_envs
        self.controller, self.link = controller, link
        self.obs_cfg, self.reward_cfg, self.perception = obs_cfg, reward, perception
        self.obs_noise = obs_noise  # uniform ε-ball noise on the observation (robustness tests)
        self.scn = make_scenario(scenario, n_agents, seed)
        self.params, self.track = self.scn.params, self.scn.track
        self.K = len(controller.lane_offsets)
        self.obs_dim = obs_dim(obs_cfg)
        self.state_dim = 6 * self.scn.n_cars + 2 * n_agents + 1
        self.max_steps = self.scn.max_steps
        self.rng = np.random.default_rng(seed)
        self._seed = seed

    # -- episodes -----------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None):
        if seed is not None:
            self._seed, self.rng = seed, np.random.default_rng(seed)
        seeds = self.rng.integers(0, 2**31 - 1, self.E)
        self.scn = stack_scenarios([make_scenario(self.name, self.n, int(s)) for s in seeds])
        self.cars = self.scn.cars.copy()  # (E, C, 5)
        self.goal = self.scn.goal_s
        self.paths = self.scn.path  # a scenario name fixes which path every car is on
        self.alive = np.ones(self.cars.shape[:2], dtype=bool)
        self.done = np.zeros((self.E, self.n), dtype=bool)
        self.finish_step = np.full((self.E, self.n), -1)
        self.accel = np.zeros((self.E, self.n))
        self.lane_to = np.full((self.E, self.n), -1.0)
        self.drive_lane = self.track.lane_of(self.cars[:, :self.n, dyn.Y]).astype(int)
        self.bias = perception_bias(self.rng, self.E, self.n, self.cars.shape[1], self.perception)
        self.t = 0
        if self.link is not None:
            self.link.reset()
        return self._observe()

    def _observe(self):
        """Tables, observation and the controller's evaluation of every behaviour at the current state."""
        scn, n, E = self.scn, self.n, self.E
        wx, wy, _ = self.track.to_world(self.paths[None, :], self.cars[..., dyn.S], self.cars[..., dyn.Y],
                                        self.cars[..., dyn.PSI])
        received = age = None
        if self.link is not None:
            received, age = self.link.step(self.t, broadcast(self.cars, self.accel, self.lane_to, n))
        known = known_cars(scn, self.cars, self.alive, np.stack((wx, wy), -1), received, age, self.bias,
                           self.perception)
        ego = self.cars[:, :n, :4]
        nb, cx = shield_tables(scn, known, ego[..., dyn.S])
        C = nb.shape[2]
        flat = (lambda a: None if a is None else a.reshape(E * n, C, a.shape[-1]))
        e4 = ego.reshape(E * n, 4)
        lanes = self.drive_lane.reshape(-1)
        obs = observe(e4, self.accel.reshape(-1), (self.goal - ego[..., dyn.S]).reshape(-1), flat(nb), flat(cx),
                      self.track.n_lanes, self.track.lane_width, self.obs_cfg, drive_lane=lanes)
        if self.obs_noise > 0:
            obs += self.rng.uniform(-self.obs_noise, self.obs_noise, obs.shape).astype(np.float32)
        mask, u, interv = self.controller(e4, flat(nb), flat(cx), lanes)
        self.mask = mask.reshape(E, n, self.K) & ~self.done[..., None]
        self.mask[..., self.controller.stop_index] |= self.done  # a finished agent's only "action"
        self.u = u.reshape(E, n, self.K, 2)
        self.interv = interv.reshape(E, n, self.K)
        self.tables = (nb, cx)
        return obs.reshape(E, n, -1), self.mask.copy()

    def state(self) -> np.ndarray:
        """Centralised-critic state (E, state_dim): every car's world pose and speed, alive flags, the
        agents' remaining distances, and the time left."""
        x, y, yaw = self.track.to_world(self.paths[None, :], self.cars[..., dyn.S], self.cars[..., dyn.Y],
                                        self.cars[..., dyn.PSI])
        cars = np.stack((x / 10.0, y / 10.0, np.cos(yaw), np.sin(yaw), self.cars[..., dyn.V] / 3.0,
                         self.alive.astype(float)), axis=-1).reshape(self.E, -1)
        rem = np.clip((self.goal - self.cars[:, :self.n, dyn.S]) / 10.0, -1.0, 5.0)
        left = np.full((self.E, 1), 1.0 - self.t / self.max_steps)
        return np.concatenate((cars, rem, self.done.astype(float), left), axis=1).astype(np.float32)

    # -- one policy step ----------------------------------------------------------------------------------
    def step(self, actions):
        p, scn, n, E = self.params, self.scn, self.n, self.E
        act = np.asarray(actions, dtype=int).reshape(E, n)
        if act.min() < 0 or act.max() >= self.K:
            raise ValueError(f"actions must be behaviour indices in 0..{self.K - 1}, got {act.min()}..{act.max()}")
        live = ~self.done
        allowed = np.take_along_axis(self.mask, act[..., None], axis=2)[..., 0]
        u = np.take_along_axis(self.u, act[..., None, None], axis=2)[:, :, 0]
        interv = np.where(live, np.take_along_axis(self.interv, act[..., None], axis=2)[..., 0], 0.0)
        intervened = live & ((interv > 1e-6) | ~allowed)
        offs = np.asarray(self.controller.lane_offsets)[act]
        target = self.drive_lane + offs
        self.drive_lane = np.where(live & allowed & (target >= 0) & (target < self.track.n_lanes), target,
                                   self.drive_lane)
        lane = self.track.lane_of(self.cars[:, :n, dyn.Y])
        self.lane_to = np.where(live & (self.drive_lane != lane), self.drive_lane, -1.0)  # announced over V2V
        self.accel = np.where(live, u[..., 0], 0.0)
        s_before = self.cars[:, :n, dyn.S].copy()
        hit = np.zeros((E, n), dtype=bool)
        off = np.zeros((E, n), dtype=bool)
        moving = scn.kind != OBSTACLE
        for k in range(p.substeps):
            t_s = (self.t * p.substeps + k) * p.control_dt
            a_h, st_h = human_commands(scn, self.cars, self.alive, t_s)
            accel = np.zeros(self.cars.shape[:2])
            steer = np.zeros(self.cars.shape[:2])
            car_k = self.track.kappa_at(self.cars[:, :n, dyn.S], self.cars[:, :n, dyn.Y])
            accel[:, :n] = np.where(live, u[..., 0], -p.brake_max)
            steer[:, :n] = dyn.steer_on_road(u[..., 1], car_k, p)
            accel[:, scn.humans], steer[:, scn.humans] = a_h, st_h
            kref = self.track.kappa_ref(self.cars[..., dyn.S])
            stepped = dyn.step(self.cars, accel, steer, p, kappa_ref=kref, y_ref=self.track.y_ref)
            self.cars = np.where((moving[None, :, None] & self.alive[..., None]), stepped, self.cars)
            h, o = self._contacts()
            hit |= h & live
            off |= o & live
        reached = live & (self.cars[:, :n, dyn.S] >= self.goal)
        self.t += 1
        r = self._reward(s_before, act, interv, hit, off, reached, live)
        ended = live & (hit | off | reached)
        self.finish_step = np.where(reached & ~(hit | off), self.t, self.finish_step)
        self.done |= ended
        self.alive[:, :n] &= ~ended  # removed from the road: no longer seen or hit
        truncated = np.broadcast_to(np.array(self.t >= self.max_steps), (E, n)) & ~self.done
        info = StepInfo(hit, off, reached & ~(hit | off), interv, intervened, live)
        obs, mask = self._observe()
        return obs, mask, r, ended, truncated.copy(), info

    def all_done(self) -> bool:
        return bool(self.done.all() or self.t >= self.max_steps)

    def _reward(self, s_before, act, interv, hit, off, reached, live):
        c, p = self.reward_cfg, self.params
        prog = self.track.wrap(self.cars[:, :self.n, dyn.S] - s_before) / (self.scn.target_speed * p.policy_dt)
        prog = np.where(live, np.minimum(prog, 1.5), 0.0)
        team = prog.sum(axis=1, keepdims=True) / np.maximum(live.sum(axis=1, keepdims=True), 1)
        r = c.progress * ((1.0 - c.team_share) * prog + c.team_share * team)
        r = r - c.intervention * interv - c.emergency_stop * (act == self.controller.stop_index)
        r = r - c.collision * (hit | off) + c.completion * (reached & ~(hit | off))
        return np.where(live, r, 0.0).astype(np.float32)

    def _contacts(self):
        """Agents touching another car/obstacle (world-frame rectangles), or with a corner off the road."""
        p, n = self.params, self.n
        x, y, yaw = self.track.to_world(self.paths[None, :], self.cars[..., dyn.S], self.cars[..., dyn.Y],
                                        self.cars[..., dyn.PSI])
        corners = dyn.world_corners(x, y, yaw, p)  # (E, C, 4, 2)
        near = np.hypot(x[:, :n, None] - x[:, None, :], y[:, :n, None] - y[:, None, :]) < 2.0 * p.length
        near &= self.alive[:, :n, None] & self.alive[:, None, :]
        near[:, np.arange(n), np.arange(n)] = False
        hit = np.zeros((self.E, n), dtype=bool)
        e, i, j = np.nonzero(near)
        if e.size:
            over = dyn.rectangles_overlap(corners[e, i], corners[e, j])
            np.logical_or.at(hit, (e[over], i[over]), True)
        # lateral extent of the body in the road frame (exact for the rectangle's corners)
        a = self.cars[:, :n]
        sp, cp = np.sin(a[..., dyn.PSI]), np.cos(a[..., dyn.PSI])
        lo = np.array([p.front_extent, p.front_extent, -p.rear_overhang, -p.rear_overhang])
        la = 0.5 * p.width * np.array([1.0, -1.0, -1.0, 1.0])
        yc = a[..., dyn.Y, None] + lo * sp[..., None] + la * cp[..., None]
        off = (yc.min(-1) < 0.0) | (yc.max(-1) > self.track.width)
        return hit, off & self.alive[:, :n]


def stack_scenarios(scns):
    """One scenario whose per-episode fields (initial cars, goals, the humans' scripts) are stacked on a
    leading episode axis; layout fields (track, paths, kinds) are shared."""
    first = scns[0]
    for s in scns[1:]:
        if not np.array_equal(s.path, first.path) or not np.array_equal(s.kind, first.kind):
            raise ValueError("scenarios of one batch must share their layout (paths and kinds of cars)")
    st = (lambda f: np.stack([getattr(s, f) for s in scns]))
    return replace(first, cars=st("cars"), goal_s=st("goal_s"), human_speed=st("human_speed"),
                   brake_at_s=st("brake_at_s"), brake_for_s=st("brake_for_s"), runs_red=st("runs_red"))
