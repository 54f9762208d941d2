"""Async deployment with a real Ray actor and real MuJoCo: end to end, actor death, a too-slow actor."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtctl.chunking.delay import DelayEstimator
from rtctl.chunking.scheduler import ChunkScheduler
from rtctl.runtime.loop import ControlLoop
from rtctl.drivers.sim_arm import SimArmDriver
from rtctl.runtime.ray_client import ActorConfig, RayActorClient
from rtctl.runtime.policies import PolicyConfig
from rtctl.runtime.tick import TickConfig, run_loop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _loop(task, latency_ms, mode="async_rollforward", events=None, standby=0):
    driver = SimArmDriver(task, 30.0, seed=3)
    driver.connect()
    client = RayActorClient(PolicyConfig(type="expert", v_max=1.0, extra_latency_ms=latency_ms), 30.0,
                            ActorConfig(enabled=True, max_restarts=3, standby=standby), max_concurrency=2,
                            on_event=lambda kind, **kw: events.append((kind, kw)) if events is not None else None)
    est = DelayEstimator()
    loop = ControlLoop(driver, lambda: ChunkScheduler(mode, 50, 25, driver.spec.action_low,
                                                      driver.spec.action_high, delay=est), client, 30.0,
                       on_event=lambda kind, **kw: events.append((kind, kw)) if events is not None else None)
    return driver, client, loop


def _kill_active_and_run(loop, client, events, until_event):
    """kill -9 the serving actor's worker at tick 45; run until ``until_event`` was logged and chunks flowed
    again (bounded by ticks, not by time: a restart can take many seconds on a loaded box)."""
    commands, at_kill = [], {}

    def work(t):
        if t.index == 45:
            at_kill["chunks"] = loop.counts()["chunks"]
            at_kill["pid"] = client.pool.serving.pid
            os.kill(at_kill["pid"], signal.SIGKILL)
        ok = loop.tick(t.index)
        commands.append((loop.last_row["episode"], loop.last_row["applied"].copy()))
        seen = any(kind == until_event for kind, _ in events)
        return ok and not (t.index > 45 and seen and loop.counts()["chunks"] >= at_kill["chunks"] + 2)

    run_loop(TickConfig(rate_hz=30), work, max_ticks=2400)
    steps = [np.abs(b - a).max() for (ea, a), (eb, b) in zip(commands, commands[1:]) if ea == eb]
    return at_kill, steps


def test_end_to_end_async_run_with_ray_actor_and_mujoco(tmp_path, ray_local):
    cfg = tmp_path / "async.yaml"
    cfg.write_text("""
duration_s: 6
driver: {type: sim_arm, task: whack}
policy: {type: expert, v_max: 1.0, extra_latency_ms: 100}
actor: {enabled: true}
scheduler: {mode: async_rollforward, exec_steps: 25}
""")
    from rtctl.runtime.runner import run

    out = run(cfg, tmp_path / "run", progress=False)
    s = json.loads((out / "summary.json").read_text())
    assert s["stopped_by"] == "completed" and s["ticks"] == 180
    assert s["counts"]["chunks"] >= 5
    assert s["delay_steps_measured"] >= 3  # ~100 ms at 30 Hz, measured online
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert sum(r["seam"] for r in rows) >= 5
    events = [json.loads(x)["event"] for x in (out / "events.jsonl").read_text().splitlines()]
    assert "policy_actor_started" in events and "reaction" in events
    assert (out / "plots" / "queue_and_delay.png").exists()


def test_killed_actor_holds_restarts_and_the_run_continues(ray_local):
    events = []
    driver, client, loop = _loop("reach", 50, events=events)
    at_kill, steps = _kill_active_and_run(loop, client, events, "policy_actor_recovered")
    kinds = [k for k, _ in events if k.startswith("policy_actor")]
    # one death is one failure and one restart, however many requests it took with it
    assert kinds.count("policy_actor_failed") == 1 and client.restarts == 1, kinds
    assert kinds.index("policy_actor_failed") < kinds.index("policy_actor_restarted") < kinds.index(
        "policy_actor_recovered")
    restarted = dict(events)["policy_actor_restarted"]
    assert restarted["old_pid"] == at_kill["pid"] != restarted["pid"] and restarted["down_s"] > 0
    assert loop.counts()["failed_inferences"] >= 1
    assert loop.counts()["chunks"] >= at_kill["chunks"] + 2  # chunks kept coming after the restart
    assert max(steps) < 0.1  # held, never jumped (episode resets in sim excluded)
    client.close()


def test_warm_standby_takes_over_and_the_dead_actor_comes_back_as_standby(ray_local):
    events = []
    driver, client, loop = _loop("reach", 50, events=events, standby=1)
    standby_pid = client.pool.slots[1].pid
    at_kill, steps = _kill_active_and_run(loop, client, events, "policy_actor_restarted")
    kinds = [k for k, _ in events if k.startswith("policy_actor")]
    assert kinds.count("policy_actor_failed") == 1 and client.restarts == 1, kinds
    assert kinds.index("policy_actor_failed") < kinds.index("policy_actor_takeover") < kinds.index(
        "policy_actor_recovered")
    ev = dict(events)
    assert ev["policy_actor_takeover"]["pid"] == standby_pid and ev["policy_actor_recovered"]["via"] == "standby"
    assert client.pool.serving.pid == standby_pid  # it kept serving after the dead one came back
    assert ev["policy_actor_restarted"]["old_pid"] == at_kill["pid"] and ev["policy_actor_restarted"]["role"] == "standby"
    assert client.pool.summary()["takeovers"] == 1
    assert max(steps) < 0.1
    client.close()


def test_actor_slower_than_the_chunk_makes_the_arm_hold(ray_local):
    # 1.2 s per chunk while a chunk lasts 25 ticks = 0.83 s; whack episodes outlast several chunks
    driver, client, loop = _loop("whack", 1200)
    run_loop(TickConfig(rate_hz=30), lambda t: loop.tick(t.index), max_ticks=180)
    counts = loop.counts()
    assert counts["starved_ticks"] > 0 and counts["chunks"] >= 2
    client.close()


def test_actor_pool_counts_one_failure_and_one_restart_per_death():
    """The bookkeeping alone (no Ray): an error that comes back from a worker already replaced is not a new
    failure (seen on a loaded box: a request's error arrived after the restarted worker had answered)."""
    from rtctl.runtime.actor_pool import ActorPool

    events = []
    pool = ActorPool(None, ["a", "b"], [{"pid": 10}, {"pid": 20}], lambda kind, **kw: events.append((kind, kw)))
    active = pool.serving
    pool.failed(active, RuntimeError("died"), 100, pid=10)
    pool.failed(active, RuntimeError("its other request"), 101, pid=10)
    assert pool.serving.pid == 20 and pool.takeovers == 1  # the standby took over at once
    pool.request_answered(100 + 200_000_000)  # 0.2 s after the failure
    pool.answered(active, 11, 300_000_000)  # Ray brought the dead one back (new pid): now the standby
    pool.failed(active, RuntimeError("late error of the old worker"), 300_000_001, pid=10)
    assert [k for k, _ in events] == ["policy_actor_failed", "policy_actor_takeover", "policy_actor_recovered",
                                      "policy_actor_restarted"]
    assert (pool.failures, pool.restarts) == (1, 1) and active.up and active.role == "standby"
    assert dict(events)["policy_actor_recovered"]["since_failure_s"] == 0.2
