"""The arm shield in the loop with MuJoCo's SO-101 (position servos with their real tracking error,
30 Hz control): driven straight at an obstacle, the arm stops short of it; unshielded, it hits it."""
from pathlib import Path

import mujoco
import numpy as np

from rtctl.safety import ArmState, so101_shield

MODEL = Path(__file__).resolve().parents[1] / "sim" / "assets" / "so101.xml"
Q0 = np.array([0.0, -0.3, 0.3, 0.6, 0.0, 0.3])
Q1 = np.array([0.0, 0.9, -0.6, 0.3, 0.0, 0.3])  # the tool sweeps forward and down through the obstacle


def capsule_clearance(m, d, centre, radius):
    """Smallest distance between the obstacle sphere and the arm's capsules (MuJoCo's own geometry)."""
    best = np.inf
    for g in range(m.ngeom):
        if m.geom_type[g] != mujoco.mjtGeom.mjGEOM_CAPSULE:
            continue
        axis = d.geom_xmat[g].reshape(3, 3)[:, 2]
        t = np.clip((centre - d.geom_xpos[g]) @ axis, -m.geom_size[g, 1], m.geom_size[g, 1])
        best = min(best, np.linalg.norm(centre - d.geom_xpos[g] - t * axis) - m.geom_size[g, 0] - radius)
    return best


def drive(shielded):
    m = mujoco.MjModel.from_xml_path(str(MODEL))
    d = mujoco.MjData(m)
    substeps = int(round((1 / 30) / m.opt.timestep))
    d.qpos[:] = d.ctrl[:] = Q0
    mujoco.mj_forward(m, d)
    for _ in range(300):
        mujoco.mj_step(m, d)
    shield = so101_shield(MODEL)
    p, _ = shield.kin.site((Q0 + Q1) / 2, "gripperframe")
    obs = np.array([[*p, 0.03]])
    u_prev, clearance, statuses = d.ctrl.copy(), np.inf, set()
    for _ in range(120):  # 4 s at 30 Hz, nominal: straight for Q1 at 0.8 rad/s
        u = u_prev + np.clip(Q1 - u_prev, -0.8 / 30, 0.8 / 30)
        if shielded:
            u, info = shield.filter(ArmState(q=d.qpos.copy(), u_prev=u_prev), u, {"obstacles": obs})
            statuses.add(info.status)
        d.ctrl[:] = u_prev = u
        for _ in range(substeps):
            mujoco.mj_step(m, d)
            clearance = min(clearance, capsule_clearance(m, d, obs[0, :3], obs[0, 3]))
    return clearance, statuses, np.abs(d.qvel).max(), shield.config.clearance


def test_arm_driven_at_an_obstacle_stops_short_in_mujoco():
    clearance, statuses, speed, margin = drive(shielded=True)
    assert clearance >= margin, clearance  # the shield's clearance held with the servos' real error
    assert statuses == {"ok"} and speed < 0.05  # and the arm came to rest in front of it


def test_the_same_command_unshielded_hits_the_obstacle():
    clearance, _, _, _ = drive(shielded=False)
    assert clearance < 0.0


def test_tabulated_tracking_error_bounds_held_out_motions():
    """The shield's tracking-error table (measured on seed 0) bounds MuJoCo's servos on other seeds:
    every tick stays within max(worst case, error at the tick's start + growth) of the commanded segment."""
    from rtctl.safety import SO101_TRACKING
    from rtctl.sim.servo_tracking import tracking_samples

    for speed in (1.0, 1.5, 2.5):
        s = tracking_samples(speeds=(speed,), episodes=8, seed=7)
        err, growth = (np.array(x) for x in SO101_TRACKING[speed])
        deviation = s.start + s.growth
        assert s.start.shape[0] > 300
        assert (deviation <= np.maximum(err, s.start + growth) + 1e-9).all(), speed
