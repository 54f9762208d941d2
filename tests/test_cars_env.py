"""The multi-car sim (rtctl.sim.vehicles) and its composition with the shield (rtctl.vehicles)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from rtctl.vehicles.control import (BEHAVIOUR_NAMES, ShieldedController, UnshieldedController, behaviour_command,
                                make_shield, vehicle_params)
from rtctl.vehicles.envs import FIXED_2, make_parallel_env, make_vec_env
from rtctl.safety import VehicleParams, action_mask, bicycle_step
from rtctl.safety import vehicle_model as vm
from rtctl.sim.vehicles import dynamics as dyn
from rtctl.sim.vehicles import tables
from rtctl.sim.vehicles.observe import ObsConfig, obs_dim, observe
from rtctl.sim.vehicles.scenarios import SCENARIOS, make_scenario
from rtctl.sim.vehicles.tracks import Track


def test_parallel_api_conformance():
    env = make_parallel_env("highway-low", 3, seed=0, delay=FIXED_2)
    parallel_api_test(env, num_cycles=40)
    obs, _ = env.reset(seed=1)
    assert env.state().shape == env.state_space.shape
    assert set(obs["car_0"]) == {"observation", "action_mask"}


def test_intersection_parallel_api():
    parallel_api_test(make_parallel_env("intersection", 3, seed=0), num_cycles=30)


def test_layouts_agree_with_the_shield():
    """sim/ may not import safety: its table columns and car numbers are copies that must stay equal."""
    for name in ("NB_S", "NB_Y", "NB_V", "NB_A", "NB_COOP", "NB_LANE_TO", "NB_AGE", "NB_EPOS", "NB_EVEL",
                 "NB_PRESENT", "NB_PSI", "NB_COLS", "CX_D", "CX_V", "CX_ZONE_S", "CX_ZONE_LE", "CX_ZONE_LC",
                 "CX_LEN", "CX_PRIO", "CX_AGE", "CX_EPOS", "CX_PRESENT", "CX_COLS"):
        assert getattr(tables, name) == getattr(vm, name), name
    shared = {f.name for f in dataclasses.fields(VehicleParams)} & {f.name for f in dataclasses.fields(dyn.CarParams)}
    assert {n: getattr(VehicleParams(), n) for n in shared} == {n: getattr(dyn.CarParams(), n) for n in shared}
    assert vehicle_params(dyn.CarParams()) == VehicleParams()
    assert ObsConfig().front_extent == pytest.approx(dyn.CarParams().front_extent)


def test_straight_step_matches_the_shield_model():
    rng = np.random.default_rng(0)
    p = dyn.CarParams()
    X = np.column_stack((rng.uniform(0, 5, 200), rng.uniform(0.2, 1.6, 200), rng.uniform(-0.3, 0.3, 200),
                         rng.uniform(0, 3, 200), rng.uniform(-0.3, 0.3, 200)))
    a = rng.uniform(-5, 4, 200)
    ours = dyn.step(X, a, X[:, 4], p)  # steering already at its command: no servo lag
    ref = bicycle_step(X[:, :4], np.clip(a, -p.brake_max, p.accel_max), np.tan(X[:, 4]) / p.wheelbase,
                       p.control_dt, VehicleParams())
    np.testing.assert_allclose(ours[:, :4], ref, atol=1e-9)


@pytest.mark.parametrize("track", [Track("oval", 2), Track("cross", 1, length=12.0), Track("straight", 3)])
def test_world_frame_round_trip(track):
    rng = np.random.default_rng(1)
    s = rng.uniform(0, track.period or 10.0, 100)
    y = rng.uniform(0, track.width, 100)
    psi = rng.uniform(-0.4, 0.4, 100)
    path = rng.integers(0, track.n_paths, 100)
    back = track.to_road(path, *track.to_world(path, s, y, psi))
    np.testing.assert_allclose(np.stack(back), np.stack((s, y, psi)), atol=1e-9)


def test_oval_lap_follows_the_lane():
    """Lane keeping by road-curvature feed-forward + pure pursuit brings a car round the oval in its lane."""
    scn = make_scenario("oval-low", 1, 0)
    tr, p = scn.track, scn.params
    x = scn.cars[0].copy()
    x[dyn.V] = 2.0
    y0 = x[dyn.Y]
    worst = 0.0
    for _ in range(int(2 * tr.period / 2.0 / p.control_dt)):
        if x[dyn.S] >= tr.period:
            break
        steer = dyn.lane_keep_steer(x[dyn.Y], x[dyn.PSI], x[dyn.V], y0, p)
        x = dyn.step(x, 0.0, dyn.steer_on_road(steer, tr.kappa_at(x[dyn.S], x[dyn.Y]), p), p,
                     kappa_ref=tr.kappa_ref(x[dyn.S]), y_ref=tr.y_ref)
        worst = max(worst, abs(x[dyn.Y] - y0))
    assert x[dyn.S] >= tr.period
    assert worst < 0.5 * tr.lane_width - 0.5 * p.width  # never left its lane


def test_scenarios_build_and_reject_bad_names():
    for name in SCENARIOS:
        scn = make_scenario(name, 3, 5)
        assert scn.cars.shape == (scn.n_cars, dyn.STATE_DIM) and np.isfinite(scn.cars).all()
    with pytest.raises(ValueError, match="unknown scenario 'motorway'.*highway-low"):
        make_scenario("motorway", 3, 0)
    with pytest.raises(ValueError, match="n_agents"):
        make_scenario("oval", 0, 0)


def test_env_masks_are_the_shields_action_mask():
    env = make_vec_env("highway-high", 3, 4, seed=3, delay=FIXED_2)
    env.reset()
    for _ in range(5):
        env.step(np.ones((4, 3), dtype=int))
    nb, cx = env.tables
    ego = env.cars[:, :3, :4].reshape(12, 4)
    mask, u, interv = action_mask(env.controller.shield, ego, nb.reshape(12, *nb.shape[2:]))
    live = ~env.done.reshape(-1)
    np.testing.assert_array_equal(env.mask.reshape(12, -1)[live], mask[live])
    np.testing.assert_allclose(env.u.reshape(12, -1, 2)[live], u[live])
    # V2V messages two steps old: the agents' rows carry 0.2 s of age
    ages = nb[..., :3, tables.NB_AGE][nb[..., :3, tables.NB_PRESENT] > 0]
    assert ages.size and np.allclose(ages, 0.2)
    assert BEHAVIOUR_NAMES[env.controller.stop_index] == "emergency_stop"


@pytest.mark.parametrize("scenario", ["highway-high", "intersection"])
def test_shield_prevents_collisions_of_a_reckless_policy(scenario):
    """Every agent weaves (change left / change right every 0.5 s, which the behaviours' gap keeping does
    not guard) and humans brake hard / run the red light: shielded, no collision; the same policy
    unshielded collides."""
    counts = {}
    for shield in (True, False):
        env = make_vec_env(scenario, 3, 6, seed=11, shield=shield)
        env.reset()
        hits = 0
        while not env.all_done():
            *_, info = env.step(np.full((6, 3), 2 + (env.t // 5) % 2))
            hits += int((info.collided | info.off_road).sum())
        counts[shield] = hits
    assert counts[True] == 0
    assert counts[False] > 0


def test_observation_is_nearest_first_and_ignores_absent_rows():
    cfg = ObsConfig(k_neighbours=2, k_crossing=0)
    ego = np.array([[10.0, 0.9, 0.0, 2.0]])
    nb = np.zeros((1, 4, tables.NB_COLS))
    nb[0, :, tables.NB_S] = [13.0, 8.5, 11.0, 10.5]
    nb[0, :, tables.NB_Y] = 0.9
    nb[0, :, tables.NB_PRESENT] = [1, 1, 1, 0]
    o = observe(ego, [0.0], [20.0], nb, None, 3, 0.6, cfg)
    assert o.shape == (1, obs_dim(cfg))
    first, second = o[0, 21:29], o[0, 29:37]
    assert first[0] == pytest.approx(1.0 / cfg.range_m) and first[-1] == 1.0  # s = 11 (10.5 is absent)
    assert second[0] == pytest.approx(-1.5 / cfg.range_m)
    # lane features (right, own, left): bumper gaps in the own lane, free lanes on both sides
    right, own, left = o[0, 9:13], o[0, 13:17], o[0, 17:21]
    np.testing.assert_allclose(own, [(1.0 - 0.58) / 10, -2 / 3, (1.5 - 0.58) / 10, -2 / 3], atol=1e-6)
    np.testing.assert_allclose(right, [1, 0, 1, 0]) and np.testing.assert_allclose(left, [1, 0, 1, 0])
    o = observe(np.array([[10.0, 0.3, 0.0, 2.0]]), [0.0], [20.0], nb, None, 3, 0.6, cfg)
    np.testing.assert_allclose(o[0, 9:13], 0.0)  # no lane to the right of lane 0


def test_behaviour_command_for_one_car():
    scn = make_scenario("highway-low", 1, 0)
    sh = make_shield(scn.track, scn.params)
    ahead = vm.neighbour_table([{"s": 1.2, "y": 0.9, "v": 0.0}])
    (a, steer), allowed, _ = behaviour_command(sh, (0.0, 0.9, 0.0, 2.0), 8, ahead)  # accelerate at a wall
    assert a == -scn.params.brake_max and not allowed  # the bin's gap keeping brakes; too late to be safe
    beside = vm.neighbour_table([{"s": 0.3, "y": 1.5, "v": 2.0}])
    (a, steer), allowed, interv = behaviour_command(sh, (0.0, 0.9, 0.0, 2.0), 2, beside)  # into a car
    assert a < 0 and not allowed and interv > 0
    (a, steer), allowed, _ = behaviour_command(sh, (0.0, 0.9, 0.0, 2.0), 1)
    assert allowed and abs(steer) < 1e-6
    with pytest.raises(ValueError, match="behaviour"):
        behaviour_command(sh, (0.0, 0.9, 0.0, 2.0), 99)
    assert isinstance(ShieldedController(sh), ShieldedController) and UnshieldedController(sh).stop_index == 0


def test_a_stopped_car_with_a_follower_may_drive_off():
    """Rear rows are best effort: with a stopped follower 0.3 m behind (message 0.2 s old) the plain action
    mask leaves only the emergency stop; the env's controller lets the car pull away (front rows hold)."""
    scn = make_scenario("highway-low", 1, 0)
    sh = make_shield(scn.track, scn.params)
    ego = np.array([[5.0, 0.9, 0.0, 0.0]])
    nb = vm.neighbour_table([{"s": 5.0 - 0.58 - 0.3, "y": 0.9, "v": 0.0, "coop": 1.0, "age": 0.2}])[None]
    plain, _, _ = action_mask(sh, ego, nb)
    mask, u, _ = ShieldedController(sh)(ego, nb, None)
    assert plain[0].tolist() == [True] + [False] * 8
    assert mask[0, 1] and u[0, 1, 0] > 0  # keep lane: speeds up towards the target speed


def test_a_human_brakes_for_a_nose_in_its_lane():
    """Scripted humans brake for a car whose body reaches into their lane (an agent stopped mid-lane-change),
    not only for cars whose rear axle is in it; a car wholly in the next lane does not slow them."""
    from rtctl.sim.vehicles.traffic import human_commands

    scn = make_scenario("highway-medium", 1, 0)
    h = int(scn.humans[0])
    lane_y = scn.cars[h, dyn.Y]
    accel = {}
    for psi in (0.0, 0.4):
        cars = scn.cars.copy()
        cars[:, dyn.S] = 100.0 + 5.0 * np.arange(len(cars))  # everyone else far away
        cars[h, dyn.S], cars[h, dyn.V] = 10.0, 1.5
        side = -1.0 if lane_y > 0.6 else 1.0  # the adjacent lane, then turned towards the human's lane
        cars[0, dyn.S], cars[0, dyn.Y], cars[0, dyn.PSI], cars[0, dyn.V] = 11.0, lane_y + side * 0.45, -side * psi, 0.0
        a, _ = human_commands(scn, cars[None], np.ones((1, len(cars)), bool), 0.0)
        accel[psi] = float(a[0, list(scn.humans).index(h)])
    assert accel[0.0] > 0 and accel[0.4] < -1.0
