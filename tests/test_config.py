from pathlib import Path

import pytest

from rtctl.config import ConfigError, load_config, parse_config
from rtctl.runtime.runner import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_run_config_validates():
    for name in ("arm_sim.yaml", "arm_demo.yaml"):
        cfg = load_config(ROOT / "configs" / name, RunConfig)
        assert 30 <= cfg.tick.rate_hz <= 500


def test_unknown_key_is_named_with_the_allowed_keys():
    with pytest.raises(ConfigError) as e:
        parse_config({"tick": {"rate_hzz": 100}}, RunConfig, "x.yaml")
    msg = str(e.value)
    assert "unknown key 'tick.rate_hzz'" in msg and "rate_hz" in msg and "x.yaml" in msg


def test_out_of_range_names_key_and_range():
    with pytest.raises(ConfigError) as e:
        parse_config({"tick": {"rate_hz": 1000}}, RunConfig)
    msg = str(e.value)
    assert "tick.rate_hz" in msg and "30" in msg and "500" in msg


def test_wrong_type_and_bad_choice():
    with pytest.raises(ConfigError) as e:
        parse_config({"scheduler": {"exec_steps": "many", "mode": "fast"}}, RunConfig)
    msg = str(e.value)
    assert "scheduler.exec_steps" in msg and "scheduler.mode" in msg and "'sync'" in msg


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("tick: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p, RunConfig)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", RunConfig)


def test_overrides_are_validated(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 1\n")
    assert load_config(p, RunConfig, {"tick.rate_hz": 100}).tick.rate_hz == 100
    with pytest.raises(ConfigError, match="duration_s"):
        load_config(p, RunConfig, {"duration_s": -1})


@pytest.mark.parametrize("text, what", [("", "empty"), ("# only a comment\n", "empty"), ("- a\n- b\n", "list")])
def test_empty_or_non_mapping_yaml_is_one_line_error(tmp_path, text, what):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=what) as err:
        load_config(p, RunConfig)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_car_policy_takes_type_and_its_older_name_kind():
    """One word for one concept: a policy section is keyed ``type`` in run and trial configs alike; a trial
    config written with ``kind`` still loads."""
    import pytest
    from pydantic import ValidationError

    from rtctl.vehicles.trial.config import CarPolicyConfig

    assert CarPolicyConfig(kind="marl", checkpoint="p.pt").type == "marl"
    assert CarPolicyConfig.model_validate({"type": "keep_lane"}).type == "keep_lane"
    with pytest.raises(ValidationError, match="not both"):
        CarPolicyConfig.model_validate({"type": "marl", "kind": "marl", "checkpoint": "p.pt"})


def test_a_registered_driver_type_is_accepted_by_run_configs(tmp_path):
    """Bring your own driver: register its config section and builder; `rtctl run`'s config takes the type
    (discriminated by ``type``), and make_driver builds it. Unknown types still name the key."""
    from typing import Literal

    import pytest

    from rtctl.config import ConfigError, StrictModel, load_config
    from rtctl.runtime.drivers import DRIVERS, make_driver, register_driver, run_config_model
    from rtctl.runtime.runner import RunConfig

    class MyArmConfig(StrictModel):
        type: Literal["my_arm"] = "my_arm"
        port: str = "/dev/null"

    register_driver("my_arm", MyArmConfig, lambda cfg: ("my driver on", cfg.driver.port))
    try:
        p = tmp_path / "my.yaml"
        p.write_text("driver: {type: my_arm, port: /dev/ttyX}\n")
        cfg = load_config(p, run_config_model(RunConfig))
        assert make_driver(cfg) == ("my driver on", "/dev/ttyX")
        p.write_text("driver: {type: nobody}\n")
        with pytest.raises(ConfigError, match="driver"):
            load_config(p, run_config_model(RunConfig))
    finally:
        DRIVERS.pop("my_arm")


def test_a_registered_policy_type_is_built_by_make_policy():
    """Bring your own policy: register a builder for a new ``policy.type``; unknown types name the known ones."""
    import pytest
    from pydantic import ValidationError

    from rtctl.runtime.policies import POLICIES, PolicyConfig, make_policy, register_policy

    register_policy("hold_still", lambda cfg, rate_hz: ("holds", cfg.horizon, rate_hz))
    try:
        assert make_policy(PolicyConfig(type="hold_still", horizon=5), 30.0) == ("holds", 5, 30.0)
    finally:
        POLICIES.pop("hold_still")
    with pytest.raises(ValidationError, match="unknown policy type 'hold_still'.*known: bc, expert"):
        PolicyConfig(type="hold_still")
