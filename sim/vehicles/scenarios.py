"""Scenarios: road, initial cars, static obstacles and scripted non-cooperative traffic.

`make_scenario(name, n_agents, seed)` → `Scenario`. Names:
  highway-low | highway-medium | highway-high   3-lane straight road, 2 / 4 / 6 static obstacles
  oval-low | oval-medium | oval-high            2-lane oval, 1 / 2 / 3 static obstacles, one lap
  intersection                                  4-way, one lane per direction, straight through
("highway" and "oval" mean the medium density.) Cars are indexed agents first, then scripted humans,
then obstacles (parked cars: same body, speed 0 forever). Every car has a path (`tracks.Track`).
Humans (stepped by `traffic.human_commands`): on the highway and the oval they follow their lane with
IDM and brake hard (full brake) once at a random time; at the intersection they run the red light (drive
through, yielding to nobody) and follow IDM only behind cars on their own path. Intersection right of
way between agents is by path (eastbound 0 > northbound 1 > westbound 2 > southbound 3; see
`tables.shield_tables`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dynamics import STATE_DIM, CarParams
from .tracks import Track

AGENT, HUMAN, OBSTACLE = 0, 1, 2
DENSITY = {"low": 0, "medium": 1, "high": 2}
ALIASES = {"highway": "highway-medium", "oval": "oval-medium"}
SCENARIOS = ("highway-low", "highway-medium", "highway-high", "oval-low", "oval-medium", "oval-high",
             "intersection")


@dataclass
class Scenario:
    name: str
    track: Track
    params: CarParams
    n_agents: int
    cars: np.ndarray  # (C, STATE_DIM) initial states
    path: np.ndarray  # (C,) path index of each car
    kind: np.ndarray  # (C,) AGENT / HUMAN / OBSTACLE
    goal_s: np.ndarray  # (n_agents,) s at which an agent has completed its route
    human_speed: np.ndarray  # (H,) IDM desired speed (m/s)
    brake_at_s: np.ndarray  # (H,) start of the hard-brake event (s since reset; inf = never)
    brake_for_s: np.ndarray  # (H,) its duration
    runs_red: np.ndarray  # (H,) bool: ignores crossing traffic
    target_speed: float = 2.0  # what agents are rewarded for (m/s)
    max_steps: int = 200  # policy steps (at params.policy_dt) before truncation
    meta: dict = field(default_factory=dict)

    @property
    def n_cars(self) -> int:
        return int(self.cars.shape[0])

    @property
    def humans(self) -> np.ndarray:
        return np.flatnonzero(self.kind == HUMAN)


def make_scenario(name: str, n_agents: int, seed: int, params: CarParams | None = None) -> Scenario:
    name = ALIASES.get(name, name)
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS + tuple(ALIASES))}")
    if not (isinstance(n_agents, (int, np.integer)) and 1 <= n_agents <= 8):
        raise ValueError(f"n_agents must be an int in 1..8, got {n_agents!r}")
    rng = np.random.default_rng(seed)
    p = params or CarParams()
    if name == "intersection":
        return _intersection(n_agents, rng, p)
    road, density = name.split("-")
    return _lanes(road, DENSITY[density], n_agents, rng, p, name)


def _car(s, y, v=0.0):
    x = np.zeros(STATE_DIM)
    x[0], x[1], x[3] = s, y, v
    return x


def _lanes(road: str, level: int, n: int, rng: np.random.Generator, p: CarParams, name: str) -> Scenario:
    if road == "highway":
        track = Track("straight", n_lanes=3, length=40.0)
        n_obs, n_hum, goal, obs_span = (2, 4, 6)[level], 2, 30.0, (9.0, 34.0)
    else:
        track = Track("oval", n_lanes=2, straight=8.0, radius=2.5)
        n_obs, n_hum, goal, obs_span = (1, 2, 3)[level], 1, track.period, (8.0, track.period - 3.0)
    lanes = np.arange(track.n_lanes)
    human_lane = int(rng.integers(track.n_lanes))
    # agents on a grid of start slots 1.3 m apart (safe stopping gaps at the start speed of 1 m/s)
    slots = [(lane, s) for s in np.arange(0.0, 1.3 * n + 0.1, 1.3) for lane in lanes]
    pick = rng.choice(len(slots), n, replace=False)
    cars = [_car(slots[k][1], track.lane_centre(slots[k][0]), 1.0) for k in pick]
    s_front = max(c[0] for c in cars)
    hs = s_front + 3.0 + np.sort(rng.uniform(0.0, 6.0, n_hum)) + 2.0 * np.arange(n_hum)
    cars += [_car(s, track.lane_centre(human_lane), 1.2) for s in hs]
    # obstacles: in the other lanes, ≥ 3 m apart in s (so no s has every lane blocked)
    other = lanes[lanes != human_lane]
    gaps = np.linspace(*obs_span, n_obs + 2)[1:-1] + rng.uniform(-1.0, 1.0, n_obs)
    cars += [_car(s, track.lane_centre(rng.choice(other)), 0.0) for s in gaps]
    C = len(cars)
    kind = np.array([AGENT] * n + [HUMAN] * n_hum + [OBSTACLE] * n_obs)
    return Scenario(name, track, p, n, np.array(cars), np.zeros(C, dtype=int), kind,
                    goal_s=np.array([c[0] for c in cars[:n]]) + goal,
                    human_speed=rng.uniform(1.2, 1.8, n_hum),
                    brake_at_s=rng.uniform(2.0, 6.0, n_hum), brake_for_s=rng.uniform(1.0, 2.0, n_hum),
                    # 30 s: twice the route at the target speed (the highway's 25 s cut off a lane-changing
                    # heuristic 1-4 m short of the goal behind the humans, at 1.2-1.8 m/s)
                    runs_red=np.zeros(n_hum, dtype=bool), max_steps=300,
                    meta={"density": ("low", "medium", "high")[level], "human_lane": human_lane})


def _intersection(n: int, rng: np.random.Generator, p: CarParams) -> Scenario:
    track = Track("cross", n_lanes=1, length=12.0)
    centre = 0.5 * track.length
    y = float(track.lane_centre(0))
    cars, path = [], []
    for i in range(n):  # agents round the four approaches, queued 1.5 m apart
        cars.append(_car(centre - 4.0 - 1.5 * (i // 4) - rng.uniform(0.0, 1.0), y, 1.0))
        path.append(i % 4)  # fixed layout (a batch of episodes shares it)
    # two red-light runners, on the last approach (or, with four agents, ahead of the agents on theirs):
    # a human never queues behind an agent, so nobody the agents yield to ever waits for them
    n_hum = 2
    for k in range(n_hum):
        q = 3 if n < 4 else k
        ahead = [c[0] for c, pp in zip(cars, path) if pp == q]
        s0 = (max(ahead) + 2.0 + 2.0 * k) if ahead else centre - 3.0 - 2.5 * k - rng.uniform(0.0, 3.0)
        cars.append(_car(s0, y, 1.5))
        path.append(q)
    C = len(cars)
    kind = np.array([AGENT] * n + [HUMAN] * n_hum)
    return Scenario("intersection", track, p, n, np.array(cars), np.array(path), kind,
                    goal_s=np.full(n, centre + track.lane_width + 2.0),
                    human_speed=rng.uniform(1.5, 2.2, n_hum), brake_at_s=np.full(n_hum, np.inf),
                    brake_for_s=np.zeros(n_hum), runs_red=np.ones(n_hum, dtype=bool), max_steps=150)
