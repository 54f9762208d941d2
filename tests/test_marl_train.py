"""`rtctl train marl`: a short real training run (in-process and on Ray actors), the exported policy, the
robust pieces, and config errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from rtctl.config import ConfigError
from rtctl.vehicles.envs import make_vec_env
from rtctl.policies.base import Policy
from rtctl.policies.marl_actor import MarlActorPolicy, MaskedActor
from rtctl.train.marl.train import main
from rtctl.train.marl.config import MarlConfig, for_method
from rtctl.vehicles.attack import pgd_attack

SMALL = {"seed": 0, "iterations": 2, "env": {"scenario": "intersection", "n_agents": 2, "envs_per_worker": 2},
         "robust": {"pgd_steps": 10}, "ppo": {"hidden": [32, 32], "epochs": 2},
         "rollout": {"backend": "local", "workers": 1}, "log": {"progress": False, "checkpoint_every": 1}}


def _write(tmp_path, data, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_short_training_run_exports_a_policy(tmp_path):
    run = main(_write(tmp_path, SMALL), tmp_path / "run")
    for f in ("config.yaml", "log.jsonl", "metrics.csv", "summary.json", "policy.pt", "checkpoint/learner.pt",
              "plots/learning_curve.png"):
        assert (run / f).is_file(), f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["env_steps"] > 0
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["policy_loss"]) and np.isfinite(r["q_loss"]) for r in rows)
    # the exported actor drives the env: only allowed behaviours
    pol = MarlActorPolicy(run / "policy.pt")
    assert isinstance(pol, Policy) and pol.meta["method"] == "full"
    env = make_vec_env("intersection", 2, 1, seed=4)
    obs, mask = env.reset()
    for t in range(5):
        chunk = pol.predict_chunk({"observation": obs[0, 0], "action_mask": mask[0, 0], "tick": t})
        b = int(chunk.actions[0, 0])
        assert chunk.start_tick == t and mask[0, 0, b]
        obs, mask, *_ = env.step(np.array([[b, 1]]))
    # resuming from the checkpoint with the same config continues the history, nothing retrained
    again = main(_write(tmp_path, SMALL), tmp_path / "resumed", resume=run / "checkpoint")
    assert json.loads((again / "summary.json").read_text())["resumed_from"].endswith("checkpoint")


def test_training_on_ray_actors(tmp_path):
    cfg = {**SMALL, "iterations": 1, "method": "non_robust", "robust": {"kind": "none"},
           "rollout": {"backend": "ray", "workers": 2, "num_cpus": 2}}
    run = main(_write(tmp_path, cfg), tmp_path / "run")
    row = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert row["episodes"] == 4  # two workers × two episodes


def test_method_fixes_the_ablation_switches(tmp_path):
    bad = {**SMALL, "method": "no_shield"}
    with pytest.raises(ConfigError, match="no_shield"):
        main(_write(tmp_path, bad), tmp_path / "x")
    with pytest.raises(ConfigError, match="robust.epsilon"):
        main(_write(tmp_path, {**SMALL, "robust": {"epsilon": 5.0}}), tmp_path / "y")
    cfg = for_method(MarlConfig.model_validate(SMALL), "no_v2v")
    assert (cfg.env.shield, cfg.env.v2v, cfg.robust.kind, cfg.iterations) == (True, False, "pgd", 2)


def test_pgd_attack_stays_in_the_ball_and_moves_the_policy():
    torch.manual_seed(0)
    actor = MaskedActor(8, 5, [16])
    obs = torch.randn(64, 8)
    mask = torch.ones(64, 5, dtype=torch.bool)
    mask[:, 0] = False
    adv = pgd_attack(actor, obs, mask, 0.1, 10)
    assert (adv - obs).abs().max() <= 0.1 + 1e-6
    with torch.no_grad():
        p = torch.softmax(actor.logits(obs, mask), -1)
        kl = lambda o: (p * (p.clamp(min=1e-12).log() - torch.log_softmax(actor.logits(o, mask), -1))).sum(-1).mean()
        rand = obs + (torch.rand_like(obs) * 2 - 1) * 0.1
        assert kl(adv) > kl(rand)
        assert torch.softmax(actor.logits(adv, mask), -1)[:, 0].max() < 1e-6  # masked stays masked


def test_scripted_driver_changes_lanes_and_warm_start_clones_it(tmp_path):
    """The demonstrator is a function of the actor's own inputs and gets past parked cars (lane changes,
    shielded, no collision); the warm start fits the actor to it before MAPPO (iteration 0 of the log)."""
    from rtctl.vehicles.scripted import LEFT, RIGHT, scripted_actions
    from rtctl.vehicles.episodes import run_batch

    env = make_vec_env("highway-medium", 3, 6, seed=3)
    out = run_batch(env, lambda o, m: (scripted_actions(o, m), np.zeros(o.shape[:2])), 3)
    acts = out["act"][out["live"].astype(bool)]
    assert np.isin(acts, (LEFT, RIGHT)).any() and out["stats"]["collided"] == 0
    assert out["stats"]["completed"] >= 0.5 * 18
    cfg = {**SMALL, "iterations": 1, "env": {"scenario": "highway-medium", "n_agents": 3, "envs_per_worker": 4},
           "warm_start": {"batches": 1, "epochs": 20, "bc_weight": 1.0, "bc_decay": 0.5}}
    run = main(_write(tmp_path, cfg), tmp_path / "run")
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[0]["warm_agreement"] > 0.8 and rows[0]["warm_samples"] > 1000
    assert rows[1]["env_steps"] > rows[0]["env_steps"]  # the demonstrations count in the budget
    assert rows[1]["bc_weight"] == 1.0 and np.isfinite(rows[1]["bc_loss"])  # DAPG term in the first update
