"""Time to first command of `rtctl run` / `rtctl deploy` with the policy in a Ray actor, from a cold process.

Each repeat launches the real command line in a fresh process (no Ray of its own running, no first-use
training: the scripted expert) and times, on this host's monotonic clock:
* ``first_command_s``: launch → the run's progress bar appears on stderr (drawn right before the tick
  loop's clock starts) + the end of tick 0 on that clock (log.jsonl ``t_end_ms``: tick 0 writes the first
  command);
* ``first_goal_s`` (deploy only): launch → the first Goal_Position packet the servo-bus emulator logged
  (the bus-level truth, `emulator_goals.jsonl` in the run folder);
* the run's own phases (`policy_actor_started` event, ``startup_s``: rtctl.runtime.ray_start.StartupClock).
Variants: ``cold`` (the run starts its local cluster), ``prestart`` (Ray begun by `rtctl.runtime.ray_start.prestart`
right after the config loads, as run()/deploy.main would), ``warm`` (joins a cluster already up, via
``actor.address``). Usage: ``python -m rtctl.bench.actor_startup OUT [--quick]``.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from rtctl.bench.common import spread

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("before_actor_start", "ray_init", "actor_create", "policy_load", "driver_connect", "wait_for_actor",
          "warm_up", "ready")


def _configs(tmp: Path, address: Optional[str]) -> dict[str, tuple[str, Path]]:
    """(command, config) per path: arm_sim with the actor on, and the emulated SO-101 deploy."""
    run_cfg = yaml.safe_load((ROOT / "configs" / "arm_sim.yaml").read_text())
    dep_cfg = yaml.safe_load((ROOT / "configs" / "so101_emulated.yaml").read_text())
    run_cfg["actor"] = {"enabled": True}
    for cfg in (run_cfg, dep_cfg):
        cfg["actor"] = {**cfg.get("actor", {}), **({"address": address} if address else {})}
        cfg["plots"] = False
    dep_cfg["driver"]["robot"]["calibration_dir"] = str(ROOT / "configs" / "calibration")
    dep_cfg["estop"] = {"key": False, "address": None}
    out = {}
    for name, cmd, cfg in (("run", "run", run_cfg), ("deploy", "deploy", dep_cfg)):
        p = tmp / f"{name}.yaml"
        p.write_text(yaml.safe_dump(cfg, sort_keys=False))
        out[name] = (cmd, p)
    return out


def _prestarted(cmd: str, config: str, out: str, duration: str) -> None:
    """The command with `prestart` called right after the config is resolved (what run()/deploy.main would do)."""
    from rtctl.runtime import ray_start
    from rtctl.config import load_config
    from rtctl.train.checkpoints import resolve_checkpoint

    if cmd == "deploy":
        from rtctl.runtime.deploy import DeployConfig as model
        from rtctl.runtime.deploy import main as entry
    else:
        from rtctl.runtime.runner import RunConfig as model
        from rtctl.runtime.runner import run as entry
    cfg = load_config(config, model, {"duration_s": float(duration)})
    cfg.policy = resolve_checkpoint(cfg.policy)
    ray_start.prestart(cfg)
    entry(config, out, float(duration), resolve_policy=resolve_checkpoint)


def one(cmd: str, config: Path, out: Path, prestart: bool, duration_s: float = 2.0,
        timeout_s: float = 300.0, tree: Optional[Path] = None) -> dict[str, Any]:
    """One cold launch; the figures of the module docstring. ``tree``: run another checkout of rtctl instead
    (an older commit, for a before/after; its packages mapped as this one's), first on PYTHONPATH."""
    if prestart:
        argv = [sys.executable, "-m", "rtctl.bench.actor_startup", "--prestarted", cmd, str(config), str(out),
                str(duration_s)]
    else:
        argv = [sys.executable, "-m", "rtctl.cli", cmd, str(config), "--out", str(out), "--duration", str(duration_s)]
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"), PYTHONUNBUFFERED="1")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    t_launch = time.monotonic_ns()
    proc = subprocess.Popen(argv, cwd=tree or ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t_bar, seen = None, b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            seen = (seen + chunk)[-4096:]
            if t_bar is None and b"run:" in seen:
                t_bar = time.monotonic_ns()
    rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    if rc != 0:
        raise RuntimeError(f"{cmd} exited {rc}: {seen[-1500:].decode(errors='replace')}")
    # The bar is drawn just before the loop's clock starts; tick 0 ends (its command written) t_end_ms later.
    with (out / "log.jsonl").open() as f:
        first = json.loads(f.readline())
    row: dict[str, Any] = {"first_command_s": (t_bar - t_launch) / 1e9 + first["t_end_ms"] / 1e3 if t_bar else None}
    goals = out / "emulator_goals.jsonl"
    if goals.exists() and goals.stat().st_size:
        row["first_goal_s"] = (json.loads(goals.open().readline())["t_ns"] - t_launch) / 1e9
    for line in (out / "events.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] == "policy_actor_started":
            row.update(ev.get("startup_s") or {})
    return row


class WarmCluster:
    """A Ray cluster already up (its own process, ended by us), for the ``actor.address`` rows."""

    def __init__(self) -> None:
        code = ("import signal, sys\nfrom ray.cluster_utils import Cluster\n"
                "c = Cluster(initialize_head=True, head_node_args={'num_cpus': 2, 'include_dashboard': False})\n"
                "signal.signal(signal.SIGTERM, lambda *a: (c.shutdown(), sys.exit(0)))\n"
                "print(c.address, flush=True)\nsignal.pause()\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self.address = self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run(out_dir: Path, quick: bool) -> list[dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    repeats = 1 if quick else 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = [("cold", False), ("prestart", True), ("warm", False)]
        warm: Optional[WarmCluster] = None
        try:
            for variant, pre in plan:
                if variant == "warm":
                    warm = WarmCluster()
                for name, (cmd, cfg) in _configs(Path(tmp), warm.address if warm else None).items():
                    if pre and cmd == "deploy":
                        continue  # `rtctl deploy` prestarts by itself: its cold row is the prestarted path
                    reps = [one(cmd, cfg, out_dir / f"{name}-{variant}-{i}", pre) for i in range(repeats)]
                    row = {"command": f"rtctl {cmd}", "variant": variant, "repeats": repeats}
                    for key in ("first_command_s", "first_goal_s", *PHASES):
                        s = spread([r.get(key) for r in reps])
                        if s["n"]:
                            row[key] = {k: round(v, 3) for k, v in s.items() if k != "n"}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if warm is not None:
                warm.close()
    (out_dir / "startup.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "--prestarted":
        _prestarted(*sys.argv[2:6])
    else:
        run(Path(sys.argv[1]), "--quick" in sys.argv)
