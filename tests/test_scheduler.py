"""Chunk scheduler: rollforward index arithmetic, merge, drop rules, hold on late chunk, quantization."""
import numpy as np
import pytest

from rtctl.chunking.delay import DelayEstimator
from rtctl.runtime.inference import InlineClient
from rtctl.chunking.merge import make_blend, make_merge
from rtctl.chunking.scheduler import Arrival, ChunkScheduler, quantize
from rtctl.policies.base import chunk_for

LOW, HIGH = -np.full(2, 100.0), np.full(2, 100.0)
STEP = np.array([0.1, -0.05])


class RampPolicy:
    """Row k = conditioning state + (k+1)·STEP: the chunk shows which state it was conditioned on."""

    chunk_size, action_dim = 10, 2

    def __init__(self):
        self.calls = []

    def reset(self):
        pass

    def predict_chunk(self, obs):
        self.calls.append(dict(obs))
        s = np.asarray(obs["state"], float)
        return chunk_for(obs, s + np.arange(1, self.chunk_size + 1)[:, None] * STEP)


def drive(mode, delay, ticks, K=6, H=10, q=1, est=None, n=2, state_fn=None, policy=None):
    """Run the scheduler against an in-process policy with a fixed delay; the 'robot' tracks commands
    one tick late (state = previous applied command), like a fast position servo."""
    policy = policy or RampPolicy()
    client = InlineClient(policy, delay_ticks=delay)
    s = ChunkScheduler(mode, H, K, LOW, HIGH, q=q, delay=est or DelayEstimator(override=delay),
                       max_in_flight=n)
    state = np.zeros(2)
    outs = []
    for t in range(ticks):
        obs = {"state": state.copy() if state_fn is None else state_fn(t, state)}
        out = s.step(t, obs, client.poll(t), client.submit)
        s.applied(out.command)
        outs.append(out)
        state = out.command.copy()
    return s, outs, policy


def test_sync_zero_delay_never_holds_and_replans_every_K():
    s, outs, pol = drive("sync", 0, 30)
    assert not any(o.hold for o in outs)
    assert [o.chunk_row for o in outs[:7]] == [0, 1, 2, 3, 4, 5, 0]
    assert len(pol.calls) == 5 and s.counts["chunks"] == 5


def test_sync_holds_during_inference():
    s, outs, _ = drive("sync", 3, 30)
    holds = [o.hold for o in outs]
    assert holds[:3] == [True, True, True] and holds[3:9] == [False] * 6 and holds[9:12] == [True] * 3
    # a held tick repeats the last applied command: no jump
    assert np.allclose(outs[10].command, outs[8].command)


def test_async_rollforward_conditions_on_the_command_at_the_switch_tick():
    s, outs, pol = drive("async_rollforward", 2, 40, K=6)
    starts = [r for r in s.requests.values()]
    second = starts[1]
    # bootstrap arrives at tick 2; chunk 0 runs ticks 2..7; successor launched at E − Δ = 4 ticks in (tick 6)
    assert second.launch_tick == 6 and second.start_tick == 8
    assert np.allclose(second.cond_state, outs[7].command)  # last command before the switch
    assert pol.calls[1]["tick"] == 8
    # no holds after the bootstrap, switch exactly at the start tick
    assert not any(o.hold for o in outs[2:])
    assert outs[8].seam and outs[8].chunk_row == 0
    # continuity: the first row of the new chunk is one STEP from the rolled-forward state
    assert np.allclose(outs[8].command - outs[7].command, STEP)


def test_naive_async_drops_the_rows_that_elapsed():
    s, outs, pol = drive("async", 2, 40, K=6)
    req = s.requests[1]
    assert req.start_tick == req.launch_tick == 6
    # arrives at tick 8: rows 0, 1 (ticks 6, 7) already elapsed on the old plan → switch with row 2
    assert outs[8].seam and outs[8].chunk_row == 2
    assert np.allclose(req.cond_state, outs[5].command)  # conditioned on the (stale) measured state


def test_late_chunk_holds_then_resumes_without_a_jump():
    est = DelayEstimator(override=1)  # the scheduler believes Δ = 1 but results take 4 ticks
    s, outs, _ = drive("async_rollforward", 4, 40, K=6, est=est)
    starved = [i for i, o in enumerate(outs) if o.starved]
    assert starved, "a late chunk must make the arm hold"
    for i in starved:
        assert np.allclose(outs[i].command, outs[i - 1].command)
    first_block_end = next(i for i in starved if i + 1 not in starved)
    resume = first_block_end + 1
    assert outs[resume].chunk_row == 0  # conditioned on the held state: start from row 0
    assert np.allclose(outs[resume].command - outs[resume - 1].command, STEP)
    assert s.counts["starved_ticks"] == len(starved)


def test_replan_keeps_several_in_flight_and_aligns_each_result():
    s, outs, pol = drive("replan_rollforward", 4, 60, K=6, H=10, n=2)
    assert max(o.in_flight for o in outs) == 2
    launches = [o.launched for o in outs if o.launched is not None]
    assert len(launches) > 10
    # every non-bootstrap request is rolled forward Δ ticks and conditioned on the plan there
    for r in launches[2:]:
        assert r.start_tick == r.launch_tick + 4
    seams = [i for i, o in enumerate(outs) if o.seam and i > 10]
    for i in seams:
        assert np.allclose(outs[i].command - outs[i - 1].command, STEP)  # perfectly continuous
    assert not any(o.hold for o in outs[10:])


def test_measured_delay_drives_the_launch_and_excludes_warmup():
    est = DelayEstimator(window=5, percentile=100, warmup=2)
    for d in (9, 9, 2, 3, 3):
        est.record(d)
    assert est.value == 3
    s, outs, _ = drive("async_rollforward", 3, 80, K=6, est=DelayEstimator(window=10, warmup=1))
    assert s.delay.value == 3
    assert not any(o.starved for o in outs[40:])


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e6])
def test_bad_chunks_are_rejected_counted_and_held(bad):
    class Bad(RampPolicy):
        def predict_chunk(self, obs):
            c = super().predict_chunk(obs)
            if len(self.calls) == 2:
                a = c.actions.copy()
                a[3, 1] = bad
                return chunk_for(obs, a)
            return c

    s, outs, pol = drive("async_rollforward", 2, 40, K=6, policy=Bad())
    assert s.counts["rejected_chunks"] == 1
    assert all(np.all(np.isfinite(o.command)) and np.all(np.abs(o.command) < 100) for o in outs)
    assert len(pol.calls) > 3  # it asked again


def test_failed_inference_holds_and_relaunches():
    s = ChunkScheduler("async_rollforward", 10, 6, LOW, HIGH, delay=DelayEstimator(override=2))
    pol = RampPolicy()
    pending = []

    def submit(req, obs):
        pending.append((req, pol.predict_chunk(obs).actions))
        return []

    out = s.step(0, {"state": np.zeros(2)}, [], submit)
    assert out.hold and len(pending) == 1
    req, _ = pending.pop()
    out = s.step(1, {"state": np.zeros(2)}, [Arrival(req.id, None)], submit)  # the actor died
    assert out.hold and s.counts["failed_inferences"] == 1 and len(pending) == 1


def test_quantization_takes_every_qth_row():
    a = np.arange(12, dtype=float)[:, None].repeat(2, 1)
    assert quantize(a, 2, "absolute")[:, 0].tolist() == [1, 3, 5, 7, 9, 11]
    assert quantize(a, 3, "delta")[:, 0].tolist() == [3, 12, 21, 30]
    s, outs, _ = drive("sync", 0, 12, K=6, q=2)
    assert [o.chunk_row for o in outs[:4]] == [0, 1, 2, 0]  # E = K // q = 3 ticks per chunk
    assert np.allclose(outs[1].command - outs[0].command, 2 * STEP)


def test_blend_merge_crossfades_from_old_to_new():
    old, new = np.zeros((6, 1)), np.ones((6, 1))
    out = make_blend(3)(old, new)
    assert np.allclose(out[:, 0], [0.25, 0.5, 0.75, 1, 1, 1])
    assert make_merge("hard")(old, new) is new
    with pytest.raises(ValueError):
        make_merge("average")


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="mode"):
        ChunkScheduler("fast", 10, 5, LOW, HIGH)
    with pytest.raises(ValueError, match="exec_steps"):
        ChunkScheduler("sync", 10, 11, LOW, HIGH)


def test_rollforward_rebases_on_the_command_actually_applied():
    """If the shield changed what was sent, the rolled-forward state follows what the arm really got."""
    pol = RampPolicy()
    client = InlineClient(pol, delay_ticks=2)
    s = ChunkScheduler("async_rollforward", 10, 6, LOW, HIGH, delay=DelayEstimator(override=2))
    shift = np.array([-0.3, 0.2])
    applied = []
    for t in range(12):
        out = s.step(t, {"state": np.zeros(2)}, client.poll(t), client.submit)
        sent = out.command + (shift if t == 5 else 0.0)  # a shield intervention on tick 5 only
        s.applied(sent)
        applied.append(sent)
    req = s.requests[1]  # launched at tick 6, start tick 8
    assert req.launch_tick == 6
    planned_7 = applied[5] - shift + 2 * STEP  # plan row for tick 7
    assert np.allclose(req.cond_state, planned_7 + shift)


class GoToGoalPolicy:
    """A target-conditioned policy with a speed limit: row k = state moved (k+1)·SPEED toward ``goal``
    (clamped there). Before the goal appears the goal is the start, so the arm rests; the goal appearing
    mid-run is the new information that must not lock the in-flight chains in phase."""

    chunk_size, action_dim, speed = 50, 2, 0.04

    def reset(self):
        pass

    def predict_chunk(self, obs):
        s, g = np.asarray(obs["state"], float), np.asarray(obs["goal"], float)
        d = g - s
        n = np.linalg.norm(d)
        k = np.arange(1, self.chunk_size + 1)[:, None]
        rows = s + (d / n) * np.minimum(k * self.speed, n) if n > 1e-12 else np.repeat(s[None], self.chunk_size, 0)
        return chunk_for(obs, rows)


@pytest.mark.parametrize("delay", [2, 4, 8])
@pytest.mark.parametrize("in_flight", [1, 2, 4])
def test_replan_without_staircase_on_a_perfect_tracking_plant(delay, in_flight):
    """Plant: state = last command. The goal appears at tick 10; the motion toward it must advance every
    tick (no tick-periodic zero steps): p95 step / median step inside the motion ≤ 2."""
    goal = np.array([3.0, -2.0])
    client = InlineClient(GoToGoalPolicy(), delay_ticks=delay)
    s = ChunkScheduler("replan_rollforward", 50, 25, LOW, HIGH, delay=DelayEstimator(override=delay),
                       max_in_flight=in_flight)
    state, cmds = np.zeros(2), []
    for t in range(160):
        obs = {"state": state.copy(), "goal": goal if t >= 10 else np.zeros(2)}
        out = s.step(t, obs, client.poll(t), client.submit)
        s.applied(out.command)
        state = out.command.copy()
        cmds.append(state)
    steps = np.linalg.norm(np.diff(np.array(cmds), axis=0), axis=1)
    moving = np.flatnonzero(steps > 1e-9)
    inside = steps[moving[0]:moving[-1] + 1]  # from the first to the last tick that moved
    assert np.allclose(cmds[-1], goal, atol=1e-6)
    assert np.percentile(inside, 95) / np.median(inside) <= 2.0, np.round(inside[:24], 3)
    assert np.mean(inside < 1e-9) < 0.05  # no stalls inside the motion


def _pushed_run(mode, push=(40, 60), offset=0.5, bound=0.1, ticks=100):
    """Perfect-tracking plant except that joint 0 is held at +offset from its command during ``push``."""
    client = InlineClient(RampPolicy(), delay_ticks=2)
    s = ChunkScheduler(mode, 10, 6, LOW, HIGH, delay=DelayEstimator(override=2), max_in_flight=2,
                       disturbance_bound=np.full(2, bound))
    state, outs, pushed_at = np.zeros(2), [], None
    for t in range(ticks):
        if t == push[0]:
            pushed_at = state.copy() + np.array([offset, 0.0])
        measured = pushed_at.copy() if push[0] <= t < push[1] else state.copy()
        out = s.step(t, {"state": measured}, client.poll(t), client.submit)
        s.applied(out.command)
        outs.append(out)
        state = out.command.copy()
    return s, outs, pushed_at


@pytest.mark.parametrize("mode", ["async_rollforward", "replan_rollforward"])
def test_disturbance_conditions_on_the_measured_state_at_once(mode):
    s, outs, pushed = _pushed_run(mode)
    events = [(i, o.disturbance) for i, o in enumerate(outs) if o.disturbance]
    assert events[0] == (40, "start") and events[-1][1] == "end" and events[-1][0] >= 60
    launched = outs[40].launched
    assert launched is not None and launched.meta.get("disturbance")
    assert np.allclose(launched.cond_state, pushed) and launched.start_tick is None
    # its row 0 runs on arrival (2 ticks later), continuing from the pushed state, not rebased
    assert outs[42].chunk_id == launched.id and outs[42].chunk_row == 0
    assert np.allclose(outs[42].command, pushed + STEP)
    assert s.counts["disturbances"] == 1


def test_no_disturbance_without_a_push():
    s, outs, _ = _pushed_run("async_rollforward", push=(1000, 1000))
    assert not any(o.disturbance for o in outs) and s.counts["disturbances"] == 0


def test_delay_window_is_time_based_and_forgets_a_stall():
    est = DelayEstimator(window=20, percentile=95, warmup=0, window_s=2.0, rate_hz=30.0)
    est.record(24)  # one 0.8 s actor stall
    for _ in range(2):
        est.advance(25)  # async_rollforward launches once per chunk (25 ticks)
        est.record(4)
    assert est.value == 24  # 50 ticks (1.7 s) after the stall: still inside the 2 s window
    est.advance(25)
    est.record(4)
    assert est.value == 4  # 75 ticks (2.5 s) after the stall: forgotten
    est.advance(1000)
    assert est.value == 4  # the newest sample is kept when no launch happened in the window


def test_delay_warmup_starts_from_the_measured_warmup_not_one_tick():
    est = DelayEstimator(warmup=2)
    assert est.value == 1  # nothing known
    est.set_initial(5)  # e.g. measured warm-up round trip
    assert est.value == 5
    est.record(9)  # lazy initialisation
    assert est.value == 9  # start late rather than starve
    est.record(7)
    est.record(3)
    assert est.value == 3
