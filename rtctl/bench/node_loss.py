"""`rtctl bench node_loss --out DIR`: the policy actor's node is lost mid-run (issue 15's drill, one row).

A two-node cluster on this host (`ray.cluster_utils.Cluster`: a head, and a worker node offering the
resource `gpu_server` the actor asks for), `rtctl run`'s `execute()` with the scripted expert in the actor,
the worker node removed 2 s into the loop. Figures on the host's monotonic clock, from the run's own events:
node removed → `policy_actor_failed` (Ray's detection: the node is another Ray node, so rtctl's own
"is the worker's process gone" check does not apply), → `policy_actor_lost` (``actor.unavailable_timeout_s``,
30 s by default; `--quick` uses 5 s), → the loop's `stopped` event.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from rtctl.report.runfolder import read_events, write_rows


def run(out: Path, quick: bool = False) -> list[dict]:
    import ray
    from ray.cluster_utils import Cluster

    from rtctl.config import parse_config
    from rtctl.runtime.actor_pool import PolicyLost
    from rtctl.runtime.runner import RunConfig, execute, make_driver

    timeout_s = 5.0 if quick else 30.0
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1, resources={"gpu_server": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    run_dir = Path(tempfile.mkdtemp()) / "run"
    cfg = parse_config({"duration_s": 120, "plots": False, "driver": {"type": "sim_arm", "task": "reach"},
                        "policy": {"type": "expert", "v_max": 1.0},
                        "actor": {"enabled": True, "resource": "gpu_server", "num_cpus": 0.5,
                                  "unavailable_timeout_s": timeout_s},
                        "scheduler": {"mode": "async_rollforward", "exec_steps": 25}}, RunConfig, "node_loss")
    t: dict[str, int] = {}

    def remove_node() -> None:
        while not any(e["event"] == "loop_started" for e in read_events(run_dir)):
            time.sleep(0.1)
        time.sleep(2.0)
        t["removed"] = time.monotonic_ns()
        cluster.remove_node(worker)

    threading.Thread(target=remove_node, daemon=True).start()
    outcome = "completed"
    try:
        execute(cfg, make_driver(cfg), None, run_dir, progress=False)
    except PolicyLost as err:
        outcome = f"PolicyLost: {err}"
    finally:
        ray.shutdown()
        cluster.shutdown()
    ev = {e["event"]: e for e in read_events(run_dir)}
    since = (lambda k: round((ev[k]["t_ns"] - t["removed"]) / 1e9, 3) if k in ev and "removed" in t else None)
    row = {"unavailable_timeout_s": timeout_s, "failed_after_s": since("policy_actor_failed"),
           "lost_after_s": since("policy_actor_lost"), "stopped_after_s": since("stopped"), "outcome": outcome[:160]}
    print(row, flush=True)
    write_rows(Path(out) / "results.json", [row])
    return [row]
