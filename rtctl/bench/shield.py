"""`rtctl bench shield`: how fast the CBF shields filter a command, against CVXPY on the same problems, and
whether randomised closed loops ever leave the safe set.

Every timing is the whole `filter()` / `filter_batch()` call (row assembly, kinematics, solve, checks),
wall clock (`perf_counter_ns`) and this thread's CPU time (`thread_time_ns`, which a shared machine's
scheduling does not inflate), repeated ≥ 3 times: the row gives the median over repeats and the spread
(min–max of the repeats' p50). Cases: arm 6-DoF (SO-101 model, ≥ 20 barrier rows assembled, obstacles
near the arm, targets pushing into them), vehicle with 6 neighbours, vehicle `filter_batch` (µs per
problem) and `action_mask`, each with every installed QP backend and CVXPY; then the randomised
closed-loop episodes (`rtctl.safety.scenarios`), whose violations must be 0.
"""
from __future__ import annotations

import pathlib
import time

import numpy as np

from rtctl.report.runfolder import peak_rss_mb, write_rows
from rtctl.safety import (ArmState, VehicleShield, VehicleShieldConfig, action_mask, bicycle_step,
                          neighbour_table, so101_shield)
from rtctl.safety.scenarios import arm_violation, arm_episodes, arm_start, vehicle_episodes

MODEL = pathlib.Path(__file__).resolve().parents[2] / "sim" / "assets" / "so101.xml"
ARM_BACKENDS = ("auto", "quadprog", "proxsuite", "osqp", "cvxpy")
VEH_BACKENDS = ("auto", "exact2", "quadprog", "osqp", "cvxpy")


def _timed(fn, *args):
    """Call fn(*args); return its result, wall ns and this thread's CPU ns."""
    c0 = time.thread_time_ns()
    t0 = time.perf_counter_ns()
    out = fn(*args)
    t1 = time.perf_counter_ns()
    return out, t1 - t0, time.thread_time_ns() - c0


def _stats(wall_ns, cpu_ns):
    w, c = np.asarray(wall_ns) / 1e3, np.asarray(cpu_ns) / 1e3
    return float(np.percentile(w, 50)), float(np.percentile(w, 99)), float(np.percentile(c, 50)), \
        float(np.percentile(c, 99))


def _summarise(case, backend, repeats, solves, constraints, extra):
    """repeats: list of (p50, p99, cpu_p50, cpu_p99) per repeat → one results row."""
    r = np.array(repeats)
    row = {"case": case, "backend": backend, "constraints": constraints, "solves": solves,
           "p50_us": float(np.median(r[:, 0])), "p99_us": float(np.median(r[:, 1])),
           "p50_spread_us": [float(r[:, 0].min()), float(r[:, 0].max())],
           "cpu_p50_us": float(np.median(r[:, 2])), "cpu_p99_us": float(np.median(r[:, 3])),
           "repeats": len(repeats)}
    row.update(extra)
    return row


# -- arm ---------------------------------------------------------------------------------------------------
def arm_problems(shield, n, rng):
    """Certified starts with 3 obstacles near the arm; the last step at the rate limit; targets pushing
    the tool towards the nearest obstacle (half) or anywhere at full rate (half)."""
    out = []
    v = shield.speed * shield.config.dt
    for i in range(n):
        q, obs = arm_start(shield, rng, 3)
        last = rng.uniform(-1.0, 1.0, q.shape) * v
        p, J = shield.kin.site(q, "gripperframe")
        if i % 2 == 0:
            d = np.linalg.lstsq(J, obs[np.argmin(np.linalg.norm(obs[:, :3] - p, axis=1)), :3] - p, rcond=None)[0]
            step = v * d / (np.abs(d).max() + 1e-12)
        else:
            step = rng.uniform(-1.0, 1.0, q.shape) * v * 1.5
        out.append((q - last, q, q + step, obs))
    return out


def time_arm(shield, problems, repeats):
    wall, cpu, results = [], [], []
    for _ in range(repeats):
        w, c, res = [], [], []
        for q_before, q, u_nom, obs in problems:
            shield.reset()
            shield.filter(ArmState(q=q_before, u_prev=q_before), q, {"obstacles": obs})  # sets the last step
            out, wall_ns, cpu_ns = _timed(shield.filter, ArmState(q=q, u_prev=q), u_nom, {"obstacles": obs})
            w.append(wall_ns)
            c.append(cpu_ns)
            res.append(out)
        wall.append(_stats(w, c))
        results = res
    return wall, results


def arm_rows(n, repeats, rng):
    rows, ref = [], None
    base = so101_shield(MODEL)
    problems = arm_problems(base, n, rng)
    assembled = int(base._rows_for(3)[0].size)
    outs = {}
    for backend in ARM_BACKENDS:
        sh = so101_shield(MODEL, backend=backend)
        probs = problems if backend != "cvxpy" else problems[: max(20, n // 10)]
        stats, res = time_arm(sh, probs, repeats)
        outs[backend] = res
        viol = sum(arm_violation(sh, u, obs) for (u, _), (_, _, _, obs) in zip(res, probs))
        extra = {"violations": int(viol), "relaxed": sum(i.status == "relaxed" for _, i in res),
                 "fallbacks": sum(i.status == "fallback" for _, i in res),
                 "intervened": sum(i.intervened for _, i in res),
                 "qp_rows_mean": float(np.mean([i.rows for _, i in res]))}
        rows.append(_summarise("arm_6dof", backend, stats, len(probs), assembled, extra))
    ref = outs["cvxpy"]
    for row in rows:
        res = outs[row["backend"]][: len(ref)]
        row["max_diff_vs_cvxpy"] = float(max(np.abs(u - ur).max() for (u, _), (ur, _) in zip(res, ref)))
    return rows


# -- vehicle -----------------------------------------------------------------------------------------------
def vehicle_problems(shield, n, rng):
    """Ego in the middle of three lanes with front/rear neighbours in its own and both adjacent lanes,
    random gaps, speeds, commands and target lanes (keep / left / right)."""
    road, p = shield.road, shield.params
    probs = []
    for _ in range(n):
        v = rng.uniform(0.5, p.speed_max)
        ego = np.array([0.0, road.centre(1) + rng.normal(0, 0.03), rng.normal(0, 0.05), v])
        nbs = [dict(s=side * rng.uniform(1.2, 5.0), y=float(road.centre(lane)) + rng.normal(0, 0.03),
                    v=rng.uniform(0.0, p.speed_max), a=rng.uniform(-2, 2), coop=float(rng.random() < 0.5),
                    age=float(rng.choice([0.0, 0.1, 0.2])), psi=rng.normal(0, 0.03))
               for lane in (0, 1, 2) for side in (1, -1)]
        u = np.array([rng.uniform(-5.0, 4.0), rng.uniform(-0.45, 0.45)])
        probs.append((ego, u, neighbour_table(nbs), int(rng.integers(0, 3))))
    return probs


def _vehicle_violation(shield, ego, u, nb):
    """One tick later (neighbours braking fully), is any same-lane front gap below the standstill gap?"""
    p, dt = shield.params, shield.config.dt
    x1 = bicycle_step(ego, u[0], p.steer_to_kappa(u[1]), dt, p)
    same = np.abs(nb[:, 1] - x1[1]) < 0.5 * shield.road.lane_width
    ahead = nb[:, 0] > ego[0]
    vf_end = np.maximum(nb[:, 2] - p.brake_max * dt, 0.0)
    s_front = nb[:, 0] + (nb[:, 2] + vf_end) * 0.5 * (nb[:, 2] - vf_end) / p.brake_max
    gap = (s_front - p.rear_overhang) - (x1[0] + p.front_extent)
    return bool(np.any(same & ahead & (gap < 0.0)))


def vehicle_rows(n, repeats, rng):
    rows, outs = [], {}
    probs = vehicle_problems(VehicleShield(), n, rng)
    for backend in VEH_BACKENDS:
        sh = VehicleShield(config=VehicleShieldConfig(backend=backend))
        ps = probs if backend != "cvxpy" else probs[: max(50, n // 10)]
        stats = []
        for _ in range(repeats):
            w, c, res = [], [], []
            for ego, u_nom, nb, tl in ps:
                out, wall_ns, cpu_ns = _timed(sh.filter, ego, u_nom, {"neighbours": nb, "target_lane": tl})
                w.append(wall_ns)
                c.append(cpu_ns)
                res.append(out)
            stats.append(_stats(w, c))
        outs[backend] = res
        extra = {"violations": int(sum(_vehicle_violation(sh, e, u, nb) for (u, _), (e, _, nb, _) in zip(res, ps))),
                 "relaxed": sum(i.status == "relaxed" for _, i in res),
                 "fallbacks": sum(i.status == "fallback" for _, i in res),
                 "intervened": sum(i.intervened for _, i in res),
                 "qp_rows_mean": float(np.mean([i.rows for _, i in res])), "neighbours": 6}
        rows.append(_summarise("vehicle_6_neighbours", backend, stats, len(ps), 4 + 6, extra))
    ref = outs["cvxpy"]
    for row in rows:
        res = outs[row["backend"]][: len(ref)]
        row["max_diff_vs_cvxpy"] = float(max(np.abs(u - ur).max() for (u, _), (ur, _) in zip(res, ref)))
    return rows, probs


def vehicle_batch_rows(probs, repeats, rng):
    sh = VehicleShield()
    B = len(probs)
    X = np.array([p[0] for p in probs])
    U = np.array([p[1] for p in probs])
    NB = np.array([p[2] for p in probs])
    TL = np.array([p[3] for p in probs])
    stats = []
    for _ in range(repeats):
        (u, info), wall_ns, cpu_ns = _timed(sh.filter_batch, X, U, NB, None, TL)
        stats.append((wall_ns / B / 1e3, wall_ns / B / 1e3, cpu_ns / B / 1e3, cpu_ns / B / 1e3))
    single = VehicleShield()
    agree = max(np.abs(u[i] - single.filter(X[i], U[i], {"neighbours": NB[i], "target_lane": int(TL[i])})[0]).max()
                for i in range(0, B, max(1, B // 200)))
    viol = sum(_vehicle_violation(sh, X[i], u[i], NB[i]) for i in range(B))
    rows = [_summarise("vehicle_filter_batch", "exact2_vectorised", stats, B, 4 + 6,
                       {"violations": int(viol), "relaxed": int(np.sum(info.status == 1)),
                        "fallbacks": int(np.sum(info.status == 2)), "per_problem": True,
                        "max_diff_vs_filter": float(agree)})]
    # action masks: agents × 9 behaviours in one call
    agents = max(1, B // 9)
    stats = []
    for _ in range(repeats):
        (mask, _, _), wall_ns, cpu_ns = _timed(action_mask, sh, X[:agents], NB[:agents])
        n = agents * 9
        stats.append((wall_ns / n / 1e3, wall_ns / n / 1e3, cpu_ns / n / 1e3, cpu_ns / n / 1e3))
    rows.append(_summarise("vehicle_action_mask", "exact2_vectorised", stats, agents * 9, 4 + 6,
                           {"violations": 0, "relaxed": 0, "fallbacks": 0, "per_problem": True,
                            "allowed_fraction": float(mask.mean())}))
    return rows


# -- closed loop -------------------------------------------------------------------------------------------
def closed_loop_rows(n_vehicle, n_arm, rng):
    rows = []
    t0 = time.perf_counter()
    veh = VehicleShield()
    for lag in (0, 1):
        c = vehicle_episodes(veh, n_vehicle // 2, steps=50, cars=4, rng=rng, lag=lag)
        rows.append({"case": f"closed_loop_vehicle_lag{lag}", "backend": "exact2_vectorised",
                     "constraints": None, "solves": c["calls"], "p50_us": None, "p99_us": None,
                     "violations": c["violations"], "relaxed": c["relaxed"], "fallbacks": c["fallbacks"],
                     "episodes": c["episodes"], "message_age_s": lag * veh.config.dt,
                     "min_gap_m": c["min_gap_m"], "min_edge_m": c["min_edge_m"]})
    arm = so101_shield(MODEL)
    c = arm_episodes(arm, n_arm, steps=40, rng=rng)
    rows.append({"case": "closed_loop_arm", "backend": "auto", "constraints": None, "solves": c["calls"],
                 "p50_us": None, "p99_us": None, "violations": c["violations"], "relaxed": c["relaxed"],
                 "fallbacks": c["fallbacks"], "episodes": c["episodes"]})
    rows[-1]["wall_s_all_closed_loop"] = time.perf_counter() - t0
    return rows


def run(out_dir: pathlib.Path, quick: bool) -> list[dict]:
    out_dir = pathlib.Path(out_dir)
    rng = np.random.default_rng(0)
    repeats = 3
    n_arm, n_veh, n_batch = (150, 400, 1024) if quick else (1000, 3000, 4096)
    rows = arm_rows(n_arm, repeats, rng)
    vrows, _ = vehicle_rows(n_veh, repeats, rng)
    rows += vrows
    rows += vehicle_batch_rows(vehicle_problems(VehicleShield(), n_batch, rng), repeats, rng)
    rows += closed_loop_rows(2000 if quick else 10000, 100 if quick else 2000, rng)
    rows += tracking_rows(4 if quick else 20)
    for case in ("arm_6dof", "vehicle_6_neighbours"):
        cv = next(r for r in rows if r["case"] == case and r["backend"] == "cvxpy")
        for r in rows:
            if r["case"] == case:
                r["speedup_vs_cvxpy_p50"] = cv["p50_us"] / r["p50_us"]
        fastest = min((r for r in rows if r["case"] == case and r["backend"] != "cvxpy"), key=lambda r: r["p50_us"])
        fastest["fastest_backend"] = True
    batch = next(r for r in rows if r["case"] == "vehicle_filter_batch")
    cv = next(r for r in rows if r["case"] == "vehicle_6_neighbours" and r["backend"] == "cvxpy")
    batch["speedup_vs_cvxpy_p50"] = cv["p50_us"] / batch["p50_us"]
    for r in rows:
        r["peak_rss_mb"] = peak_rss_mb()
    write_rows(out_dir / "results.json", rows)
    (out_dir / "table.md").write_text(markdown_table(rows))
    return rows


def tracking_rows(episodes: int) -> list[dict]:
    """Re-measure the SO-101 servo tracking error (MuJoCo, 30 Hz) on a seed the table was not fitted on, and
    count ticks outside the shield's tracking-error model (`SO101_TRACKING`): its margins rest on them."""
    from rtctl.safety import SO101_TRACKING
    from rtctl.sim.servo_tracking import tracking_samples

    rows = []
    for speed, (err, growth) in SO101_TRACKING.items():
        s = tracking_samples(speeds=(speed,), episodes=episodes, seed=11)
        dev = s.start + s.growth
        rows.append({"case": "servo_tracking", "backend": "mujoco", "max_joint_speed": speed, "ticks": len(dev),
                     "worst_error_rad": dev.max(axis=0).round(4).tolist(), "table_error_rad": list(err),
                     "worst_growth_rad": s.growth.max(axis=0).round(4).tolist(), "table_growth_rad": list(growth),
                     "violations": int((dev > np.maximum(err, s.start + np.asarray(growth)) + 1e-9).sum())})
    return rows


def markdown_table(rows) -> str:
    head = "| case | backend | constraints | solves | p50 µs | p99 µs | CPU p50 µs | × CVXPY | violations | relaxed | fallbacks |\n"
    head += "|---|---|---|---|---|---|---|---|---|---|---|\n"
    fmt = (lambda x, d=1: "–" if x is None else f"{x:.{d}f}")
    lines = [f"| {r['case']} | {r['backend']} | {r.get('constraints') or '–'} | {r['solves']} | {fmt(r['p50_us'])} | "
             f"{fmt(r['p99_us'])} | {fmt(r.get('cpu_p50_us'))} | {fmt(r.get('speedup_vs_cvxpy_p50'))} | "
             f"{r['violations']} | {r['relaxed']} | {r['fallbacks']} |" for r in rows if r["case"] != "servo_tracking"]
    track = ["", "| servo tracking at max_joint_speed | ticks | worst error rad (table) | violations of the model |",
             "|---|---|---|---|"]
    track += [f"| {r['max_joint_speed']} rad/s | {r['ticks']} | {max(r['worst_error_rad']):.3f} "
              f"({max(r['table_error_rad']):.3f}) | {r['violations']} |" for r in rows if r["case"] == "servo_tracking"]
    return head + "\n".join(lines + track) + "\n"


if __name__ == "__main__":
    import sys

    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-shield")
    for r in run(out, "--quick" in sys.argv):
        print(r)
