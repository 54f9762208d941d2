"""ngspice backend: the same op-amp, device cards and corners as the analytic model, solved by SPICE.

Each (design, corner) row becomes one self-contained netlist (model cards carry the corner's vth/kp and
the design's LAMBDA; ``.temp`` carries the temperature). One ``ngspice -b`` process runs a batch of rows:
its control script sources each netlist, runs ``op`` and an AC sweep, prints one ``RES`` line and removes
the circuit. Rows where ngspice finds no operating point or no unity-gain crossing come back NaN / 0,
which the reward scores as failing. ngspice is a system package (Debian: ``apt-get install -y ngspice``).
"""
from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .mos import MosCard
from .spec import Benchmark, Corner

RESULT_KEYS = ("gain", "ugbw_hz", "phase_deg", "supply_ma", "vdsat6", "vdsat7")


class NgspiceMissing(RuntimeError):
    """ngspice is not on PATH."""


def ngspice_path() -> str | None:
    return shutil.which("ngspice")


def _card(name: str, card: MosCard, l_um: float) -> str:
    kind = "nmos" if card.polarity > 0 else "pmos"
    return (f".model {name} {kind} level=1 vto={card.vto:.6g} kp={card.kp:.6g} gamma={card.gamma:.6g} "
            f"phi={card.phi:.6g} lambda={card.lambda_um / l_um:.6g} tox={card.tox:.6g} cgso={card.cgso:.6g} "
            f"cgdo={card.cgdo:.6g} cj={card.cj:.6g} mj={card.mj:.6g} cjsw={card.cjsw:.6g} "
            f"mjsw={card.mjsw:.6g} pb={card.pb:.6g}")


def netlist(bench: Benchmark, design: np.ndarray, corner: Corner) -> str:
    """Netlist of one (physical design, corner) row."""
    w1, w3, w5, w6, w7, l_um, ibias_ua, cc_pf = (float(v) for v in design)
    ld = bench.circuit["l_diff_um"]
    vcm = bench.circuit["vcm_fraction"] * corner.vdd

    def mos(name: str, d: str, g: str, s: str, b: str, model: str, w: float) -> str:
        return (f"{name} {d} {g} {s} {b} {model} W={w:.6g}u L={l_um:.6g}u AD={w * ld:.6g}p AS={w * ld:.6g}p "
                f"PD={w + 2 * ld:.6g}u PS={w + 2 * ld:.6g}u")

    lines = [
        f"* two-stage miller op-amp, corner {corner.name}",
        _card("nch", corner.nmos, l_um),
        _card("pch", corner.pmos, l_um),
        f".temp {corner.temperature_c:g}",
        f"VDD vdd 0 DC {corner.vdd:.6g}",
        f"VIP inp 0 DC {vcm:.6g} AC 1",
        f"IB vdd nb DC {ibias_ua:.6g}u",
        mos("M8", "nb", "nb", "0", "0", "nch", bench.circuit["w8_um"]),
        mos("M5", "tail", "nb", "0", "0", "nch", w5),
        mos("M1", "na", "inn", "tail", "0", "nch", w1),
        mos("M2", "out1", "inp", "tail", "0", "nch", w1),
        mos("M3", "na", "na", "vdd", "vdd", "pch", w3),
        mos("M4", "out1", "na", "vdd", "vdd", "pch", w3),
        mos("M6", "out", "out1", "vdd", "vdd", "pch", w6),
        mos("M7", "out", "nb", "0", "0", "nch", w7),
        f"CC out1 out {cc_pf:.6g}p",
        f"CL out 0 {bench.circuit['cl_pf']:.6g}p",
        # DC-only unity feedback: the inductor closes the loop at DC, the capacitor grounds inn for AC.
        "LFB out inn 1G",
        "CFB inn 0 1",
        ".end",
    ]
    return "\n".join(lines) + "\n"


def _control(paths: Sequence[Path], f0: float) -> str:
    out = ["* rtctl op-amp batch", ".control", "set noaskquit"]
    for i, p in enumerate(paths):
        out += [
            f"source {p}",
            "op",
            "let supply_ma = -vdd#branch * 1000",
            f"echo OP {i} $&supply_ma $&@m6[vdsat] $&@m7[vdsat]",
            f"ac dec 40 {f0:g} 100G",
            "let ugbw_hz = 0",
            "let phase_deg = -180",
            "let ph = cph(v(out)) * 180 / pi",
            f"meas ac gain find vm(out) at={f0:g}",
            "meas ac ugbw_hz when vdb(out)=0 fall=1",
            "meas ac phase_deg find ph when vdb(out)=0 fall=1",
            f"echo AC {i} $&gain $&ugbw_hz $&phase_deg",
            "destroy all",
            "remcirc",
        ]
    out += ["quit", ".endc", ".end"]
    return "\n".join(out) + "\n"


def _run_batch(bench: Benchmark, designs: np.ndarray, corners: Sequence[Corner], exe: str,
               timeout_s: float) -> np.ndarray:
    res = np.full((len(designs), len(RESULT_KEYS)), np.nan)
    with tempfile.TemporaryDirectory(prefix="rtctl-ngspice-") as tmp:
        paths = []
        for i, (d, c) in enumerate(zip(designs, corners)):
            p = Path(tmp) / f"row{i}.cir"
            p.write_text(netlist(bench, d, c))
            paths.append(p)
        ctl = Path(tmp) / "run.sp"
        ctl.write_text(_control(paths, bench.circuit["gain_freq_hz"]))
        proc = subprocess.run([exe, "-b", str(ctl)], cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "AC":
            res[int(parts[1]), :3] = [_num(v) for v in parts[2:]]
        elif len(parts) == 5 and parts[0] == "OP":
            res[int(parts[1]), 3:] = [_num(v) for v in parts[2:]]
    return res


def _num(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return math.nan


def simulate(bench: Benchmark, designs: np.ndarray, corners: Sequence[Corner], jobs: int = 2,
             batch: int = 45, timeout_s: float = 300.0) -> dict[str, np.ndarray]:
    """Measurements for row i = (designs[i], corners[i]), same keys as the analytic backend."""
    exe = ngspice_path()
    if exe is None:
        raise NgspiceMissing("ngspice is not on PATH (Debian/Ubuntu: apt-get install -y ngspice)")
    x = np.atleast_2d(np.asarray(designs, dtype=float))
    if len(corners) != len(x):
        raise ValueError(f"simulate: {len(x)} designs but {len(corners)} corners (one corner per row)")
    chunks = [(x[i:i + batch], corners[i:i + batch]) for i in range(0, len(x), batch)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        parts = list(pool.map(lambda ch: _run_batch(bench, ch[0], ch[1], exe, timeout_s), chunks))
    r = np.concatenate(parts) if parts else np.zeros((0, len(RESULT_KEYS)))
    vdd = np.array([c.vdd for c in corners])
    return {
        "gain": r[:, 0],
        "ugbw_mhz": r[:, 1] / 1e6,
        "pm_deg": 180.0 + r[:, 2],
        "power_mw": r[:, 3] * vdd,
        # ngspice reports a PMOS vdsat with its sign
        "swing_v": vdd - np.abs(r[:, 4]) - np.abs(r[:, 5]),
    }
