"""Multi-task trainer: gradient surgery math, pruning, replay, tiny trainings, resume determinism, export."""
import json

import numpy as np
import pytest
import torch
import yaml

from rtctl.config import ConfigError
from rtctl.policies.mlp import MLPPolicy
from rtctl.train.multitask.combine import combine, pcgrad_reference
from rtctl.train.multitask.prune import select_tasks, summarize, worst_fraction, worst_mean
from rtctl.train.multitask.replay import TaskReplay
from rtctl.train.multitask.train import main

PENDULUM = {
    "seed": 3, "mode": "multistep",
    "env": {"kind": "gym", "gym_id": "Pendulum-v1"},
    "variations": {"grid": {"m": [0.7, 1.3], "l": [1.0]}, "nominal": {"m": 1.0, "l": 1.0}},
    "held_out": {"list": [{"m": 1.8, "l": 1.3}]},
    "tasks": {"schedule": "pruned", "prune_period": 2, "prune_k": 2},
    "agent": {"hidden": [32, 32], "gamma": 0.95, "twin": True, "policy_delay": 2, "batch_per_task": 16,
              "exploration_std": 0.1},
    "replay": {"capacity_per_task": 5000},
    "multistep": {"budget_env_steps": 2400, "learning_starts": 400, "updates_per_step": 0.05,
                  "eval_every_steps": 1200},
    "rollout": {"backend": "local"},
    "log": {"tensorboard": False, "progress": False, "checkpoint_every": 2},
}
OPAMP = {
    "seed": 1, "mode": "bandit", "env": {"kind": "opamp"},
    "tasks": {"prune_period": 10},
    "agent": {"hidden": [64, 64]},
    "bandit": {"budget_sims": 600, "warmup_steps": 5},
    "log": {"tensorboard": True, "progress": False, "checkpoint_every": 5},
}


def write(tmp_path, cfg, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def csv_text(run):
    return (run / "metrics.csv").read_text()


# -- gradient combiners ---------------------------------------------------------------------------------
def test_pcgrad_gram_form_equals_the_vector_form():
    g = torch.randn(6, 300, generator=torch.Generator().manual_seed(0))
    fast = combine(g, "pcgrad", np.random.default_rng(5)).grad
    ref = pcgrad_reference(g, np.random.default_rng(5))
    assert torch.allclose(fast, ref, atol=1e-4)


def test_pcgrad_projects_out_conflicts():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    out = combine(g, "pcgrad", np.random.default_rng(0))
    # g1' = g1 - (g1.g2/|g2|^2) g2 = (0.5, 0.5); g2' = g2 - (g2.g1/|g1|^2) g1 = (0, 1)
    assert torch.allclose(out.grad, torch.tensor([0.5, 1.5]))
    assert out.conflict_rate == 1.0
    agree = torch.tensor([[1.0, 0.2], [0.5, 1.0], [0.3, 0.3]])
    assert torch.allclose(combine(agree, "pcgrad", np.random.default_rng(0)).grad, agree.sum(0))
    assert combine(agree, "pcgrad", np.random.default_rng(0)).conflict_rate == 0.0


def test_sum_and_cagrad():
    g = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(combine(g, "sum", np.random.default_rng(0)).grad, g.sum(0))
    assert torch.allclose(combine(g, "cagrad", np.random.default_rng(0), cagrad_c=0.0).grad, g.mean(0), atol=1e-5)
    conflict = torch.tensor([[1.0, 0.0], [-0.9, 0.3]])
    d = combine(conflict, "cagrad", np.random.default_rng(0), cagrad_c=0.8).grad
    # CAGrad raises the worst task's improvement over plain averaging
    assert min(conflict @ d / d.norm()) > min(conflict @ conflict.mean(0) / conflict.mean(0).norm())
    with pytest.raises(ValueError, match="unknown gradient combiner"):
        combine(g, "mgda", np.random.default_rng(0))


# -- pruning --------------------------------------------------------------------------------------------
def test_pruning_keeps_worst_of_each_cluster_plus_nominal():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 9.0]])
    labels = np.repeat([0, 1, 2], 5)
    feats = centers[labels] + 0.1 * rng.normal(size=(15, 2))
    scores = np.arange(15, dtype=float)[::-1].copy()  # the last member of each cluster scores lowest
    sel = select_tasks(feats, scores, nominal=7, rng=np.random.default_rng(1))
    assert sel.k == 3
    assert sel.active == [4, 7, 9, 14]
    again = select_tasks(feats, scores, nominal=7, rng=np.random.default_rng(1))
    assert np.array_equal(sel.labels, again.labels)
    fixed = select_tasks(feats, scores, nominal=0, rng=np.random.default_rng(1), k=1, include_nominal=False)
    assert fixed.active == [14]


def test_worst_fraction_and_summary():
    r = np.array([5.0, -1.0, 3.0, -7.0, 0.0, 2.0, 1.0, 4.0, 6.0, 8.0, 9.0])
    assert worst_fraction(r, 0.2) == [3, 1, 4]
    assert worst_mean(r, 0.1) == pytest.approx((-7.0 - 1.0) / 2)
    assert summarize(r) == {"mean": pytest.approx(r.mean()), "worst": -7.0, "worst10": pytest.approx(-4.0)}


# -- replay ---------------------------------------------------------------------------------------------
def test_replay_stratified_pooled_and_ring():
    rb = TaskReplay(4, capacity=50, obs_dim=2, act_dim=1)
    for t, n in ((0, 10), (1, 90), (3, 5)):
        rb.add(t, np.full((n, 2), t), np.full(n, t), np.arange(n), np.zeros((n, 2)), np.zeros(n))
    assert rb.sizes().tolist() == [10, 50, 0, 5]
    assert rb.rings[1].data["rew"].min() == 40  # oldest 40 overwritten
    rng = np.random.default_rng(0)
    batches = rb.sample_stratified([0, 1, 2, 3], 8, rng)
    assert [b.task[0] for b in batches] == [0, 1, 3] and all(len(b) == 8 for b in batches)
    assert all((b.obs == b.task[0]).all() for b in batches)
    (pooled,) = rb.sample_pooled([0, 1, 3], 6500, rng)
    share = np.bincount(pooled.task, minlength=4) / 6500
    assert share[1] == pytest.approx(50 / 65, abs=0.03) and (pooled.obs[:, 0] == pooled.task).all()
    copy = TaskReplay(4, 50, 2, 1)
    copy.load_arrays(rb.state_arrays())
    assert copy.sizes().tolist() == rb.sizes().tolist() and copy.rings[1].pos == rb.rings[1].pos


# -- bandit (op-amp sizing) -----------------------------------------------------------------------------
def test_bandit_training_end_to_end_and_eval_export(tmp_path):
    from rtctl.train.multitask.evaluate import evaluate, export

    cfg = write(tmp_path, OPAMP)
    run = main(cfg, tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sims"] <= 600 + 45 and summary["n_corners"] == 45
    for f in ("metrics.csv", "log.jsonl", "config.yaml", "plots/task_curves.png", "policy.pt", "checkpoint/meta.json"):
        assert (run / f).exists(), f
    assert any((run / "tb").iterdir())
    rows = csv_text(run).splitlines()
    assert rows[0].startswith("iteration,sims,active_tasks") and len(rows) == summary["iterations"] + 1
    res = evaluate(cfg, run / "checkpoint", out=tmp_path / "eval.json")
    for key in ("full_set", "held_out"):
        assert set(res[key]) >= {"mean", "worst", "worst10", "corners_passed"}
    assert res["full_set"]["n_tasks"] == 45 and res["held_out"]["n_tasks"] == 16
    assert json.loads((tmp_path / "eval.json").read_text())["mode"] == "bandit"
    assert MLPPolicy.load(export(cfg, run / "checkpoint", tmp_path / "sizing.pt")).action_dim == 8


def test_bandit_resume_reproduces_the_same_metrics(tmp_path):
    base = {**OPAMP, "bandit": {"budget_sims": 100_000, "warmup_steps": 5}}
    cfg = write(tmp_path, base)
    straight = main(cfg, tmp_path / "a", stop_after=24)
    first = main(cfg, tmp_path / "b", stop_after=12)
    resumed = main(cfg, tmp_path / "c", resume=first / "checkpoint", stop_after=24)
    assert csv_text(resumed) == csv_text(straight)
    assert len(csv_text(resumed).splitlines()) == 25
    other = write(tmp_path, {**base, "seed": 2}, "other.yaml")
    with pytest.raises(ConfigError, match=r"another config \(seed: 1 then, 2 now\)"):  # names the key
        main(other, tmp_path / "d", resume=first / "checkpoint")
    # where the workers run is not the run's identity: a changed placement still resumes
    moved = write(tmp_path, {**base, "rollout": {"backend": "local", "cpus_per_worker": 0.5}}, "moved.yaml")
    assert csv_text(main(moved, tmp_path / "e", resume=first / "checkpoint", stop_after=24)) == csv_text(straight)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="tasks.prune_perod"):
        main(write(tmp_path, {**OPAMP, "tasks": {"prune_perod": 3}}), tmp_path / "x")
    with pytest.raises(ConfigError, match="combiner.kind"):
        main(write(tmp_path, {**OPAMP, "combiner": {"kind": "mgda"}}), tmp_path / "x")
    with pytest.raises(ConfigError, match="does not fit env.kind"):
        main(write(tmp_path, {**OPAMP, "mode": "multistep"}), tmp_path / "x")
    assert not (tmp_path / "x").exists()


# -- multistep (control) --------------------------------------------------------------------------------
def test_multistep_resume_is_deterministic_and_export_loads(tmp_path):
    cfg = write(tmp_path, PENDULUM)
    straight = main(cfg, tmp_path / "a")
    first = main(cfg, tmp_path / "b", stop_after=2)
    resumed = main(cfg, tmp_path / "c", resume=first / "checkpoint")
    assert csv_text(resumed) == csv_text(straight)
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["env_steps"] >= 2400 and summary["prunes"] >= 2 and "held_out" in summary
    policy = MLPPolicy.load(straight / "policy.pt")
    chunk = policy.predict_chunk({"obs": np.array([1.0, 0.0, 0.0]), "tick": 7})
    assert chunk.horizon == 1 and chunk.start_tick == 7 and -2.0 <= chunk.actions[0, 0] <= 2.0


def test_arm_reach_tiny_training_exports_absolute_joint_targets(tmp_path):
    from rtctl.sim.arm_rl import ArmReachRL

    cfg = {**PENDULUM, "env": {"kind": "arm_reach", "kwargs": {"episode_s": 1.0}},
           "variations": {"list": [{"mass_scale": 1.0, "damping_scale": 1.0, "gain_scale": 1.0,
                                    "obs_noise_std": 0.0, "action_latency_ticks": 0},
                                   {"mass_scale": 1.4, "damping_scale": 0.6, "gain_scale": 0.6,
                                    "obs_noise_std": 0.02, "action_latency_ticks": 3}], "nominal": 0},
           "held_out": "arm_reach_held_out",
           "multistep": {"budget_env_steps": 300, "learning_starts": 60, "updates_per_step": 0.1,
                         "eval_every_steps": 300}}
    run = main(write(tmp_path, cfg), tmp_path / "arm")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_tasks"] == 2 and summary["held_out"]["worst"] <= summary["held_out"]["mean"]
    policy = MLPPolicy.load(run / "policy.pt")
    env = ArmReachRL(episode_s=1.0)
    obs, _ = env.arm.reset(seed=0)
    chunk = policy.predict_chunk({**obs, "tick": 0})
    assert chunk.actions.shape == (1, 6)
    assert np.allclose(chunk.actions[0], env.command(obs, policy.act_unit(obs)))
    # the deployed policy computes the same observation features (numpy FK) as training did (MuJoCo FK)
    rng = np.random.default_rng(0)
    for _ in range(5):
        o = {"state": rng.uniform(-1.5, 1.5, 6), "target": np.append(rng.uniform(-0.3, 0.3, 3), 1.0)}
        assert np.allclose(policy.flat_obs(o), env.flat(o), atol=1e-9)
    # the CLI path a user takes: eval and export a checkpoint, then deploy the export with `rtctl run`
    import subprocess
    import sys

    cli = [sys.executable, "-m", "rtctl.cli"]
    cfg_path = tmp_path / "cfg.yaml"
    p = subprocess.run(cli + ["eval", str(cfg_path), "--checkpoint", str(run / "checkpoint"),
                              "--out", str(tmp_path / "eval.json")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "worst-10%" in p.stdout and json.loads((tmp_path / "eval.json").read_text())["held_out"]["n_tasks"] == 8
    p = subprocess.run(cli + ["export", str(cfg_path), "--checkpoint", str(run / "checkpoint"),
                              "--out", str(tmp_path / "reach.pt")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    run_cfg = tmp_path / "deploy.yaml"
    run_cfg.write_text(f"seed: 0\ndriver: {{type: sim_arm, task: reach}}\n"
                       f"policy: {{type: mlp, checkpoint: {tmp_path / 'reach.pt'}, horizon: 1}}\n"
                       "scheduler: {mode: sync, exec_steps: 1}\nplots: false\n")
    p = subprocess.run(cli + ["run", str(run_cfg), "--out", str(tmp_path / "deployed"), "--duration", "2"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    deployed = json.loads((tmp_path / "deployed" / "summary.json").read_text())
    assert deployed["ticks"] >= 30 and deployed["shield"]["fallbacks"] == 0
