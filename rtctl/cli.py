"""The `rtctl` command line. Subcommands import their heavy modules lazily so `rtctl --help` is instant."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rtctl: real-time control runtime for learned robot policies.")

# name → module with `run(out_dir, quick, **opts) -> rows` and optionally `setup(out_dir, quick, **opts)` (one-time
# training/caching, timed apart from the benchmark: `rtctl.bench.common.run_timed`)
BENCHES = {
    "tick": "rtctl.bench.tick",
    "async": "rtctl.bench.async_chunks",
    "async_shield": "rtctl.bench.async_shield",
    "shield": "rtctl.bench.shield",
    "multitask": "rtctl.bench.multitask",
    "v2v": "rtctl.bench.v2v",
    "marl": "rtctl.bench.marl",
    "lerobot_latency": "rtctl.bench.lerobot_latency",
    "async_lerobot": "rtctl.bench.async_lerobot",
    "marl_highway": "rtctl.bench.marl_highway",
    "disturbance": "rtctl.bench.disturbance",
    "actor_startup": "rtctl.bench.actor_startup",
    "faults": "rtctl.bench.faults",
    "node_loss": "rtctl.bench.node_loss",
}
# name → module with `main(config_path, out_dir=None) -> run folder`
TRAINERS = {
    "bc": "rtctl.train.bc.train",
    "multitask": "rtctl.train.multitask.train",
    "marl": "rtctl.train.marl.train",
    "lerobot_act": "rtctl.train.lerobot.act",
}


def _fail(msg: str, code: int) -> None:
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _guard(fn, *args, **kw):
    """Run a command; turn known failures into one clear line and an exit code, never a traceback."""
    from rtctl.config import ConfigError
    from rtctl.drivers.base import DriverError, EStopped
    from rtctl.report.runfolder import RunLogError, Terminated
    from rtctl.runtime.actor_pool import PolicyLost

    try:
        return fn(*args, **kw)
    except ConfigError as err:
        _fail(str(err), 2)
    except FileExistsError as err:  # a run folder that is already used: never overwrite a run
        _fail(str(err), 2)
    except EStopped as err:
        _fail(f"e-stop: {err} — the log was flushed", 5)
    except DriverError as err:
        safe = getattr(err, "safe_state", "the robot was stopped safely")
        _fail(f"driver fault: {err} — {safe}; the log was flushed", 3)
    except PolicyLost as err:
        _fail(f"{err}; the robot was stopped safely, the log was flushed", 6)
    except RunLogError as err:
        _fail(f"{err} — the robot was stopped safely; the folder keeps what was written before", 4)
    except KeyboardInterrupt:
        _fail("interrupted — stopped cleanly, log flushed", 130)
    except Terminated as err:  # SIGTERM during start-up: a clean stop, like SIGTERM while running (exit 0)
        _fail(f"{err} — stopped cleanly, nothing left running", 0)


@app.command("run")
def run_cmd(config: Path = typer.Argument(..., help="YAML run config, e.g. configs/arm_sim.yaml"),
            out: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/run-<time>)"),
            duration: Optional[float] = typer.Option(None, "--duration", help="seconds to run")) -> None:
    """Deploy a policy on a (sim or hardware) driver under the real-time tick; writes a run folder."""
    from rtctl.runtime.runner import run

    from rtctl.train.checkpoints import resolve_checkpoint

    folder = _guard(run, config, out, duration, resolve_policy=resolve_checkpoint)
    summary = (Path(folder) / "summary.json").read_text()
    typer.echo(summary)
    typer.echo(f"run folder: {folder}")


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="a run folder")) -> None:
    """Redraw a run folder's plots from its log."""
    from rtctl.report.plots import plot_run

    from rtctl.report.runfolder import read_log_checked

    if not (run_dir / "log.jsonl").exists():
        _fail(f"{run_dir} is not a run folder (no log.jsonl)", 2)
    rows, cut = read_log_checked(run_dir)
    if cut:
        typer.echo(f"{run_dir}/log.jsonl: the last line was cut short (the run was killed or its disk filled); "
                   f"reading the {len(rows)} whole rows before it", err=True)
    for p in plot_run(run_dir):
        typer.echo(str(p))


@app.command("bench")
def bench_cmd(name: str = typer.Argument(..., help=f"one of: {', '.join(BENCHES)}"),
              out: Path = typer.Option(..., "--out", help="output folder (results.json goes here)"),
              quick: bool = typer.Option(False, "--quick", help="short version (≤ 3 min after a one-time, "
                                         "cached training step)"),
              policies: Optional[str] = typer.Option(None, "--policies", help="async benches: comma-separated "
                                                     "policies (default bc,bc_offset; opt in to "
                                                     "lerobot_act,lerobot_act_offset)")) -> None:
    """Run a benchmark; rows go to OUT/results.json, set-up and benchmark wall time to OUT/timing.json."""
    if name not in BENCHES:
        _fail(f"unknown benchmark '{name}' (known: {', '.join(BENCHES)})", 2)
    mod = _load(BENCHES[name], f"benchmark '{name}'")
    opts = {}
    if policies is not None:
        import inspect

        if "policies" not in inspect.signature(mod.run).parameters:
            _fail(f"benchmark '{name}' takes no --policies (only: async, async_shield, async_lerobot)", 2)
        from rtctl.bench.async_chunks import parse_policies

        try:
            opts["policies"] = parse_policies(policies)
        except ValueError as err:
            _fail(str(err), 2)
    from rtctl.bench.common import run_timed

    rows, timing = _guard(run_timed, name, mod, out, quick, **opts)
    typer.echo(f"{len(rows)} rows → {out / 'results.json'}")
    typer.echo(f"bench {name}: setup_s {timing['setup_s']:.1f} (training/caching, once), bench_s "
               f"{timing['bench_s']:.1f} → {out / 'timing.json'}")


@app.command("train")
def train_cmd(name: str = typer.Argument(..., help=f"one of: {', '.join(TRAINERS)}"),
              config: Path = typer.Argument(..., help="YAML training config"),
              out: Optional[Path] = typer.Option(None, "--out", help="run folder"),
              resume: Optional[Path] = typer.Option(None, "--resume", help="checkpoint folder to resume from "
                                                    "(multitask)")) -> None:
    """Train a policy (bc: chunking BC from expert demos; multitask: one policy over a variation set)."""
    if name not in TRAINERS:
        _fail(f"unknown trainer '{name}' (known: {', '.join(TRAINERS)})", 2)
    mod = _load(TRAINERS[name], f"trainer '{name}'")
    folder = _guard(mod.main, config, out, **({"resume": resume} if resume is not None else {}))
    typer.echo(f"run folder: {folder}")


@app.command("eval")
def eval_cmd(config: Path = typer.Argument(..., help="the multitask training config"),
             checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint folder (RUN/checkpoint)"),
             out: Optional[Path] = typer.Option(None, "--out", help="also write the figures here (JSON)")) -> None:
    """Mean, worst-task and worst-10 % return of a multitask checkpoint, full set and held-out variations."""
    from rtctl.train.multitask.evaluate import evaluate

    r = _guard(evaluate, config, checkpoint, out)
    for key in ("full_set", "held_out"):
        if key in r:
            s = r[key]
            typer.echo(f"{key:9s} tasks {s['n_tasks']:3d}  mean {s['mean']:.4g}  worst {s['worst']:.4g}  "
                       f"worst-10% {s['worst10']:.4g}")


@app.command("export")
def export_cmd(config: Path = typer.Argument(..., help="the multitask training config"),
               checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint folder (RUN/checkpoint)"),
               out: Path = typer.Option(..., "--out", help="policy file to write (.pt)")) -> None:
    """Write a multitask checkpoint's actor as a policy file `rtctl run` loads (policy.type: mlp)."""
    from rtctl.train.multitask.evaluate import export

    typer.echo(f"policy: {_guard(export, config, checkpoint, out)}")


@app.command("deploy")
def deploy_cmd(config: Path = typer.Argument(..., help="YAML deploy config, e.g. configs/so101_emulated.yaml"),
               out: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/deploy-<time>)"),
               duration: Optional[float] = typer.Option(None, "--duration", help="seconds to run")) -> None:
    """Deploy a policy on a LeRobot robot (or the SO-101 servo-bus emulator) under the real-time tick."""
    deploy = _load("rtctl.runtime.deploy", "deploy")
    from rtctl.train.checkpoints import resolve_checkpoint

    folder = _guard(deploy.main, config, out, duration, resolve_policy=resolve_checkpoint)
    typer.echo((Path(folder) / "summary.json").read_text())
    typer.echo(f"run folder: {folder}")


@app.command("estop")
def estop_cmd(target: Optional[str] = typer.Argument(None, help="the deploy's run folder (its estop_address) or a "
                                                     "ZeroMQ address; default: the newest runs/*/estop_address")) -> None:
    """Operator e-stop for a running `rtctl deploy`: its driver disables torque and the run stops. Exits 0
    when the run acknowledged within 0.5 s, 1 when none did."""
    from rtctl.runtime.estop import ADDRESS_FILE, address_of, send_estop

    if target is None:
        found = sorted(Path("runs").glob(f"*/{ADDRESS_FILE}"), key=lambda p: p.stat().st_mtime)
        if not found:
            _fail(f"no run folder with an {ADDRESS_FILE} under runs/: name the run folder or the address", 2)
        target = str(found[-1].parent)
    address = _guard(address_of, target)
    if not send_estop(address):
        _fail(f"e-stop NOT acknowledged: no running deploy answered at {address} within 0.5 s", 1)
    typer.echo(f"e-stop acknowledged by the run at {address}")


@app.command("trial")
def trial_cmd(config: Path = typer.Argument(..., help="YAML trial config, e.g. configs/trial_sim.yaml"),
              out: Optional[Path] = typer.Option(None, "--out", help="run folder"),
              duration: Optional[float] = typer.Option(None, "--duration", help="seconds to run"),
              car: Optional[list[str]] = typer.Option(None, "--car", help="run only these cars (hardware: "
                                                      "one per computer)")) -> None:
    """Vehicle trial: a sim world (or the real cars) and one process per car with policy, shield and V2V."""
    launch = _load("rtctl.vehicles.trial.launch", "trial")
    try:
        folder = _guard(launch.main, config, out, duration, car or None)
    except typer.Exit:
        raise
    except RuntimeError as err:  # a car or the world failed to start: one line, not a traceback
        _fail(f"trial could not start: {err}", 1)
    typer.echo(f"run folder: {folder}")


@app.command("keys")
def keys_cmd(out: Path = typer.Argument(..., help="folder for public/ and secret/ CURVE key files"),
             ids: list[str] = typer.Option(..., "--ids", help="one id per car, e.g. --ids car0 --ids car1")) -> None:
    """Make CURVE key pairs for V2V peers (one per car id); never overwrites existing keys."""
    from rtctl.v2v.keys import make_keys

    for car, paths in make_keys(out, ids).items():
        typer.echo(f"{car}: {paths}")


def _load(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            _fail(f"{what} is not available in this build ({module} missing)", 2)
        raise


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
