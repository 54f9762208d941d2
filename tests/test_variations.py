"""Variation sets: grids, seeded distributions, the declarative form, and application at reset."""
import gymnasium as gym
import numpy as np
import pytest

from rtctl.sim.variations import VariationSet, VariedEnv


def test_grid_is_every_combination_last_axis_fastest():
    vs = VariationSet.grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(vs) == 6
    assert vs[0].params == {"a": 1, "b": "x"} and vs[1].params == {"a": 1, "b": "y"} and vs[3].params["a"] == 2
    assert vs.nominal == 0


def test_nominal_found_in_grid_or_appended():
    vs = VariationSet.grid({"a": [1.0, 2.0], "b": [0, 3]}, nominal={"a": 2.0, "b": 3})
    assert vs.nominal == 3 and len(vs) == 4
    vs = VariationSet.grid({"a": [1.0, 2.0], "b": [0, 3]}, nominal={"a": 1.5, "b": 0})
    assert len(vs) == 5 and vs.nominal == 4 and vs[4].params == {"a": 1.5, "b": 0}
    with pytest.raises(ValueError, match="nominal must set exactly"):
        VariationSet.grid({"a": [1.0]}, nominal={"b": 1})


def test_sample_is_seeded_and_respects_ranges():
    spec = {"m": {"uniform": [0.5, 1.5]}, "k": {"loguniform": [1e-3, 1e-1]}, "lat": {"choice": [0, 1, 2]},
            "n": {"normal": [0.0, 0.1]}}
    a, b = VariationSet.sample(spec, 50, seed=3), VariationSet.sample(spec, 50, seed=3)
    assert a.to_list() == b.to_list()
    assert a.to_list() != VariationSet.sample(spec, 50, seed=4).to_list()
    m = np.array([v.params["m"] for v in a])
    k = np.array([v.params["k"] for v in a])
    assert m.min() >= 0.5 and m.max() <= 1.5 and k.min() >= 1e-3 and k.max() <= 1e-1
    assert {v.params["lat"] for v in a} <= {0, 1, 2}
    # adding a parameter leaves the draws of the others unchanged (one stream per parameter)
    more = VariationSet.sample({**spec, "extra": {"uniform": [0, 1]}}, 50, seed=3)
    assert [v.params["m"] for v in more] == [v.params["m"] for v in a]


def test_declarative_spec_and_errors():
    vs = VariationSet.from_spec({"grid": {"a": [1, 2]}, "nominal": {"a": 2}, "name": "s"})
    assert vs.name == "s" and vs.nominal == 1
    vs = VariationSet.from_spec({"list": [{"a": 1}, {"a": 5}], "nominal": 1})
    assert vs.nominal == 1
    vs = VariationSet.from_spec({"sample": {"n": 4, "seed": 1, "params": {"a": {"uniform": [0, 1]}}}})
    assert len(vs) == 4
    with pytest.raises(ValueError, match="exactly one of grid, sample, list"):
        VariationSet.from_spec({"grid": {"a": [1]}, "list": [{"a": 1}]})
    with pytest.raises(ValueError, match="unknown key"):
        VariationSet.from_spec({"grid": {"a": [1]}, "nominl": {"a": 1}})
    with pytest.raises(ValueError, match="parameter 'a' needs one of"):
        VariationSet.from_spec({"sample": {"n": 2, "params": {"a": {"gauss": [0, 1]}}}})
    with pytest.raises(ValueError, match="axis 'a' needs a non-empty list"):
        VariationSet.grid({"a": []})


def test_numeric_matrix_skips_strings():
    vs = VariationSet.grid({"process": ["TT", "FF"], "vdd": [0.9, 1.1]})
    assert vs.numeric_matrix().shape == (4, 1)


def test_varied_env_applies_variation_at_reset():
    vs = VariationSet.grid({"m": [0.5, 2.0], "l": [0.8, 1.2]}, nominal={"m": 1.0, "l": 1.0})
    env = VariedEnv(gym.make("Pendulum-v1"), vs)
    _, info = env.reset(seed=0, options={"variation": 3})
    assert info["variation"] == 3 and env.unwrapped.m == 2.0 and env.unwrapped.l == 1.2
    _, info = env.reset(seed=1)  # fixed sampler keeps the last variation
    assert info["variation"] == 3
    with pytest.raises(IndexError):
        env.reset(options={"variation": 99})
    uni = VariedEnv(gym.make("Pendulum-v1"), vs, sampler="uniform")
    seen = {uni.reset(seed=s)[1]["variation"] for s in range(40)}
    assert len(seen) == len(vs)
    bad = VariedEnv(gym.make("Pendulum-v1"), VariationSet.grid({"mass": [1.0]}))
    with pytest.raises(KeyError, match="no parameter 'mass'"):
        bad.reset()


def test_arm_variation_sets():
    from rtctl.sim.arm_rl import NOMINAL, arm_held_out, arm_variation_grid

    grid, held = arm_variation_grid(), arm_held_out()
    assert len(grid) >= 48
    assert grid[grid.nominal].params == NOMINAL
    assert {v.params["action_latency_ticks"] for v in grid} == {0, 1, 2, 3}
    assert set(grid.param_names) == {"mass_scale", "damping_scale", "gain_scale", "obs_noise_std",
                                     "action_latency_ticks"}
    inside = {tuple(v.params.values()) for v in grid}
    assert not any(tuple(v.params.values()) in inside for v in held)
    # held-out arms lie outside the training range on mass, damping and gain
    for key in ("mass_scale", "damping_scale", "gain_scale"):
        lo, hi = min(v.params[key] for v in grid), max(v.params[key] for v in grid)
        assert all(v.params[key] < lo or v.params[key] > hi for v in held)
