"""SO-101 MuJoCo env and scripted expert: API conformance, determinism, dynamics knobs, expert quality."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything creates a GL context

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from rtctl.sim.arm_env import (  # noqa: E402
    READY_POSE,
    ArmParams,
    SO101Env,
    load_model,
    make_arm_env,
    sample_target,
)
from rtctl.sim.arm_expert import ExpertPolicy, expert_chunk, ik, rollout_demos  # noqa: E402


def _run(env: SO101Env, actions: np.ndarray, seed: int):
    obs, info = env.reset(seed=seed)
    states, infos = [obs["state"]], [info]
    for a in actions:
        obs, _, term, trunc, info = env.step(a)
        states.append(obs["state"])
        infos.append(info)
        if term or trunc:
            break
    return np.array(states), infos


def _step_response(params: ArmParams, ticks: int = 12) -> np.ndarray:
    """Shoulder-lift trajectory after a 0.5 rad step command, from the same seeded start."""
    env = SO101Env("reach", params=params)
    obs, _ = env.reset(seed=7)
    cmd = obs["state"].copy()
    cmd[1] += 0.5
    traj = []
    for _ in range(ticks):
        env.step(cmd)
        traj.append(env.data.qpos[1])  # true state: obs noise must not mask the dynamics
    return np.array(traj)


@pytest.mark.parametrize("task", ["reach", "whack"])
def test_check_env_passes(task):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advisory warnings (unnormalised action box, no spec)
        check_env(SO101Env(task).unwrapped)


def test_spaces_and_no_global_registration():
    env = make_arm_env("reach")
    assert env.action_space.shape == (6,)
    np.testing.assert_allclose(env.action_space.low, env.model.actuator_ctrlrange[:, 0])
    assert set(env.observation_space.spaces) == {"state", "target"}
    assert env.n_substeps == 17
    assert not any("so101" in k.lower() for k in gym.envs.registry)


def test_same_seed_same_actions_is_deterministic():
    rng = np.random.default_rng(0)
    env = SO101Env("whack")
    actions = READY_POSE + rng.uniform(-0.4, 0.4, size=(60, 6))
    s1, i1 = _run(env, actions, seed=3)
    s2, i2 = _run(SO101Env("whack"), actions, seed=3)
    np.testing.assert_array_equal(s1, s2)
    assert [e["appear_step"] for e in i1[-1]["target_events"]] == [e["appear_step"] for e in i2[-1]["target_events"]]
    o_a, _ = env.reset(seed=1)
    o_b, _ = env.reset(seed=2)
    assert not np.array_equal(o_a["state"], o_b["state"])


def test_actions_are_clipped_and_nonfinite_rejected():
    env = SO101Env("reach")
    env.reset(seed=0)
    env.step(np.full(6, 100.0))
    np.testing.assert_array_equal(env.data.ctrl, env.action_space.high)
    env.step(np.full(6, -100.0))
    np.testing.assert_array_equal(env.data.ctrl, env.action_space.low)
    for bad in (np.nan, np.inf):
        a = READY_POSE.copy()
        a[2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            env.step(a)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))


def test_gripperframe_fk_is_in_a_plausible_workspace():
    model = load_model()
    data = mujoco.MjData(model)
    site = model.site("gripperframe").id
    mujoco.mj_forward(model, data)  # all joints at 0: arm stretched forward in an "L"
    p0 = data.site_xpos[site]
    assert 0.3 < p0[0] < 0.45 and abs(p0[1]) < 1e-3 and 0.15 < p0[2] < 0.3
    rng = np.random.default_rng(0)
    targets = np.array([sample_target(model, data, rng) for _ in range(200)])
    assert np.all(targets[:, 2] >= 0.04) and np.all(np.linalg.norm(targets, axis=1) < 0.55)
    assert np.all(np.linalg.norm(targets[:, :2] - [0.0388, 0.0], axis=1) >= 0.08)


def test_ik_reaches_sampled_targets():
    model = load_model()
    data = mujoco.MjData(model)
    rng = np.random.default_rng(5)
    site = model.site("gripperframe").id
    for _ in range(20):
        p = sample_target(model, data, rng)
        q = ik(p)
        assert q.shape == (5,) and q[4] == 0.0
        data.qpos[:5], data.qpos[5] = q, 0.3
        mujoco.mj_kinematics(model, data)
        assert np.linalg.norm(data.site_xpos[site] - p) < 1e-3
        np.testing.assert_array_equal(ik(p), q)  # seeded from a fixed pose: a function of the target


def test_expert_chunk_is_a_synchronized_ramp():
    state = READY_POSE.copy()
    target = np.array([0.3, 0.15, 0.08, 1.0])
    dt, v_max = 1 / 30, 1.5
    chunk = expert_chunk(state, target, horizon=50, dt=dt, v_max=v_max)
    assert chunk.shape == (50, 6)
    steps = np.diff(np.vstack([state, chunk]), axis=0)[:, :5]
    assert np.max(np.abs(steps)) <= v_max * dt + 1e-12
    assert np.isclose(np.max(np.abs(steps[0])), v_max * dt)  # row 0 already moves: it is the next command
    np.testing.assert_allclose(chunk[-1, :5], ik(target[:3]))  # arrived within the horizon
    moving = np.abs(chunk[-1, :5] - state[:5]) > 1e-9
    arrive = [int(np.argmax(np.isclose(chunk[:, j], chunk[-1, j], atol=1e-12))) for j in np.flatnonzero(moving)]
    assert len(set(arrive)) == 1  # all joints arrive on the same row
    assert np.all(chunk[:, 5] == chunk[0, 5])
    idle = expert_chunk(state + 0.2, np.array([0.3, 0.15, 0.08, 0.0]), horizon=80, dt=dt)
    np.testing.assert_allclose(idle[-1, :5], READY_POSE[:5])
    np.testing.assert_array_equal(expert_chunk(state, target, 50, dt), chunk)
    pol = ExpertPolicy(horizon=20)
    assert pol.chunk({"state": state, "target": target}).shape == (pol.chunk_size, pol.action_dim)


def test_expert_solves_reach():
    out = rollout_demos("reach", episodes=10, seed=100, horizon=50, exec_steps=25, control_hz=30.0)
    assert out["success"].mean() >= 0.9
    n = len(out["states"])
    assert out["actions"].shape == (n, 6) and out["targets"].shape == (n, 4) and out["episode_index"].shape == (n,)
    assert out["length"].sum() == n


def test_expert_hits_whack_targets():
    out = rollout_demos("whack", episodes=3, seed=200, horizon=50, exec_steps=25, control_hz=30.0)
    assert out["hits"].sum() >= 10  # of 12
    assert np.all(out["hits"] + out["expired"] <= 4)


def test_whack_events_match_the_observed_flag():
    env = SO101Env("whack")
    obs, info = env.reset(seed=0)
    hold = obs["state"].copy()
    flags, done = [obs["target"][3]], False
    while not done:
        obs, reward, term, trunc, info = env.step(hold)
        flags.append(obs["target"][3])
        done = term or trunc
    events = info["target_events"]
    assert len(events) >= 3 and info["expired"] + info["hits"] >= 3
    deadline_ticks = int(np.ceil(2.5 / env.dt))
    for e in events:
        assert flags[e["appear_step"]] == 1.0 and flags[e["appear_step"] - 1] == 0.0
        if e["end_step"] is not None:
            assert flags[e["end_step"]] == 0.0 and e["end_step"] - e["appear_step"] <= deadline_ticks
    assert set(info) >= {"success", "gripper_pos", "gripper_vel", "target_events", "sim_time", "hits", "expired"}
    assert info["gripper_pos"].shape == (3,) and info["gripper_vel"].shape == (3,)


@pytest.mark.parametrize(
    "params",
    [ArmParams(mass_scale=3.0), ArmParams(gain_scale=0.3), ArmParams(damping_scale=4.0),
     ArmParams(action_latency_ticks=2)],
    ids=["mass", "gain", "damping", "latency"],
)
def test_params_change_the_dynamics(params):
    nominal = _step_response(ArmParams())
    varied = _step_response(params)
    assert np.max(np.abs(nominal - varied)) > 1e-3
    if params.action_latency_ticks:
        k = params.action_latency_ticks
        assert np.max(np.abs(varied[:k] - varied[0])) < 0.02 < abs(nominal[0] - varied[0])  # held k ticks


def test_params_via_reset_options_and_obs_noise():
    env = SO101Env("reach")
    obs, _ = env.reset(seed=1, options={"params": ArmParams(obs_noise_std=0.05)})
    assert env.params.obs_noise_std == 0.05
    assert np.max(np.abs(obs["state"] - env.data.qpos)) > 1e-4
    clean, _ = SO101Env("reach").reset(seed=1)
    np.testing.assert_array_equal(clean["target"], obs["target"])  # noise has its own random stream
    with pytest.raises(ValueError):
        ArmParams(action_latency_ticks=4)
    with pytest.raises(ValueError):
        ArmParams(mass_scale=0.0)


def test_image_observation_when_rendering_works():
    try:
        env = SO101Env("reach", image=True, render_mode="rgb_array")
        obs, _ = env.reset(seed=0)
    except Exception as exc:  # no GL backend on this machine
        pytest.skip(f"MuJoCo rendering unavailable ({os.environ.get('MUJOCO_GL')}): {exc}")
    assert obs["image"].shape == (96, 96, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 5  # a scene, not a blank frame
    assert env.render().shape[2] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    env.close()
