"""Delay/drop injection: one model, a step-indexed numpy delay line (sim) and a wall-clock queue (bus)."""
import numpy as np
import pytest

from rtctl.v2v.config import InjectionConfig
from rtctl.v2v.inject import DelayInjector, StepDelayLine, TimedDelayQueue


def states_at(t, batch=2, n=3, d=4):
    """State value encodes (step, agent) so a received value tells when and whom it came from."""
    s = np.zeros((batch, n, d))
    s[..., 0] = t
    s[..., 1] = np.arange(n)
    return s


def test_truncated_gaussian_stays_in_range_with_the_right_centre():
    inj = DelayInjector(InjectionConfig(kind="truncated_gaussian", mean_s=0.12, std_s=0.04, lo_s=0.05, hi_s=0.2))
    d = inj.delays_s(200_000)
    assert d.min() >= 0.05 and d.max() <= 0.2
    assert abs(d.mean() - 0.12) < 0.005 and 0.03 < d.std() < 0.04  # truncation narrows it a little
    assert (d == 0.05).mean() < 0.001  # redrawn, not piled up at the clip


def test_drop_probability():
    inj = DelayInjector(InjectionConfig(drop_p=0.3, seed=1))
    assert abs(inj.drops(100_000).mean() - 0.3) < 0.01


def test_fixed_k_steps_delay_line_is_exact():
    k = 3
    line = StepDelayLine(DelayInjector(InjectionConfig(kind="fixed", steps=k, dt_s=0.1)), 3, 4, batch=2)
    for t in range(10):
        recv, age = line.step(t, states_at(t))
        off = ~np.eye(3, dtype=bool)
        if t < k:
            assert np.isnan(recv[:, off]).all() and np.isinf(age[:, off]).all()
        else:
            assert (recv[:, off][..., 0] == t - k).all()
            assert age[:, off] == pytest.approx(k * 0.1)
            assert (recv[..., 1] == np.arange(3)).all()  # [b, i, j] holds sender j's state
        assert (recv[:, np.arange(3), np.arange(3), 0] == t).all() and (age[:, np.arange(3), np.arange(3)] == 0).all()


def test_zero_delay_is_immediate():
    line = StepDelayLine(DelayInjector(InjectionConfig(kind="fixed", steps=0)), 2, 4, batch=2)
    recv, age = line.step(0, states_at(0, n=2))
    assert (recv[..., 0] == 0).all() and (age == 0).all()


def test_time_varying_line_keeps_newest_arrival_and_ages_match_the_model():
    cfg = InjectionConfig(kind="truncated_gaussian", dt_s=0.05, mean_s=0.12, std_s=0.04, lo_s=0.05, hi_s=0.2,
                          drop_p=0.2, seed=3)
    line = StepDelayLine(DelayInjector(cfg), 3, 4, batch=2)
    last_seen = np.full((2, 3, 3), -1.0)
    ages = []
    for t in range(400):
        recv, age = line.step(t, states_at(t))
        seen = recv[..., 0]
        off = ~np.isnan(seen)
        assert (seen[off] >= last_seen[off]).all()  # never goes back in time
        last_seen[off] = seen[off]
        assert np.allclose(age[off], (t - seen[off]) * 0.05)
        ages.append(age[:, ~np.eye(3, dtype=bool)])
    a = np.concatenate(ages, axis=None)[1000:]
    assert a.min() >= 0.05 - 1e-9  # nothing newer than the shortest delay
    assert 0.1 < np.median(a) < 0.25  # 50–200 ms delays, 50 ms steps, 20% drops


def test_delay_line_rejects_wrong_shapes_and_skipped_steps():
    line = StepDelayLine(DelayInjector(InjectionConfig()), 3, 4)
    with pytest.raises(ValueError, match="shape"):
        line.step(0, np.zeros((3, 4)))
    line.step(0, np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="consecutive"):
        line.step(2, np.zeros((1, 3, 4)))


def test_wall_clock_queue_releases_in_delay_order_and_drops():
    cfg = InjectionConfig(kind="uniform", lo_steps=1, hi_steps=4, dt_s=0.01, drop_p=0.25, seed=5)
    q = TimedDelayQueue(DelayInjector(cfg))
    kept = sum(q.push(i, now_ns=0) for i in range(1000))
    assert q.dropped == 1000 - kept and 650 < kept < 850
    assert q.due(9_999_999) == []  # nothing before the 10 ms minimum
    released = q.due(40_000_000)
    assert len(released) == kept and len(q) == 0


def test_same_model_object_serves_both_uses():
    inj = DelayInjector(InjectionConfig(kind="fixed", steps=2, dt_s=0.1))
    q = TimedDelayQueue(inj)
    q.push("m", now_ns=0)
    assert q.due(199_999_999) == [] and q.due(200_000_000) == ["m"]
    line = StepDelayLine(inj, 2, 1)
    ages = [line.step(t, np.zeros((1, 2, 1)))[1][0, 0, 1] for t in range(3)]
    assert ages[-1] == pytest.approx(0.2)
