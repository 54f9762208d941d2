"""MOSFET equations of the analytic backend: SPICE level 1 (square law + channel-length modulation + body
effect) with SPICE's own temperature laws, vectorised over numpy arrays.

The temperature update follows the published SPICE3 level-1 model (mos1temp: mobility ~ (T/Tnom)^-1.5,
surface potential and flat-band shift from the silicon band gap Eg(T) = 1.16 - 7.02e-4 T^2/(T + 1108)), so
the analytic backend and the ngspice backend share one device card and differ only in how the circuit is
solved (hand analysis vs. Newton DC + AC sweep with all parasitic capacitances).

Voltages here are "type-normalised": for a PMOS, vgs means vsg, vds means vsd, vth means |vth|.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOLTZ = 1.38064852e-23
CHARGE = 1.6021766208e-19
REFTEMP = 300.15  # K, 27 C; also SPICE's default TNOM
KOVERQ = BOLTZ / CHARGE


@dataclass(frozen=True)
class MosCard:
    """One level-1 model card (SI units). ``lambda_um`` is CLM in um/V: LAMBDA = lambda_um / L[um]."""

    polarity: int  # +1 nmos, -1 pmos
    vto: float  # V (signed, as in the card)
    kp: float  # A/V^2
    gamma: float  # sqrt(V)
    phi: float  # V
    lambda_um: float
    tox: float  # m
    cgso: float  # F/m
    cgdo: float  # F/m
    cj: float  # F/m^2
    mj: float
    cjsw: float  # F/m
    mjsw: float
    pb: float  # V

    @property
    def cox(self) -> float:
        return 3.9 * 8.854214871e-12 / self.tox

    def shifted(self, dvth: float, kp_scale: float) -> "MosCard":
        """Process corner: |vth| shifted by ``dvth`` (positive = slower), kp scaled."""
        vto = self.vto + self.polarity * dvth
        return MosCard(**{**self.__dict__, "vto": vto, "kp": self.kp * kp_scale})


@dataclass(frozen=True)
class MosAtTemp:
    """Temperature-updated quantities (arrays broadcast over samples)."""

    kp: np.ndarray  # A/V^2
    vbi: np.ndarray  # type-normalised built-in part of vth: vth(vsb) = vbi + gamma*sqrt(phi_t + vsb)
    phi_t: np.ndarray
    gamma: float

    def vth(self, vsb: np.ndarray | float = 0.0) -> np.ndarray:
        return self.vbi + self.gamma * np.sqrt(np.maximum(self.phi_t + vsb, 1e-6))


def _egap(t: np.ndarray) -> np.ndarray:
    return 1.16 - 7.02e-4 * t * t / (t + 1108.0)


def at_temperature(card: MosCard, vto: np.ndarray, kp: np.ndarray, temp_k: np.ndarray,
                   tnom_k: float = REFTEMP) -> MosAtTemp:
    """SPICE3 level-1 temperature update of (vto, kp) arrays (corner-shifted values of ``card``)."""
    t = np.asarray(temp_k, dtype=float)
    fact1 = tnom_k / REFTEMP
    eg1 = _egap(np.asarray(tnom_k))
    arg1 = -eg1 / (2 * BOLTZ * tnom_k) + 1.1150877 / (BOLTZ * 2 * REFTEMP)
    pbfact1 = -2 * tnom_k * KOVERQ * (1.5 * np.log(fact1) + CHARGE * arg1)
    fact2 = t / REFTEMP
    eg = _egap(t)
    arg = -eg / (2 * BOLTZ * t) + 1.1150877 / (BOLTZ * 2 * REFTEMP)
    pbfact = -2 * t * KOVERQ * (1.5 * np.log(fact2) + CHARGE * arg)
    ratio = t / tnom_k
    phio = (card.phi - pbfact1) / fact1
    phi_t = fact2 * phio + pbfact
    typ = card.polarity
    tvbi = vto - typ * card.gamma * np.sqrt(card.phi) + 0.5 * (eg1 - eg) + typ * 0.5 * (phi_t - card.phi)
    return MosAtTemp(kp=np.asarray(kp) / (ratio * np.sqrt(ratio)), vbi=typ * tvbi, phi_t=phi_t, gamma=card.gamma)


def drain_current(beta: np.ndarray, lam: np.ndarray, vgst: np.ndarray, vds: np.ndarray) -> np.ndarray:
    """Level-1 drain current for overdrive ``vgst`` (= vgs - vth) and ``vds`` >= 0."""
    vgst = np.maximum(vgst, 0.0)
    vds = np.maximum(vds, 0.0)
    betap = beta * (1 + lam * vds)
    sat = vgst <= vds
    return np.where(sat, 0.5 * betap * vgst**2, betap * vds * (vgst - 0.5 * vds))


@dataclass(frozen=True)
class SmallSignal:
    vgst: np.ndarray  # overdrive the device needs to carry the current (= SPICE's vdsat for level 1)
    gm: np.ndarray
    gds: np.ndarray
    saturated: np.ndarray


def forced_current(i_d: np.ndarray, vds: np.ndarray, beta: np.ndarray, lam: np.ndarray) -> SmallSignal:
    """Overdrive, gm and gds of a device whose current and vds are set by the rest of the circuit."""
    vds = np.maximum(vds, 1e-3)
    i_d = np.maximum(i_d, 1e-15)
    betap = beta * (1 + lam * vds)
    vgst_sat = np.sqrt(2 * i_d / betap)
    sat = vgst_sat <= vds
    vgst_lin = i_d / (betap * vds) + 0.5 * vds
    vgst = np.where(sat, vgst_sat, vgst_lin)
    gm = np.where(sat, betap * vgst, betap * vds)
    gds = np.where(sat, lam * beta * 0.5 * vgst**2,
                   betap * (vgst - vds) + lam * beta * vds * (vgst - 0.5 * vds))
    return SmallSignal(vgst, gm, gds, sat)


def diode_overdrive(i_d: np.ndarray, beta: np.ndarray, lam: np.ndarray, vth: np.ndarray,
                    iters: int = 6) -> np.ndarray:
    """Overdrive of a diode-connected device (vds = vgs = vth + vgst) carrying ``i_d``."""
    vgst = np.sqrt(2 * np.maximum(i_d, 1e-15) / beta)
    for _ in range(iters):
        vgst = np.sqrt(2 * np.maximum(i_d, 1e-15) / (beta * (1 + lam * (vth + vgst))))
    return vgst


def junction_cap(card: MosCard, area: np.ndarray, perim: np.ndarray, vrev: np.ndarray) -> np.ndarray:
    """Drain/source-bulk depletion capacitance at reverse bias ``vrev`` (SPICE's forward-bias linearisation
    is not needed: every junction of this circuit is reverse biased)."""
    vr = np.maximum(vrev, 0.0)
    return card.cj * area / (1 + vr / card.pb) ** card.mj + card.cjsw * perim / (1 + vr / card.pb) ** card.mjsw
