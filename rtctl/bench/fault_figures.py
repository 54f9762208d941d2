"""What a fault drill left behind, as figures: read from the run folder (`rtctl bench faults` columns, defined
in its docstring) and rendered as the reliability table of docs/runtime.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from rtctl.report.runfolder import read_events, read_log_checked

def event(events: list[dict], kind: str) -> Optional[dict]:
    return next((e for e in events if e.get("event") == kind), None)


def loop_t0(run: Path) -> Optional[int]:
    e = event(read_events(run), "loop_started")
    return None if e is None else int(e["t0_ns"])


def loop_running(run: Path) -> Callable[[], bool]:
    return lambda: (run / "events.jsonl").is_file() and loop_t0(run) is not None and (run / "log.jsonl").stat().st_size > 0


def summary_state(run: Path) -> str:
    p = run / "summary.json"
    if not p.is_file():
        return "none"
    try:
        s = json.loads(p.read_text())
    except ValueError:
        return "unreadable"
    return "partial" if str(s.get("stopped_by", "")).startswith("running") else "final"


def steps(rows: list[dict], since_ms: float = -1e18, until_ms: float = 1e18) -> np.ndarray:
    """Per-tick steps ‖u_t − u_{t−1}‖ of the applied command between two log times (ms since loop start),
    within one episode (a sim reset is not a command step)."""
    out = []
    for a, b in zip(rows, rows[1:]):
        if a.get("episode") != b.get("episode") or not since_ms <= b.get("t_end_ms", 0) <= until_ms:
            continue
        if a.get("applied") is None or b.get("applied") is None:
            continue
        out.append(float(np.linalg.norm(np.subtract(b["applied"], a["applied"]))))
    return np.asarray(out)


def run_figures(p99: dict[str, float], run: Path, t_fault_ns: Optional[int], baseline: str,
                until_ns: Optional[int] = None) -> dict:
    """log_lost_s, summary, jump_ratio, stop_s from a run/deploy folder."""
    rows, torn = read_log_checked(run) if (run / "log.jsonl").is_file() else ([], False)
    events = read_events(run)
    t0 = loop_t0(run)
    stopped = event(events, "stopped")
    out: dict[str, Any] = {"summary": summary_state(run), "log_rows": len(rows), "torn_last_line": torn}
    if t0 is None or not rows:
        return out
    last_ns = t0 + int(rows[-1]["t_end_ms"] * 1e6)
    ref = int(stopped["t_ns"]) if stopped is not None and "t_ns" in stopped else t_fault_ns
    if ref is not None:
        out["log_lost_s"] = round(max(0.0, (ref - last_ns) / 1e9), 3)
    if t_fault_ns is not None:
        out["stop_s"] = round(max(0.0, (last_ns - t_fault_ns) / 1e9), 3)
        since = (t_fault_ns - t0) / 1e6
        until = (until_ns - t0) / 1e6 if until_ns is not None else 1e18
        st = steps(rows, since, until)
        ref = p99.get(baseline)
        if st.size and ref:
            out["jump_ratio"] = round(float(st.max()) / ref, 2)
    return out


def _cell(v: Any) -> str:
    return "–" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def table(rows: list[dict]) -> str:
    """The reliability table of docs/runtime.md (markdown) from the rows."""
    head = ("| drill | injected | exit | log lost s | summary | jump / p99 | hold s | stop / brake s | "
            "left running |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        stop = r.get("stop_s")
        if r.get("brake_s") is not None:
            stop = f"all cars stopped {r['brake_s']:g} after the e-stop; exit {stop:g}"
        if r.get("seconds_to_fail") is not None:
            stop = f"refused in {r['seconds_to_fail']:g} s" + (f", folder {r['folder']}" if r.get("folder") else "")
        summary = r.get("summary") if "car_summary" not in r else f"{r.get('summary')} (car: {r['car_summary']})"
        hold = r.get("hold_s")
        if r.get("recovered_s") is not None:
            hold = f"{hold:g} (answering again {r['recovered_s']:g} s)"
        lines.append(f"| {r['drill']} | {r['injected']} | {_cell(r.get('exit'))} | {_cell(r.get('log_lost_s'))} | "
                     f"{_cell(summary)} | {_cell(r.get('jump_ratio'))} | {_cell(hold)} | {_cell(stop)} | "
                     f"{_cell(r.get('leftovers'))} |" + (f" error: {r['error']}" if r.get("error") else ""))
    return head + "\n".join(lines) + "\n"
