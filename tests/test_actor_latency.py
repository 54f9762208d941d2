"""Injected actor latency (seeded draws, config errors) and the per-request latency figures of a real actor."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtctl.runtime.actor_latency import ExtraLatencyConfig, resolve_extra_latency, sample_extra_latency_ms
from rtctl.config import ConfigError, load_config
from rtctl.runtime.ray_client import ActorConfig, RayActorClient
from rtctl.runtime.policies import PolicyConfig

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("inference_model_ms_p50", "inference_model_ms_p95", "inference_round_trip_ms_p50",
        "inference_round_trip_ms_p95", "inference_available_ms_p50", "inference_available_ms_p95",
        "inference_queue_ms_p95", "inference_requests")


def _draws(cfg: ExtraLatencyConfig, n: int = 50, dt_s: float = 0.5) -> list[float]:
    rng = np.random.default_rng(cfg.seed)
    return [sample_extra_latency_ms(cfg, rng, i * dt_s) for i in range(n)]


def test_draws_are_seeded_clipped_and_drift():
    normal = ExtraLatencyConfig(kind="normal", ms=120, std_ms=40, min_ms=60, max_ms=250, seed=7)
    a, b = _draws(normal), _draws(normal)
    assert a == b  # same seed, same sequence
    assert a != _draws(normal.model_copy(update={"seed": 8}))
    assert min(a) >= 60 and max(a) <= 250 and len(set(a)) > 10
    assert _draws(ExtraLatencyConfig(ms=42)) == [42.0] * 50  # constant draws no randomness
    drift = _draws(ExtraLatencyConfig(kind="drift", ms=100, drift_ms_per_s=6, max_ms=200), n=40)
    assert drift[0] == 100 and drift[10] == pytest.approx(130) and drift[-1] == 200  # 5 s → +30 ms; clipped
    jittered = _draws(ExtraLatencyConfig(kind="drift", ms=100, std_ms=5, drift_ms_per_s=-4, seed=1), n=40)
    assert np.mean(jittered[-10:]) < np.mean(jittered[:10])  # the mean drifts down


def _load(tmp_path, text: str):
    from rtctl.runtime.runner import RunConfig

    p = tmp_path / "c.yaml"
    p.write_text(text)
    return load_config(p, RunConfig)


@pytest.mark.parametrize("section, key", [
    ("{kind: constant, ms: 50, std_ms: 5}", "actor.extra_latency.std_ms"),
    ("{kind: normal, ms: 50, min_ms: 80, max_ms: 60}", "actor.extra_latency.max_ms"),
    ("{kind: normal, ms: 50, drift_ms_per_s: 2}", "actor.extra_latency.drift_ms_per_s"),
    ("{kind: gamma, ms: 50}", "actor.extra_latency.kind"),
])
def test_bad_extra_latency_is_one_line_naming_the_key(tmp_path, section, key):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"actor: {{enabled: true, extra_latency: {section}}}\n")
    problems = str(err.value).splitlines()[1:]
    assert len(problems) == 1 and f"'{key}'" in problems[0]


def test_policy_extra_latency_ms_is_the_constant_form_and_both_is_an_error(tmp_path):
    cfg = _load(tmp_path, "policy: {extra_latency_ms: 60}\nactor: {enabled: true}\n")
    assert resolve_extra_latency(cfg.policy, cfg.actor) == ExtraLatencyConfig(kind="constant", ms=60)
    cfg = _load(tmp_path, "actor: {enabled: true, extra_latency: {kind: normal, ms: 60, std_ms: 9}}\n")
    assert resolve_extra_latency(cfg.policy, cfg.actor).std_ms == 9
    cfg = _load(tmp_path, "policy: {extra_latency_ms: 60}\nactor: {extra_latency: {kind: normal, ms: 60}}\n")
    with pytest.raises(ConfigError) as err:
        resolve_extra_latency(cfg.policy, cfg.actor)
    assert len(str(err.value).splitlines()) == 1 and "policy.extra_latency_ms" in str(err.value)


def test_round_trip_uses_the_actor_clock_only_on_the_same_host():
    from rtctl.runtime.ray_client import RequestTiming, summarize_timings

    ms = 1_000_000
    here = RequestTiming(0, 33 * ms, 1 * ms, 2 * ms, 4 * ms, 5 * ms, 1.0, same_host=True)
    assert (here.model_ms, here.queue_ms, here.round_trip_ms, here.available_ms) == (2.0, 1.0, 5.0, 33.0)
    there = RequestTiming(0, 33 * ms, 10**15, 10**15 + 2 * ms, 10**15 + 4 * ms, 10**15 + 5 * ms, 1.0, same_host=False)
    assert there.model_ms == 2.0 and there.round_trip_ms == 33.0  # another node's clock: only its durations
    s = summarize_timings([there])
    assert s["inference_round_trip_clock"] == "poll" and s["inference_requests"] == 1
    empty = summarize_timings([])
    assert empty["inference_requests"] == 0 and all(empty[k] is None for k in KEYS[:-1])


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_latency_summary_from_the_actors_timestamps(ray_local):
    from rtctl.chunking.scheduler import Request
    from rtctl.drivers.sim_arm import SimArmDriver

    driver = SimArmDriver("reach", 30.0, seed=1)
    driver.connect()
    client = RayActorClient(PolicyConfig(type="expert"), 30.0,
                            ActorConfig(enabled=True, extra_latency={"kind": "constant", "ms": 30}), max_concurrency=2)
    try:
        assert client.same_host and client.latency_summary()["inference_requests"] == 0
        obs = driver.read()
        for i in range(4):
            client.submit(Request(i, 0, None, np.asarray(obs["state"], float)), obs)
        got = []
        deadline = time.monotonic() + 120
        while len(got) < 4 and time.monotonic() < deadline:
            got += client.poll(0)
            time.sleep(0.01)
        assert sorted(a.request_id for a in got) == [0, 1, 2, 3]
        assert all(a.actions is not None and a.actions.shape[1] == 6 for a in got)
        for t in client.timings:
            assert t.submit_ns <= t.recv_ns <= t.model_start_ns <= t.model_end_ns <= t.done_ns <= t.available_ns
            assert t.model_ms + t.injected_ms >= 30.0 - 1e-3  # the sleep tops the model up to the draw
        s = client.latency_summary()
        assert all(s[k] is not None for k in KEYS) and s["inference_requests"] == 4
        assert s["inference_model_ms_p50"] <= s["inference_round_trip_ms_p50"] <= s["inference_available_ms_p50"]
        assert s["inference_model_ms_p95"] <= s["inference_round_trip_ms_p95"] <= s["inference_available_ms_p95"]
        assert s["inference_queue_ms_p95"] >= 0 and s["inference_round_trip_clock"] == "host"
    finally:
        client.close()
        driver.disconnect()


def test_prestarted_actor_is_taken_over_by_the_run(ray_local, tmp_path):
    from rtctl.runtime import ray_start
    from rtctl.runtime.runner import RunConfig

    cfg = RunConfig.model_validate({"actor": {"enabled": True}})
    ray_start.prestart(cfg)
    start = ray_start.actor_start_for(cfg)
    try:
        assert start.key == ray_start._key(cfg) and ray_start._pending is None
        client = start.result()
        assert client.startup is start.clock and start.clock.ray == "reused"
        phases = client.startup_s()
        assert phases["ray_init"] is not None and phases["actor_create"] is not None
    finally:
        start.close()


def test_cold_cli_run_starts_its_own_ray_and_sigterm_stops_it_safely(tmp_path):
    """`rtctl run` in a fresh process: Ray started off the main thread must outlive its thread, the run
    must answer requests, and SIGTERM must still unwind into the safe stop (summary written)."""
    cfg = tmp_path / "actor.yaml"
    cfg.write_text("duration_s: 120\npolicy: {type: expert, v_max: 0.5}\nactor: {enabled: true}\n"
                   "scheduler: {mode: async_rollforward}\nplots: false\n")
    out = tmp_path / "run"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen([sys.executable, "-m", "rtctl.cli", "run", str(cfg), "--out", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        log = out / "log.jsonl"
        # rows are flushed every second once the loop runs; wait for a few seconds of them
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and log.stat().st_size > 0 and sum(1 for _ in log.open()) >= 60:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    s = json.loads((out / "summary.json").read_text())
    assert s["stopped_by"].startswith("terminated (SIGTERM)")  # a clean stop, as Ctrl-C
    assert s["counts"]["chunks"] >= 1
    started = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()
               if json.loads(x)["event"] == "policy_actor_started"]
    assert started and started[0]["startup_s"]["ray"] == "started"
