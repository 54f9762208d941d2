"""The core must import and run with lerobot unimportable (it is only the optional extra)."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import importlib.abc, sys

    class BlockLeRobot(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "lerobot" or name.startswith("lerobot."):
                raise ImportError("lerobot is blocked for this test")
            return None

    sys.meta_path.insert(0, BlockLeRobot())
    try:
        import lerobot  # noqa: F401
        raise SystemExit("lerobot should be blocked")
    except ImportError:
        pass
    import rtctl, rtctl.cli, rtctl.runtime.runner, rtctl.safety, rtctl.sim, rtctl.drivers, rtctl.policies
    from rtctl.chunking.scheduler import ChunkScheduler
    from rtctl.runtime.inference import InlineClient
    from rtctl.runtime.loop import ControlLoop
    from rtctl.drivers.sim_arm import SimArmDriver
    from rtctl.runtime.policies import PolicyConfig, make_policy

    d = SimArmDriver("reach", 30.0, seed=0)
    d.connect()
    client = InlineClient(make_policy(PolicyConfig(v_max=1.0), 30.0), delay_ticks=2)
    loop = ControlLoop(d, lambda: ChunkScheduler("async_rollforward", 50, 25, d.spec.action_low,
                                                 d.spec.action_high), client, 30.0, episodes=1)
    k = 0
    while loop.tick(k):
        k += 1
    assert loop.episodes and loop.episodes[0].success, loop.episodes
    assert "lerobot" not in sys.modules
    print("ok", k)
''')


def test_core_runs_without_lerobot():
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("ok")


def test_rtctl_package_import_is_light():
    code = "import sys, rtctl, rtctl.config, rtctl.safety; print(sorted(m for m in ('torch','ray','mujoco') if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
