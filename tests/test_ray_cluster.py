"""Ray placement that fails clearly: a wrong head address and a resource no node offers are one line and exit
2 within the start-up limit, not a hang; a policy actor that stays unavailable stops the run (its bookkeeping
on virtual time). Each CLI case starts (at most) its own local Ray and ends it with the run."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RTCTL = [sys.executable, "-m", "rtctl.cli"]


def _run(tmp_path, actor: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("duration_s: 3\nplots: false\ndriver: {type: sim_arm, task: reach}\n"
                   f"policy: {{type: expert, v_max: 1.0}}\nactor: {{enabled: true, {actor}}}\n")
    return subprocess.run(RTCTL + ["run", str(cfg), "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)


def test_a_wrong_head_address_is_one_line_before_anything_starts(tmp_path):
    p = _run(tmp_path, "address: '127.0.0.1:9'")  # the discard port: nothing listens
    lines = [x for x in p.stderr.strip().splitlines() if x.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert "127.0.0.1:9" in lines[0] and "ray start --head" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_resource_no_node_offers_is_one_line_naming_what_exists(tmp_path):
    p = _run(tmp_path, "resource: gpu_servr")
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2, p.stderr[-2000:]
    assert "'gpu_servr' is offered by no node" in last and "CPU" in last


def test_an_actor_unavailable_past_the_limit_is_lost():
    from rtctl.runtime.actor_pool import ActorPool, PolicyLost

    events = []
    pool = ActorPool(None, ["a"], [{"pid": 10}], lambda kind, **kw: events.append((kind, kw)),
                     unavailable_timeout_s=30.0)
    pool.failed(pool.serving, RuntimeError("node died"), 0, pid=10)
    pool.check_lost(29_000_000_000)  # still within the limit: Ray may place it on another node
    with pytest.raises(PolicyLost, match="no answer for 30.0 s"):
        pool.check_lost(30_000_000_000)
    assert [k for k, _ in events] == ["policy_actor_failed", "policy_actor_lost"]


def test_rollout_placement_speaks_the_actors_vocabulary():
    """Trainers take address / resource / fractional CPUs like the policy actor; a wrong address or an
    absent resource is one line before any worker starts (MARL used to refuse `rollout.address`)."""
    import ray

    from rtctl.config import ConfigError
    from rtctl.train.marl.config import MarlConfig
    from rtctl.train.sections import RolloutConfig, start_workers

    cfg = MarlConfig.model_validate({"rollout": {"address": "127.0.0.1:9", "resource": "x", "cpus_per_worker": 0.25}})
    assert cfg.rollout.cpus_per_worker == 0.25
    with pytest.raises(ConfigError, match="'127.0.0.1:9': no Ray head answers"):
        start_workers(cfg.rollout, object, [()])
    assert not ray.is_initialized()
    try:
        with pytest.raises(ConfigError, match="rollout.resource 'rollout_node' is offered by no node"):
            start_workers(RolloutConfig(resource="rollout_node", num_cpus=1), object, [()])
    finally:
        ray.shutdown()
