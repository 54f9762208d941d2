"""SO-101 follower arm in MuJoCo as a Gymnasium env: `reach` a sequence of targets (each shows when the
previous one is touched), or `whack` targets that pop up at random times and must be hit before a deadline.

Observations (dict): ``state`` (6,) joint positions in rad (5 arm joints then gripper), ``target`` (4,) =
target xyz in metres + active flag (1/0), optionally ``image`` (96, 96, 3) uint8 from the fixed camera.
Actions: (6,) absolute joint position targets in rad, clipped to the actuator ctrlrange; NaN/inf raise.

Time: one `step()` is one control tick of ``n_substeps = round(1/(control_hz*0.002))`` physics substeps,
i.e. ``env.dt = n_substeps*0.002`` s of simulated time (34 ms at 30 Hz); episode length and the whack
deadline/gaps are simulated seconds. Ticks count from 0: `reset()` returns tick 0, the k-th `step()` tick k.
`info["target_events"]` record ``appear_step`` = first tick whose observation shows the target active and
``end_step`` = first tick whose observation no longer shows it (None while it is still active; also None
for a target still active when the episode is truncated). Touches are checked at every substep, so a fast
pass through a target still counts.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

MODEL_PATH = Path(__file__).resolve().parent / "assets" / "so101.xml"
JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
SITE_NAME = "gripperframe"
CAMERA_NAME = "workspace"
TIMESTEP = 0.002
IMAGE_SIZE = 96

GRIPPER_OPEN = 0.3  # rad: slightly open, clear of the jaw's own limit
# Gripper tip about 20 cm in front of the base and 14 cm above the table; start of every episode.
READY_POSE = np.array([0.0, -0.9, 0.9, 0.7, 0.0, GRIPPER_OPEN])

# Target sampling draws joint configurations here (wrist_roll 0), keeps those whose tool site clears the
# table and the base and whose whole arm is collision-free: every target is reachable by construction.
TARGET_Q_LOW = np.array([-1.2, -1.2, -1.0, -1.0])
TARGET_Q_HIGH = np.array([1.2, 1.0, 1.4, 1.4])
TARGET_MIN_Z = 0.04  # m above the table
TARGET_MAX_Z = 0.30
TARGET_MIN_X = 0.08  # m: in front of the base, where a table-top task would put things
TARGET_MIN_RADIUS = 0.10  # m, horizontal distance from the pan axis
PAN_AXIS_XY = np.array([0.0388353, 0.0])
TARGET_MIN_TRAVEL = 0.06  # m from the gripper when the target appears

REACH_RADIUS = 0.02
REACH_TARGETS = 1  # >1: waypoints in sequence, each shown when the previous one is touched
WHACK_RADIUS = 0.025
WHACK_TARGETS = 4
WHACK_DEADLINE_S = 2.5
WHACK_GAP_S = (0.3, 1.0)
DEFAULT_EPISODE_S = {"reach": 10.0, "whack": 12.0}
INIT_NOISE = 0.1  # rad, uniform, on the 5 arm joints at reset


@dataclass(frozen=True)
class ArmParams:
    """Variation knobs applied at reset (domain randomisation / task sets). Defaults = nominal model."""

    mass_scale: float = 1.0  # all link masses and inertias
    damping_scale: float = 1.0  # joint damping
    gain_scale: float = 1.0  # actuator kp (and its bias term, so it stays a position servo)
    obs_noise_std: float = 0.0  # rad, Gaussian, added to the observed `state`
    action_latency_ticks: int = 0  # commands take effect this many ticks late (0..3)

    def __post_init__(self) -> None:
        for name in ("mass_scale", "damping_scale", "gain_scale"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"ArmParams.{name} must be a finite positive number, got {v!r}")
        if not (np.isfinite(self.obs_noise_std) and self.obs_noise_std >= 0):
            raise ValueError(f"ArmParams.obs_noise_std must be >= 0, got {self.obs_noise_std!r}")
        if int(self.action_latency_ticks) != self.action_latency_ticks or not 0 <= self.action_latency_ticks <= 3:
            raise ValueError(f"ArmParams.action_latency_ticks must be an int in 0..3, got {self.action_latency_ticks!r}")


def load_model(path: str | Path | None = None) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(path or MODEL_PATH))


def ctrl_bounds(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    r = model.actuator_ctrlrange.copy()
    return r[:, 0], r[:, 1]


def sample_target(
    model: mujoco.MjModel, scratch: mujoco.MjData, rng: np.random.Generator, away_from: np.ndarray | None = None
) -> np.ndarray:
    """A reachable target xyz: FK of a random collision-free joint configuration (uses ``scratch`` only).

    ``away_from`` (the gripper's position) keeps the target `TARGET_MIN_TRAVEL` away, so every target
    takes a real movement and reaction-latency figures are not diluted by free hits.
    """
    site = model.site(SITE_NAME).id
    for _ in range(1000):
        q = np.zeros(model.nq)
        q[:4] = rng.uniform(TARGET_Q_LOW, TARGET_Q_HIGH)
        q[5] = GRIPPER_OPEN
        scratch.qpos[:] = q
        mujoco.mj_kinematics(model, scratch)
        p = scratch.site_xpos[site].copy()
        if not (TARGET_MIN_Z <= p[2] <= TARGET_MAX_Z and p[0] >= TARGET_MIN_X):
            continue
        if np.linalg.norm(p[:2] - PAN_AXIS_XY) < TARGET_MIN_RADIUS:
            continue
        if away_from is not None and np.linalg.norm(p - away_from) < TARGET_MIN_TRAVEL:
            continue
        mujoco.mj_collision(model, scratch)
        if scratch.ncon == 0:
            return p
    raise RuntimeError("sample_target: no valid target in 1000 draws; check TARGET_Q_* ranges")


class SO101Env(gym.Env):
    """SO-101 arm tasks. See the module docstring for spaces, timing and event conventions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        task: str = "reach",
        control_hz: float = 30.0,
        episode_s: float | None = None,
        render_mode: str | None = None,
        image: bool = False,
        params: ArmParams | None = None,
        model_path: str | Path | None = None,
        reach_targets: int = REACH_TARGETS,
    ) -> None:
        if task not in DEFAULT_EPISODE_S:
            raise ValueError(f"SO101Env: task must be 'reach' or 'whack', got {task!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"SO101Env: render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not control_hz > 0:
            raise ValueError(f"SO101Env: control_hz must be > 0, got {control_hz!r}")
        if not (isinstance(reach_targets, int) and reach_targets >= 1):
            raise ValueError(f"SO101Env: reach_targets must be an int >= 1, got {reach_targets!r}")
        self.task = task
        self.reach_targets = reach_targets
        self.control_hz = float(control_hz)
        self.n_substeps = max(1, round(1.0 / (self.control_hz * TIMESTEP)))
        # The real tick is a whole number of substeps (34 ms at 30 Hz); episode length and deadlines
        # are in simulated seconds, so they are converted with this dt, not with 1/control_hz.
        self.dt = self.n_substeps * TIMESTEP
        self.episode_s = float(episode_s if episode_s is not None else DEFAULT_EPISODE_S[task])
        self.episode_ticks = max(1, round(self.episode_s / self.dt))
        self.render_mode = render_mode
        self.image = bool(image)
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.dt}

        self.model = load_model(model_path)
        self.model.opt.timestep = TIMESTEP
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # target sampling; never disturbs the simulation
        self._site = self.model.site(SITE_NAME).id
        self._target_mocap = self.model.body_mocapid[self.model.body("target").id]
        self._target_geom = self.model.geom("target_geom").id
        self._target_rgba = self.model.geom_rgba[self._target_geom].copy()
        arm_bodies = [self.model.body(n).id for n in ("base", "shoulder", "upper_arm", "lower_arm",
                                                        "wrist", "gripper", "moving_jaw")]
        self._arm_bodies = np.array(arm_bodies)
        self._nominal = {
            "mass": self.model.body_mass.copy(),
            "inertia": self.model.body_inertia.copy(),
            "damping": self.model.dof_damping.copy(),
            "kp": self.model.actuator_gainprm[:, 0].copy(),
        }

        low, high = ctrl_bounds(self.model)
        self.action_space = spaces.Box(low, high, dtype=np.float64)
        obs_spaces: dict[str, spaces.Space] = {
            # +-pi covers every joint range plus observation noise; the observed state is clipped to it.
            "state": spaces.Box(-np.pi, np.pi, shape=(6,), dtype=np.float64),
            "target": spaces.Box(np.array([-1.0, -1.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0]), dtype=np.float64),
        }
        if self.image:
            obs_spaces["image"] = spaces.Box(0, 255, shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)

        self.params = params or ArmParams()
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._noise_rng = np.random.default_rng(0)
        self._fifo: deque[np.ndarray] = deque()
        self._held: dict[tuple[int, int], float] = {}  # (qpos adr, dof adr) -> where an external hand holds it
        self._tick = 0
        self._events: list[dict[str, Any]] = []
        self._active: dict[str, Any] | None = None
        self._last_target = np.zeros(3)
        self._next_appear_s = 0.0
        self._touched = False
        self._hits = 0
        self._expired = 0

    # ----------------------------------------------------------------------------------------- params
    def set_params(self, params: ArmParams) -> None:
        """Takes effect at the next reset (mid-episode changes would make the episode two systems)."""
        if not isinstance(params, ArmParams):
            raise TypeError(f"set_params expects ArmParams, got {type(params).__name__}")
        self.params = params

    def _apply_params(self) -> None:
        p, m, nom = self.params, self.model, self._nominal
        b = self._arm_bodies
        m.body_mass[b] = nom["mass"][b] * p.mass_scale
        m.body_inertia[b] = nom["inertia"][b] * p.mass_scale
        m.dof_damping[:] = nom["damping"] * p.damping_scale
        m.actuator_gainprm[:, 0] = nom["kp"] * p.gain_scale
        m.actuator_biasprm[:, 1] = -nom["kp"] * p.gain_scale
        mujoco.mj_setConst(m, self.data)  # derived quantities (subtree masses, invweights) follow the masses

    # ------------------------------------------------------------------------------------------ reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and options.get("params") is not None:
            self.set_params(options["params"])
        rng = self.np_random
        # Noise gets its own stream so changing obs_noise_std does not move the targets of a seed.
        self._noise_rng = np.random.default_rng(int(rng.integers(2**63)))

        mujoco.mj_resetData(self.model, self.data)
        self._held.clear()
        self._apply_params()
        q0 = READY_POSE.copy()
        q0[:5] += rng.uniform(-INIT_NOISE, INIT_NOISE, size=5)
        self.data.qpos[:] = q0
        self.data.ctrl[:] = q0
        mujoco.mj_forward(self.model, self.data)
        self._fifo = deque([q0.copy() for _ in range(self.params.action_latency_ticks)])

        self._tick = 0
        self._events = []
        self._active = None
        self._last_target = np.zeros(3)
        self._touched = False
        self._hits = 0
        self._expired = 0
        if self.task == "reach":
            self._activate(sample_target(self.model, self._scratch, rng, self.data.site_xpos[self._site]))
        else:
            self._next_appear_s = float(rng.uniform(*WHACK_GAP_S))
            self._show_marker(False)
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), self._info()

    # ------------------------------------------------------------------------------------------- step
    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (6,):
            raise ValueError(f"SO101Env.step: action must have shape (6,), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"SO101Env.step: action contains NaN or inf: {a.tolist()}")
        a = np.clip(a, self.action_space.low, self.action_space.high)
        if self._fifo:
            self._fifo.append(a)
            a = self._fifo.popleft()
        self.data.ctrl[:] = a

        m, d, site = self.model, self.data, self._site
        radius2 = (REACH_RADIUS if self.task == "reach" else WHACK_RADIUS) ** 2
        goal = self._active["pos"] if self._active is not None else None
        for _ in range(self.n_substeps):
            mujoco.mj_step(m, d)
            for (qa, da), pos in self._held.items():  # a push: the hand wins against the servo
                d.qpos[qa], d.qvel[da] = pos, 0.0
            # site_xpos here is the state at the start of this substep; the end state is checked below.
            if goal is not None and not self._touched:
                dx = d.site_xpos[site] - goal
                self._touched = float(dx @ dx) <= radius2
        mujoco.mj_forward(m, d)
        self._tick += 1
        if goal is not None and not self._touched:
            dx = d.site_xpos[site] - goal
            self._touched = float(dx @ dx) <= radius2

        reward = self._update_task()
        terminated = self._terminated()
        truncated = (not terminated) and self._tick >= self.episode_ticks
        return self._obs(), reward, terminated, truncated, self._info()

    def hold_joint(self, joint: int, position: float | None) -> None:
        """Disturbance injection: hold joint ``joint`` (index in JOINT_NAMES) at ``position`` rad whatever the
        servo commands, as a hand pushing the arm would; None releases it (the servo tracks its goal again)."""
        j = self.model.joint(JOINT_NAMES[joint])
        adr = (int(j.qposadr[0]), int(j.dofadr[0]))
        if position is None:
            self._held.pop(adr, None)
        else:
            self._held[adr] = float(position)
            self.data.qpos[adr[0]], self.data.qvel[adr[1]] = float(position), 0.0
            mujoco.mj_forward(self.model, self.data)

    def joint_position(self, joint: int) -> float:
        return float(self.data.qpos[int(self.model.joint(JOINT_NAMES[joint]).qposadr[0])])

    def _update_task(self) -> float:
        t = self.data.time
        if self.task == "reach":
            dist = float(np.linalg.norm(self.data.site_xpos[self._site] - self._active["pos"]))
            if self._touched:
                self._end_active(hit=True)
                if self._hits < self.reach_targets:  # the next waypoint shows at once
                    gripper = self.data.site_xpos[self._site]
                    self._activate(sample_target(self.model, self._scratch, self.np_random, gripper))
                return -dist + 10.0
            return -dist
        reward = 0.0
        if self._active is not None:
            if self._touched:
                self._end_active(hit=True)
                reward = 1.0
            elif t - self._active["appear_s"] >= WHACK_DEADLINE_S - 1e-9:
                self._end_active(hit=False)
        if self._active is None and len(self._events) < WHACK_TARGETS and t >= self._next_appear_s - 1e-9:
            gripper = self.data.site_xpos[self._site]
            self._activate(sample_target(self.model, self._scratch, self.np_random, gripper))
        return reward

    def _activate(self, pos: np.ndarray) -> None:
        self._active = {"id": len(self._events), "appear_step": self._tick, "end_step": None,
                        "hit": False, "pos": pos.copy(), "appear_s": self.data.time}
        self._events.append(self._active)
        self._last_target = pos.copy()
        self._touched = False
        self.data.mocap_pos[self._target_mocap] = pos
        self._show_marker(True)

    def _end_active(self, hit: bool) -> None:
        ev = self._active
        ev["end_step"], ev["hit"] = self._tick, hit
        self._hits += int(hit)
        self._expired += int(not hit)
        self._active = None
        self._touched = False
        if self.task == "whack":
            self._next_appear_s = self.data.time + float(self.np_random.uniform(*WHACK_GAP_S))
            self._show_marker(False)

    def _show_marker(self, on: bool) -> None:
        rgba = self._target_rgba.copy()
        rgba[3] = rgba[3] if on else 0.0
        self.model.geom_rgba[self._target_geom] = rgba

    def _terminated(self) -> bool:
        if self.task == "reach":
            return self._hits >= self.reach_targets
        return len(self._events) == WHACK_TARGETS and self._active is None

    # ------------------------------------------------------------------------------------ observation
    def _obs(self) -> dict[str, np.ndarray]:
        state = self.data.qpos.copy()
        if self.params.obs_noise_std > 0:
            state += self._noise_rng.normal(0.0, self.params.obs_noise_std, size=6)
        state = np.clip(state, -np.pi, np.pi)
        flag = 1.0 if self._active is not None else 0.0
        obs = {"state": state, "target": np.append(self._last_target, flag)}
        if self.image:
            obs["image"] = self._render(IMAGE_SIZE, IMAGE_SIZE)
        return obs

    def _info(self) -> dict[str, Any]:
        d = self.data
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, d, mujoco.mjtObj.mjOBJ_SITE, self._site, vel, 0)
        n = self.reach_targets if self.task == "reach" else WHACK_TARGETS
        return {
            "success": self._hits == n,
            "hits": self._hits,
            "expired": self._expired,
            "gripper_pos": d.site_xpos[self._site].copy(),
            "gripper_vel": vel[3:].copy(),  # linear part, world frame
            "target_events": [
                {"id": e["id"], "appear_step": e["appear_step"], "end_step": e["end_step"],
                 "hit": e["hit"], "pos": e["pos"].copy()}
                for e in self._events
            ],
            "sim_time": float(d.time),
            "tick": self._tick,
        }

    # -------------------------------------------------------------------------------------- rendering
    def _render(self, height: int, width: int) -> np.ndarray:
        r = self._renderers.get((height, width))
        if r is None:
            r = self._renderers[(height, width)] = mujoco.Renderer(self.model, height, width)
        r.update_scene(self.data, camera=CAMERA_NAME)
        return r.render().copy()

    def render(self):
        if self.render_mode == "rgb_array":
            return self._render(240, 320)
        return None

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers = {}


def make_arm_env(task: str = "reach", **kw: Any) -> SO101Env:
    """Build an SO101Env without touching Gymnasium's global registry."""
    return SO101Env(task, **kw)


__all__ = ["ArmParams", "SO101Env", "make_arm_env", "sample_target", "load_model", "ctrl_bounds",
           "READY_POSE", "GRIPPER_OPEN", "JOINT_NAMES", "MODEL_PATH", "SITE_NAME", "TIMESTEP"]
