"""The policy actor is placed on another node by a custom resource (a GPU server, say)."""
import pytest

from rtctl.runtime.ray_client import ActorConfig, RayActorClient
from rtctl.runtime.policies import PolicyConfig


@pytest.fixture
def two_node_cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1, resources={"gpu_server": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_actor_lands_on_the_node_with_the_named_resource(two_node_cluster):
    cluster, worker = two_node_cluster
    client = RayActorClient(PolicyConfig(type="expert"), 30.0,
                            ActorConfig(enabled=True, resource="gpu_server", num_cpus=0.5))
    try:
        assert client.info["node_id"] == worker.node_id
        assert client.info["node_id"] != cluster.head_node.node_id
    finally:
        client.close()


def test_losing_the_actors_node_stops_the_run_with_policy_actor_lost(two_node_cluster, tmp_path):
    """The node hosting the policy actor dies and none with its resource comes back: the arm holds, the
    failure is logged as it happens, and after actor.unavailable_timeout_s the run stops safely
    (`policy_actor_lost`, PolicyLost: the CLI's exit 6) — it used to hold until the end of the run."""
    import threading

    from rtctl.config import parse_config
    from rtctl.report.runfolder import read_events
    from rtctl.runtime.actor_pool import PolicyLost
    from rtctl.runtime.runner import RunConfig, execute, make_driver

    cluster, worker = two_node_cluster
    cfg = parse_config({"duration_s": 60, "plots": False, "driver": {"type": "sim_arm", "task": "reach"},
                        "policy": {"type": "expert", "v_max": 1.0},
                        "actor": {"enabled": True, "resource": "gpu_server", "num_cpus": 0.5,
                                  "unavailable_timeout_s": 2.0},
                        "scheduler": {"mode": "async_rollforward", "exec_steps": 25}}, RunConfig, "test")
    out = tmp_path / "run"

    def kill_the_node_once_running():
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(e["event"] == "loop_started" for e in read_events(out)):
            time.sleep(0.1)
        time.sleep(1.0)
        cluster.remove_node(worker)

    killer = threading.Thread(target=kill_the_node_once_running, daemon=True)
    killer.start()
    with pytest.raises(PolicyLost, match="policy actor lost"):
        execute(cfg, make_driver(cfg), None, out, progress=False)
    killer.join(timeout=30)
    kinds = [e["event"] for e in read_events(out)]
    assert "policy_actor_failed" in kinds and kinds.index("policy_actor_failed") < kinds.index("policy_actor_lost")
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"].startswith("PolicyLost") and summary["actor"]["restarts"] == 0
