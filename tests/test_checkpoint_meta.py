"""Checkpoints record the rate, horizon and action units they were trained for; a run at another rate is a
one-line ConfigError naming the file unless ``policy.allow_rate_mismatch``; the metadata reads without torch."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rtctl.config import ConfigError
from rtctl.policies.base import meta_path, read_checkpoint_meta
from rtctl.runtime.policies import PolicyConfig, make_policy

ROOT = Path(__file__).resolve().parents[1]
TINY_BC = {"seed": 0, "demos": {"tasks": ["reach"], "episodes_per_task": 2, "horizon": 10, "exec_steps": 5,
                                "v_max": 1.0, "control_hz": 30},
           "model": {"hidden": 16, "layers": 1}, "train": {"steps": 2, "batch": 8}}


def bc_cfg(ckpt, **kw):
    return PolicyConfig(type="bc", checkpoint=str(ckpt), **{"horizon": 10, **kw})


@pytest.fixture(scope="module")
def bc_art(tmp_path_factory):
    """A 30 Hz, horizon-10 BC checkpoint made through the artifact cache (as `make demo` makes its own)."""
    from rtctl.train.bc.train import ensure_checkpoint

    d = tmp_path_factory.mktemp("bc")
    (d / "tiny_bc.yaml").write_text(yaml.safe_dump(TINY_BC))
    return d / "tiny_bc.yaml", d / "art", ensure_checkpoint(d / "tiny_bc.yaml", root=d / "art")


@pytest.fixture
def bc_ckpt(bc_art, tmp_path):
    """A private copy (checkpoint + sidecar) a test may alter."""
    ckpt = tmp_path / "policy.pt"
    shutil.copy(bc_art[2], ckpt)
    shutil.copy(meta_path(bc_art[2]), meta_path(ckpt))
    return ckpt


def legacy_copy(ckpt, dst):
    """``ckpt`` as `rtctl train bc` wrote it before this change: no rate in the blob, no sidecar."""
    import torch

    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    blob["meta"] = {"max_delay": 0, "seed": 0}
    torch.save(blob, dst)
    return dst


def test_bc_checkpoint_records_rate_horizon_units(bc_ckpt):
    from rtctl.policies.bc import BCPolicy

    meta = read_checkpoint_meta(bc_ckpt)
    assert meta["rate_hz"] == 30.0 and meta["horizon"] == 10 and meta["action_units"] == "rad"
    assert meta["action_dim"] == 6 and meta["action_names"][0] == "shoulder_pan" and meta["kind"] == "bc"
    assert BCPolicy.load(bc_ckpt).meta["rate_hz"] == 30.0  # embedded too: the .pt alone is self-contained
    meta_path(bc_ckpt).unlink()
    assert read_checkpoint_meta(bc_ckpt) == meta  # from the .pt (torch.load, mmap) when the sidecar is gone


def test_meta_is_read_without_torch(bc_ckpt):
    code = ("import json, sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
            "from rtctl.runtime.policies import PolicyConfig, check_checkpoint\n"
            f"m = check_checkpoint(PolicyConfig(type='bc', checkpoint={str(bc_ckpt)!r}, horizon=10), 30.0)\n"
            "print(json.dumps(m))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rate_hz"] == 30.0


def test_bc_at_another_rate_is_a_config_error_naming_the_file(bc_ckpt):
    with pytest.raises(ConfigError) as err:
        make_policy(bc_cfg(bc_ckpt), 50.0)
    msg = str(err.value)
    assert "\n" not in msg and str(bc_ckpt) in msg and "30 Hz" in msg and "50 Hz" in msg
    assert "policy.allow_rate_mismatch: true" in msg and "1.67× faster" in msg
    with pytest.warns(RuntimeWarning, match="replayed at 50 Hz"):
        pol = make_policy(bc_cfg(bc_ckpt, allow_rate_mismatch=True), 50.0)
    assert pol.chunk_size == 10
    assert make_policy(bc_cfg(bc_ckpt), 30.0).chunk_size == 10  # the rate it was trained at


def test_horizon_longer_than_the_checkpoint_is_refused(bc_ckpt):
    with pytest.raises(ConfigError, match=r"policy.horizon: 20 .*10-action chunk") as err:
        make_policy(bc_cfg(bc_ckpt, horizon=20, allow_rate_mismatch=True), 30.0)
    assert str(bc_ckpt) in str(err.value)
    assert make_policy(bc_cfg(bc_ckpt, horizon=5), 30.0).chunk_size == 10  # runs the first 5 rows


def test_checkpoint_without_metadata(bc_ckpt, tmp_path):
    old = legacy_copy(bc_ckpt, tmp_path / "old.pt")
    meta = read_checkpoint_meta(old)
    assert "rate_hz" not in meta and meta["horizon"] == 10  # what the model fixes is still known
    with pytest.raises(ConfigError, match="records no control rate") as err:
        make_policy(bc_cfg(old), 30.0)
    assert str(meta_path(old)) in str(err.value) and "allow_rate_mismatch" in str(err.value)
    with pytest.warns(RuntimeWarning, match="running unchecked"):
        assert make_policy(bc_cfg(old, allow_rate_mismatch=True), 30.0).chunk_size == 10
    # a sidecar left over from another file (sha256 differs) is not believed
    shutil.copy(meta_path(bc_ckpt), meta_path(old))
    assert "rate_hz" not in read_checkpoint_meta(old)
    # the fix the message names: a hand-written sidecar
    meta_path(old).write_text(json.dumps({"rate_hz": 30, "horizon": 10, "action_units": "rad"}))
    assert make_policy(bc_cfg(old), 30.0).chunk_size == 10
    meta_path(old).write_text(json.dumps({"rate_hz": 30, "horizon": 12}))  # disagrees with the model
    with pytest.raises(ConfigError, match="says horizon 12"):
        make_policy(bc_cfg(old), 30.0)


def test_artifact_cache_upgrades_a_checkpoint_cached_without_metadata(bc_art, tmp_path):
    from rtctl.train.bc.train import ensure_checkpoint

    cfg_path, art, cached = bc_art
    root = shutil.copytree(art, tmp_path / "art")
    ckpt = root / cached.relative_to(art)
    legacy_copy(ckpt, ckpt)
    meta_path(ckpt).unlink()
    stamp = os.stat(ckpt).st_mtime_ns
    assert ensure_checkpoint(cfg_path, root=root) == ckpt
    assert os.stat(ckpt).st_mtime_ns == stamp and len(list((root / "bc").iterdir())) == 1  # not retrained
    assert read_checkpoint_meta(ckpt)["rate_hz"] == 30.0 and make_policy(bc_cfg(ckpt), 30.0).chunk_size == 10


def test_lerobot_act_folder_meta(tmp_path, monkeypatch):
    pytest.importorskip("lerobot")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from rtctl.policies.base import FOLDER_META
    from rtctl.train.lerobot.act import ensure_checkpoint

    cfg = {"seed": 0, "demos": {**TINY_BC["demos"], "horizon": 10, "control_hz": 30},
           "model": {"chunk_size": 8, "dim_model": 16, "n_heads": 2, "dim_feedforward": 32},
           "train": {"steps": 2, "batch": 4}}
    path = tmp_path / "tiny_act.yaml"
    path.write_text(yaml.safe_dump(cfg))
    folder = ensure_checkpoint(path, root=tmp_path / "art")
    meta = read_checkpoint_meta(folder)
    assert meta["rate_hz"] == 30.0 and meta["horizon"] == 8 and meta["action_units"] == "rad"
    assert meta["kind"] == "lerobot_act" and meta["action_dim"] == 6
    assert "rate_hz" not in json.loads((folder / "config.json").read_text())  # LeRobot's config untouched
    act = PolicyConfig(type="lerobot", checkpoint=str(folder), horizon=8)
    with pytest.raises(ConfigError, match=r"trained at 30 Hz but the run ticks at 50 Hz") as err:
        make_policy(act, 50.0)
    assert str(folder) in str(err.value)
    assert make_policy(act, 30.0).chunk_size == 8  # LeRobot loads the folder with the sidecar in it
    (folder / FOLDER_META).unlink()  # cached before this change: upgraded, not retrained
    assert read_checkpoint_meta(folder) == {"horizon": 8, "action_dim": 6}  # from config.json alone
    assert ensure_checkpoint(path, root=tmp_path / "art") == folder
    assert read_checkpoint_meta(folder)["rate_hz"] == 30.0


def test_exported_mlp_meta(tmp_path):
    from rtctl.policies.mlp import Actor, export_actor
    from rtctl.train.multitask.export import export_meta
    from rtctl.sim.arm_rl import ArmReachRL

    env = ArmReachRL(control_hz=50.0, episode_s=1.0)
    actor = Actor(16, 5, [8])
    extra = {"kind": "arm_reach", "env": {"kind": "arm_reach", "kwargs": {"control_hz": 50.0, "episode_s": 1.0}}}
    path = export_actor(tmp_path / "reach.pt", actor, [8], env.obs_keys, env.action_spec(), extra,
                        env.feature_spec(), meta=export_meta(env.action_spec(), extra))
    meta = read_checkpoint_meta(path)
    assert meta["rate_hz"] == 50.0 and meta["horizon"] == 1 and meta["action_units"] == "rad"
    assert meta["action_dim"] == 6 and meta["action_names"][-1] == "gripper" and meta["kind"] == "mlp"
    cfg = PolicyConfig(type="mlp", checkpoint=str(path), horizon=1)
    assert make_policy(cfg, 50.0).meta["rate_hz"] == 50.0
    with pytest.raises(ConfigError, match="trained at 50 Hz but the run ticks at 30 Hz.*slower"):
        make_policy(cfg, 30.0)
    with pytest.raises(ConfigError, match="policy.horizon: 50"):
        make_policy(cfg.model_copy(update={"horizon": 50}), 50.0)
    # a Gymnasium env's rate is 1/dt; a bandit export (a one-shot design, no env) records none
    gym_spec = {"mode": "affine", "low": [-2.0], "high": [2.0]}
    gym_extra = {"kind": "gym", "env": {"kind": "gym", "gym_id": "Pendulum-v1"}}
    pend = export_actor(tmp_path / "pend.pt", Actor(3, 1, [8]), [8], ["obs"], gym_spec, gym_extra,
                        meta=export_meta(gym_spec, gym_extra))
    assert read_checkpoint_meta(pend)["rate_hz"] == pytest.approx(20.0)
    design = export_actor(tmp_path / "design.pt", Actor(1, 1, [8]), [8], ["bias"], gym_spec, {"kind": "opamp"},
                          meta=export_meta(gym_spec, {"kind": "opamp"}))
    assert read_checkpoint_meta(design)["rate_hz"] is None
    assert np.isfinite(make_policy(cfg, 50.0).predict_chunk({**env.arm.reset(seed=0)[0], "tick": 0}).actions).all()


def test_checkpoint_of_another_kind_or_action_size_is_refused_before_loading(bc_ckpt):
    from rtctl.runtime.policies import check_checkpoint

    with pytest.raises(ConfigError, match="is a 'bc' checkpoint, which policy.type 'mlp'") as err:
        check_checkpoint(PolicyConfig(type="mlp", checkpoint=str(bc_ckpt), horizon=1), 30.0)
    assert str(bc_ckpt) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="outputs 6 actions per row but the driver takes 2"):
        check_checkpoint(bc_cfg(bc_ckpt), 30.0, action_dim=2)
    assert check_checkpoint(bc_cfg(bc_ckpt), 30.0, action_dim=6)["kind"] == "bc"
