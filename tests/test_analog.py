"""Op-amp benchmark: spec file, reward form, device temperature laws, analytic model, ngspice consistency."""
import numpy as np
import pytest
from scipy.stats import kendalltau

from rtctl.sim.analog import ngspice
from rtctl.sim.analog.env import OpAmpProblem, OpAmpSizingEnv
from rtctl.sim.analog.mos import REFTEMP, at_temperature
from rtctl.sim.analog.spec import DESIGN_VARIABLES, load_benchmark
from rtctl.sim.variations import VariedEnv

NGSPICE_MISSING = "ngspice not on PATH; install it with `apt-get install -y ngspice` to run the backend checks"


def test_benchmark_definition():
    b = load_benchmark()
    assert len(b.corners) == 45 and b.corners[b.corners.nominal].params == {
        "process": "TT", "supply_scale": 1.0, "temperature_c": 27.0}
    assert {v.params["process"] for v in b.corners} == {"TT", "FF", "SS", "FS", "SF"}
    assert len(b.specs) >= 5 and b.bounds.shape == (len(DESIGN_VARIABLES), 2)
    a = np.array([[-1.0] * 8, [1.0] * 8, [0.3] * 8])
    assert np.allclose(b.to_action(b.to_physical(a)), a)
    assert np.allclose(b.to_physical(a)[0], b.bounds[:, 0]) and np.allclose(b.to_physical(a)[1], b.bounds[:, 1])


def test_reward_has_the_autockt_form():
    b = load_benchmark()
    good = {s.name: np.array([s.target * (1.5 if s.sense == ">=" else 0.5)]) for s in b.specs}
    assert b.passes(good)[0] and b.reward(good)[0] == pytest.approx(b.bonus)
    bad = dict(good, gain=np.array([1000.0]))  # target 3000: rel = (1000 - 3000) / 4000
    assert not b.passes(bad)[0] and b.reward(bad)[0] == pytest.approx(-0.5)
    worse = dict(bad, power_mw=np.array([0.9]))  # "<=" spec: rel = (0.3 - 0.9) / 1.2
    assert b.reward(worse)[0] == pytest.approx(-1.0)
    assert b.reward(dict(good, pm_deg=np.array([-30.0])))[0] == pytest.approx(-1.0)  # negative -> 0 -> rel -1


def test_temperature_law_matches_spice_level1():
    card = load_benchmark().devices["nmos"]
    at_nom = at_temperature(card, np.array([card.vto]), np.array([card.kp]), np.array([REFTEMP]))
    assert at_nom.vth()[0] == pytest.approx(card.vto, abs=1e-9) and at_nom.kp[0] == pytest.approx(card.kp)
    # ngspice-39 level-1 threshold of this card at -40 C, read from `@m1[vdsat]` at vgs = 0.7 V: 0.50881 V
    cold = at_temperature(card, np.array([card.vto]), np.array([card.kp]), np.array([233.15]))
    assert cold.vth()[0] == pytest.approx(0.50881, abs=2e-4)
    assert cold.kp[0] == pytest.approx(card.kp * (233.15 / REFTEMP) ** -1.5)


def test_reference_design_passes_every_corner_and_extremes_hurt():
    p = OpAmpProblem()
    a = p.bench.to_action(p.bench.reference_design)
    ev = p.evaluate_all(a)
    assert ev.passed.all() and p.simulations == 45
    rng = np.random.default_rng(0)
    rand = p.evaluate(rng.uniform(-1, 1, (200, 8)), np.full(200, p.nominal))
    assert rand.passed.mean() < 0.1  # the specs are not met by chance


def test_analytic_trends():
    p = OpAmpProblem()
    base = p.bench.to_action(p.bench.reference_design)
    more_bias = base.copy()
    more_bias[6] += 0.2  # ibias up
    m0 = p.simulate(base[None], [p.nominal])
    m1 = p.simulate(more_bias[None], [p.nominal])
    assert m1["power_mw"][0] > m0["power_mw"][0] and m1["ugbw_mhz"][0] > m0["ugbw_mhz"][0]
    bigger_cc = base.copy()
    bigger_cc[7] += 0.3
    m2 = p.simulate(bigger_cc[None], [p.nominal])
    assert m2["ugbw_mhz"][0] < m0["ugbw_mhz"][0] and m2["pm_deg"][0] > m0["pm_deg"][0]


def test_one_step_env_with_variation_at_reset():
    b = load_benchmark()
    env = VariedEnv(OpAmpSizingEnv(), b.corners)
    _, info = env.reset(seed=0, options={"variation": 44})
    assert info["variation"] == 44 and info["corner"] == b.corner(b.corners[44].params).name == "SF_1.1V_125C"
    _, r, term, trunc, info = env.step(b.to_action(b.reference_design))
    assert term and not trunc and info["passed"] and r == pytest.approx(b.bonus)
    with pytest.raises(ValueError, match="backend"):
        OpAmpProblem("spectre")


def test_backends_agree_on_rankings():
    """Kendall tau >= 0.8 per spec between analytic and ngspice (20 random designs x 45 corners)."""
    if ngspice.ngspice_path() is None:
        pytest.skip(NGSPICE_MISSING)
    pa, ps = OpAmpProblem("analytic"), OpAmpProblem("ngspice")
    rng = np.random.default_rng(1)
    a = np.repeat(rng.uniform(-1, 1, (20, 8)), 45, axis=0)
    t = np.tile(np.arange(45), 20)
    ma, ms = pa.simulate(a, t), ps.simulate(a, t)
    for s in pa.spec_names:
        ok = np.isfinite(ms[s])
        assert ok.mean() > 0.95, f"ngspice gave no value for {s} on {int((~ok).sum())} rows"
        tau = kendalltau(ma[s][ok], ms[s][ok])[0]
        assert tau >= 0.8, f"{s}: Kendall tau {tau:.3f} < 0.8"
    ref = ps.evaluate_all(ps.bench.to_action(ps.bench.reference_design))
    assert ref.passed.all()


def test_ngspice_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ngspice.NgspiceMissing, match="apt-get install -y ngspice"):
        OpAmpProblem("ngspice").evaluate_all(np.zeros(8))
