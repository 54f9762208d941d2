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
