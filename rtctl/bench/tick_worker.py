"""One repeat of `rtctl bench tick`, in its own process: prints one JSON line of results."""
from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np


def _busy_model_actor():
    import ray

    @ray.remote(num_cpus=1)
    class BusyModel:
        """A torch MLP whose forward is calibrated to ~100 ms on one thread: a stand-in for a VLA."""

        def __init__(self, target_ms: float = 100.0) -> None:
            import os

            import torch

            torch.set_num_threads(1)
            if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
                os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:-1])  # off the tick's core
            self.torch = torch
            self.net = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(8)])
            self.x = torch.randn(32, 1024)
            with torch.no_grad():
                self.net(self.x)
                t0 = time.perf_counter()
                for _ in range(5):
                    self.net(self.x)
                per = (time.perf_counter() - t0) / 5
            self.reps = max(1, int(round(target_ms / 1000.0 / per)))

        def predict(self, obs):
            with self.torch.no_grad():
                for _ in range(self.reps):
                    self.net(self.x)
            return np.zeros((50, 6))

        def rss(self) -> float:
            from rtctl.report.runfolder import peak_rss_mb

            return peak_rss_mb()

    return BusyModel


def main(args: dict) -> dict:
    from rtctl.drivers.sim_arm import SimArmDriver
    from rtctl.report.runfolder import RunFolder, peak_rss_mb
    from rtctl.runtime.tick import TickConfig, run_loop

    rate = float(args["rate_hz"])
    cfg = TickConfig(rate_hz=rate, pin_cpu=args["pin_cpu"], gc_pause=args["gc_pause"],
                     switch_interval_us=args["switch_interval_us"])
    driver = SimArmDriver(task="reach", rate_hz=rate, seed=0, episode_s=3600.0)
    driver.connect()
    hold = driver.read()["state"].copy()
    chunk = hold + np.linspace(0, 0.05, 50)[:, None] * np.sin(np.arange(6))[None]
    ray = actor = ref = None
    latencies: list[float] = []
    t_sub = 0.0
    if args["load"] == "inference":
        import ray as _ray

        ray = _ray
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        actor = _busy_model_actor().remote()
        ray.get(actor.predict.remote(None))
    folder = RunFolder(tempfile.mkdtemp(prefix="rtctl-bench-tick-"), "bench: tick\n")

    def work(timing) -> bool:
        nonlocal ref, t_sub
        obs = driver.read()
        if actor is not None:
            if ref is not None:
                ready, _ = ray.wait([ref], timeout=0)
                if ready:
                    latencies.append((time.perf_counter() - t_sub) * 1e3)
                    ref = None
            if ref is None:
                t_sub = time.perf_counter()
                ref = actor.predict.remote({"state": obs["state"], "target": obs["target"]})
        cmd = chunk[timing.index % len(chunk)]
        applied = driver.write(cmd)
        folder.log({"tick": timing.index, "state": obs["state"], "command": cmd, "applied": applied})
        return True

    stats = run_loop(cfg, work, duration_s=float(args["duration_s"]))
    folder.close({})
    out = stats.summary()
    out["peak_rss_mb"] = peak_rss_mb()
    if actor is not None:
        out["actor_peak_rss_mb"] = ray.get(actor.rss.remote())
        out["actor_latency_ms_p50"] = float(np.median(latencies)) if latencies else None
        ray.shutdown()
    driver.disconnect()
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
