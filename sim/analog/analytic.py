"""Analytic backend: hand analysis of the two-stage Miller op-amp, vectorised over (design, corner) pairs.

DC: the bias diode M8 sets the gate of M5/M7; the tail voltage solves the loop "M5 current <-> M1/M2 gate
drive with body effect" by bisection; the DC feedback of the test bench holds the output at VCM, so M6
carries M7's current and the mirror's CLM mismatch splits the tail current between M1 and M2. Devices that
leave saturation get level-1 triode gm/gds. AC: the two-stage transfer function with the exact second-
order denominator, the right-half-plane zero gm6/Cc and the mirror pole-zero doublet, evaluated on a
log-frequency grid and read the way the SPICE testbench reads it (gain at the first point, unity-gain
crossing by linear interpolation in dB, phase margin from the continuous phase).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .mos import MosCard, at_temperature, diode_overdrive, drain_current, forced_current, junction_cap
from .spec import Benchmark, Corner

FREQ = np.logspace(-1, 11, 12 * 40 + 1)  # Hz; 40 points per decade


def _corner_arrays(corners: Sequence[Corner]) -> dict[str, np.ndarray]:
    return {
        "vto_n": np.array([c.nmos.vto for c in corners]), "kp_n": np.array([c.nmos.kp for c in corners]),
        "vto_p": np.array([c.pmos.vto for c in corners]), "kp_p": np.array([c.pmos.kp for c in corners]),
        "vdd": np.array([c.vdd for c in corners]), "temp_k": np.array([c.temperature_c for c in corners]) + 273.15,
    }


def simulate(bench: Benchmark, designs: np.ndarray, corners: Sequence[Corner]) -> dict[str, np.ndarray]:
    """Measurements for row i = (designs[i], corners[i]); ``designs`` are physical values (N x 8)."""
    x = np.atleast_2d(np.asarray(designs, dtype=float))
    if len(corners) != len(x):
        raise ValueError(f"simulate: {len(x)} designs but {len(corners)} corners (one corner per row)")
    c = _corner_arrays(corners)
    ncard, pcard = bench.devices["nmos"], bench.devices["pmos"]
    n = at_temperature(ncard, c["vto_n"], c["kp_n"], c["temp_k"])
    p = at_temperature(pcard, c["vto_p"], c["kp_p"], c["temp_k"])
    vdd = c["vdd"]
    vcm = bench.circuit["vcm_fraction"] * vdd
    um = 1e-6
    w1, w3, w5, w6, w7, l_um = (x[:, i] for i in range(6))
    ibias, cc = x[:, 6] * 1e-6, x[:, 7] * 1e-12
    w8 = bench.circuit["w8_um"]
    lam_n, lam_p = ncard.lambda_um / l_um, pcard.lambda_um / l_um

    def beta(kp: np.ndarray, w: np.ndarray | float) -> np.ndarray:
        return kp * w / l_um  # W/L ratio in um/um

    # Bias line: diode M8.
    vth_n0 = n.vth(0.0)
    vov8 = diode_overdrive(ibias, beta(n.kp, w8), lam_n, vth_n0)

    # Tail node: g(vt) = vcm - vgs1(I5(vt)/2, vt) - vt is decreasing in vt -> bisection on [0, vcm].
    lo, hi = np.zeros_like(vcm), vcm.copy()
    for _ in range(40):
        vt = 0.5 * (lo + hi)
        i5 = drain_current(beta(n.kp, w5), lam_n, vov8, vt)
        vgs1 = n.vth(vt) + np.sqrt(2 * np.maximum(i5 / 2, 1e-18) / beta(n.kp, w1))
        up = vcm - vgs1 - vt > 0
        lo, hi = np.where(up, vt, lo), np.where(up, hi, vt)
    vtail = 0.5 * (lo + hi)
    i5 = drain_current(beta(n.kp, w5), lam_n, vov8, vtail)
    m5 = forced_current(i5, vtail, beta(n.kp, w5), lam_n)

    # Second stage: M7 sinks its mirrored current at vds = vcm; M6 carries it.
    i7 = drain_current(beta(n.kp, w7), lam_n, vov8, vcm)
    m7 = forced_current(i7, vcm, beta(n.kp, w7), lam_n)
    m6 = forced_current(i7, vdd - vcm, beta(p.kp, w6), lam_p)
    vsg6 = p.vth(0.0) + m6.vgst

    # First stage: diode M3; the mirror's CLM mismatch (vsd4 = vsg6 vs vsd3 = vsg3) sets the current split.
    vth_p0 = p.vth(0.0)
    vov3 = diode_overdrive(i5 / 2, beta(p.kp, w3), lam_p, vth_p0)
    vsg3 = vth_p0 + vov3
    ratio = (1 + lam_p * vsg6) / (1 + lam_p * vsg3)
    i1, i2 = i5 / (1 + ratio), i5 * ratio / (1 + ratio)
    vds1, vds2 = vdd - vsg3 - vtail, vdd - vsg6 - vtail
    m1 = forced_current(i1, vds1, beta(n.kp, w1), lam_n)
    m2 = forced_current(i2, vds2, beta(n.kp, w1), lam_n)
    m3 = forced_current(i1, vsg3, beta(p.kp, w3), lam_p)
    m4 = forced_current(i2, vsg6, beta(p.kp, w3), lam_p)

    # Capacitances (Meyer in saturation + overlaps + reverse-biased drain junctions).
    ldiff = bench.circuit["l_diff_um"]

    def cdb(card: MosCard, w: np.ndarray, vrev: np.ndarray) -> np.ndarray:
        return junction_cap(card, w * ldiff * um * um, (w + 2 * ldiff) * um, vrev)

    def cgs(card: MosCard, w: np.ndarray) -> np.ndarray:
        return (2.0 / 3.0) * card.cox * w * l_um * um * um + card.cgso * w * um

    out1 = vdd - vsg6
    node_a = vdd - vsg3
    c1 = cgs(pcard, w6) + cdb(ncard, w1, out1) + cdb(pcard, w3, vsg6) + (ncard.cgdo * w1 + pcard.cgdo * w3) * um
    c2 = bench.circuit["cl_pf"] * 1e-12 + cdb(pcard, w6, vdd - vcm) + cdb(ncard, w7, vcm) + ncard.cgdo * w7 * um
    c3 = 2 * cgs(pcard, w3) + cdb(ncard, w1, node_a) + cdb(pcard, w3, vsg3) + (ncard.cgdo * w1 + pcard.cgdo * w3) * um
    ccx = cc + pcard.cgdo * w6 * um

    # Transfer function. First-stage Gm: the pair's mean gm through the mirror while both halves are
    # saturated; otherwise the weaker half's, because a crushed M1 (no headroom under the diode M3)
    # takes the mirror path and the DC loop with it.
    both_sat = m1.saturated & m2.saturated
    gm_in = np.where(both_sat, 0.5 * (m1.gm + m2.gm), np.minimum(m1.gm, m2.gm))
    g1, g2 = m2.gds + m4.gds, m6.gds + m7.gds
    r1, r2 = 1 / g1, 1 / g2
    a0 = gm_in * r1 * m6.gm * r2
    a1 = r1 * (c1 + ccx) + r2 * (c2 + ccx) + m6.gm * r1 * r2 * ccx
    a2 = r1 * r2 * (c1 * c2 + ccx * (c1 + c2))
    p3 = (m3.gm + m3.gds + m1.gds) / c3
    s = 2j * np.pi * FREQ[None, :]
    h = (a0[:, None] * (1 - s * (ccx / m6.gm)[:, None]) / (1 + s * a1[:, None] + s * s * a2[:, None])
         * (1 + s / (2 * p3[:, None])) / (1 + s / p3[:, None]))
    gain = np.abs(h[:, 0])
    ugbw, phase = _unity_crossing(h)

    return {
        "gain": gain,
        "ugbw_mhz": ugbw / 1e6,
        "pm_deg": 180.0 + phase,
        "power_mw": vdd * (ibias + i5 + i7) * 1e3,
        "swing_v": vdd - m6.vgst - m7.vgst,
        # operating-point extras (diagnostics / consistency checks)
        "i5_ua": i5 * 1e6, "i7_ua": i7 * 1e6, "vtail": vtail, "vov8": vov8,
        "all_saturated": m1.saturated & m2.saturated & m4.saturated & m5.saturated & m6.saturated & m7.saturated,
    }


def _unity_crossing(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First downward 0 dB crossing (Hz) and the continuous phase there (deg); (0, -180) if none."""
    db = 20 * np.log10(np.maximum(np.abs(h), 1e-30))
    ph = np.degrees(np.unwrap(np.angle(h), axis=1))
    below = db <= 0
    idx = np.argmax(below, axis=1)
    found = below.any(axis=1) & (idx > 0)
    k = np.maximum(idx, 1)
    rows = np.arange(len(h))
    d0, d1 = db[rows, k - 1], db[rows, k]
    t = np.clip(d0 / np.where(d0 - d1 == 0, 1, d0 - d1), 0, 1)
    lf = np.log10(FREQ)
    f = 10 ** (lf[k - 1] + t * (lf[k] - lf[k - 1]))
    phase = ph[rows, k - 1] + t * (ph[rows, k] - ph[rows, k - 1])
    return np.where(found, f, 0.0), np.where(found, phase, -180.0)
