"""Multistep rollouts on Ray: a short training on a two-node cluster on this host gives the same metrics
as in-process collection (episode seeds, not worker state, decide the data)."""
import numpy as np
import pytest

from rtctl.config import parse_config
from rtctl.train.multitask.config import MultitaskConfig
from rtctl.train.multitask.multistep import MultistepTrainer

CFG = {
    "seed": 5, "mode": "multistep",
    "env": {"kind": "gym", "gym_id": "Pendulum-v1"},
    "variations": {"grid": {"m": [0.7, 1.3], "l": [0.8, 1.2]}, "nominal": {"m": 1.0, "l": 1.0}},
    "tasks": {"schedule": "pruned", "prune_period": 2},
    "agent": {"hidden": [32, 32], "gamma": 0.95, "twin": True, "batch_per_task": 16},
    "multistep": {"budget_env_steps": 2000, "learning_starts": 400, "updates_per_step": 0.02,
                  "eval_every_steps": 1000},
    "log": {"tensorboard": False, "progress": False},
}


def run(rollout: dict) -> tuple[list[dict], list[str]]:
    trainer = MultistepTrainer(parse_config({**CFG, "rollout": rollout}, MultitaskConfig))
    try:
        while not trainer.finished():
            trainer.step()
        return trainer.state.rows, trainer.pool.node_ids()
    finally:
        trainer.close()


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    # Both nodes run on this host. (Ray maps 127.0.0.1 to the host's own interface address when a driver
    # connects, so the nodes keep their default address, as in tests/test_ray_two_node.py.)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_two_node_cluster_training_matches_local(two_node_cluster):
    rows, nodes = run({"backend": "ray", "workers": 2, "address": two_node_cluster.address})
    assert len(set(nodes)) == 2, f"workers should spread over both nodes, got {nodes}"
    local_rows, _ = run({"backend": "local"})
    assert len(rows) == len(local_rows) >= 2
    for a, b in zip(rows, local_rows):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])), (k, a[k], b[k])
