"""Arm shield: kinematics from the model file against MuJoCo, the MJCF reader, fallbacks, and randomised
closed-loop episodes (random / extreme / non-finite targets) that must never violate."""
from pathlib import Path

import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtctl.safety import ArmKinematics, ArmShieldConfig, ArmState, so101_shield
from rtctl.safety.scenarios import arm_episodes

MODEL = Path(__file__).resolve().parents[1] / "sim" / "assets" / "so101.xml"


@pytest.fixture(scope="module")
def shield():
    return so101_shield(MODEL)


def test_forward_kinematics_and_jacobians_match_mujoco(shield):
    kin = shield.kin
    m = mujoco.MjModel.from_xml_path(str(MODEL))
    d = mujoco.MjData(m)
    site = m.site("gripperframe").id
    rng = np.random.default_rng(0)
    for _ in range(100):
        q = rng.uniform(kin.lower, kin.upper)
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        T = kin.forward(q)
        for i, name in enumerate(kin.body_names):
            b = m.body(name).id
            assert np.allclose(T[i, :3, 3], d.xpos[b], atol=1e-12)
            assert np.allclose(T[i, :3, :3], d.xmat[b].reshape(3, 3), atol=1e-12)
        p, J = kin.site(q, "gripperframe")
        jp = np.zeros((3, m.nv))
        mujoco.mj_jacSite(m, d, jp, None, site)
        assert np.allclose(p, d.site_xpos[site], atol=1e-12) and np.allclose(J, jp, atol=1e-12)
        # every collision sphere centre of the shield, against mj_jac at that point
        P = kin.points(T, shield.sph_body, shield.sph_centre)
        Js = kin.jacobians(T, shield.sph_body, P)
        for k in range(0, P.shape[0], 4):
            jp[:] = 0.0
            mujoco.mj_jac(m, d, jp, None, P[k], m.body(kin.body_names[shield.sph_body[k]]).id)
            assert np.allclose(Js[k], jp, atol=1e-12)


XML = """
<mujoco>
  <compiler angle="degree" eulerseq="zyx"/>
  <default><default class="arm"><joint axis="0 1 0" range="-90 90"/></default></default>
  <worldbody>
    <body name="a" pos="0 0 0.1" euler="30 0 10" childclass="arm">
      <joint name="j1"/>
      <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02"/>
      <body name="b" pos="0.2 0 0" axisangle="1 0 0 45">
        <joint name="j2" axis="0 0 1" pos="0.01 0 0"/>
        <geom type="capsule" pos="0.1 0 0" quat="0.7071 0 0.7071 0" size="0.015 0.1"/>
        <site name="tip" pos="0.2 0 0"/>
      </body>
    </body>
  </worldbody>
</mujoco>"""


def test_mjcf_reader_handles_degrees_euler_axisangle_joint_pos_and_default_classes(tmp_path):
    path = tmp_path / "arm.xml"
    path.write_text(XML)
    kin = ArmKinematics.from_mjcf(path)
    assert kin.joint_names == ["j1", "j2"] and np.allclose(kin.upper, np.pi / 2)
    m = mujoco.MjModel.from_xml_string(XML)
    d = mujoco.MjData(m)
    for q in np.random.default_rng(1).uniform(-1.5, 1.5, (20, 2)):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        p, J = kin.site(q, "tip")
        jp = np.zeros((3, 2))
        mujoco.mj_jacSite(m, d, jp, None, 0)
        assert np.allclose(p, d.site_xpos[0], atol=1e-9) and np.allclose(J, jp, atol=1e-9)
    body, centre, radius, _ = kin.spheres_for(["a", "b"], 0.05)
    assert body.size == 10 and np.all(radius > 0.015)  # 5 spheres per 0.2 m capsule


def test_unsupported_model_features_are_reported(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text(XML.replace('<joint name="j1"/>', '<joint name="j1" type="slide"/>'))
    with pytest.raises(ValueError, match="only hinge"):
        ArmKinematics.from_mjcf(path)


def home_and_obstacle(shield):
    q = np.array([0.0, -0.5, 0.5, 0.5, 0.0, 0.3])
    p, _ = shield.kin.site(q, "gripperframe")
    return q, np.array([[p[0] + 0.12, p[1], p[2] - 0.02, 0.02]])


def test_already_safe_command_is_returned_unchanged(shield):
    shield.reset()
    q, obs = home_and_obstacle(shield)
    u_nom = q + 0.01
    u, info = shield.filter(ArmState(q=q, u_prev=q), u_nom, {"obstacles": obs})
    assert u is u_nom and info.status == "ok" and not info.intervened


def test_target_towards_an_obstacle_is_limited_and_reports_the_active_rows(shield):
    shield.reset()
    q0, q1 = np.array([0.0, -0.3, 0.3, 0.6, 0.0, 0.3]), np.array([0.0, 0.9, -0.6, 0.3, 0.0, 0.3])
    p, _ = shield.kin.site((q0 + q1) / 2, "gripperframe")  # an obstacle half way along the tool's path
    obs = np.array([[*p, 0.03]])
    u_prev = q0.copy()
    statuses = set()
    for _ in range(60):
        u, info = shield.filter(ArmState(q=u_prev, u_prev=u_prev), u_prev + np.clip(q1 - u_prev, -0.03, 0.03),
                                {"obstacles": obs})
        statuses.add(info.status)
        assert np.all(np.abs(u - u_prev) <= shield.speed * shield.config.dt + 1e-12)
        u_prev = u
    assert statuses == {"ok"} and info.intervened and any("obstacle0" in a for a in info.active)
    assert info.h_min > 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_inputs_hold_the_last_command(shield, bad):
    shield.reset()
    q, obs = home_and_obstacle(shield)
    u_prev = q + 0.01
    u, info = shield.filter(ArmState(q=q, u_prev=u_prev), np.full(6, bad), {"obstacles": obs})
    assert info.status == "fallback" and info.reason == "nonfinite_nominal" and np.array_equal(u, u_prev)
    q_bad = q.copy()
    q_bad[1] = bad
    u, info = shield.filter(ArmState(q=q_bad, u_prev=u_prev), q, {"obstacles": obs})
    assert info.reason == "nonfinite_state" and np.array_equal(u, u_prev)
    u, info = shield.filter(ArmState(q=q, u_prev=u_prev, age_s=1.0), q, {"obstacles": obs})
    assert info.reason == "stale_state" and np.array_equal(u, u_prev)
    obs_bad = obs.copy()
    obs_bad[0, 0] = bad
    u, info = shield.filter(ArmState(q=q, u_prev=u_prev), q, {"obstacles": obs_bad})
    assert info.reason == "nonfinite_context" and np.array_equal(u, u_prev)


def test_huge_targets_are_cut_to_the_rate_limit_without_jumps(shield):
    shield.reset()
    q, obs = home_and_obstacle(shield)
    for big in (1e300, -1e300, 1e6):
        u, info = shield.filter(ArmState(q=q, u_prev=q), np.full(6, big), {"obstacles": obs})
        assert np.all(np.isfinite(u)) and np.all(np.abs(u - q) <= shield.speed * shield.config.dt + 1e-12)
        shield.reset()


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_episodes_never_leave_the_safe_set(shield, seed):
    """Starts certified, random goals / jumps anywhere / jitter and non-finite targets, the arm arriving
    anywhere within the tracking error: no sphere ever touches an obstacle, a workspace face or its
    self-collision partner, no joint leaves its range. Relaxed outcomes are counted, not hidden."""
    counts = arm_episodes(shield, episodes=6, steps=30, rng=np.random.default_rng(seed))
    assert counts["violations"] == 0, counts
    print(counts)


def test_bad_settings_are_rejected_naming_the_field():
    with pytest.raises(ValueError, match="gamma"):
        ArmShieldConfig(gamma=0.0)
    with pytest.raises(ValueError, match="max_joint_speed"):
        ArmShieldConfig(max_joint_speed=(1.0, -1.0))
    with pytest.raises(ValueError, match="unknown keys"):
        ArmShieldConfig.from_dict({"clearence": 0.1})
    with pytest.raises(ValueError, match="not in the arm model"):
        so101_shield(MODEL, collision_bodies=("forearm",))


def test_a_pushed_joint_yields_along_the_hold_path_at_the_rate_limit():
    """A push puts shoulder_pan 0.6 rad from the last command: the QP cannot certify any move (the margin
    grows with the measured error), so the shield moves the command toward the measured position along the
    segment ū → q the hold would sweep anyway, no faster than the rate limit, and never past q."""
    sh = so101_shield(MODEL)
    ubar = np.array([0.2, -0.9, 0.9, 0.7, 0.0, 0.3])
    q = ubar + np.array([0.6, 0.0, 0.0, 0.0, 0.0, 0.0])
    u, info = sh.filter(ArmState(q=q, u_prev=ubar), q.copy())  # the policy replanned from where the arm is
    step = u - ubar
    assert info.reason == "disturbance_yield" and info.intervened
    assert step[0] > 0 and np.allclose(step[1:], 0.0)
    assert step[0] <= sh.config.max_joint_speed * sh.config.dt + 1e-12
    # a nominal pointing away from the pushed position: hold (yield only toward q)
    u2, info2 = so101_shield(MODEL).filter(ArmState(q=q, u_prev=ubar), ubar - 0.1)
    assert np.allclose(u2, ubar) and info2.reason == "infeasible"
